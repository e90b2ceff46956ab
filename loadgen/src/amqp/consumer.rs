//! The AMQP consumer: reads deliveries in place from its connection's
//! buffer, hands each body's header to the [`Sink`] and acks with
//! `multiple` every `ack_every` deliveries (and when idle).

use super::{close_error, Connection, Sink, CHANNEL};
use crate::header::{now_ns, BatchClock, HEADER_LEN};
use anyhow::{anyhow, bail, Result};
use bytes::BytesMut;
use ringmq::protocol::amqp::client::{parse_deliver, split};
use ringmq::protocol::amqp::frame;
use ringmq::protocol::amqp::method::{self, id};

pub struct Consumer {
    pub(super) conn: Connection,
    pub(super) ack_every: u64,
}

enum Expect {
    Method,
    Header { tag: u64 },
    Body { tag: u64, left: u64 },
}

/// Where the consumer is in the stream of deliveries, across reads.
struct Deliveries {
    expect: Expect,
    /// The start of the body being read in several frames.
    prefix: [u8; HEADER_LEN],
    have: usize,
    unacked: Unacked,
}

/// Deliveries handed to the sink since the last ack: acked with
/// `multiple` every `ack_every` (`ack_now`), when idle, and at the end.
struct Unacked {
    ack_every: u64,
    last_tag: u64,
    count: u64,
}

impl Unacked {
    /// Hands one delivery's body prefix to the sink and counts it. True
    /// when `ack_every` are waiting: the caller acks them now. The one
    /// path every message takes, so inlined and allocation-free.
    #[inline]
    fn deliver(&mut self, sink: &mut impl Sink, prefix: &[u8], now: u64, tag: u64) -> bool {
        sink.deliver(prefix, now);
        self.last_tag = tag;
        self.count += 1;
        self.count >= self.ack_every
    }

    /// Queues a `multiple` ack of everything delivered, if anything waits.
    fn put_ack(&mut self, wbuf: &mut BytesMut) {
        if self.count > 0 {
            method::put_ack(wbuf, CHANNEL, self.last_tag, true);
            self.count = 0;
        }
    }
}

