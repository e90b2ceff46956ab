//! A get (AMQP basic.get, native Get): one message from a queue's head,
//! read back from disk first when the head was spilled.

use super::{bump, check_lock, spill, Shard};
use crate::server::types::{ConnRef, Reply};

impl Shard {
    pub(super) fn get(&self, from: ConnRef, request_id: u64, consumer_id: u32, no_ack: bool, queue: &str) {
        let now = self.timers.now_ms();
        let r = self.with_queue(queue, |q| {
            check_lock(q, from)?;
            q.touch(now);
            let got = self.get_logged(q, from, consumer_id, no_ack, now)?;
            // Nothing taken because the head is on disk: answered after
            // the shard has read it back.
            Ok((got, q.ready_len(), q.head_spilled()))
        });
        let r = match r {
            Ok((None, _, true)) => {
                return self.get_after_fetch(queue, spill::PendingGet { from, request_id, consumer_id, no_ack })
            }
            Ok((got, remaining, _)) => Ok((got, remaining)),
            Err(e) => Err(e),
        };
        let reply = match r {
            Ok((Some((tag, msg)), remaining)) => {
                bump(&self.counters.delivered, 1);
                bump(
                    if no_ack {
                        &self.counters.delivered_get_auto_ack
                    } else {
                        &self.counters.delivered_get_manual_ack
                    },
                    1,
                );
                Reply::GetOk { request_id, consumer_id, tag, remaining: crate::protocol::wire::len32(remaining), msg }
            }
            Ok((None, _)) => {
                bump(&self.counters.get_empty, 1);
                Reply::GetEmpty { request_id }
            }
            Err(e) => Reply::Error { request_id, code: e.code, message: e.message },
        };
        self.route_reply(from, reply);
    }
}
