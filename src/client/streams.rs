//! Streams in the client (docs/streams.md, docs/client.md): a stream
//! consumer from a position, and server-side offset tracking
//! (`StoreOffset` / `QueryOffset`), on each client (glommio, tokio,
//! blocking). A consumer that stores the offset of what it has handled
//! under its name resumes with `stream_subscribe(.., StreamAt::Offset(o + 1), ..)`
//! after `query_offset` returned `o`.

use super::{ClientError, Result};
use crate::protocol::{Cmd, ErrorCode, StreamAt};

/// The broker's bounds (`storage::{STREAM_REFERENCE_BYTES_MAX, SEQ_LIMIT}`;
/// the client builds without the broker's storage).
const REFERENCE_BYTES_MAX: usize = 255;
const OFFSET_LIMIT: u64 = 1 << 62;

/// Refused before anything is sent: the broker's own bounds (a reference
/// is 1..=255 bytes; offsets are below 2^62).
fn check(reference: &str, offset: Option<u64>) -> Result<()> {
    if reference.is_empty() || reference.len() > REFERENCE_BYTES_MAX {
        return Err(ClientError::Invalid(format!(
            "an offset reference is 1..=255 bytes, not {} bytes",
            reference.len()
        )));
    }
    match offset {
        Some(o) if o >= OFFSET_LIMIT => Err(ClientError::Invalid(format!("offset {o} is past 2^62"))),
        _ => Ok(()),
    }
}

/// `QueryOffset`'s answer: `None` when nothing is stored under the reference.
fn found(r: Result<u64>) -> Result<Option<u64>> {
    match r {
        Ok(o) => Ok(Some(o)),
        Err(e) if e.code() == Some(ErrorCode::OffsetNotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(feature = "glommio")]
impl super::Client {
    /// A stream consumer reading `stream` from `at` (first, last, next, an
    /// offset, a time in Unix ms) with at most `prefetch` unacked
    /// deliveries; an ack gives back credit (the messages stay).
    pub async fn stream_subscribe(&self, stream: &str, at: StreamAt, prefetch: u32) -> Result<super::Consumer> {
        self.subscribe_with(stream, super::ConsumerOptions::new(prefetch).stream_at(at)).await
    }

    /// Stores `offset` under `reference` on the broker (durable: the Ok
    /// comes once it is on disk). The latest stored per reference wins.
    pub async fn store_offset(&self, stream: &str, reference: &str, offset: u64) -> Result<()> {
        check(reference, Some(offset))?;
        let cmd = Cmd::StoreOffset { queue: stream, reference, offset };
        self.conn_for(stream).await?.simple(cmd).await.map(|_| ())
    }

    /// The offset stored under `reference`, or `None`.
    pub async fn query_offset(&self, stream: &str, reference: &str) -> Result<Option<u64>> {
        check(reference, None)?;
        found(self.conn_for(stream).await?.simple(Cmd::QueryOffset { queue: stream, reference }).await)
    }
}

#[cfg(feature = "tokio")]
impl super::tokio::Client {
    /// As the glommio client's [`stream_subscribe`](super::Client::stream_subscribe).
    pub async fn stream_subscribe(&self, stream: &str, at: StreamAt, prefetch: u32) -> Result<super::tokio::Consumer> {
        self.subscribe_with(stream, super::ConsumerOptions::new(prefetch).stream_at(at)).await
    }

    /// Stores `offset` under `reference` on the broker (durable).
    pub async fn store_offset(&self, stream: &str, reference: &str, offset: u64) -> Result<()> {
        check(reference, Some(offset))?;
        let cmd = Cmd::StoreOffset { queue: stream, reference, offset };
        self.conn_for(stream).await?.simple(cmd).await.map(|_| ())
    }

    /// The offset stored under `reference`, or `None`.
    pub async fn query_offset(&self, stream: &str, reference: &str) -> Result<Option<u64>> {
        check(reference, None)?;
        found(self.conn_for(stream).await?.simple(Cmd::QueryOffset { queue: stream, reference }).await)
    }
}

impl super::blocking::Client {
    /// A stream consumer reading `stream` from `at`, `prefetch` unacked at most.
    pub fn stream_subscribe(
        &mut self,
        stream: &str,
        at: StreamAt,
        prefetch: u32,
    ) -> Result<super::blocking::Subscription> {
        self.subscribe_with(stream, super::ConsumerOptions::new(prefetch).stream_at(at))
    }

    /// Stores `offset` under `reference` on the broker (durable).
    pub fn store_offset(&mut self, stream: &str, reference: &str, offset: u64) -> Result<()> {
        check(reference, Some(offset))?;
        let i = self.conn(stream)?;
        self.simple_on(i, Cmd::StoreOffset { queue: stream, reference, offset }).map(|_| ())
    }

    /// The offset stored under `reference`, or `None`.
    pub fn query_offset(&mut self, stream: &str, reference: &str) -> Result<Option<u64>> {
        check(reference, None)?;
        let i = self.conn(stream)?;
        found(self.simple_on(i, Cmd::QueryOffset { queue: stream, reference }))
    }
}

impl super::Delivery {
    /// A stream delivery's offset: its `x-stream-offset` header (`None`
    /// for a delivery from a classic queue).
    pub fn stream_offset(&self) -> Option<u64> {
        let props = crate::protocol::props::Props::parse(&self.props).ok()?;
        match props.headers?.get("x-stream-offset")? {
            crate::protocol::field_table::Value::I64(o) => u64::try_from(*o).ok(),
            _ => None,
        }
    }
}
