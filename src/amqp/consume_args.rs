//! basic.consume's arguments, as RabbitMQ reads them: `x-priority` (an
//! integer of any AMQP integer type: the consumer's priority, 0 when
//! absent) and `x-stream-offset` (where a stream consumer starts: `first`,
//! `last`, `next`, an offset, a timestamp, or an interval back from now
//! such as `1D` or `30m`) are checked and used; a value of another type is
//! a 406. A classic queue ignores `x-stream-offset`. Every other argument
//! is ignored, as RabbitMQ ignores the consumer arguments it does not
//! know (`x-cancel-on-ha-failover`).

use crate::protocol::field_table::{Table, TableError, Value};
use crate::server::types::StreamOffset;

/// Why basic.consume's arguments are refused (406 PRECONDITION_FAILED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeArgError {
    #[error("arguments are not a field table: {0}")]
    Table(#[from] TableError),
    /// `x-priority` holds something other than an integer (`describe`d).
    #[error("expected an integer, got {0}")]
    NotAnInteger(String),
    /// An unsigned 64-bit `x-priority` above `i64::MAX` (a type RabbitMQ
    /// does not even parse).
    #[error("{0} is out of range")]
    OutOfRange(u64),
    /// `x-stream-offset` is none of the forms a stream takes (`describe`d).
    #[error("expected first, last, next, an offset, a timestamp or an interval such as 1D, got {0}")]
    BadOffset(String),
}

impl ConsumeArgError {
    /// The argument at fault, when the table itself is sound.
    pub fn arg(&self) -> Option<&'static str> {
        match self {
            ConsumeArgError::Table(_) => None,
            ConsumeArgError::NotAnInteger(_) | ConsumeArgError::OutOfRange(_) => Some("x-priority"),
            ConsumeArgError::BadOffset(_) => Some("x-stream-offset"),
        }
    }
}

/// The consumer priority a raw arguments table asks for; 0 when it has
/// no `x-priority`. `depth_max` is the connection's `table_depth_max`.
pub fn priority(args: &[u8], depth_max: usize) -> Result<i64, ConsumeArgError> {
    if args.is_empty() {
        return Ok(0);
    }
    let t = Table::parse_limited(args, depth_max)?;
    let Some(v) = t.get("x-priority") else { return Ok(0) };
    let n = v.as_int().ok_or_else(|| ConsumeArgError::NotAnInteger(v.describe()))?;
    // Every integer type but `L` fits; an `L` above i64::MAX does not.
    i64::try_from(n).map_err(|_| ConsumeArgError::OutOfRange(u64::try_from(n).unwrap_or(u64::MAX)))
}

