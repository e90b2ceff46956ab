//! The cluster map a clustered broker gives native clients (issue 17,
//! `docs/protocol.md`, "The cluster map"): every node with each of its
//! shards' native addresses, so a client sends each queue's traffic
//! straight to the owning node's owning core.
//!
//! - `MapGet` (client to broker, empty body) asks for it; the broker
//!   answers `Map` with the same request id.
//! - `Locate` (a queue name) is answered `Ok` with [`located`]'s value:
//!   the map's version, the node's index in the map ([`HERE`] for the
//!   node asked: the queue lives there, or nowhere yet) and the shard.
//! - `MapChanged` (broker to client, request id 0) says the map moved: a
//!   client fetches it again before it locates more queues. A stale map
//!   only costs a hop: every node forwards to a queue's owner.
//!
//! Body of `Map`: `version u32, this u16 (the answering node's index),
//! count u16`, then per node `name str8, shards u16, addr str8 × shards`.

use super::error::DecodeError;
use super::wire::{len16, put_str8, Cursor};
use bytes::{BufMut, BytesMut};

/// The node index of "the node you asked": the queue is its own, or not
/// placed yet (it will be, at its first declare there).
pub const HERE: u16 = u16::MAX;
/// Nodes a map may list (more is refused by the decoder).
pub const NODES_MAX: usize = 1024;
/// Shards a node in the map may list.
pub const SHARDS_MAX: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMap<'a> {
    /// Changes whenever the nodes or their addresses do (a hash of them:
    /// every node gives the same version for the same map).
    pub version: u32,
    /// The answering node's index ([`HERE`] when the map is empty).
    pub this: u16,
    pub nodes: Vec<MapNode<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapNode<'a> {
    pub name: &'a str,
    pub shard_addrs: Vec<&'a str>,
}

/// `Locate`'s answer as the `Ok` value carries it.
pub fn locate_value(version: u32, node: u16, shard: u16) -> u64 {
    u64::from(version) << 32 | u64::from(node) << 16 | u64::from(shard)
}

/// (version, node index or [`HERE`], shard) from `Locate`'s `Ok` value.
pub fn located(value: u64) -> (u32, u16, u16) {
    let field = |shift: u32, mask: u64| (value >> shift) & mask;
    // Each fits its type by its mask.
    let (v, n, s) = (field(32, 0xffff_ffff), field(16, 0xffff), field(0, 0xffff));
    (u32::try_from(v).unwrap_or(u32::MAX), u16::try_from(n).unwrap_or(HERE), u16::try_from(s).unwrap_or(u16::MAX))
}

impl ClusterMap<'_> {
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u32_le(self.version);
        buf.put_u16_le(self.this);
        buf.put_u16_le(len16(self.nodes.len()));
        for n in &self.nodes {
            put_str8(buf, n.name);
            buf.put_u16_le(len16(n.shard_addrs.len()));
            for a in &n.shard_addrs {
                put_str8(buf, a);
            }
        }
    }

    /// The bytes [`ClusterMap::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        8 + self
            .nodes
            .iter()
            .map(|n| 1 + n.name.len().min(255) + 2 + n.shard_addrs.iter().map(|a| 1 + a.len().min(255)).sum::<usize>())
            .sum::<usize>()
    }
}

/// Decodes a `Map` body (the cursor's whole rest).
pub fn decode<'a>(c: &mut Cursor<'a>) -> Result<ClusterMap<'a>, DecodeError> {
    let bad = |why| DecodeError::Malformed { what: "Map", why };
    let version = c.u32()?;
    let this = c.u16()?;
    let count = usize::from(c.u16()?);
    // Each node takes at least 3 bytes: bound the Vec by the body.
    if count > NODES_MAX || count * 3 > c.remaining() {
        return Err(bad("bad node count"));
    }
    if this != HERE && usize::from(this) >= count {
        return Err(bad("this node outside the map"));
    }
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        let name = c.str8()?;
        let shards = usize::from(c.u16()?);
        if shards == 0 || shards > SHARDS_MAX || shards > c.remaining() {
            return Err(bad("bad shard count"));
        }
        let mut shard_addrs = Vec::with_capacity(shards);
        for _ in 0..shards {
            shard_addrs.push(c.str8()?);
        }
        nodes.push(MapNode { name, shard_addrs });
    }
    Ok(ClusterMap { version, this, nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ClusterMap<'static> {
        ClusterMap {
            version: 0xDEAD_BEEF,
            this: 1,
            nodes: vec![
                MapNode { name: "n1", shard_addrs: vec!["10.0.0.1:5673", "10.0.0.1:5674"] },
                MapNode { name: "nœud-2", shard_addrs: vec!["10.0.0.2:5673"] },
            ],
        }
    }

    #[test]
    fn a_map_round_trips_and_every_prefix_is_refused() {
        let m = map();
        let mut b = BytesMut::new();
        m.encode(&mut b);
        assert_eq!(b.len(), m.encoded_len());
        assert_eq!(decode(&mut Cursor::new(&b, "Map")).unwrap(), m);
        for n in 0..b.len() {
            assert!(decode(&mut Cursor::new(&b[..n], "Map")).is_err(), "a {n}-byte prefix decodes");
        }
    }

    #[test]
    fn counts_past_the_body_or_the_limits_are_refused() {
        let mut b = BytesMut::new();
        b.put_u32_le(1);
        b.put_u16_le(HERE);
        b.put_u16_le(u16::MAX);
        assert!(decode(&mut Cursor::new(&b, "Map")).is_err(), "65535 nodes in 8 bytes");
        let mut b = BytesMut::new();
        ClusterMap { version: 1, this: 3, nodes: map().nodes }.encode(&mut b);
        assert!(decode(&mut Cursor::new(&b, "Map")).is_err(), "this outside the map");
    }

    #[test]
    fn a_located_value_splits_into_its_fields() {
        assert_eq!(located(locate_value(7, HERE, 3)), (7, HERE, 3));
        assert_eq!(located(locate_value(u32::MAX, 2, u16::MAX)), (u32::MAX, 2, u16::MAX));
    }
}