impl Consumer {
    pub async fn run(mut self, sink: &mut impl Sink) -> Result<()> {
        let mut st = Deliveries {
            expect: Expect::Method,
            prefix: [0u8; HEADER_LEN],
            have: 0,
            unacked: Unacked { ack_every: self.ack_every, last_tag: 0, count: 0 },
        };
        let mut clock = BatchClock::default();
        loop {
            clock.new_batch();
            let any = self.take_deliveries(sink, &mut st, &mut clock).await?;
            if !self.conn.wbuf.is_empty() {
                self.conn.flush().await?;
            }
            if any {
                sink.flush();
            }
            if sink.should_stop(now_ns()) {
                break;
            }
            if let Some(why) = sink.stale(now_ns()) {
                bail!(why);
            }
            match self.conn.reader.fill(&mut self.conn.stream).await {
                Ok(true) => {}
                Ok(false) => bail!("connection closed by the broker"),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    // Idle: ack what we have so a slow trickle is not held back.
                    st.unacked.put_ack(&mut self.conn.wbuf);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if st.unacked.count > 0 {
            st.unacked.put_ack(&mut self.conn.wbuf);
            self.conn.flush().await?;
        }
        // The 100 ms idle timeout is for the delivery loop; close-ok may
        // come later, behind a backlog of deliveries.
        let _ = self.conn.stream.tcp().set_read_timeout(None);
        self.conn.close().await
    }

    /// Hands every delivery the buffer holds to the sink: whole ones in
    /// one go (`whole_delivery`), the rest frame by frame. True if any
    /// was delivered.
    async fn take_deliveries(
        &mut self,
        sink: &mut impl Sink,
        st: &mut Deliveries,
        clock: &mut BatchClock,
    ) -> Result<bool> {
        let mut any = false;
        loop {
            if matches!(st.expect, Expect::Method) {
                let r = &mut self.conn.reader;
                if let Some((used, tag, body)) = whole_delivery(&r.buf[r.start..r.end], r.frame_max) {
                    let due = st.unacked.deliver(sink, &body[..body.len().min(HEADER_LEN)], clock.now(), tag);
                    r.start += used;
                    any = true;
                    if due {
                        ack_now(&mut self.conn.stream, &mut self.conn.wbuf, &mut st.unacked).await?;
                    }
                    continue;
                }
            }
            let Some(f) = self.conn.reader.next()? else { break };
            // A delivery completed by this frame: its tag and body prefix.
            let done: Option<(u64, &[u8])> = match (f.kind, &mut st.expect) {
                (frame::METHOD, Expect::Method) => {
                    let (mid, args) = split(f.payload)?;
                    match mid {
                        id::BASIC_DELIVER => {
                            st.expect = Expect::Header { tag: parse_deliver(args)?.delivery_tag };
                        }
                        id::CONNECTION_CLOSE => return Err(close_error("connection", args)),
                        id::CHANNEL_CLOSE => return Err(close_error("channel", args)),
                        _ => {}
                    }
                    None
                }
                (frame::HEADER, Expect::Header { tag }) => {
                    let size = frame::content_body_size(f.payload)
                        .ok_or_else(|| anyhow!("content header of {} bytes", f.payload.len()))?;
                    st.have = 0;
                    if size == 0 {
                        Some((*tag, &[]))
                    } else {
                        st.expect = Expect::Body { tag: *tag, left: size };
                        None
                    }
                }
                (frame::BODY, Expect::Body { tag, left }) => {
                    let take = f.payload.len().min(HEADER_LEN - st.have);
                    st.prefix[st.have..st.have + take].copy_from_slice(&f.payload[..take]);
                    st.have += take;
                    *left = left.saturating_sub(f.payload.len() as u64);
                    (*left == 0).then_some((*tag, &st.prefix[..st.have]))
                }
                (frame::HEARTBEAT, _) => {
                    frame::put_heartbeat(&mut self.conn.wbuf);
                    None
                }
                (kind, _) => bail!("unexpected frame type {kind} in a delivery"),
            };
            if let Some((tag, prefix)) = done {
                any = true;
                if st.unacked.deliver(sink, prefix, clock.now(), tag) {
                    ack_now(&mut self.conn.stream, &mut self.conn.wbuf, &mut st.unacked).await?;
                }
                st.expect = Expect::Method;
            }
        }
        Ok(any)
    }
}

/// A whole delivery at the front of `buf` — basic.deliver, its content
/// header and at most one body frame — as (bytes used, delivery tag,
/// body), parsed in one go. Anything else (another method, a body in
/// several frames, bytes still to come, a malformed frame) is `None` and
/// takes the frame-by-frame path, which also reports errors.
fn whole_delivery(buf: &[u8], frame_max: usize) -> Option<(usize, u64, &[u8])> {
    let (m, _header, body, used) = frame::whole_content(buf, frame_max, id::BASIC_DELIVER)?;
    let tag = parse_deliver(m.payload.get(4..)?).ok()?.delivery_tag;
    Some((used, tag, body.map_or(&[], |b| b.payload)))
}

/// Sends a `multiple` ack at once, in the middle of a read's deliveries:
/// the broker refills the prefetch window while the rest are processed,
/// instead of after the whole read (one read often holds the whole window,
/// which made the consumer stop and wait once per window).
async fn ack_now(stream: &mut ringmq::rt::Transport, wbuf: &mut BytesMut, unacked: &mut Unacked) -> Result<()> {
    use futures_lite::io::AsyncWriteExt;
    method::put_ack(wbuf, CHANNEL, unacked.last_tag, true);
    stream.write_all(wbuf).await?;
    stream.flush().await?;
    wbuf.clear();
    unacked.count = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::PublishTemplate;
    use super::*;
    use ringmq::protocol::amqp::frame::Decoded;

    #[test]
    fn whole_deliveries_only() {
        let mut b = BytesMut::new();
        method::put_deliver(&mut b, 1, "ctag", 42, false, "", "q");
        let method_len = b.len();
        let t = PublishTemplate::new(1, "", "q", 20, false, 4096);
        let mut p = BytesMut::new();
        t.stamp(&mut p, b"0123456789abcdef");
        // The template's publish method, then its header and body.
        let content = {
            let Decoded::Frame(_, n) = frame::decode(&p, 4096).unwrap() else { panic!() };
            p[n..].to_vec()
        };
        b.extend_from_slice(&content);
        let (used, tag, body) = whole_delivery(&b, 4096).unwrap();
        assert_eq!((used, tag, &body[..16]), (b.len(), 42, &b"0123456789abcdef"[..]));
        for cut in method_len..b.len() {
            assert!(whole_delivery(&b[..cut], 4096).is_none(), "cut at {cut}");
        }
        assert!(whole_delivery(&content, 4096).is_none(), "no method first");
        // An empty body: no body frame.
        let mut e = BytesMut::new();
        method::put_deliver(&mut e, 1, "ctag", 7, false, "", "q");
        frame::put_content_header(&mut e, 1, 60, 0, &[]);
        assert_eq!(whole_delivery(&e, 4096), Some((e.len(), 7, &[][..])));
    }
}
