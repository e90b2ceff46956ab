//! File I/O behind a small trait, so tests can inject failing writes and
//! fsyncs. The real implementation uses glommio DMA files (O_DIRECT); the
//! log's writes and fdatasyncs run on the shard's blocking threads, which
//! are made `SCHED_FIFO` (see `DmaSegment::write_at` and `urgent_thread`).

use super::aligned::WriteBuf;
use super::record::BLOCK;
use glommio::io::{DmaFile, OpenOptions};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

pub type IoFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + 'a>>;

/// One open segment file.
pub trait SegmentFile {
    /// Writes `data` (a whole number of `BLOCK`s) at `pos` (block aligned).
    fn write_at<'a>(&'a self, data: &'a [u8], pos: u64) -> IoFuture<'a, ()>;
    fn fdatasync(&self) -> IoFuture<'_, ()>;
    /// The whole file.
    fn read_all(&self) -> IoFuture<'_, Vec<u8>>;
    /// Cuts the file to `len` bytes and syncs it.
    fn truncate(&self, len: u64) -> IoFuture<'_, ()>;
    /// Up to `len` bytes from `pos` (fewer at the end of the file).
    fn read_at(&self, pos: u64, len: usize) -> IoFuture<'_, Vec<u8>>;
    fn size(&self) -> IoFuture<'_, u64>;
}

/// The directory of one shard's segments.
pub trait LogIo {
    /// Creates `dir` if it is missing, and lists its segment numbers,
    /// ascending.
    fn segments_in<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, Vec<u64>>;
    fn create<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Rc<dyn SegmentFile>>;
    fn open<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Rc<dyn SegmentFile>>;
    /// Unlinks a file. Off the shard's thread: freeing the extents of a
    /// big segment can take tens of milliseconds on ext4.
    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()>;
    /// Makes creations and removals in `dir` durable (off the shard's
    /// thread too: a directory fsync waits for a journal commit).
    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()>;
    /// Creates `path` with `bytes` allocated (reading as zeros), synced
    /// with its directory, and opens it (see `housekeep.rs`).
    fn prepare<'a>(&'a self, path: &'a Path, bytes: u64) -> IoFuture<'a, Rc<dyn SegmentFile>>;
    /// Turns the dead segment `from` into the next one, `to`: renames it
    /// (synced with the directory), allocates it up to `bytes` if it is
    /// shorter, zeroes its first block (synced) and opens it. Until the
    /// rename is durable `from` is whole; after it, `to` starts with
    /// `from`'s header or with zeros, both of which recovery recognizes
    /// as an unused segment.
    fn recycle<'a>(&'a self, from: &'a Path, to: &'a Path, bytes: u64) -> IoFuture<'a, Rc<dyn SegmentFile>>;
}

fn glommio_err(e: glommio::GlommioError<()>) -> io::Error {
    io::Error::other(e.to_string())
}

fn to_io<T>(r: glommio::Result<T, ()>) -> io::Result<T> {
    r.map_err(|e| match e {
        glommio::GlommioError::IoError(e) => e,
        other => glommio_err(other),
    })
}

/// glommio DMA files: O_DIRECT writes from aligned buffers.
pub struct DmaIo;

struct DmaSegment {
    file: DmaFile,
    /// The same file, for writes made on the blocking threads.
    sync_file: std::sync::Arc<std::fs::File>,
}

impl DmaSegment {
    fn new(file: DmaFile) -> io::Result<Self> {
        use std::os::fd::{AsFd, AsRawFd};
        // SAFETY: the descriptor is open for as long as `file` lives.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(file.as_raw_fd()) }.as_fd().try_clone_to_owned()?;
        Ok(Self { file, sync_file: std::sync::Arc::new(fd.into()) })
    }
}

