//! Loss, duplicate and reorder accounting.
//!
//! Every consumed message carries (producer id, sequence). A *stream* is
//! what one producer sends into one queue: without an exchange each
//! producer has one stream, through a fanout exchange one per queue. Each
//! worker keeps, per stream, a bitmap of the sequence numbers its consumers
//! of that queue have seen (one bit a message, so 12 M messages cost
//! 1.5 MB). At the end the workers' bitmaps are OR-ed together; a bit set in
//! two workers is a duplicate delivered to consumers on different workers.
//!
//! - **duplicates**: deliveries of a (queue, producer, seq) already seen, in
//!   any consumer of that queue. The same message in two queues (fan-out)
//!   is two deliveries, not a duplicate.
//! - **lost**: per stream that should arrive (the producer's messages reach
//!   the queue and the queue has a consumer), messages the producer sent
//!   that no consumer of the queue received, after the drain period.
//! - **reordered**: counted per consumer and per producer: a first delivery
//!   whose sequence is lower than the highest sequence that *same consumer*
//!   already received from that producer. A queue's messages are split among
//!   its consumers, so each consumer sees a subsequence of every producer's
//!   stream; FIFO means each subsequence is increasing. Order *across*
//!   consumers is not defined and is not counted. Redeliveries after a nack
//!   or a lost consumer are duplicates or reorders by this definition, which
//!   is what a user would observe.

#[derive(Default, Clone, Debug)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// Sets bit `i`; returns true when it was clear.
    pub fn insert(&mut self, i: u64) -> bool {
        let w = (i / 64) as usize;
        if w >= self.words.len() {
            let new_len = (w + 1).max(self.words.len() * 2).max(64);
            self.words.resize(new_len, 0);
        }
        let bit = 1u64 << (i % 64);
        let was = self.words[w] & bit != 0;
        self.words[w] |= bit;
        !was
    }

    #[cfg(test)]
    pub fn contains(&self, i: u64) -> bool {
        let w = (i / 64) as usize;
        w < self.words.len() && self.words[w] & (1u64 << (i % 64)) != 0
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// Number of set bits below `n`.
    pub fn count_below(&self, n: u64) -> u64 {
        let full = ((n / 64) as usize).min(self.words.len());
        let mut c: u64 = self.words[..full].iter().map(|w| w.count_ones() as u64).sum();
        let rest = n % 64;
        if rest > 0 && full < self.words.len() && full == (n / 64) as usize {
            c += (self.words[full] & ((1u64 << rest) - 1)).count_ones() as u64;
        }
        c
    }

    /// Bits set in `self` and clear in `other`: how many, and the first
    /// `keep` of them.
    pub fn missing_from(&self, other: &BitSet, keep: usize) -> (u64, Vec<u64>) {
        let mut n = 0;
        let mut first = Vec::new();
        for (i, &w) in self.words.iter().enumerate() {
            let mut m = w & !other.words.get(i).copied().unwrap_or(0);
            n += u64::from(m.count_ones());
            while m != 0 && first.len() < keep {
                first.push(i as u64 * 64 + u64::from(m.trailing_zeros()));
                m &= m - 1;
            }
        }
        (n, first)
    }

    /// ORs `other` into `self`; returns how many bits were set in both.
    pub fn union_with(&mut self, other: &BitSet) -> u64 {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        let mut both = 0;
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            both += (*a & *b).count_ones() as u64;
            *a |= *b;
        }
        both
    }
}

/// What one worker (or, after merging, the whole run) has seen.
#[derive(Default, Clone, Debug)]
pub struct Checker {
    /// Producers per queue: stream (q, p) is `seen[q * producers + p]`.
    producers: usize,
    seen: Vec<BitSet>,
    /// Deliveries, duplicates included.
    pub deliveries: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Messages from another run (stale messages left in a queue).
    pub foreign: u64,
    /// Messages too short to carry a header or with an unknown producer id.
    pub malformed: u64,
}

/// The per-consumer part: highest sequence seen from each producer.
#[derive(Default, Clone, Debug)]
pub struct OrderTrack {
    high: Vec<Option<u64>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    New,
    Reordered,
    Duplicate,
}

impl Checker {
    pub fn new(queues: usize, producers: usize) -> Checker {
        Checker { producers, seen: vec![BitSet::default(); queues * producers], ..Default::default() }
    }

