//! Direct reply-to names (RabbitMQ's `amq.rabbitmq.reply-to`; docs/amqp.md,
//! "Direct reply-to", and docs/protocol.md, `ReplyTo`).
//!
//! A requester consumes from the pseudo-queue [`PSEUDO_QUEUE`]; the broker
//! gives it a generated name, [`PREFIX`] followed by the hex of
//! [`ReplyTo`]: the node, shard, connection and channel (or native
//! consumer id) the replies go to, and the reply consumer's random token. A
//! replier publishes to that name as to a queue; the broker decodes it
//! and hands the message straight to that connection, which delivers it
//! only if the token is its own.
//!
//! Names come back from replier clients, so [`ReplyTo::decode`] takes any
//! bytes: the exact length, lowercase hex only, the known version, and
//! never a panic. The fields are checked again where they are used (the
//! node and shard must exist, the consumer must hold the token).

/// What a requester consumes from and puts in its requests' `reply_to`.
pub const PSEUDO_QUEUE: &str = "amq.rabbitmq.reply-to";
/// Every generated name starts with this.
pub const PREFIX: &str = "amq.rabbitmq.reply-to.";

const VERSION: u8 = 1;
/// version, node, shard, connection, channel, token.
const RAW_BYTES: usize = 1 + 8 + 2 + 8 + 4 + 8;
/// The length of every generated name.
pub const NAME_BYTES: usize = PREFIX.len() + 2 * RAW_BYTES;

/// Where a direct reply goes, as a generated name carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    /// The requester's node (0 on a node that is not clustered).
    pub node: u64,
    pub shard: u16,
    pub conn_id: u64,
    /// The AMQP channel, or the native consumer id, of the reply consumer.
    pub channel: u32,
    /// The reply consumer's random token: without it a name is not accepted.
    pub token: u64,
}

/// Why a name is not a generated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("not a direct reply-to name (no '{PREFIX}' prefix)")]
    Prefix,
    #[error("a direct reply-to name has {NAME_BYTES} bytes, this one {0}")]
    Length(usize),
    #[error("a direct reply-to name is lowercase hex after its prefix")]
    NotHex,
    #[error("unknown direct reply-to name version {0}")]
    Version(u8),
}

/// Whether `name` claims to be a generated name (a publish to it is a
/// direct reply, whatever follows). Cheap: most names differ at byte 0.
#[inline]
pub fn is_reply_name(name: &str) -> bool {
    name.as_bytes().starts_with(PREFIX.as_bytes())
}

impl ReplyTo {
    /// The generated name.
    pub fn encode(&self) -> String {
        let mut raw = [0u8; RAW_BYTES];
        raw[0] = VERSION;
        raw[1..9].copy_from_slice(&self.node.to_be_bytes());
        raw[9..11].copy_from_slice(&self.shard.to_be_bytes());
        raw[11..19].copy_from_slice(&self.conn_id.to_be_bytes());
        raw[19..23].copy_from_slice(&self.channel.to_be_bytes());
        raw[23..31].copy_from_slice(&self.token.to_be_bytes());
        let mut s = String::with_capacity(NAME_BYTES);
        s.push_str(PREFIX);
        for b in raw {
            s.push(hex_digit(b >> 4));
            s.push(hex_digit(b & 0x0f));
        }
        s
    }

    /// A name as a client gave it: any bytes.
    pub fn decode(name: &[u8]) -> Result<Self, NameError> {
        let hex = name.strip_prefix(PREFIX.as_bytes()).ok_or(NameError::Prefix)?;
        if name.len() != NAME_BYTES {
            return Err(NameError::Length(name.len()));
        }
        let mut raw = [0u8; RAW_BYTES];
        for (out, pair) in raw.iter_mut().zip(hex.chunks_exact(2)) {
            *out = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
        }
        if raw[0] != VERSION {
            return Err(NameError::Version(raw[0]));
        }
        let u64_at = |i: usize| u64::from_be_bytes([0, 1, 2, 3, 4, 5, 6, 7].map(|k| raw[i + k]));
        Ok(Self {
            node: u64_at(1),
            shard: u16::from_be_bytes([raw[9], raw[10]]),
            conn_id: u64_at(11),
            channel: u32::from_be_bytes([raw[19], raw[20], raw[21], raw[22]]),
            token: u64_at(23),
        })
    }
}

fn hex_digit(v: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(v & 0x0f)])
}

fn hex_value(c: u8) -> Result<u8, NameError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(NameError::NotHex),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_reply_to() -> impl Strategy<Value = ReplyTo> {
        (any::<u64>(), any::<u16>(), any::<u64>(), any::<u32>(), any::<u64>())
            .prop_map(|(node, shard, conn_id, channel, token)| ReplyTo { node, shard, conn_id, channel, token })
    }

    proptest! {
        #[test]
        fn names_round_trip(r in any_reply_to()) {
            let name = r.encode();
            prop_assert_eq!(name.len(), NAME_BYTES);
            prop_assert!(is_reply_name(&name));
            prop_assert!(name.len() <= 255, "fits a short string");
            prop_assert_eq!(ReplyTo::decode(name.as_bytes()), Ok(r));
        }

        /// Whatever a client writes, decoding answers without panicking.
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = ReplyTo::decode(&bytes);
            let mut prefixed = PREFIX.as_bytes().to_vec();
            prefixed.extend_from_slice(&bytes);
            let _ = ReplyTo::decode(&prefixed);
        }

        /// Any one byte changed in the hex part is refused or decodes to
        /// another target: never the same name read two ways.
        #[test]
        fn a_changed_byte_never_decodes_to_the_same_target(r in any_reply_to(), at in 0usize..2 * RAW_BYTES, b in any::<u8>()) {
            let mut name = r.encode().into_bytes();
            let i = PREFIX.len() + at;
            prop_assume!(name[i] != b);
            name[i] = b;
            prop_assert_ne!(ReplyTo::decode(&name), Ok(r));
        }
    }

    #[test]
    fn bad_names_say_why() {
        let good = ReplyTo { node: 7, shard: 1, conn_id: 42, channel: 3, token: 0xdead_beef }.encode();
        assert_eq!(ReplyTo::decode(b"amq.rabbitmq.reply-to"), Err(NameError::Prefix));
        assert_eq!(ReplyTo::decode(b"q"), Err(NameError::Prefix));
        assert_eq!(ReplyTo::decode(&good.as_bytes()[..good.len() - 1]), Err(NameError::Length(NAME_BYTES - 1)));
        assert_eq!(ReplyTo::decode(format!("{good}0").as_bytes()), Err(NameError::Length(NAME_BYTES + 1)));
        assert_eq!(
            ReplyTo::decode(good.to_uppercase().replace("AMQ.RABBITMQ.REPLY-TO.", PREFIX).as_bytes()),
            Err(NameError::NotHex)
        );
        let mut v2 = good.clone().into_bytes();
        v2[PREFIX.len() + 1] = b'2';
        assert_eq!(ReplyTo::decode(&v2), Err(NameError::Version(2)));
        assert!(!is_reply_name(PSEUDO_QUEUE), "the pseudo-queue itself is not a generated name");
    }
}
