//! What the log read and wrote, for operators (`rabbitmq_io_*` and
//! `ringmq_storage_io_*`): counted per write of a batch of records and
//! per read of a span, never per message, on the shard's own thread.

use std::cell::Cell;
use std::time::Instant;

/// Totals since the shard started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IoTotals {
    pub read_ops: u64,
    pub read_bytes: u64,
    pub read_nanos: u64,
    pub write_ops: u64,
    pub write_bytes: u64,
    pub write_nanos: u64,
}

impl IoTotals {
    pub fn add(&mut self, o: &IoTotals) {
        self.read_ops += o.read_ops;
        self.read_bytes += o.read_bytes;
        self.read_nanos += o.read_nanos;
        self.write_ops += o.write_ops;
        self.write_bytes += o.write_bytes;
        self.write_nanos += o.write_nanos;
    }
}

/// The log's counters: a cell, bumped from the shard's thread only.
#[derive(Default)]
pub struct IoCounters(Cell<IoTotals>);

fn nanos_since(since: Instant) -> u64 {
    crate::protocol::wire::u64_of(since.elapsed().as_nanos())
}

impl IoCounters {
    pub fn totals(&self) -> IoTotals {
        self.0.get()
    }

    /// A read of `bytes` that started at `since`.
    pub fn read(&self, bytes: usize, since: Instant) {
        let mut t = self.0.get();
        t.read_ops += 1;
        t.read_bytes += bytes as u64;
        t.read_nanos = t.read_nanos.saturating_add(nanos_since(since));
        self.0.set(t);
    }

    /// A write of `bytes` that started at `since`.
    pub fn write(&self, bytes: usize, since: Instant) {
        let mut t = self.0.get();
        t.write_ops += 1;
        t.write_bytes += bytes as u64;
        t.write_nanos = t.write_nanos.saturating_add(nanos_since(since));
        self.0.set(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_add_up() {
        let c = IoCounters::default();
        let t0 = Instant::now();
        c.read(100, t0);
        c.read(50, t0);
        c.write(4096, t0);
        let t = c.totals();
        assert_eq!((t.read_ops, t.read_bytes, t.write_ops, t.write_bytes), (2, 150, 1, 4096));
        let mut sum = IoTotals::default();
        sum.add(&t);
        sum.add(&t);
        assert_eq!((sum.read_ops, sum.write_bytes), (4, 8192));
    }
}
