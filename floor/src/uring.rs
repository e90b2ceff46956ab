//! The relay on io_uring, with the raw system calls (no runtime): per
//! arrival one `io_uring_enter` that submits the send of what arrived,
//! linked to the next receive, and sleeps until the next completion. The
//! send posts no completion when it succeeds (`IOSQE_CQE_SKIP_SUCCESS`),
//! so a wake-up is an arrival or an ack. The ring is single-issuer with
//! deferred task work, the cheapest setup the kernel offers (falls back to
//! a plain ring on kernels without it).

use super::relay::{ACK_READ_BYTES, READ_BYTES};
use super::Moved;
use anyhow::{bail, Context, Result};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

const OP_SEND: u8 = 26;
const OP_RECV: u8 = 27;
const SQE_IO_LINK: u8 = 1 << 2;
const SQE_CQE_SKIP_SUCCESS: u8 = 1 << 6;
const ENTER_GETEVENTS: u32 = 1;
const FEAT_SINGLE_MMAP: u32 = 1;
const SETUP_COOP_TASKRUN: u32 = 1 << 8;
const SETUP_SINGLE_ISSUER: u32 = 1 << 12;
const SETUP_DEFER_TASKRUN: u32 = 1 << 13;
const OFF_SQES: libc::off_t = 0x1000_0000;
const ENTRIES: u32 = 8;

/// What each completion is for.
const TAG_PUBLISHER: u64 = 1;
const TAG_CONSUMER: u64 = 2;
const TAG_SEND: u64 = 3;

#[repr(C)]
#[derive(Default)]
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    msg_flags: u32,
    user_data: u64,
    buf_index: u16,
    personality: u16,
    splice_fd_in: i32,
    addr3: u64,
    pad: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

/// A mapping of the ring's memory, unmapped on drop.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    fn new(fd: RawFd, len: usize, offset: libc::off_t) -> std::io::Result<Self> {
        // SAFETY: a fresh shared mapping of the ring fd; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { ptr: ptr.cast(), len })
    }

    /// The u32 the kernel shares at byte `off` (an offset it gave).
    fn u32_at(&self, off: u32) -> &AtomicU32 {
        assert!(off as usize + 4 <= self.len && off & 3 == 0, "ring offset out of the mapping");
        // SAFETY: in bounds and aligned (checked); the mapping lives as long as `self`.
        unsafe { &*self.ptr.add(off as usize).cast::<AtomicU32>() }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

struct Ring {
    // Field order: the mappings go before the fd closes.
    rings: Map,
    sqes: Map,
    p: Params,
    fd: OwnedFd,
    /// Submissions written and not yet passed to io_uring_enter.
    queued: u32,
}

impl Ring {
    fn new() -> Result<Self> {
        let flags = [SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN | SETUP_COOP_TASKRUN, 0];
        let mut last = None;
        for f in flags {
            let mut p = Params { flags: f, ..Default::default() };
            // SAFETY: p is a valid io_uring_params the kernel fills in.
            let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, ENTRIES, &mut p as *mut Params) };
            if fd < 0 {
                last = Some(std::io::Error::last_os_error());
                continue;
            }
            // SAFETY: the kernel returned a new descriptor that only this process holds.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
            if p.features & FEAT_SINGLE_MMAP == 0 {
                bail!("this kernel's io_uring maps its rings apart (before 5.4): not supported");
            }
            let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
            let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<Cqe>();
            // One mapping holds both rings (FEAT_SINGLE_MMAP).
            let rings = Map::new(fd.as_raw_fd(), sq_len.max(cq_len), 0).context("mapping the rings")?;
            let sqes = Map::new(fd.as_raw_fd(), p.sq_entries as usize * std::mem::size_of::<Sqe>(), OFF_SQES)
                .context("mapping the submission entries")?;
            let ring = Self { rings, sqes, p, fd, queued: 0 };
            // The submission array maps slot i to entry i, once for all.
            for i in 0..ring.p.sq_entries {
                ring.rings.u32_at(ring.p.sq_off.array + 4 * i).store(i, Ordering::Relaxed);
            }
            return Ok(ring);
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("io_uring_setup failed"))).context("io_uring_setup")
    }

    /// Queues `sqe` (passed to the kernel by the next `enter`).
    fn push(&mut self, sqe: Sqe) -> Result<()> {
        let head = self.rings.u32_at(self.p.sq_off.head).load(Ordering::Acquire);
        let tail_at = self.rings.u32_at(self.p.sq_off.tail);
        let tail = tail_at.load(Ordering::Relaxed);
        if tail.wrapping_sub(head) >= self.p.sq_entries {
            bail!("submission ring full");
        }
        let idx = tail & self.rings.u32_at(self.p.sq_off.ring_mask).load(Ordering::Relaxed);
        assert!(idx < self.p.sq_entries, "ring mask beyond its entries");
        // SAFETY: idx < sq_entries: inside the entries' mapping; this slot is
        // ours until the tail below hands it to the kernel.
        unsafe { self.sqes.ptr.cast::<Sqe>().add(idx as usize).write(sqe) };
        tail_at.store(tail.wrapping_add(1), Ordering::Release);
        self.queued += 1;
        Ok(())
    }

    /// Submits what is queued and waits for at least `wait` completions.
    fn enter(&mut self, wait: u32) -> Result<()> {
        loop {
            // SAFETY: no argument points at memory (sig is null, its size 0).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    self.fd.as_raw_fd(),
                    self.queued,
                    wait,
                    ENTER_GETEVENTS,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            if r >= 0 {
                self.queued -= (r as u32).min(self.queued);
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).context("io_uring_enter");
            }
        }
    }

    /// The next completion, if one is there.
    fn pop(&mut self) -> Option<Cqe> {
        let head_at = self.rings.u32_at(self.p.cq_off.head);
        let head = head_at.load(Ordering::Relaxed);
        let tail = self.rings.u32_at(self.p.cq_off.tail).load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let idx = head & self.rings.u32_at(self.p.cq_off.ring_mask).load(Ordering::Relaxed);
        let off = self.p.cq_off.cqes as usize + idx as usize * std::mem::size_of::<Cqe>();
        assert!(off + std::mem::size_of::<Cqe>() <= self.rings.len, "completion outside the mapping");
        // SAFETY: in bounds (checked); the kernel wrote this entry before
        // moving the tail past it (acquired above).
        let cqe = unsafe { self.rings.ptr.add(off).cast::<Cqe>().read_unaligned() };
        head_at.store(head.wrapping_add(1), Ordering::Release);
        Some(cqe)
    }
}

