//! `data_dir/definitions.bin`: durable exchanges and bindings, and the
//! users once they have been changed at run time. Written
//! whole (temp file, fsync, rename, fsync of the directory), so a crash
//! leaves the old or the new file, never a torn one; shard 0 writes it on
//! a blocking thread, one write for every durable change made before the
//! write began (`server/shard/defs.rs`), and answers those changes after
//! it. The message log is not involved, so compaction never has to care
//! about them.
//!
//! ```text
//! magic "RGMQDEFS", u32 version (3; 1 and 2 are read too), u32 count, count
//! records, u32 crc32c (over everything before it); all integers
//! little-endian.
//! record 1, exchange: str16 name, u8 kind (0 direct, 1 fanout, 2 topic,
//!   3 headers), u8 flags (1 durable, 2 auto-delete, 4 internal),
//!   str16 alternate ("" = none), u32 + bytes arguments (AMQP table)
//! record 2, binding: str16 source, u8 destination kind (0 queue,
//!   1 exchange), str16 destination, str16 routing key, u32 + bytes arguments
//! record 3, user: str16 name, str16 password hash (RabbitMQ's
//!   `rabbit_password_hashing_sha256` text), u8 tag count, str16 each tag
//! record 5, permission of the user before it: str16 vhost, str16
//!   configure, str16 write, str16 read (RabbitMQ's regular expressions)
//! record 4, users stored: the file's users replace the config's seeds
//!   (written once users have been changed at run time, even if none is left)
//! record 6, vhost: str16 name (after record 4; a file of version 2 has
//!   none: its vhost is `/` alone)
//! ```

use super::StorageError;
use crate::routing::{BindingDef, Change, Dest, ExchangeDef, ExchangeKind};
use bytes::{BufMut, Bytes};
use std::io::Write;
use std::path::Path;

pub const FILE: &str = "definitions.bin";
const MAGIC: &[u8; 8] = b"RGMQDEFS";
const VERSION: u32 = 3;
/// Definitions beyond this are refused rather than read into memory.
const FILE_BYTES_MAX: u64 = 256 << 20;

const KINDS: [ExchangeKind; 4] =
    [ExchangeKind::Direct, ExchangeKind::Fanout, ExchangeKind::Topic, ExchangeKind::Headers];

fn put_str16(b: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= usize::from(u16::MAX));
    b.put_u16_le(crate::protocol::wire::len16(s.len()));
    b.put_slice(s.as_bytes());
}

fn put_bytes32(b: &mut Vec<u8>, v: &[u8]) {
    b.put_u32_le(crate::protocol::wire::len32(v.len()));
    b.put_slice(v);
}

/// A user as stored: its password hash, never a password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredUser {
    pub name: String,
    /// RabbitMQ's `password_hash` text.
    pub password_hash: String,
    pub tags: Vec<String>,
    pub permissions: Vec<StoredPermission>,
}

/// A user's permissions in one vhost: RabbitMQ's three expressions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredPermission {
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// The users and vhosts, once changed at run time: what replaces the
/// config's seeds (`Definitions::users` and `vhosts` taken together).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredAccess {
    pub users: Vec<StoredUser>,
    /// `/` alone when the file has no vhost records (version 2).
    pub vhosts: Vec<String>,
}

impl Definitions {
    /// The stored users and vhosts; `None` while the config's seeds rule.
    pub fn access(&self) -> Option<StoredAccess> {
        let users = self.users.clone()?;
        let vhosts = self.vhosts.clone().unwrap_or_else(|| vec![crate::auth::vhosts::DEFAULT_VHOST.to_string()]);
        Some(StoredAccess { users, vhosts })
    }
}

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definitions {
    /// Exchange declares and bindings (other changes are not stored).
    pub routing: Vec<Change>,
    /// The users, once changed at run time; `None` while the config's
    /// seeds rule.
    pub users: Option<Vec<StoredUser>>,
    /// The vhosts, stored with the users; `None`: `/` alone.
    pub vhosts: Option<Vec<String>>,
}

/// Encodes the definitions.
pub fn encode(defs: &Definitions) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_slice(MAGIC);
    b.put_u32_le(VERSION);
    let count_at = b.len();
    b.put_u32_le(0);
    let mut count = encode_users(&mut b, defs.users.as_deref());
    if defs.users.is_some() {
        for v in defs.vhosts.iter().flatten() {
            b.put_u8(6);
            put_str16(&mut b, v);
            count += 1;
        }
    }
    for c in &defs.routing {
        match c {
            Change::DeclareExchange(x) => {
                b.put_u8(1);
                put_str16(&mut b, &x.name);
                let kind = KINDS.iter().position(|k| *k == x.kind).and_then(|i| u8::try_from(i).ok());
                b.put_u8(kind.unwrap_or(0));
                b.put_u8(u8::from(x.durable) | u8::from(x.auto_delete) << 1 | u8::from(x.internal) << 2);
                put_str16(&mut b, x.alternate.as_deref().unwrap_or(""));
                put_bytes32(&mut b, &x.args);
            }
            Change::Bind(d) => {
                b.put_u8(2);
                put_str16(&mut b, &d.source);
                let (kind, dest) = match &d.dest {
                    Dest::Queue(q) => (0, q),
                    Dest::Exchange(x) => (1, x),
                };
                b.put_u8(kind);
                put_str16(&mut b, dest);
                put_str16(&mut b, &d.key);
                put_bytes32(&mut b, &d.args);
            }
            _ => continue,
        }
        count += 1;
    }
    b[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.put_u32_le(crc);
    b
}

