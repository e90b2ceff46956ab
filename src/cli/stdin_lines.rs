//! Standard input as messages, one per line, for `ringmq pub -`. A thread
//! reads the lines (a blocking read must not stall the executor that
//! serves the connection: confirms, heartbeats) and hands them over a
//! bounded channel, so a fast producer of input waits for the broker
//! instead of filling memory.

use ringmq::client::ClientError;
use std::io::{BufRead, Read};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::time::Duration;

/// Lines read ahead of the publisher.
const LINES_AHEAD_MAX: usize = 1024;
/// The longest line taken (larger than any broker's `message_bytes_max`
/// default; the broker refuses what is over its own limit).
const LINE_BYTES_MAX: u64 = 64 << 20;
/// How long the publisher waits before looking again when no line is there.
const POLL: Duration = Duration::from_millis(1);

pub struct Lines {
    rx: Receiver<Result<Vec<u8>, String>>,
}

impl Lines {
    /// Starts the reading thread.
    pub fn start() -> Lines {
        let (tx, rx) = sync_channel(LINES_AHEAD_MAX);
        std::thread::spawn(move || {
            let mut input = std::io::stdin().lock();
            loop {
                let mut line = Vec::new();
                let read = (&mut input).take(LINE_BYTES_MAX + 1).read_until(b'\n', &mut line);
                let item = match read {
                    Ok(0) => return,
                    Ok(_) if line.len() as u64 > LINE_BYTES_MAX => {
                        Err(format!("a line of standard input is over {LINE_BYTES_MAX} bytes"))
                    }
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                            if line.last() == Some(&b'\r') {
                                line.pop();
                            }
                        }
                        Ok(line)
                    }
                    Err(e) => Err(format!("reading standard input: {e}")),
                };
                let stop = item.is_err();
                if tx.send(item).is_err() || stop {
                    return;
                }
            }
        });
        Lines { rx }
    }

    /// The next line into `body`; false at the end of the input. `idle`
    /// runs each time no line is ready yet (the caller sends what it
    /// holds, so that typed lines go out at once).
    pub async fn next_into(
        &mut self,
        body: &mut Vec<u8>,
        idle: impl Fn() -> Result<(), ClientError>,
    ) -> Result<bool, ClientError> {
        let mut flushed = false;
        loop {
            match self.rx.try_recv() {
                Ok(Ok(line)) => {
                    *body = line;
                    return Ok(true);
                }
                Ok(Err(e)) => return Err(ClientError::Invalid(e)),
                Err(TryRecvError::Disconnected) => return Ok(false),
                Err(TryRecvError::Empty) => {
                    if !flushed {
                        idle()?;
                        flushed = true;
                    }
                    glommio::timer::sleep(POLL).await;
                }
            }
        }
    }
}
