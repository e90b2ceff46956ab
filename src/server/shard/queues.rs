//! The set of queues a shard owns. Every request on a queue borrows it
//! for the length of one handler, never across an `.await`.

use super::super::queue::{Queue, QueueLimits};
use crate::server::config::Config;
use crate::server::policy::QueueArgs;
use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::HashMap;

/// The queues, by name.
pub(super) type QueueMap = HashMap<String, Queue, ahash::RandomState>;

/// The queues this shard owns, by name, and the limits each is created
/// with. One part of `Shard`.
pub struct QueueSet {
    map: RefCell<QueueMap>,
    limits: QueueLimits,
    /// Whether a stream was ever created here: until then a transient
    /// publish never looks its queue up to ask whether it is a stream.
    streams: Cell<bool>,
}

impl QueueSet {
    pub fn new(config: &Config) -> Self {
        let limits = QueueLimits {
            messages_max: config.queue_messages_max,
            removals_max: config.dead_letter_batch_max as usize,
            stream_memory_bytes_max: config.stream_memory_bytes_max,
            stream_read_ahead_bytes: config.stream_read_ahead_bytes,
        };
        Self { map: RefCell::default(), limits, streams: Cell::new(false) }
    }

    #[inline]
    pub(super) fn borrow(&self) -> Ref<'_, QueueMap> {
        self.map.borrow()
    }

    #[inline]
    pub(super) fn borrow_mut(&self) -> RefMut<'_, QueueMap> {
        self.map.borrow_mut()
    }

    /// A new queue with the broker's limits (not yet in the set).
    pub(super) fn new_queue(&self, name: String, durable: bool, args: QueueArgs) -> Queue {
        if args.stream {
            self.streams.set(true);
        }
        Queue::new(name, durable, self.limits, args)
    }

    #[inline]
    pub(super) fn has_streams(&self) -> bool {
        self.streams.get()
    }

    pub(super) fn is_stream(&self, name: &str) -> bool {
        self.map.borrow().get(name).is_some_and(Queue::is_stream)
    }
}