/// Where a stream consumer starts (`x-stream-offset`; RabbitMQ's
/// default, `next`, when absent). An interval is counted back from
/// `now_ms` (wall clock, milliseconds since the epoch).
pub fn stream_offset(args: &[u8], depth_max: usize, now_ms: u64) -> Result<StreamOffset, ConsumeArgError> {
    if args.is_empty() {
        return Ok(StreamOffset::Next);
    }
    let t = Table::parse_limited(args, depth_max)?;
    let Some(v) = t.get("x-stream-offset") else { return Ok(StreamOffset::Next) };
    let bad = || ConsumeArgError::BadOffset(v.describe());
    match v {
        Value::Timestamp(secs) => Ok(StreamOffset::Timestamp(secs.saturating_mul(1000))),
        _ if v.as_int().is_some() => {
            let n = v.as_int().ok_or_else(bad)?;
            u64::try_from(n).map(StreamOffset::Offset).map_err(|_| bad())
        }
        _ => match v.as_str().ok_or_else(bad)? {
            "first" => Ok(StreamOffset::First),
            "last" => Ok(StreamOffset::Last),
            "next" => Ok(StreamOffset::Next),
            interval => {
                let ago = crate::server::policy::max_age_ms(interval).ok_or_else(bad)?;
                Ok(StreamOffset::Timestamp(now_ms.saturating_sub(ago)))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::field_table::{TableBuilder, Value};

    fn with(v: Value) -> Vec<u8> {
        TableBuilder::new().value("x-priority", v).build()
    }

    #[test]
    fn every_integer_type_is_a_priority() {
        assert_eq!(priority(&[], 8), Ok(0));
        for (v, want) in [
            (Value::I8(-3), -3),
            (Value::U8(200), 200),
            (Value::I16(-300), -300),
            (Value::U16(60_000), 60_000),
            (Value::I32(i32::MIN), i64::from(i32::MIN)),
            (Value::U32(u32::MAX), i64::from(u32::MAX)),
            (Value::I64(i64::MIN), i64::MIN),
            (Value::U64(7), 7),
        ] {
            assert_eq!(priority(&with(v.clone()), 8), Ok(want), "{v:?}");
        }
    }

    #[test]
    fn other_types_are_refused_and_other_arguments_ignored() {
        let e = priority(&with(Value::str("high")), 8).unwrap_err();
        assert_eq!(e, ConsumeArgError::NotAnInteger("\"high\" (longstr)".into()));
        assert_eq!(
            (e.arg(), e.to_string().as_str()),
            (Some("x-priority"), "expected an integer, got \"high\" (longstr)")
        );
        assert!(matches!(priority(&with(Value::Bool(true)), 8), Err(ConsumeArgError::NotAnInteger(_))));
        assert!(matches!(priority(&with(Value::F64(1.0)), 8), Err(ConsumeArgError::NotAnInteger(_))));
        assert_eq!(priority(&with(Value::U64(u64::MAX)), 8), Err(ConsumeArgError::OutOfRange(u64::MAX)));
        let others = TableBuilder::new()
            .str("x-stream-offset", "first")
            .bool("x-cancel-on-ha-failover", true)
            .str("x-made-up", "anything")
            .int("x-priority", 5)
            .build();
        assert_eq!(priority(&others, 8), Ok(5));
        assert_eq!(priority(&TableBuilder::new().str("x-made-up", "1").build(), 8), Ok(0));
    }

    #[test]
    fn stream_offsets() {
        let at = |v: Value| stream_offset(&TableBuilder::new().value("x-stream-offset", v).build(), 8, 10_000_000);
        assert_eq!(stream_offset(&[], 8, 0), Ok(StreamOffset::Next));
        assert_eq!(at(Value::str("first")), Ok(StreamOffset::First));
        assert_eq!(at(Value::str("last")), Ok(StreamOffset::Last));
        assert_eq!(at(Value::str("next")), Ok(StreamOffset::Next));
        assert_eq!(at(Value::I64(42)), Ok(StreamOffset::Offset(42)));
        assert_eq!(at(Value::U8(7)), Ok(StreamOffset::Offset(7)));
        assert_eq!(at(Value::Timestamp(5)), Ok(StreamOffset::Timestamp(5000)));
        assert_eq!(at(Value::str("10s")), Ok(StreamOffset::Timestamp(10_000_000 - 10_000)));
        // Far back saturates at the epoch.
        assert_eq!(at(Value::str("100Y")), Ok(StreamOffset::Timestamp(0)));
        for bad in [Value::I64(-1), Value::str("middle"), Value::Bool(true), Value::F64(1.5), Value::str("")] {
            let e = at(bad.clone()).unwrap_err();
            assert_eq!(e.arg(), Some("x-stream-offset"), "{bad:?}");
        }
        assert!(at(Value::Timestamp(u64::MAX)).is_ok());
    }

    #[test]
    fn the_depth_limit_holds() {
        let nested = TableBuilder::new().value("x-deep", Value::Table(Table(vec![]))).build();
        assert_eq!(priority(&nested, 2), Ok(0));
        assert_eq!(priority(&nested, 1), Err(ConsumeArgError::Table(TableError::TooDeep { max: 1 })));
    }
}