    /// Records one delivery of `(producer, seq)` from queue `queue` to the
    /// consumer owning `order` (a consumer reads one queue).
    pub fn record(&mut self, order: &mut OrderTrack, queue: usize, producer: u32, seq: u64) -> Seen {
        let p = producer as usize;
        let stream = queue * self.producers + p;
        if p >= self.producers || stream >= self.seen.len() {
            self.malformed += 1;
            return Seen::Duplicate;
        }
        self.deliveries += 1;
        if !self.seen[stream].insert(seq) {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        if order.high.len() <= p {
            order.high.resize(p + 1, None);
        }
        let high = &mut order.high[p];
        match *high {
            Some(h) if seq < h => {
                self.reordered += 1;
                Seen::Reordered
            }
            _ => {
                *high = Some(seq);
                Seen::New
            }
        }
    }

    /// Merges another worker's checker; cross-worker repeats become duplicates.
    pub fn merge(&mut self, other: &Checker) {
        debug_assert!(other.seen.is_empty() || other.producers == self.producers);
        if other.seen.len() > self.seen.len() {
            self.seen.resize(other.seen.len(), BitSet::default());
        }
        for (a, b) in self.seen.iter_mut().zip(&other.seen) {
            self.duplicates += a.union_with(b);
        }
        self.deliveries += other.deliveries;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.foreign += other.foreign;
        self.malformed += other.malformed;
    }

    /// Distinct messages received from `producer` through `queue`.
    #[cfg(test)]
    pub fn distinct(&self, queue: usize, producer: usize) -> u64 {
        self.seen.get(queue * self.producers + producer).map_or(0, BitSet::count)
    }

    /// Lost messages given what each producer sent (`sent[p]` = messages
    /// 0..sent[p]), over the (queue, producer) streams that should arrive.
    pub fn lost(&self, sent: &[u64], streams: impl IntoIterator<Item = (usize, usize)>) -> u64 {
        streams
            .into_iter()
            .map(|(q, p)| {
                let n = sent.get(p).copied().unwrap_or(0);
                // Count only sequences the producer reports as sent.
                let got = self.seen.get(q * self.producers + p).map_or(0, |s| s.count_below(n));
                n - got
            })
            .sum()
    }
}

/// Confirmed messages no consumer received (`--confirm`): the loss a
/// broker must never have, whatever faults the run went through.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct ConfirmedLoss {
    /// Confirmed and never received.
    pub lost: u64,
    /// Received although their publish was never confirmed (refused, or
    /// its connection failed before the confirm came): allowed.
    pub unconfirmed_received: u64,
    /// The first few lost ones: (queue index, producer, sequence).
    pub samples: Vec<(usize, usize, u64)>,
}

