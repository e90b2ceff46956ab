//! The AMQP consumer: reads deliveries in place from its connection's
//! buffer, hands each body's header to the [`Sink`] and acks with
//! `multiple` every `ack_every` deliveries (and when idle).

use super::codec::*;
use super::{close_error, Connection, Sink, CHANNEL};
use crate::header::{now_ns, BatchClock, HEADER_LEN};
use anyhow::{bail, Result};

pub struct Consumer {
    pub(super) conn: Connection,
    pub(super) ack_every: u64,
}

enum Expect {
    Method,
    Header { tag: u64 },
    Body { tag: u64, left: u64 },
}

impl Consumer {
    pub async fn run(mut self, sink: &mut impl Sink) -> Result<()> {
        let mut expect = Expect::Method;
        let mut prefix = [0u8; HEADER_LEN];
        let mut have = 0usize;
        let mut last_tag = 0u64;
        let mut unacked = 0u64;
        let mut clock = BatchClock::default();
        loop {
            let mut any = false;
            clock.new_batch();
            while let Some(f) = self.conn.reader.next()? {
                match (f.kind, &mut expect) {
                    (FRAME_METHOD, Expect::Method) => {
                        let (id, args) = method_id(f.payload)?;
                        match id {
                            BASIC_DELIVER => {
                                let (tag, _redelivered) = parse_deliver(args)?;
                                expect = Expect::Header { tag };
                            }
                            CONNECTION_CLOSE => return Err(close_error("connection", args)),
                            CHANNEL_CLOSE => return Err(close_error("channel", args)),
                            _ => {}
                        }
                    }
                    (FRAME_HEADER, Expect::Header { tag }) => {
                        let size = parse_content_header(f.payload)?;
                        have = 0;
                        if size == 0 {
                            sink.deliver(&[], clock.now());
                            last_tag = *tag;
                            unacked += 1;
                            any = true;
                            expect = Expect::Method;
                            if unacked >= self.ack_every {
                                ack_now(&mut self.conn.stream, &mut self.conn.wbuf, last_tag).await?;
                                unacked = 0;
                            }
                        } else {
                            expect = Expect::Body { tag: *tag, left: size };
                        }
                    }
                    (FRAME_BODY, Expect::Body { tag, left }) => {
                        let take = f.payload.len().min(HEADER_LEN - have);
                        prefix[have..have + take].copy_from_slice(&f.payload[..take]);
                        have += take;
                        *left = left.saturating_sub(f.payload.len() as u64);
                        if *left == 0 {
                            sink.deliver(&prefix[..have], clock.now());
                            last_tag = *tag;
                            unacked += 1;
                            any = true;
                            expect = Expect::Method;
                            if unacked >= self.ack_every {
                                ack_now(&mut self.conn.stream, &mut self.conn.wbuf, last_tag).await?;
                                unacked = 0;
                            }
                        }
                    }
                    (FRAME_HEARTBEAT, _) => {
                        heartbeat(&mut self.conn.wbuf);
                    }
                    (kind, _) => bail!("unexpected frame type {kind} in a delivery"),
                }
            }
            if !self.conn.wbuf.is_empty() {
                self.conn.flush().await?;
            }
            if any {
                sink.flush();
            }
            if sink.should_stop(now_ns()) {
                break;
            }
            match self.conn.reader.fill(&mut self.conn.stream).await {
                Ok(true) => {}
                Ok(false) => bail!("connection closed by the broker"),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    // Idle: ack what we have so a slow trickle is not held back.
                    if unacked > 0 {
                        basic_ack(&mut self.conn.wbuf, CHANNEL, last_tag, true);
                        unacked = 0;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if unacked > 0 {
            basic_ack(&mut self.conn.wbuf, CHANNEL, last_tag, true);
            self.conn.flush().await?;
        }
        // The 100 ms idle timeout is for the delivery loop; close-ok may
        // come later, behind a backlog of deliveries.
        let _ = self.conn.stream.set_read_timeout(None);
        self.conn.close().await
    }
}

/// Sends a `multiple` ack at once, in the middle of a read's deliveries:
/// the broker refills the prefetch window while the rest are processed,
/// instead of after the whole read (one read often holds the whole window,
/// which made the consumer stop and wait once per window).
async fn ack_now(stream: &mut glommio::net::TcpStream, wbuf: &mut Vec<u8>, tag: u64) -> Result<()> {
    use futures_lite::io::AsyncWriteExt;
    basic_ack(wbuf, CHANNEL, tag, true);
    stream.write_all(wbuf).await?;
    wbuf.clear();
    Ok(())
}
