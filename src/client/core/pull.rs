//! A connection's pull consumers (`get`) across recovery: the tags handed
//! to the application go on counting up over every socket the connection
//! has had, so a tag from a socket that ended can never name a message
//! of the new one (the broker starts each pull consumer's tags at 1 on a
//! new connection, and requeued what the old one held, flagged
//! `redelivered`). An ack of such a stale tag is refused before anything
//! is sent ([`ClientError::StaleDelivery`]), as RabbitMQ's clients drop a
//! tag from before a recovery instead of applying it to the new channel.

use super::incoming::Response;
use crate::client::{ClientError, Result};
use std::collections::HashMap;

/// Per pull-consumer id: what the application's tags are offset by on the
/// current socket, and the highest tag handed out.
#[derive(Debug, Default, Clone, Copy)]
struct Span {
    /// Tags up to this are of sockets that ended.
    base: u64,
    last: u64,
}

/// The pull consumers of one connection.
#[derive(Debug, Default)]
pub struct PullTags {
    ids: HashMap<u32, Span>,
}

impl PullTags {
    /// A `get` of pull consumer `id` answered with the broker's `tag` on
    /// the current socket: the tag to hand out (0, a `no_ack` get's,
    /// stays 0).
    pub fn handed(&mut self, id: u32, tag: u64) -> u64 {
        if tag == 0 {
            return 0;
        }
        let s = self.ids.entry(id).or_default();
        let t = s.base.saturating_add(tag);
        s.last = s.last.max(t);
        t
    }

    /// A reply to pull consumer `id`'s `get`, as it reached the socket's
    /// reader (before the socket can have ended): its tag made the one to
    /// hand out.
    pub fn reply(&mut self, id: u32, r: Result<Response>) -> Result<Response> {
        match r {
            Ok(Response::Get(Some(mut d))) => {
                d.tag = self.handed(id, d.tag);
                Ok(Response::Get(Some(d)))
            }
            other => other,
        }
    }

    /// The socket ended: every tag handed out so far is stale.
    pub fn new_socket(&mut self) {
        for s in self.ids.values_mut() {
            s.base = s.last;
        }
    }

    /// The broker's tag, on the current socket, for the application's
    /// `tag` of pull consumer `id`; refused when the tag is of a socket
    /// that ended (the message was requeued by the broker and will come
    /// again, `redelivered`).
    pub fn for_ack(&self, id: u32, tag: u64) -> Result<u64> {
        match self.ids.get(&id) {
            Some(s) if tag <= s.base => Err(ClientError::StaleDelivery { consumer_id: id, tag }),
            Some(s) => Ok(tag - s.base),
            // Never handed out here: the broker judges it (as before).
            None => Ok(tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_of_an_ended_socket_are_refused_and_new_ones_map_back() {
        let mut p = PullTags::default();
        assert_eq!(p.handed(7, 1), 1);
        assert_eq!(p.handed(7, 2), 2);
        assert_eq!(p.handed(7, 0), 0, "no_ack");
        assert_eq!(p.for_ack(7, 2).unwrap(), 2);
        p.new_socket();
        // The broker starts again at 1 on the new socket.
        assert_eq!(p.handed(7, 1), 3);
        assert!(matches!(p.for_ack(7, 1), Err(ClientError::StaleDelivery { consumer_id: 7, tag: 1 })));
        assert!(p.for_ack(7, 2).is_err());
        assert_eq!(p.for_ack(7, 3).unwrap(), 1, "the new socket's tag 1");
        p.new_socket();
        p.new_socket();
        assert!(p.for_ack(7, 3).is_err());
        assert_eq!(p.handed(7, 1), 4);
        assert_eq!(p.for_ack(9, 5).unwrap(), 5, "an id never seen: as given");
    }
}