/// The users' records (the marker, then one per user); their count.
fn encode_users(b: &mut Vec<u8>, users: Option<&[StoredUser]>) -> u32 {
    let Some(users) = users else { return 0 };
    b.put_u8(4);
    for u in users {
        b.put_u8(3);
        put_str16(b, &u.name);
        put_str16(b, &u.password_hash);
        let tags = &u.tags[..u.tags.len().min(usize::from(u8::MAX))];
        b.put_u8(u8::try_from(tags.len()).unwrap_or(u8::MAX));
        for t in tags {
            put_str16(b, t);
        }
        for p in &u.permissions {
            b.put_u8(5);
            for text in [&p.vhost, &p.configure, &p.write, &p.read] {
                put_str16(b, text);
            }
        }
    }
    let permissions: usize = users.iter().map(|u| u.permissions.len()).sum();
    // At most users_max users, each with at most vhosts_max permissions.
    crate::protocol::wire::len32(users.len() + permissions).saturating_add(1)
}

/// What is wrong with a definitions file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DefsError {
    #[error("not a definitions file (bad magic or too short)")]
    NotDefinitions,
    #[error("checksum mismatch")]
    Checksum,
    #[error("format version {0}; this build reads {VERSION}")]
    Version(u32),
    #[error("truncated record")]
    Truncated,
    #[error("name is not UTF-8")]
    NotUtf8,
    #[error("unknown exchange kind")]
    ExchangeKind,
    #[error("unknown binding destination kind")]
    DestKind,
    #[error("unknown record kind")]
    RecordKind,
    #[error("bytes after the last record")]
    Trailing,
    #[error("a user or permission record without the users marker (or the user) before it")]
    UserWithoutMarker,
}

struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DefsError> {
        if self.0.len() < n {
            return Err(DefsError::Truncated);
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, DefsError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DefsError> {
        Ok(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Result<u32, DefsError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn str16(&mut self) -> Result<String, DefsError> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| DefsError::NotUtf8)
    }
    fn bytes32(&mut self) -> Result<Bytes, DefsError> {
        // A length past the buffer is a truncated record, whatever usize is.
        let n = usize::try_from(self.u32()?).map_err(|_| DefsError::Truncated)?;
        Ok(Bytes::copy_from_slice(self.take(n)?))
    }
}

/// Decodes a whole file, checking its checksum first.
pub fn decode(buf: &[u8]) -> Result<Definitions, DefsError> {
    if buf.len() < MAGIC.len() + 12 || &buf[..8] != MAGIC {
        return Err(DefsError::NotDefinitions);
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != stored {
        return Err(DefsError::Checksum);
    }
    let mut c = Cur(&body[8..]);
    let version = c.u32()?;
    if !(1..=VERSION).contains(&version) {
        return Err(DefsError::Version(version));
    }
    let count = c.u32()?;
    let mut out = Definitions::default();
    for _ in 0..count {
        match c.u8()? {
            1 => out.routing.push(exchange(&mut c)?),
            2 => out.routing.push(binding(&mut c)?),
            3 if version >= 2 => {
                let users = out.users.as_mut().ok_or(DefsError::UserWithoutMarker)?;
                users.push(user(&mut c)?);
            }
            5 if version >= 2 => {
                let user = out.users.as_mut().and_then(|u| u.last_mut()).ok_or(DefsError::UserWithoutMarker)?;
                let (vhost, configure, write, read) = (c.str16()?, c.str16()?, c.str16()?, c.str16()?);
                user.permissions.push(StoredPermission { vhost, configure, write, read });
            }
            4 if version >= 2 => out.users = Some(Vec::new()),
            6 if version >= 3 => {
                out.users.as_ref().ok_or(DefsError::UserWithoutMarker)?;
                out.vhosts.get_or_insert_with(Vec::new).push(c.str16()?);
            }
            _ => return Err(DefsError::RecordKind),
        }
    }
    if !c.0.is_empty() {
        return Err(DefsError::Trailing);
    }
    Ok(out)
}

fn exchange(c: &mut Cur<'_>) -> Result<Change, DefsError> {
    let name = c.str16()?;
    let kind = *KINDS.get(usize::from(c.u8()?)).ok_or(DefsError::ExchangeKind)?;
    let flags = c.u8()?;
    let alternate = Some(c.str16()?).filter(|a| !a.is_empty());
    let args = c.bytes32()?;
    Ok(Change::DeclareExchange(ExchangeDef {
        name,
        kind,
        durable: flags & 1 != 0,
        auto_delete: flags & 2 != 0,
        internal: flags & 4 != 0,
        alternate,
        args,
    }))
}

fn binding(c: &mut Cur<'_>) -> Result<Change, DefsError> {
    let source = c.str16()?;
    let dest = match (c.u8()?, c.str16()?) {
        (0, q) => Dest::Queue(q),
        (1, x) => Dest::Exchange(x),
        _ => return Err(DefsError::DestKind),
    };
    Ok(Change::Bind(BindingDef { source, dest, key: c.str16()?, args: c.bytes32()? }))
}

fn user(c: &mut Cur<'_>) -> Result<StoredUser, DefsError> {
    let name = c.str16()?;
    let password_hash = c.str16()?;
    let n = c.u8()?;
    let tags = (0..n).map(|_| c.str16()).collect::<Result<_, _>>()?;
    Ok(StoredUser { name, password_hash, tags, permissions: Vec::new() })
}

/// Reads the stored definitions; none when the file does not exist yet.
pub fn load(path: &Path) -> Result<Definitions, StorageError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Definitions::default()),
        Err(e) => return Err(StorageError::io(path, e)),
        Ok(m) if m.len() > FILE_BYTES_MAX => {
            return Err(StorageError::DefinitionsTooLarge { path: path.into(), size: m.len(), max: FILE_BYTES_MAX })
        }
        Ok(_) => {}
    }
    let buf = std::fs::read(path).map_err(|e| StorageError::io(path, e))?;
    decode(&buf).map_err(|why| StorageError::Definitions { path: path.into(), why })
}