impl SegmentFile for DmaSegment {
    /// On the executor's blocking thread, not through the shard's ring:
    /// on this VM the submission of an O_DIRECT write sometimes blocks the
    /// submitting thread for 5–15 ms, and the whole shard (sockets,
    /// timers) stalled with it.
    fn write_at<'a>(&'a self, data: &'a [u8], pos: u64) -> IoFuture<'a, ()> {
        Box::pin(async move {
            debug_assert_eq!(data.len() % BLOCK, 0);
            let buf = WriteBuf::copy_of(data)?;
            let file = self.sync_file.clone();
            glommio::executor()
                .spawn_blocking(move || {
                    urgent_thread();
                    std::os::unix::fs::FileExt::write_all_at(&*file, buf.as_slice(), pos)
                })
                .await
        })
    }

    /// On the blocking thread too (io_uring would hand it to an io-wq
    /// worker, which waits behind the busy shard thread for its core).
    fn fdatasync(&self) -> IoFuture<'_, ()> {
        let file = self.sync_file.clone();
        Box::pin(glommio::executor().spawn_blocking(move || {
            urgent_thread();
            file.sync_data()
        }))
    }

    fn read_all(&self) -> IoFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let size = crate::protocol::wire::usize_of(to_io(self.file.file_size().await)?);
            let mut out = Vec::with_capacity(size);
            const CHUNK: usize = 8 << 20;
            while out.len() < size {
                let want = (size - out.len()).min(CHUNK);
                let r = to_io(self.file.read_at(out.len() as u64, want).await)?;
                if r.is_empty() {
                    break;
                }
                out.extend_from_slice(&r);
            }
            Ok(out)
        })
    }

    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            to_io(self.file.truncate(len).await)?;
            to_io(self.file.fdatasync().await)
        })
    }

    fn read_at(&self, pos: u64, len: usize) -> IoFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(len);
            while out.len() < len {
                let r = to_io(self.file.read_at(pos + out.len() as u64, len - out.len()).await)?;
                if r.is_empty() {
                    break;
                }
                out.extend_from_slice(&r);
            }
            Ok(out)
        })
    }

    fn size(&self) -> IoFuture<'_, u64> {
        Box::pin(async move { to_io(self.file.file_size().await) })
    }
}

thread_local! {
    static URGENT: Cell<bool> = const { Cell::new(false) };
}

/// Makes the calling thread (one of the shard's two blocking threads, which
/// share its core) SCHED_FIFO, once: woken for a log write or fdatasync it
/// then runs at once instead of waiting for the busy shard thread's time
/// slice (up to milliseconds, on every flush). The threads only ever wait
/// on I/O; their other work (renames, unlinks, allocation) is short too.
/// Without CAP_SYS_NICE (or an RLIMIT_RTPRIO of at least 1) this fails with
/// a warning and the thread keeps its normal priority.
fn urgent_thread() {
    if URGENT.with(|u| u.replace(true)) {
        return;
    }
    let p = libc::sched_param { sched_priority: 1 };
    // SAFETY: a plain syscall on the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) };
    if rc != 0 {
        tracing::warn!(
            error = %io::Error::last_os_error(),
            "cannot make the log's I/O thread SCHED_FIFO (needs CAP_SYS_NICE or RLIMIT_RTPRIO >= 1); flush latency will suffer under load"
        );
    }
}

thread_local! {
    static PROBED: std::cell::RefCell<std::collections::HashSet<PathBuf>> = Default::default();
}

