//! What the shard needs of a connection (native, AMQP, HTTP or a peer
//! node's link): the sink it hands replies and deliveries to.

use super::Shard;
use crate::server::gate::DeliveryGate;
use crate::server::queue::Deliveries;
use crate::server::types::Reply;
use bytes::Bytes;

/// What a connection must offer the shard: a place to put replies.
pub trait ConnSink {
    fn send(&self, reply: Reply);
    /// Encodes deliveries straight from the queue's unacked store.
    fn deliver(&self, consumer_id: u32, first_tag: u64, msgs: Deliveries<'_>);
    /// Ends the connection after flushing what is queued (broker shutdown).
    fn shut_down(&self, why: &str);
    /// Ends a connection that has not logged in, telling it `why` where
    /// its protocol can, and stops its reader at once: the shard evicted
    /// it at `unauthenticated_connections_max`.
    fn evict(&self, why: &str);
    /// A direct reply (`protocol::reply_to`) for the reply consumer
    /// `channel` (an AMQP channel, a native consumer id), if `token` is
    /// that consumer's: delivered (or, with no `msgs`, only looked
    /// for). `false`: no such consumer here, the reply is dropped.
    fn direct_reply(&self, _channel: u32, _token: u64, _msgs: &[Bytes]) -> bool {
        false
    }
    /// The cluster map moved to `version`: a native connection that asked
    /// for the map is told.
    fn map_changed(&self, _version: u32) {}
    /// The user it logged in as; `None` before login (and for HTTP).
    fn login_user(&self) -> Option<String> {
        None
    }
    /// The vhost it works in; `None` before login (and for HTTP).
    fn login_vhost(&self) -> Option<String> {
        None
    }
    /// The protocol (`native`, `amqp`) and peer address, for operators.
    fn describe(&self) -> (&'static str, String) {
        ("native", String::new())
    }
    /// Its socket buffers and delivery gate, from which the four methods
    /// below are answered alike for every front end; `None` (a sink with
    /// no socket) holds nothing and always takes deliveries.
    fn buffers(&self) -> Option<SinkBuffers<'_>> {
        None
    }
    /// Bytes the connection holds in memory (its outbox and read buffer),
    /// for the memory alarm.
    fn held_bytes(&self) -> usize {
        self.buffers().map_or(0, |b| b.outbox.held_bytes() + b.read_held)
    }
    /// Bytes of deliveries its outbox has room for (`server/gate.rs`).
    fn delivery_room(&self) -> usize {
        self.buffers().map_or(usize::MAX, |b| b.outbox_bytes_max.saturating_sub(b.outbox.pending_bytes()))
    }
    /// Shard `owner` stopped dispatching to it until its outbox drains.
    /// Must not call back into the shard.
    fn deliveries_stopped(&self, owner: u16) {
        if let Some(b) = self.buffers() {
            b.gate.stopped_at(owner);
        }
    }
    /// `bytes` of deliveries arrived from owner shard `owner` (another
    /// shard): its gate grants them back as credit (`window` is the
    /// owner's window).
    fn delivered_from(&self, owner: u16, bytes: usize, window: usize) {
        if let Some(b) = self.buffers() {
            b.gate.received(owner, bytes, window);
        }
    }
    /// Its open channels (`/api/overview`'s `channels`): AMQP's; the
    /// native protocol has none.
    fn channels(&self) -> usize {
        0
    }
    /// A row per open channel (`/api/channels`); none for the native
    /// protocol. Asked from the shard's own turn, off the message path.
    fn channel_rows(&self) -> Vec<crate::server::stats::ChannelRow> {
        Vec::new()
    }
    /// Bytes it holds for its socket (queued and being written).
    fn outbox_bytes(&self) -> usize {
        self.buffers().map_or(0, |b| b.outbox.pending_bytes())
    }
    /// It has published (a native connection; AMQP counts its channels).
    fn publishes(&self) -> bool {
        false
    }
    /// Its traffic so far: bytes read, reads, bytes written, writes.
    fn traffic(&self) -> [u64; 4] {
        self.buffers().map_or([0; 4], |b| {
            let (out_bytes, writes) = b.outbox.write_totals();
            [b.read_totals.0, b.read_totals.1, out_bytes, writes]
        })
    }
}

/// What a connection's [`ConnSink::buffers`] lends the shard.
pub struct SinkBuffers<'a> {
    pub outbox: &'a crate::rt::Outbox,
    /// The read buffer's capacity.
    pub read_held: usize,
    /// Bytes read so far, and the reads (`FrameReader::read_totals`, as of
    /// the connection's last turn).
    pub read_totals: (u64, u64),
    pub gate: &'a DeliveryGate,
    /// `outbox_bytes_max`: past it the queues stop dispatching to it.
    pub outbox_bytes_max: usize,
}

impl<'a> SinkBuffers<'a> {
    /// A connection's buffers on `shard`, under its `outbox_bytes_max`.
    #[inline]
    pub fn on(shard: &Shard, outbox: &'a crate::rt::Outbox, read: (usize, (u64, u64)), gate: &'a DeliveryGate) -> Self {
        let outbox_bytes_max = shard.config.outbox_bytes_max as usize;
        Self { outbox, read_held: read.0, read_totals: read.1, gate, outbox_bytes_max }
    }
}
