//! A connection's requests: ids, the waiters for their replies, and why
//! the connection closed. The waiter type is the shell's (a boxed
//! callback; `Send` on tokio). The shell takes a waiter out and calls it
//! after releasing its cell or lock, since a waiter may wake others.

use super::handshake::MAP_REQUEST_ID;
use super::incoming::Response;
use crate::client::{ClientError, Result};
use std::collections::HashMap;

/// Requests of one connection.
#[derive(Debug)]
pub struct Requests<W> {
    next_id: u64,
    pending: HashMap<u64, W>,
    /// An error for a request nobody waits on (an unconfirmed publish,
    /// an ack), for the next call to report.
    last_error: Option<ClientError>,
    /// Why the connection ended, once it has.
    closed: Option<ClientError>,
}

impl<W> Default for Requests<W> {
    fn default() -> Self {
        // The handshake used ids 0 and `MAP_REQUEST_ID`.
        Self { next_id: MAP_REQUEST_ID + 1, pending: HashMap::new(), last_error: None, closed: None }
    }
}

impl<W> Requests<W> {
    /// A fresh request id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Why the connection closed, if it has.
    pub fn closed(&self) -> Option<&ClientError> {
        self.closed.as_ref()
    }

    /// Registers the waiter for request `rid`'s reply.
    pub fn wait_for(&mut self, rid: u64, w: W) {
        self.pending.insert(rid, w);
    }

    /// The waiter of `rid`, with the reply to hand it; a reply nobody
    /// waits for is dropped, an error kept for [`Requests::take_error`].
    #[inline]
    pub fn settle(&mut self, rid: u64, r: Result<Response>) -> Option<(W, Result<Response>)> {
        match (self.pending.remove(&rid), r) {
            (Some(w), r) => Some((w, r)),
            (None, Err(e)) => {
                tracing::debug!(request_id = rid, error = %e, "error for a request with no waiter");
                self.last_error = Some(e);
                None
            }
            (None, Ok(_)) => None,
        }
    }

    /// The last error of a request that had no waiter, taken.
    pub fn take_error(&mut self) -> Option<ClientError> {
        self.last_error.take()
    }

    /// A redialled connection takes requests again (recovery): ids go on
    /// counting, so a late reply of the old socket matches nothing.
    pub fn reopen(&mut self) {
        self.closed = None;
        self.last_error = None;
    }

    /// Ends the connection (the first reason stays): every waiter, to be
    /// told `err`.
    pub fn fail(&mut self, err: &ClientError) -> Vec<W> {
        self.closed.get_or_insert_with(|| err.clone());
        self.pending.drain().map(|(_, w)| w).collect()
    }
}
