//! systemd's readiness protocol (`sd_notify(3)`), without libsystemd: one
//! datagram of `KEY=VALUE` lines to the unix socket `$NOTIFY_SOCKET` names
//! (a path, or `@name` in the abstract namespace). `ringmq serve` sends
//! `READY=1` once the broker serves (`Type=notify` in the unit) and
//! `STOPPING=1` when it begins to stop.

use std::io;
use std::os::unix::net::UnixDatagram;

/// The longest socket name accepted (a `sockaddr_un` path holds 108 bytes).
const SOCKET_NAME_BYTES_MAX: usize = 107;

/// Sends `state` to the service manager. `Ok(false)`: `$NOTIFY_SOCKET` is
/// not set (not run by systemd with `Type=notify`), nothing sent.
pub fn sd_notify(state: &str) -> io::Result<bool> {
    let Some(name) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(false) };
    let name = name.to_str().ok_or_else(|| io::Error::other("NOTIFY_SOCKET is not UTF-8"))?;
    send_to(name, state.as_bytes())?;
    Ok(true)
}

/// One datagram to the socket `name` names.
fn send_to(name: &str, datagram: &[u8]) -> io::Result<()> {
    if name.is_empty() || name.len() > SOCKET_NAME_BYTES_MAX {
        return Err(io::Error::other(format!("NOTIFY_SOCKET of {} bytes is not a socket name", name.len())));
    }
    let sock = UnixDatagram::unbound()?;
    let sent = if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())?;
        sock.send_to_addr(datagram, &addr)?
    } else if name.starts_with('/') {
        sock.send_to(datagram, name)?
    } else {
        return Err(io::Error::other(format!("NOTIFY_SOCKET {name:?} is neither a path nor @abstract")));
    };
    if sent != datagram.len() {
        return Err(io::Error::other("the notification datagram was cut short"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        send_to(path.to_str().unwrap_or_default(), b"READY=1").unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[..n], b"READY=1");
        for bad in ["", "relative/path", "vsock:2:1", &format!("/{}", "x".repeat(200))] {
            assert!(send_to(bad, b"READY=1").is_err(), "{bad:?}");
        }
    }
}