impl Checker {
    /// Compares each producer's confirmed sequences (`confirmed[p]`) with
    /// what the consumers of the (queue, producer) streams received.
    pub fn confirmed_loss(
        &self,
        confirmed: &[BitSet],
        streams: impl IntoIterator<Item = (usize, usize)>,
    ) -> ConfirmedLoss {
        let mut out = ConfirmedLoss::default();
        let empty = BitSet::default();
        for (q, p) in streams {
            let conf = confirmed.get(p).unwrap_or(&empty);
            let seen = self.seen.get(q * self.producers + p).unwrap_or(&empty);
            let keep = 20usize.saturating_sub(out.samples.len());
            let (lost, first) = conf.missing_from(seen, keep);
            out.lost += lost;
            out.samples.extend(first.into_iter().map(|s| (q, p, s)));
            out.unconfirmed_received += seen.missing_from(conf, 0).0;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_is_clean() {
        let mut c = Checker::new(1, 2);
        let mut o = OrderTrack::default();
        for seq in 0..1000 {
            assert_eq!(c.record(&mut o, 0, 0, seq), Seen::New);
            assert_eq!(c.record(&mut o, 0, 1, seq), Seen::New);
        }
        assert_eq!((c.duplicates, c.reordered), (0, 0));
        assert_eq!(c.lost(&[1000, 1000], [(0, 0), (0, 1)]), 0);
        assert_eq!(c.deliveries, 2000);
    }

    #[test]
    fn gaps_dups_and_reorders() {
        let mut c = Checker::new(1, 1);
        let mut o = OrderTrack::default();
        for seq in [0, 1, 3, 2, 3, 5, 5, 9] {
            c.record(&mut o, 0, 0, seq);
        }
        // 2 arrived after 3: one reorder; 3 and 5 twice: two duplicates.
        assert_eq!(c.reordered, 1);
        assert_eq!(c.duplicates, 2);
        // Sent 0..10: missing 4, 6, 7, 8.
        assert_eq!(c.lost(&[10], [(0, 0)]), 4);
        assert_eq!(c.distinct(0, 0), 6);
    }

    #[test]
    fn split_across_consumers_is_not_reordering() {
        // One producer, one queue, two consumers getting alternate messages
        // (round robin), processed in an arbitrary interleaving.
        let mut c = Checker::new(1, 1);
        let (mut a, mut b) = (OrderTrack::default(), OrderTrack::default());
        for seq in (1..100).step_by(2) {
            c.record(&mut b, 0, 0, seq);
        }
        for seq in (0..100).step_by(2) {
            c.record(&mut a, 0, 0, seq);
        }
        assert_eq!((c.reordered, c.duplicates), (0, 0));
        assert_eq!(c.lost(&[100], [(0, 0)]), 0);
    }

    #[test]
    fn merge_finds_cross_worker_duplicates() {
        let mut w1 = Checker::new(1, 2);
        let mut w2 = Checker::new(1, 2);
        let mut o = OrderTrack::default();
        for seq in 0..500 {
            w1.record(&mut o, 0, 0, seq);
        }
        let mut o2 = OrderTrack::default();
        for seq in 400..1000 {
            w2.record(&mut o2, 0, 0, seq); // 400..500 also seen by w1
        }
        w2.record(&mut o2, 0, 1, 0);
        w1.merge(&w2);
        assert_eq!(w1.duplicates, 100);
        assert_eq!(w1.deliveries, 1101);
        assert_eq!(w1.lost(&[1000, 3], [(0, 0), (0, 1)]), 2);
    }

    #[test]
    fn fanout_streams_are_checked_per_queue() {
        // One producer into three queues through a fanout exchange; a
        // consumer per queue, on two workers.
        let (mut w1, mut w2) = (Checker::new(3, 1), Checker::new(3, 1));
        let mut orders: Vec<OrderTrack> = (0..3).map(|_| OrderTrack::default()).collect();
        for seq in 0..100 {
            // The same message in every queue: not a duplicate.
            assert_eq!(w1.record(&mut orders[0], 0, 0, seq), Seen::New);
            assert_eq!(w2.record(&mut orders[1], 1, 0, seq), Seen::New);
            if seq != 42 {
                assert_eq!(w1.record(&mut orders[2], 2, 0, seq), Seen::New);
            }
        }
        // Queue 1 delivers 7 twice; queue 2 delivers 3 after 99.
        assert_eq!(w2.record(&mut orders[1], 1, 0, 7), Seen::Duplicate);
        w1.merge(&w2);
        assert_eq!(w1.deliveries, 300);
        assert_eq!((w1.duplicates, w1.reordered), (1, 0));
        let streams = [(0, 0), (1, 0), (2, 0)];
        assert_eq!(w1.lost(&[100], streams), 1);
        assert_eq!(w1.distinct(2, 0), 99);
        // Another consumer of queue 2 gets 42 late: in order for it.
        let mut late = OrderTrack::default();
        assert_eq!(w1.record(&mut late, 2, 0, 42), Seen::New);
        assert_eq!(w1.lost(&[100], streams), 0);
        // Order is per consumer: one consumer of queue 0 going backwards.
        let mut c = Checker::new(2, 1);
        let mut o = OrderTrack::default();
        c.record(&mut o, 1, 0, 5);
        assert_eq!(c.record(&mut o, 1, 0, 3), Seen::Reordered);
    }

    #[test]
    fn confirmed_loss_counts_only_confirmed() {
        let mut c = Checker::new(2, 1);
        let mut o = OrderTrack::default();
        for seq in [0u64, 1, 2, 5, 70, 130] {
            c.record(&mut o, 1, 0, seq);
        }
        // Confirmed 0..4 and 64..72: 3, 64..70 and 71 never arrived; 5
        // and 130 arrived unconfirmed.
        let mut conf = BitSet::default();
        for s in (0..4).chain(64..72) {
            conf.insert(s);
        }
        let r = c.confirmed_loss(&[conf], [(1, 0)]);
        assert_eq!(r.lost, 1 + 6 + 1);
        assert_eq!(r.unconfirmed_received, 2);
        assert_eq!(r.samples[..3], [(1, 0, 3), (1, 0, 64), (1, 0, 65)]);
        // Nothing confirmed: nothing lost.
        assert_eq!(c.confirmed_loss(&[], [(1, 0)]).lost, 0);
    }

    #[test]
    fn count_below_matches_contains() {
        let mut b = BitSet::default();
        for i in [0u64, 1, 63, 64, 65, 127, 128, 200, 4095] {
            b.insert(i);
        }
        for n in 0..5000u64 {
            let slow = (0..n).filter(|&i| b.contains(i)).count() as u64;
            assert_eq!(b.count_below(n), slow, "n={n}");
        }
    }

    #[test]
    fn unknown_producer_is_malformed() {
        let mut c = Checker::new(1, 1);
        let mut o = OrderTrack::default();
        c.record(&mut o, 0, 5, 0);
        c.record(&mut o, 3, 0, 0);
        assert_eq!(c.malformed, 2);
        assert_eq!(c.deliveries, 0);
    }
}