/// glommio decides once per device, on the first DMA file opened, whether
/// reads may use the io_uring poll ring, by reading that file's first
/// block; on an empty file that read "succeeds" whatever the device, and
/// every later DMA read on a device without poll queues then fails with
/// EOPNOTSUPP. So the first DMA open in a directory is of a file that has
/// a block of data (then removed). When that file cannot be written (a
/// full disk), `path` itself serves if its first block holds data (the
/// caller's open is then the probe), so a full disk can be recovered.
async fn probe_dir(path: &Path) -> io::Result<()> {
    let Some(dir) = path.parent() else { return Ok(()) };
    if PROBED.with(|p| p.borrow().contains(dir)) {
        return Ok(());
    }
    let probe = dir.join(format!(".dma-probe-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, [0u8; BLOCK]) {
        let _ = std::fs::remove_file(&probe);
        if !first_block_has_data(path) {
            return Err(e);
        }
        PROBED.with(|p| p.borrow_mut().insert(dir.to_path_buf()));
        return Ok(());
    }
    let f = OpenOptions::new().read(true).dma_open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    to_io(to_io(f)?.close().await)?;
    PROBED.with(|p| p.borrow_mut().insert(dir.to_path_buf()));
    Ok(())
}

/// Whether `path`'s first block was written with something other than
/// zeros (an allocated but unwritten block reads as zeros without the
/// device, which is what makes an empty file a useless probe).
fn first_block_has_data(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; BLOCK];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok() && head.iter().any(|&b| b != 0)
}

impl LogIo for DmaIo {
    fn segments_in<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, Vec<u64>> {
        Box::pin(async move {
            std::fs::create_dir_all(dir)?;
            list_segments(dir)
        })
    }

    fn create<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move {
            probe_dir(path).await?;
            let f = OpenOptions::new().read(true).write(true).create_new(true).dma_open(path).await;
            Ok(Rc::new(DmaSegment::new(to_io(f)?)?) as Rc<dyn SegmentFile>)
        })
    }

    fn open<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move {
            probe_dir(path).await?;
            let f = OpenOptions::new().read(true).write(true).dma_open(path).await;
            Ok(Rc::new(DmaSegment::new(to_io(f)?)?) as Rc<dyn SegmentFile>)
        })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        let path = path.to_path_buf();
        Box::pin(glommio::executor().spawn_blocking(move || std::fs::remove_file(path)))
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        let dir = dir.to_path_buf();
        Box::pin(glommio::executor().spawn_blocking(move || std::fs::File::open(dir)?.sync_all()))
    }

    fn prepare<'a>(&'a self, path: &'a Path, bytes: u64) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move {
            probe_dir(path).await?;
            let p = path.to_path_buf();
            glommio::executor().spawn_blocking(move || preallocate(&p, bytes)).await?;
            if let Some(dir) = path.parent() {
                self.sync_dir(dir).await?;
            }
            self.open(path).await
        })
    }

    fn recycle<'a>(&'a self, from: &'a Path, to: &'a Path, bytes: u64) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move {
            let (f, t) = (from.to_path_buf(), to.to_path_buf());
            glommio::executor()
                .spawn_blocking(move || {
                    std::fs::rename(&f, &t)?;
                    let file = std::fs::OpenOptions::new().write(true).open(&t)?;
                    if file.metadata()?.len() < bytes {
                        allocate(&file, bytes)?;
                    }
                    Ok::<_, io::Error>(())
                })
                .await?;
            if let Some(dir) = to.parent() {
                self.sync_dir(dir).await?;
            }
            let file = self.open(to).await?;
            file.write_at(&[0u8; BLOCK], 0).await?;
            file.fdatasync().await?;
            Ok(file)
        })
    }
}

/// Creates the file and allocates `bytes` (rounded up to `BLOCK`) to it:
/// the blocks read as zeros, and appends into them do not grow the file.
fn preallocate(path: &Path, bytes: u64) -> io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    allocate(&f, bytes)?;
    f.sync_all()
}

/// Gives `f` blocks up to `bytes` (rounded up to `BLOCK`); a no-op for
/// blocks it has.
fn allocate(f: &std::fs::File, bytes: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let total = bytes.div_ceil(BLOCK as u64) * BLOCK as u64;
    let len = libc::off_t::try_from(total).map_err(io::Error::other)?;
    // SAFETY: a plain syscall on a descriptor the caller owns.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Which operation a `FaultyIo` fails, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// The write fails with EIO; nothing of it lands.
    Write,
    /// The fdatasync fails with EIO.
    Fsync,
    /// The write lands only in part (its first half of blocks), then
    /// fails with EIO, as a write cut short by a device error.
    ShortWrite,
    /// The write, and the allocation of a prepared or reused segment,
    /// fail with ENOSPC; nothing lands.
    NoSpace,
    /// Some leading 512-byte sectors of the write land over the old
    /// content, the rest not, then it fails with EIO.
    TornWrite,
    /// One bit of what a read returns is flipped (the data on disk is
    /// intact: a fault on the way).
    ReadFlip,
}

