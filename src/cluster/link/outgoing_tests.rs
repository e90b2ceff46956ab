//! The dialler's bounds against a listener played by the test: the
//! window, the deadline, a frame over the limit, and the redial after the
//! listener drops the link. The listener authenticates for real, then
//! echoes `vote` RPCs, never answers `append` ones, and hangs up on a
//! `snapshot` one.

use super::*;
use crate::cluster::link::LinkLimits;
use crate::protocol::link::Frame;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpListener;

const CLUSTER: [u8; 16] = [3; 16];
const SECRET: &[u8] = b"the test's cluster secret";

fn config(id: u64) -> Rc<LinkConfig> {
    let mut c = LinkConfig::new(CLUSTER, id, format!("node-{id}"), SECRET).unwrap();
    c.limits = LinkLimits {
        rpcs_in_flight_max: 2,
        frame_bytes_max: 4096,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..LinkLimits::default()
    };
    Rc::new(c)
}

/// Accepts links forever; each is served until a `snapshot` RPC.
async fn listener(l: TcpListener, accepted: Rc<Cell<u32>>) {
    let me = config(2);
    loop {
        let s = l.accept().await.unwrap();
        accepted.set(accepted.get() + 1);
        let (mut r, mut w) = split(s);
        let mut frames = Frames::handshake();
        let deadline = Instant::now() + Duration::from_secs(5);
        handshake::accept(&mut r, &mut w, &mut frames, &me, deadline).await.unwrap();
        frames.authenticated(4096, 4096);
        loop {
            let reply = match frames.next(&mut r, |_| None).await.unwrap() {
                Frame::Rpc { id, kind: RpcKind::Vote, payload } => {
                    let mut b = bytes::BytesMut::new();
                    Frame::RpcReply { id, payload }.encode(&mut b);
                    b
                }
                Frame::Rpc { kind: RpcKind::Snapshot, .. } => break,
                _ => continue,
            };
            w.write_all(&reply).await.unwrap();
        }
        // The link dropped by the listener: both halves closed.
        drop((r, w));
    }
}

#[test]
fn window_deadline_limit_and_redial() {
    glommio::LocalExecutor::default().run(async {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let accepted = Rc::new(Cell::new(0));
        let _listener = glommio::spawn_local(listener(l, accepted.clone()));
        let peer = Rc::new(Peer::new(2, addr, config(1)));
        glommio::spawn_local(peer.clone().run()).detach();
        let soon = || Instant::now() + Duration::from_secs(2);

        // Answered: the reply is the payload, echoed.
        let reply = peer.call(RpcKind::Vote, b"hello", soon()).await.unwrap();
        assert_eq!(&reply[..], b"hello");

        // Two RPCs nobody answers fill the window of two: a third is
        // refused at once, not queued and not dropped.
        let short = Instant::now() + Duration::from_millis(300);
        let p = peer.clone();
        let a = glommio::spawn_local(async move { p.call(RpcKind::Append, b"a", short).await });
        let p = peer.clone();
        let b = glommio::spawn_local(async move { p.call(RpcKind::Append, b"b", short).await });
        glommio::timer::sleep(Duration::from_millis(50)).await;
        assert!(matches!(peer.call(RpcKind::Vote, b"c", soon()).await, Err(LinkError::WindowFull(2))));
        // Both end at their deadline, and give their places back.
        assert!(matches!(a.await, Err(LinkError::Timeout(_))));
        assert!(matches!(b.await, Err(LinkError::Timeout(_))));
        assert!(peer.pending.borrow().is_empty());
        assert_eq!(&peer.call(RpcKind::Vote, b"d", soon()).await.unwrap()[..], b"d");

        // A frame over the limit is refused before it is sent.
        let big = vec![0u8; 4096];
        let e = peer.call(RpcKind::Append, &big, soon()).await;
        assert!(matches!(e, Err(LinkError::TooLarge { max: 4096, .. })), "{e:?}");

        // The listener hangs up: the RPC waiting on the link fails (it is
        // not left to its deadline), and the dialler redials.
        let e = peer.call(RpcKind::Snapshot, b"bye", soon()).await;
        assert!(matches!(e, Err(LinkError::Lost)), "{e:?}");
        let until = soon();
        let reply = loop {
            match peer.call(RpcKind::Vote, b"again", soon()).await {
                Ok(r) => break r,
                Err(_) => {
                    assert!(Instant::now() < until, "no redial");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        assert_eq!(&reply[..], b"again");
        assert_eq!(accepted.get(), 2, "one redial");
        peer.stop();
    });
}
