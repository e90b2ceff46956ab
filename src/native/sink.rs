//! What the shard hands a native connection: replies and deliveries,
//! encoded into the outbox; evictions, map changes and its description.

use super::encode::{encode_deliveries, encode_deliveries_from, frame};
use super::encode_reply;
use super::NativeConn;
use crate::protocol::{Cmd, ErrorCode};
use crate::server::queue::Deliveries;
use crate::server::shard::{ConnSink, SinkBuffers};
use crate::server::types::Reply;
use bytes::Bytes;

impl ConnSink for NativeConn {
    fn send(&self, reply: Reply) {
        let settled = match &reply {
            Reply::Error { request_id, .. } => Some((*request_id, true)),
            Reply::Ok { request_id, .. } | Reply::GetOk { request_id, .. } | Reply::GetEmpty { request_id } => {
                Some((*request_id, false))
            }
            _ => None,
        };
        match &reply {
            Reply::ConsumerTimeout { consumer_id, .. } | Reply::ConsumerGone { consumer_id } => {
                self.consumers.borrow_mut().remove(consumer_id);
            }
            Reply::PublishPaused { queue } => return self.remote_pause(queue, true),
            Reply::PublishResumed { queue } => return self.remote_pause(queue, false),
            _ => {}
        }
        if let Some((rid, refused)) = settled {
            let claimed = self.pending_routes.borrow_mut().remove(&rid);
            if let (Some(id), true) = (claimed, refused) {
                self.consumers.borrow_mut().remove(&id);
            }
        }
        let limits = self.limits();
        if let Reply::Deliver { consumer_id, first_tag, msgs, .. } = &reply {
            if let Some(queue) = self.origin_queue(*consumer_id) {
                let ds = msgs.iter().map(|m| (m.redelivered, &m.entry[..], m.origin.as_deref()));
                return self
                    .outbox
                    .push(|buf| encode_deliveries_from(buf, &limits, *consumer_id, *first_tag, &queue, ds));
            }
            let ds = msgs.iter().map(|m| (m.redelivered, &m.entry, None));
            return self.outbox.push_parts(|out| encode_deliveries(out, &limits, *consumer_id, *first_tag, ds));
        }
        self.outbox.push(|buf| encode_reply(buf, &limits, &reply));
    }

    fn deliver(&self, consumer_id: u32, first_tag: u64, msgs: Deliveries<'_>) {
        let limits = self.limits();
        if let Some(queue) = self.origin_queue(consumer_id) {
            let ds = msgs.map(|m| (m.redelivered, &m.entry[..], m.origin.map(|o| &**o)));
            return self.outbox.push(|buf| encode_deliveries_from(buf, &limits, consumer_id, first_tag, &queue, ds));
        }
        self.outbox.push_parts(|out| {
            encode_deliveries(out, &limits, consumer_id, first_tag, msgs.map(|m| (m.redelivered, m.entry, m.run)))
        });
    }

    fn shut_down(&self, why: &str) {
        self.send_error(0, ErrorCode::ShuttingDown, why);
        self.outbox.close();
    }

    fn evict(&self, why: &str) {
        self.send_error(0, ErrorCode::UnauthenticatedLimit, why);
        self.outbox.abort();
    }

    fn map_changed(&self, version: u32) {
        if self.map_watch.get() {
            self.outbox.push(|b| frame(b, 0, Cmd::MapChanged { version }));
        }
    }

    fn login_user(&self) -> Option<String> {
        self.grants.borrow().as_ref().map(|g| g.user().to_string())
    }

    fn login_vhost(&self) -> Option<String> {
        self.grants.borrow().as_ref().map(|g| g.vhost().to_string())
    }

    fn describe(&self) -> (&'static str, String) {
        ("native", self.peer.clone())
    }

    fn publishes(&self) -> bool {
        self.publisher.get()
    }

    fn buffers(&self) -> Option<SinkBuffers<'_>> {
        Some(SinkBuffers::on(&self.shard, &self.outbox, (self.read_held.get(), self.read_totals.get()), &self.gate))
    }

    fn direct_reply(&self, channel: u32, token: u64, msgs: &[Bytes]) -> bool {
        self.take_direct_reply(channel, token, msgs)
    }
}
