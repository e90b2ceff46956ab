//! The relay on plain syscalls: blocking threads, or one epoll loop.

use super::Moved;
use anyhow::{bail, Context, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What one read takes at most: far more than arrives between two wake-ups
/// of an unbatched client, so an arrival is one read.
pub const READ_BYTES: usize = 64 * 1024;
/// The consumer's acks: small, and only read to be dropped.
pub const ACK_READ_BYTES: usize = 4096;
/// How long a finished pair's consumer may take to close after the end.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends a pair whose publisher closed: the consumer gets the bytes still
/// held (`rest`), then the end of the stream, and its last acks are read
/// until it closes too (or [`LINGER`] passes). Closing a socket with acks
/// still unread would send it a reset instead of the end.
fn finish(consumer: &mut TcpStream, rest: &[u8], moved: &mut Moved) -> Result<()> {
    consumer.set_nonblocking(false)?;
    consumer.write_all(rest).context("writing to the consumer")?;
    consumer.shutdown(Shutdown::Write)?;
    consumer.set_read_timeout(Some(LINGER))?;
    let mut buf = [0u8; ACK_READ_BYTES];
    loop {
        match consumer.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(k) => moved.acked += k as u64,
        }
    }
}

/// A thread blocked in `read` on the publisher, writing each arrival to the
/// consumer; another thread reading (and dropping) the consumer's acks.
pub fn blocking(mut publisher: TcpStream, mut consumer: TcpStream) -> Result<Moved> {
    let mut acks = consumer.try_clone()?;
    // The ack reader ends when the consumer closes, or this long after.
    acks.set_read_timeout(Some(LINGER))?;
    let ack_reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; ACK_READ_BYTES];
        let mut n = 0u64;
        loop {
            match acks.read(&mut buf) {
                Ok(0) | Err(_) => return n,
                Ok(k) => n += k as u64,
            }
        }
    });
    let mut moved = Moved::default();
    let mut buf = vec![0u8; READ_BYTES];
    let r = loop {
        let n = match publisher.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => break Err(e).context("reading the publisher"),
        };
        if let Err(e) = consumer.write_all(&buf[..n]) {
            break Err(e).context("writing to the consumer");
        }
        moved.relayed += n as u64;
        moved.arrivals += 1;
    };
    // The end for the consumer; the ack reader reads its last acks until
    // it closes (closing with acks unread would reset it instead).
    let _ = consumer.shutdown(Shutdown::Write);
    moved.acked = ack_reader.join().unwrap_or(0);
    r.map(|()| moved)
}

/// An epoll instance, closed on drop.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> std::io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a negative result is an error.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor this process owns and nothing else holds.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32) -> std::io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: fd as u64 };
        // SAFETY: ev is a valid epoll_event for the call's duration; both fds are open.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for events into `evs`; how many there are.
    fn wait(&self, evs: &mut [libc::epoll_event]) -> std::io::Result<usize> {
        loop {
            let cap = evs.len().min(i32::MAX as usize) as libc::c_int;
            // SAFETY: evs is writable for `cap` entries.
            let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), evs.as_mut_ptr(), cap, -1) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// One thread, level-triggered epoll on both sockets: per arrival one
/// `epoll_wait`, one `read` of the publisher and one `write` to the
/// consumer. A consumer that does not take the bytes at once gets them when
/// its socket is writable, and the publisher is not read meanwhile (at most
/// one read's bytes are held).
pub fn epoll(mut publisher: TcpStream, mut consumer: TcpStream) -> Result<Moved> {
    publisher.set_nonblocking(true)?;
    consumer.set_nonblocking(true)?;
    let (pfd, cfd) = (publisher.as_raw_fd(), consumer.as_raw_fd());
    let ep = Epoll::new().context("epoll_create1")?;
    let input = libc::EPOLLIN as u32;
    ep.ctl(libc::EPOLL_CTL_ADD, pfd, input)?;
    ep.ctl(libc::EPOLL_CTL_ADD, cfd, input)?;
    let mut moved = Moved::default();
    let mut buf = vec![0u8; READ_BYTES];
    let mut ack_buf = vec![0u8; ACK_READ_BYTES];
    // Bytes read and not yet written: buf[pending.0..pending.1].
    let mut pending = (0usize, 0usize);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
    loop {
        let n = ep.wait(&mut evs)?;
        for ev in &evs[..n] {
            let (fd, events) = (ev.u64 as RawFd, ev.events);
            if fd == pfd {
                let k = match publisher.read(&mut buf) {
                    Ok(0) => {
                        finish(&mut consumer, &buf[pending.0..pending.1], &mut moved)?;
                        return Ok(moved);
                    }
                    Ok(k) => k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("reading the publisher"),
                };
                moved.arrivals += 1;
                moved.relayed += k as u64;
                let w = write_some(&mut consumer, &buf[..k])?;
                if w < k {
                    pending = (w, k);
                    ep.ctl(libc::EPOLL_CTL_MOD, pfd, 0)?;
                    ep.ctl(libc::EPOLL_CTL_MOD, cfd, input | libc::EPOLLOUT as u32)?;
                }
            } else if fd == cfd {
                if events & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                    match consumer.read(&mut ack_buf) {
                        Ok(0) => return Ok(moved),
                        Ok(k) => moved.acked += k as u64,
                        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e).context("reading the consumer"),
                    }
                }
                if events & libc::EPOLLOUT as u32 != 0 && pending.0 < pending.1 {
                    pending.0 += write_some(&mut consumer, &buf[pending.0..pending.1])?;
                    if pending.0 == pending.1 {
                        ep.ctl(libc::EPOLL_CTL_MOD, cfd, input)?;
                        ep.ctl(libc::EPOLL_CTL_MOD, pfd, input)?;
                    }
                }
            } else {
                bail!("epoll reported fd {fd}, which it was not given");
            }
        }
    }
}

/// One non-blocking write: the bytes the socket took (0 if full).
fn write_some(s: &mut TcpStream, b: &[u8]) -> Result<usize> {
    loop {
        match s.write(b) {
            Ok(0) if !b.is_empty() => bail!("the consumer's socket took nothing"),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("writing to the consumer"),
        }
    }
}
