//! The glommio shell of the handshake (`core::handshake::Greeter`): it
//! writes the greeting and reads until the answers are in, within the
//! connect timeout, through the connection's own frame reader.

use super::conn::read_error;
use super::core::handshake::{Greeter, HANDSHAKE_FRAME_MAX};
use super::core::routes::OwnedMap;
use super::dial::io_error;
use super::{ClientOptions, Result, ServerInfo};
use crate::rt::reader::{FrameReader, Native, READ_BYTES};
use crate::rt::Transport;
use bytes::BytesMut;
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::AsyncWriteExt;
use std::net::SocketAddr;
use std::time::Instant;

/// What the handshake gave: who answered, the map if asked for, and the
/// reader holding whatever arrived after them.
pub struct Greeting {
    pub info: ServerInfo,
    pub map: Option<OwnedMap>,
    pub reader: FrameReader<Native>,
}

/// Sends `Hello` (and `MapGet` with `want_map`) and reads the answers,
/// within `opts.connect_timeout` from now.
pub async fn greet(
    r: &mut ReadHalf<Transport>,
    w: &mut WriteHalf<Transport>,
    addr: SocketAddr,
    opts: &ClientOptions,
    want_map: bool,
) -> Result<Greeting> {
    let until = Instant::now() + opts.connect_timeout;
    let mut greeter = Greeter::new(opts, addr, want_map);
    let mut out = BytesMut::new();
    greeter.hello(&mut out);
    w.write_all(&out).await.map_err(io_error)?;
    // Over TLS the record may wait in the session until flushed.
    w.flush().await.map_err(io_error)?;
    let mut reader = FrameReader::<Native>::new(HANDSHAKE_FRAME_MAX, READ_BYTES);
    while !greeter.is_done() {
        let chunk = reader.fill(r, |_| Some(until)).await.map_err(read_error)?;
        let used = greeter.feed(&chunk)?;
        reader.keep(&chunk, used);
    }
    let (info, map) = greeter.finish()?;
    reader.set_limits(info.frame_bytes_max as usize, READ_BYTES);
    // Deliveries come in large frames of like sizes (`deliver_batch_max`
    // entries): read each whole into a buffer of its size.
    reader.expect_whole_frames();
    Ok(Greeting { info, map, reader })
}
