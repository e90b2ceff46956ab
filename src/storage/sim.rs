//! A power-loss simulator under the log, after the way TigerBeetle
//! simulates its storage: the real log code (`log.rs`, `recovery.rs`,
//! `housekeep.rs`, `compact.rs`) runs over in-memory files that keep what
//! was written since each file's last fdatasync apart from what is durable.
//!
//! - A write lands in the file at once (reads see it) and is remembered as
//!   unsynced. `fdatasync` makes the file's whole content and size durable.
//! - Directory operations (create, rename, unlink) change the live
//!   directory; they become durable only when the directory is synced.
//! - Power fails at a chosen operation: that operation and every later one
//!   fails. [`SimDisk::power_loss`] then builds what a restart finds: the
//!   durable directory, each file's durable content, and on top of it each
//!   unsynced write, in order, discarded, kept, or torn (only its first
//!   sectors land, cut at a [`SECTOR`] boundary), as the seed chooses.
//!
//! This is not on the production path: the broker opens its log over
//! [`super::io::DmaIo`]; the log sees either through the same `LogIo` trait
//! it always used.

use super::io::{IoFuture, LogIo, SegmentFile};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The unit a torn write is cut to: a disk writes whole sectors.
pub const SECTOR: usize = 512;

/// What a power loss did to the unsynced state (for reports and for
/// checking that a run exercised something).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LossStats {
    pub writes_dropped: u64,
    pub writes_kept: u64,
    pub writes_torn: u64,
    /// Directory entries whose live state differed from the durable one.
    pub dir_changes_undone: u64,
}

struct File {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last fdatasync, in order: (position, bytes).
    unsynced: Vec<(u64, Vec<u8>)>,
}

#[derive(Default)]
struct Disk {
    live_dir: BTreeMap<PathBuf, u64>,
    durable_dir: BTreeMap<PathBuf, u64>,
    files: HashMap<u64, File>,
    next_ino: u64,
    /// Operations done so far (reads are not counted).
    ops: u64,
    /// Power fails at this operation, if set.
    crash_at: Option<u64>,
    crashed: bool,
}

/// The simulated disk: one directory tree of in-memory files.
#[derive(Default)]
pub struct SimDisk {
    d: RefCell<Disk>,
}

fn lost() -> io::Error {
    io::Error::other("simulated power loss")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such simulated file", path.display()))
}

/// splitmix64: the seed decides every choice of a power loss.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn put(buf: &mut Vec<u8>, pos: u64, data: &[u8]) -> io::Result<()> {
    let pos = usize::try_from(pos).map_err(io::Error::other)?;
    let end = pos.checked_add(data.len()).ok_or_else(|| io::Error::other("write past usize"))?;
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[pos..end].copy_from_slice(data);
    Ok(())
}

impl SimDisk {
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Power fails at operation `n` (counted from now on the disk's total).
    pub fn crash_at(&self, n: u64) {
        self.d.borrow_mut().crash_at = Some(n);
    }

    /// Operations done so far: writes, syncs, directory operations.
    pub fn ops(&self) -> u64 {
        self.d.borrow().ops
    }

    /// Whether the power has failed.
    pub fn crashed(&self) -> bool {
        self.d.borrow().crashed
    }

    /// Counts one operation; fails it when the power is (or goes) out.
    fn op(&self) -> io::Result<std::cell::RefMut<'_, Disk>> {
        let mut d = self.d.borrow_mut();
        if d.crashed || d.crash_at == Some(d.ops) {
            d.crashed = true;
            return Err(lost());
        }
        d.ops += 1;
        Ok(d)
    }

    /// Reads fail once the power is out, and count nothing.
    fn read(&self) -> io::Result<std::cell::Ref<'_, Disk>> {
        let d = self.d.borrow();
        if d.crashed {
            return Err(lost());
        }
        Ok(d)
    }

    /// What a restart finds after a power loss now: see the module doc.
    /// The disk is then powered again, with no crash planned.
    pub fn power_loss(&self, seed: u64) -> LossStats {
        let mut d = self.d.borrow_mut();
        let mut stats = LossStats::default();
        let mut r = mix(seed);
        let mut next = || {
            r = mix(r);
            r
        };
        let mut inos: Vec<u64> = d.files.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let f = d.files.get_mut(&ino).expect("listed");
            let mut img = std::mem::take(&mut f.durable);
            for (pos, data) in std::mem::take(&mut f.unsynced) {
                let sectors = data.len().div_ceil(SECTOR);
                let keep = match next() % 3 {
                    0 => {
                        stats.writes_dropped += 1;
                        0
                    }
                    1 => {
                        stats.writes_kept += 1;
                        data.len()
                    }
                    _ if sectors < 2 => {
                        stats.writes_dropped += 1;
                        0
                    }
                    _ => {
                        stats.writes_torn += 1;
                        let n = 1 + usize::try_from(next() % (sectors as u64 - 1)).expect("small");
                        n * SECTOR
                    }
                };
                if keep > 0 {
                    put(&mut img, pos, &data[..keep]).expect("the write fitted before the crash");
                }
            }
            f.live = img.clone();
            f.durable = img;
        }
        let mut changed = 0;
        for (k, v) in &d.live_dir {
            changed += u64::from(d.durable_dir.get(k) != Some(v));
        }
        changed += d.durable_dir.keys().filter(|k| !d.live_dir.contains_key(*k)).count() as u64;
        stats.dir_changes_undone = changed;
        d.live_dir = d.durable_dir.clone();
        let kept: std::collections::HashSet<u64> = d.durable_dir.values().copied().collect();
        d.files.retain(|ino, _| kept.contains(ino));
        d.crashed = false;
        d.crash_at = None;
        stats
    }

    /// The names in the live directory (for tests).
    pub fn names(&self) -> Vec<PathBuf> {
        self.d.borrow().live_dir.keys().cloned().collect()
    }
}