fn recv(fd: RawFd, buf: &mut [u8], tag: u64) -> Sqe {
    Sqe {
        opcode: OP_RECV,
        fd,
        addr: buf.as_mut_ptr() as u64,
        len: buf.len() as u32,
        user_data: tag,
        ..Default::default()
    }
}

/// Relays until either side closes. The buffers outlive every operation
/// that names them: on the way out the sockets are shut, which ends the
/// receives still armed, and their completions are awaited.
pub fn relay(publisher: TcpStream, consumer: TcpStream) -> Result<Moved> {
    let mut ring = Ring::new()?;
    let mut buf = vec![0u8; READ_BYTES];
    let mut ack_buf = vec![0u8; ACK_READ_BYTES];
    let (pfd, cfd) = (publisher.as_raw_fd(), consumer.as_raw_fd());
    let mut moved = Moved::default();
    ring.push(recv(pfd, &mut buf, TAG_PUBLISHER))?;
    ring.push(recv(cfd, &mut ack_buf, TAG_CONSUMER))?;
    // Receives armed: each names one of the buffers.
    let mut armed = 2u32;
    let r = relay_loop(&mut ring, &mut buf, &mut ack_buf, pfd, cfd, &mut moved, &mut armed);
    let _ = publisher.shutdown(Shutdown::Both);
    let _ = consumer.shutdown(Shutdown::Both);
    while armed > 0 {
        if ring.enter(1).is_err() {
            // The kernel may still write into them: never freed.
            std::mem::forget(buf);
            std::mem::forget(ack_buf);
            break;
        }
        while let Some(c) = ring.pop() {
            if c.user_data != TAG_SEND {
                armed -= 1;
            }
        }
    }
    r.map(|()| moved)
}

fn relay_loop(
    ring: &mut Ring,
    buf: &mut [u8],
    ack_buf: &mut [u8],
    pfd: RawFd,
    cfd: RawFd,
    moved: &mut Moved,
    armed: &mut u32,
) -> Result<()> {
    loop {
        ring.enter(1)?;
        while let Some(c) = ring.pop() {
            match c.user_data {
                TAG_PUBLISHER => {
                    *armed -= 1;
                    if c.res < 0 {
                        return Err(std::io::Error::from_raw_os_error(-c.res)).context("receiving from the publisher");
                    }
                    if c.res == 0 {
                        return Ok(());
                    }
                    let n = c.res as usize;
                    moved.arrivals += 1;
                    moved.relayed += n as u64;
                    // The send, then (linked: after it has taken the bytes)
                    // the next receive into the same buffer.
                    ring.push(Sqe {
                        opcode: OP_SEND,
                        flags: SQE_IO_LINK | SQE_CQE_SKIP_SUCCESS,
                        fd: cfd,
                        addr: buf.as_ptr() as u64,
                        len: n as u32,
                        msg_flags: libc::MSG_WAITALL as u32,
                        user_data: TAG_SEND,
                        ..Default::default()
                    })?;
                    ring.push(recv(pfd, buf, TAG_PUBLISHER))?;
                    *armed += 1;
                }
                TAG_CONSUMER => {
                    *armed -= 1;
                    if c.res <= 0 {
                        return Ok(());
                    }
                    moved.acked += c.res as u64;
                    ring.push(recv(cfd, ack_buf, TAG_CONSUMER))?;
                    *armed += 1;
                }
                // Posted only when the send failed; its linked receive is
                // then cancelled and reported too.
                _ => {
                    let e = if c.res < 0 {
                        std::io::Error::from_raw_os_error(-c.res)
                    } else {
                        std::io::Error::other("short send")
                    };
                    return Err(e).context("sending to the consumer");
                }
            }
        }
    }
}
