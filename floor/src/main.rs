//! ringmq-floor: the physical floor under a broker's cost for an unbatched
//! client (issue 22). A bare relay that does the least any broker must do
//! for that traffic and nothing else: per arrival of a publisher's bytes,
//! one wake-up, one read, and one write of the same bytes (a delivery of
//! the same size) to the consumer's socket; and reading the consumer's acks.
//! No parsing, no queue, no routing: what it costs per message is what the
//! kernel and the wake-ups cost, the part of a broker's CPU per message that
//! no broker design removes. `benches/report.sh` (the `ordinary` rows)
//! reports ringmq's CPU per message as a ratio to it, measured in the same
//! run with the same client (`ordinary floor`, benches/ordinary/ordinary.go).
//!
//!   ringmq-floor [--listen 127.0.0.1:0] [--mode epoll|blocking|uring]
//!
//! Prints `ringmq-floor ready addr=HOST:PORT mode=MODE` once listening. A
//! client opens two connections and sends one byte on each first: `P` on
//! the publisher's, `C` on the consumer's. The relay then forwards the
//! publisher's bytes to the consumer until either side closes, and waits
//! for the next pair. Modes:
//! - `blocking`: a thread blocked in `read` on the publisher (the wake-up is
//!   the read's return), `write` to the consumer; a second thread reads the
//!   acks. Two syscalls per arrival.
//! - `epoll`: one thread, non-blocking sockets, `epoll_wait`, one `read`,
//!   one `write`: the shape of an epoll broker's event loop.
//! - `uring`: one thread on io_uring: per arrival one `io_uring_enter` that
//!   submits the send and the next receive and waits for the next arrival.

mod relay;
mod uring;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "ringmq-floor", version, about = "A bare relay: the physical floor under a broker's CPU per message")]
struct Cli {
    /// Address to listen on (port 0: any free port, printed when ready).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// How the relay waits for and moves bytes.
    #[arg(long, value_enum, default_value_t = Mode::Epoll)]
    mode: Mode,
    /// Stop after this many publisher/consumer pairs (0: serve forever).
    #[arg(long, default_value_t = 0)]
    pairs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Blocking,
    Epoll,
    Uring,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Blocking => "blocking",
            Mode::Epoll => "epoll",
            Mode::Uring => "uring",
        }
    }
}

/// The bytes moved for one pair, for the log line after it.
#[derive(Debug, Default)]
pub struct Moved {
    /// Bytes read from the publisher and written to the consumer.
    pub relayed: u64,
    /// Reads of the publisher's socket that returned bytes (arrivals).
    pub arrivals: u64,
    /// Bytes read from the consumer (its acks).
    pub acked: u64,
}

/// How long a connection may take to say its role.
const ROLE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let cli = Cli::parse();
    if let Err(e) = serve(&cli) {
        eprintln!("ringmq-floor: {e:#}");
        std::process::exit(1);
    }
}

fn serve(cli: &Cli) -> Result<()> {
    let listener = TcpListener::bind(&cli.listen).with_context(|| format!("listening on {}", cli.listen))?;
    let addr = listener.local_addr()?;
    println!("ringmq-floor ready addr={addr} mode={}", cli.mode.name());
    std::io::stdout().flush()?;
    let mut served = 0u64;
    while cli.pairs == 0 || served < cli.pairs {
        let (publisher, consumer) = match accept_pair(&listener) {
            Ok(p) => p,
            Err(e) => {
                // A client that misbehaved costs only its own pair.
                eprintln!("ringmq-floor: {e:#}");
                // An accept that fails (out of descriptors) may fail again:
                // not in a tight loop.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let r = match cli.mode {
            Mode::Blocking => relay::blocking(publisher, consumer),
            Mode::Epoll => relay::epoll(publisher, consumer),
            Mode::Uring => uring::relay(publisher, consumer),
        };
        match r {
            Ok(m) => eprintln!(
                "ringmq-floor: pair done: {} B relayed in {} arrivals, {} B of acks",
                m.relayed, m.arrivals, m.acked
            ),
            Err(e) => eprintln!("ringmq-floor: pair ended: {e:#}"),
        }
        served += 1;
    }
    Ok(())
}

/// The next publisher and consumer, in either order. A connection that
/// does not say a role in time, says a wrong one, or a second of one, is
/// closed alone.
fn accept_pair(listener: &TcpListener) -> Result<(TcpStream, TcpStream)> {
    let mut publisher = None;
    let mut consumer = None;
    loop {
        if let (Some(_), Some(_)) = (&publisher, &consumer) {
            break;
        }
        let (s, peer) = listener.accept().context("accept")?;
        match role(s) {
            Ok((b'P', s)) if publisher.is_none() => publisher = Some(s),
            Ok((b'C', s)) if consumer.is_none() => consumer = Some(s),
            Ok((r, _)) => eprintln!("ringmq-floor: {peer}: a second {} before the pair was complete", r as char),
            Err(e) => eprintln!("ringmq-floor: {peer}: {e:#}"),
        }
    }
    match (publisher, consumer) {
        (Some(p), Some(c)) => Ok((p, c)),
        _ => bail!("pair incomplete"),
    }
}

/// Reads a connection's role byte: `P` or `C`.
fn role(mut s: TcpStream) -> Result<(u8, TcpStream)> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(ROLE_TIMEOUT))?;
    let mut role = [0u8; 1];
    s.read_exact(&mut role).context("reading its role")?;
    s.set_read_timeout(None)?;
    match role[0] {
        b'P' | b'C' => Ok((role[0], s)),
        r => bail!("role byte {r:#04x}, expected P or C"),
    }
}
