//! systemd's service readiness protocol (`sd_notify(3)`), for `Type=notify` units: the
//! broker says `READY=1` once its listeners accept connections, `RELOADING=1` and `READY=1`
//! around a SIGHUP reload, and `STOPPING=1` when it shuts down. Without `NOTIFY_SOCKET` in the
//! environment (not started by systemd), nothing is sent.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::time::{ClockId, clock_gettime};

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to the service manager.
/// Returns whether there is one to tell.
///
/// # Errors
/// When `NOTIFY_SOCKET` names a socket that cannot be written to.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    send(&path, state)?;
    Ok(true)
}

/// Sends `state` to the datagram socket at `path` (`@name` for Linux's abstract namespace).
fn send(path: &OsStr, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let addr = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// The `RELOADING=1` message, with the `MONOTONIC_USEC` systemd wants beside it.
pub fn reloading() -> String {
    let usec = clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0);
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_path_and_abstract_sockets() {
        let dir = std::env::temp_dir().join(format!("pigeon-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("pigeon-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reloading_carries_a_monotonic_timestamp() {
        let msg = reloading();
        let usec: u64 = msg
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|n| n.parse().ok())
            .expect("RELOADING=1 and MONOTONIC_USEC");
        assert!(usec > 0);
    }
}