/// The log's I/O over a [`SimDisk`].
pub struct SimIo {
    disk: Rc<SimDisk>,
}

impl SimIo {
    pub fn new(disk: Rc<SimDisk>) -> Self {
        Self { disk }
    }

    fn handle(&self, ino: u64) -> Rc<dyn SegmentFile> {
        Rc::new(SimFile { disk: self.disk.clone(), ino })
    }

    fn create_now(&self, path: &Path, size: usize) -> io::Result<u64> {
        let mut d = self.disk.op()?;
        if d.live_dir.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, path.display().to_string()));
        }
        let ino = d.next_ino;
        d.next_ino += 1;
        let zeros = vec![0u8; size];
        // A new file's size is not durable until its first fdatasync.
        d.files.insert(ino, File { live: zeros, durable: Vec::new(), unsynced: Vec::new() });
        d.live_dir.insert(path.to_path_buf(), ino);
        Ok(ino)
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        self.disk.read()?.live_dir.get(path).copied().ok_or_else(|| not_found(path))
    }
}

struct SimFile {
    disk: Rc<SimDisk>,
    ino: u64,
}

impl SimFile {
    fn sync_now(&self) -> io::Result<()> {
        let mut d = self.disk.op()?;
        let f = d.files.get_mut(&self.ino).ok_or_else(|| io::Error::other("file gone"))?;
        f.durable = f.live.clone();
        f.unsynced.clear();
        Ok(())
    }

    fn with<T>(&self, read: impl FnOnce(&File) -> T) -> io::Result<T> {
        let d = self.disk.read()?;
        d.files.get(&self.ino).map(read).ok_or_else(|| io::Error::other("file gone"))
    }
}

impl SegmentFile for SimFile {
    fn write_at<'a>(&'a self, data: &'a [u8], pos: u64) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let mut d = self.disk.op()?;
            let f = d.files.get_mut(&self.ino).ok_or_else(|| io::Error::other("file gone"))?;
            put(&mut f.live, pos, data)?;
            f.unsynced.push((pos, data.to_vec()));
            Ok(())
        })
    }

    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move { self.sync_now() })
    }

    fn read_all(&self) -> IoFuture<'_, Vec<u8>> {
        Box::pin(async move { self.with(|f| f.live.clone()) })
    }

    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            let len = usize::try_from(len).map_err(io::Error::other)?;
            {
                let mut d = self.disk.op()?;
                let f = d.files.get_mut(&self.ino).ok_or_else(|| io::Error::other("file gone"))?;
                f.live.truncate(len);
            }
            // DmaIo's truncate syncs too.
            self.sync_now()
        })
    }

    fn read_at(&self, pos: u64, len: usize) -> IoFuture<'_, Vec<u8>> {
        Box::pin(async move {
            self.with(|f| {
                let from = usize::try_from(pos).unwrap_or(usize::MAX).min(f.live.len());
                let to = from.saturating_add(len).min(f.live.len());
                f.live[from..to].to_vec()
            })
        })
    }

    fn size(&self) -> IoFuture<'_, u64> {
        Box::pin(async move { self.with(|f| f.live.len() as u64) })
    }
}

impl LogIo for SimIo {
    fn segments_in<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, Vec<u64>> {
        Box::pin(async move {
            let d = self.disk.read()?;
            let mut v: Vec<u64> = d
                .live_dir
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name()?.to_str()?.strip_suffix(".seg")?.parse().ok())
                .collect();
            v.sort_unstable();
            Ok(v)
        })
    }

    fn create<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move { Ok(self.handle(self.create_now(path, 0)?)) })
    }

    fn open<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move { Ok(self.handle(self.lookup(path)?)) })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let mut d = self.disk.op()?;
            d.live_dir.remove(path).map(drop).ok_or_else(|| not_found(path))
        })
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let mut d = self.disk.op()?;
            let d = &mut *d;
            d.durable_dir.retain(|p, _| p.parent() != Some(dir));
            for (p, ino) in d.live_dir.iter().filter(|(p, _)| p.parent() == Some(dir)) {
                d.durable_dir.insert(p.clone(), *ino);
            }
            Ok(())
        })
    }

    /// As `DmaIo`: created with its blocks, file synced, directory synced.
    fn prepare<'a>(&'a self, path: &'a Path, bytes: u64) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move {
            let size = usize::try_from(bytes.div_ceil(super::record::BLOCK as u64) * super::record::BLOCK as u64)
                .map_err(io::Error::other)?;
            let file = self.handle(self.create_now(path, size)?);
            file.fdatasync().await?;
            if let Some(dir) = path.parent() {
                self.sync_dir(dir).await?;
            }
            Ok(file)
        })
    }

    /// As `DmaIo`: rename, allocate (durable with the file's next sync),
    /// directory sync, zero the first block, fdatasync.
    fn recycle<'a>(&'a self, from: &'a Path, to: &'a Path, bytes: u64) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move {
            let ino = {
                let mut d = self.disk.op()?;
                let ino = d.live_dir.remove(from).ok_or_else(|| not_found(from))?;
                d.live_dir.insert(to.to_path_buf(), ino);
                let f = d.files.get_mut(&ino).ok_or_else(|| io::Error::other("file gone"))?;
                let size = usize::try_from(bytes).map_err(io::Error::other)?;
                if f.live.len() < size {
                    f.live.resize(size, 0);
                }
                ino
            };
            if let Some(dir) = to.parent() {
                self.sync_dir(dir).await?;
            }
            let file = self.handle(ino);
            file.write_at(&[0u8; super::record::BLOCK], 0).await?;
            file.fdatasync().await?;
            Ok(file)
        })
    }
}