/// Replaces the file atomically and durably.
pub fn save(path: &Path, defs: &Definitions) -> std::io::Result<()> {
    save_bytes(path, &encode(defs))
}

/// Replaces the file with `bytes` (from `encode`): temp file, fsync,
/// rename, fsync of the directory, so a crash leaves the old or the new
/// file. Blocking: shard 0 runs it on a blocking thread.
pub fn save_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Definitions {
        let users = vec![
            StoredUser {
                name: "rabbit".into(),
                password_hash: "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR".into(),
                tags: vec!["administrator".into(), "management".into()],
                permissions: vec![StoredPermission {
                    vhost: "/".into(),
                    configure: "^app-".into(),
                    write: ".*".into(),
                    read: String::new(),
                }],
            },
            StoredUser { name: "plain".into(), password_hash: "x".into(), tags: vec![], permissions: vec![] },
        ];
        Definitions { routing: routing(), users: Some(users), vhosts: Some(vec!["/".into(), "prod".into()]) }
    }

    fn routing() -> Vec<Change> {
        vec![
            Change::DeclareExchange(ExchangeDef {
                name: "logs".into(),
                kind: ExchangeKind::Topic,
                durable: true,
                auto_delete: false,
                internal: true,
                alternate: Some("ae".into()),
                args: Bytes::from_static(b"\x01k\x74\x01"),
            }),
            Change::Bind(BindingDef {
                source: "logs".into(),
                dest: Dest::Queue("q1".into()),
                key: "a.*.c".into(),
                args: Bytes::new(),
            }),
            Change::Bind(BindingDef {
                source: "logs".into(),
                dest: Dest::Exchange("other".into()),
                key: "#".into(),
                args: Bytes::new(),
            }),
        ]
    }

    #[test]
    fn round_trip_through_a_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE);
        assert_eq!(load(&p).unwrap(), Definitions::default());
        save(&p, &sample()).unwrap();
        assert_eq!(load(&p).unwrap(), sample());
        // Users changed at run time, none left: still stored as such.
        let none_left = Definitions { routing: routing(), users: Some(Vec::new()), vhosts: None };
        save(&p, &none_left).unwrap();
        assert_eq!(load(&p).unwrap(), none_left);
    }

    #[test]
    fn version_1_files_are_read() {
        let mut v1 = encode(&Definitions { routing: routing(), users: None, vhosts: None });
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let n = v1.len() - 4;
        let crc = crc32c::crc32c(&v1[..n]);
        v1[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&v1).unwrap().routing, routing());
    }

    #[test]
    fn version_2_files_have_no_vhosts_and_read_as_the_default_alone() {
        let mut v2 = sample();
        v2.vhosts = None;
        let mut bytes = encode(&v2);
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        let n = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap(), v2);
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_detected() {
        let good = encode(&sample());
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                assert!(decode(&bad).is_err(), "flip at byte {i} bit {bit} not detected");
            }
        }
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "cut at {n} not detected");
        }
    }
}