impl FaultOp {
    /// The kind of operation counted for it.
    fn counted(self) -> FaultOp {
        match self {
            FaultOp::Write | FaultOp::ShortWrite | FaultOp::NoSpace | FaultOp::TornWrite => FaultOp::Write,
            other => other,
        }
    }
}

/// Wraps another `LogIo` and fails the `nth` write, fsync or read
/// (counted over every file it opened), and every write or fsync after it
/// (a disk that went bad stays bad); a read fault hits one read only.
pub struct FaultyIo<I> {
    inner: I,
    plan: Rc<FaultPlan>,
}

pub struct FaultPlan {
    pub op: FaultOp,
    pub nth: u64,
    seen: Cell<u64>,
    pub fired: Cell<bool>,
}

impl FaultPlan {
    pub fn new(op: FaultOp, nth: u64) -> Rc<Self> {
        Rc::new(Self { op, nth, seen: Cell::new(0), fired: Cell::new(false) })
    }

    /// Whether this operation (of kind `kind`: Write, Fsync or ReadFlip)
    /// is hit by the fault.
    fn hits(&self, kind: FaultOp) -> bool {
        if kind != self.op.counted() {
            return false;
        }
        let n = self.seen.get();
        self.seen.set(n + 1);
        let hit = if self.op == FaultOp::ReadFlip { n == self.nth } else { n >= self.nth };
        if hit {
            self.fired.set(true);
        }
        hit
    }

    fn error(&self) -> io::Error {
        let n = self.seen.get() - 1;
        match self.op {
            FaultOp::NoSpace => io::Error::from_raw_os_error(libc::ENOSPC),
            op => io::Error::other(format!("injected {op:?} failure (operation {n})")),
        }
    }

    fn check(&self, kind: FaultOp) -> io::Result<()> {
        if self.hits(kind) {
            return Err(self.error());
        }
        Ok(())
    }

    /// Flips one bit of `buf`, at a place that follows from `nth`.
    fn flip(&self, buf: &mut [u8]) {
        if !buf.is_empty() {
            let bit = (self.nth.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) % (buf.len() as u64 * 8);
            buf[(bit / 8) as usize] ^= 1 << (bit % 8);
        }
    }
}

impl<I> FaultyIo<I> {
    pub fn new(inner: I, plan: Rc<FaultPlan>) -> Self {
        Self { inner, plan }
    }

