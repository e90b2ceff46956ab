//! A consumer's acks and nacks, kept as ascending, disjoint ranges (what
//! the broker requires) until the shell sends them: one `Ack` frame per
//! turn however many tags were acked.

use crate::protocol::encode_ack;
use bytes::BytesMut;

/// Inclusive tag ranges, ascending and disjoint.
pub type Ranges = Vec<(u64, u64)>;

/// Acks and nacks not yet sent.
#[derive(Debug, Default)]
pub struct AckBook {
    acks: Ranges,
    /// Nacks in the order given, grouped while `requeue` stays the same.
    nacks: Vec<(bool, Ranges)>,
}

impl AckBook {
    /// Adds an ack of `tag`.
    pub fn ack(&mut self, tag: u64) {
        add_tag(&mut self.acks, tag);
    }

    /// Adds a nack of `tag`; `requeue` puts it back at the queue's head.
    pub fn nack(&mut self, tag: u64, requeue: bool) {
        match self.nacks.last_mut() {
            Some((r, ranges)) if *r == requeue => add_tag(ranges, tag),
            _ => self.nacks.push((requeue, vec![(tag, tag)])),
        }
    }

    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty() && self.nacks.is_empty()
    }

    /// Takes what is collected, leaving the book empty.
    pub fn take(&mut self) -> AckBook {
        std::mem::take(self)
    }

    /// Encodes the acks, then each group of nacks, as frames of request
    /// `rid` for `consumer_id`.
    pub fn encode(&self, b: &mut BytesMut, rid: u64, consumer_id: u32) {
        if !self.acks.is_empty() {
            encode_ack(b, rid, None, consumer_id, &self.acks);
        }
        for (requeue, ranges) in &self.nacks {
            encode_ack(b, rid, Some(*requeue), consumer_id, ranges);
        }
    }
}

/// Adds a tag to a list of ranges, kept ascending and disjoint as the
/// broker requires (it refuses overlapping or unordered ranges). Acking in
/// order extends the last range; an earlier tag is merged where it falls;
/// a tag already in a range is not added twice.
pub fn add_tag(ranges: &mut Ranges, tag: u64) {
    match ranges.last_mut() {
        None => return ranges.push((tag, tag)),
        Some(last) if last.1.checked_add(1) == Some(tag) => return last.1 = tag,
        Some(last) if tag > last.1 => return ranges.push((tag, tag)),
        Some(_) => {}
    }
    // The first range ending at or after `tag`: it exists (the last does).
    let i = ranges.partition_point(|r| r.1 < tag);
    if ranges[i].0 <= tag {
        return;
    }
    // ranges[i - 1].1 < tag < ranges[i].0
    let joins_prev = i > 0 && ranges[i - 1].1 + 1 == tag;
    let joins_next = ranges[i].0 == tag + 1;
    match (joins_prev, joins_next) {
        (true, true) => {
            ranges[i - 1].1 = ranges[i].1;
            ranges.remove(i);
        }
        (true, false) => ranges[i - 1].1 = tag,
        (false, true) => ranges[i].0 = tag,
        (false, false) => ranges.insert(i, (tag, tag)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_coalesce() {
        let mut r = Vec::new();
        for t in [1, 2, 3, 5, 6, 9] {
            add_tag(&mut r, t);
        }
        assert_eq!(r, vec![(1, 3), (5, 6), (9, 9)]);
    }

    #[test]
    fn out_of_order_acks_stay_ascending_and_disjoint() {
        let mut r = Vec::new();
        for t in [5, 3, 9, 4, 1, 9, 7, 8, 2, 6, 3, 20, u64::MAX, 11] {
            add_tag(&mut r, t);
            assert!(r.windows(2).all(|w| w[0].1 + 1 < w[1].0), "{r:?}");
        }
        assert_eq!(r, vec![(1, 9), (11, 11), (20, 20), (u64::MAX, u64::MAX)]);
        let raw: Vec<u8> = r.iter().flat_map(|(a, b)| [a.to_le_bytes(), b.to_le_bytes()].concat()).collect();
        assert!(crate::protocol::Ranges::parse(&raw, 4).is_ok(), "the broker's decoder accepts them");
    }

    #[test]
    fn nacks_group_by_requeue() {
        let mut b = AckBook::default();
        b.nack(1, true);
        b.nack(2, true);
        b.nack(3, false);
        b.ack(4);
        let t = b.take();
        assert!(b.is_empty());
        assert_eq!(t.nacks, vec![(true, vec![(1, 2)]), (false, vec![(3, 3)])]);
        assert_eq!(t.acks, vec![(4, 4)]);
    }
}