    /// An allocation fails with ENOSPC once a `NoSpace` fault has fired:
    /// a full disk stays full.
    fn no_space(&self) -> io::Result<()> {
        if self.plan.op == FaultOp::NoSpace && self.plan.fired.get() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
}

struct FaultySegment {
    inner: Rc<dyn SegmentFile>,
    plan: Rc<FaultPlan>,
}

impl FaultySegment {
    /// What of a failing write lands first: a prefix of whole blocks
    /// (short write) or of sectors over the old content (torn write).
    async fn partial_write(&self, data: &[u8], pos: u64) -> io::Result<()> {
        const SECTOR: usize = 512;
        match self.plan.op {
            FaultOp::ShortWrite if data.len() > BLOCK => {
                let blocks = data.len() / BLOCK;
                self.inner.write_at(&data[..blocks / 2 * BLOCK], pos).await
            }
            FaultOp::TornWrite => {
                let mut block = self.inner.read_at(pos, BLOCK).await?;
                block.resize(BLOCK, 0);
                let sectors = 1 + (crate::protocol::wire::usize_of(self.plan.nth) % (BLOCK / SECTOR - 1));
                block[..sectors * SECTOR].copy_from_slice(&data[..sectors * SECTOR]);
                self.inner.write_at(&block, pos).await
            }
            _ => Ok(()),
        }
    }
}

impl SegmentFile for FaultySegment {
    fn write_at<'a>(&'a self, data: &'a [u8], pos: u64) -> IoFuture<'a, ()> {
        Box::pin(async move {
            if self.plan.hits(FaultOp::Write) {
                self.partial_write(data, pos).await?;
                return Err(self.plan.error());
            }
            self.inner.write_at(data, pos).await
        })
    }

    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.plan.check(FaultOp::Fsync)?;
            self.inner.fdatasync().await
        })
    }

    fn read_all(&self) -> IoFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let mut buf = self.inner.read_all().await?;
            if self.plan.hits(FaultOp::ReadFlip) {
                self.plan.flip(&mut buf);
            }
            Ok(buf)
        })
    }

    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        self.inner.truncate(len)
    }

    fn read_at(&self, pos: u64, len: usize) -> IoFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let mut buf = self.inner.read_at(pos, len).await?;
            if self.plan.hits(FaultOp::ReadFlip) {
                self.plan.flip(&mut buf);
            }
            Ok(buf)
        })
    }

    fn size(&self) -> IoFuture<'_, u64> {
        self.inner.size()
    }
}

impl<I: LogIo> LogIo for FaultyIo<I> {
    fn segments_in<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, Vec<u64>> {
        self.inner.segments_in(dir)
    }

    fn create<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move {
            let inner = self.inner.create(path).await?;
            Ok(Rc::new(FaultySegment { inner, plan: self.plan.clone() }) as Rc<dyn SegmentFile>)
        })
    }

    fn open<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move {
            let inner = self.inner.open(path).await?;
            Ok(Rc::new(FaultySegment { inner, plan: self.plan.clone() }) as Rc<dyn SegmentFile>)
        })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        self.inner.remove(path)
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        self.inner.sync_dir(dir)
    }

    fn prepare<'a>(&'a self, path: &'a Path, bytes: u64) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move {
            self.no_space()?;
            let inner = self.inner.prepare(path, bytes).await?;
            Ok(Rc::new(FaultySegment { inner, plan: self.plan.clone() }) as Rc<dyn SegmentFile>)
        })
    }

    fn recycle<'a>(&'a self, from: &'a Path, to: &'a Path, bytes: u64) -> IoFuture<'a, Rc<dyn SegmentFile>> {
        Box::pin(async move {
            self.no_space()?;
            let inner = self.inner.recycle(from, to, bytes).await?;
            Ok(Rc::new(FaultySegment { inner, plan: self.plan.clone() }) as Rc<dyn SegmentFile>)
        })
    }
}

/// `dir/NNNNNNNNNNNNNNNN.seg`: segment numbers, zero-padded so names sort.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.seg"))
}

/// The segment numbers in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_suffix(".seg").and_then(|s| s.parse::<u64>().ok()) {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root (as on the CI machine) the log's I/O thread becomes
    /// SCHED_FIFO; without the right it keeps its policy and carries on.
    #[test]
    fn urgent_thread_is_fifo_when_permitted() {
        let (policy, again) = std::thread::spawn(|| {
            urgent_thread();
            // SAFETY: plain syscalls on the calling thread.
            let first = unsafe { libc::sched_getscheduler(0) };
            urgent_thread();
            // SAFETY: as above.
            let second = unsafe { libc::sched_getscheduler(0) };
            (first, second)
        })
        .join()
        .unwrap();
        assert_eq!(policy, again, "a second call changes nothing");
        // SAFETY: a plain syscall.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(policy, libc::SCHED_FIFO);
        } else {
            assert!(policy == libc::SCHED_FIFO || policy == libc::SCHED_OTHER);
        }
    }
}
