//! TCP listeners.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;

use super::conn::spawn_connection;
use crate::config::LogTypes;
use crate::log::strerror;
use crate::server::{ListenerShared, Shared};

/// Too many open files in the process (`EMFILE`) and in the system (`ENFILE`), as Linux numbers
/// them.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// A bound listening socket.
#[derive(Debug)]
pub struct Listener {
    socket: TcpListener,
}

/// Binds `addr` as Mosquitto does: `SO_REUSEADDR` so that a restart does not wait for
/// `TIME_WAIT`, `IPV6_V6ONLY` on IPv6 sockets so that `0.0.0.0` and `::` on the same port can
/// both be bound, and `SO_BINDTODEVICE` when `interface` is given (`bind_interface`).
///
/// # Errors
/// The bind failure (address in use, permission denied, no such interface, ...).
pub async fn bind(addr: SocketAddr, interface: Option<&str>) -> io::Result<Listener> {
    use socket2::{Domain, Protocol, Socket, Type};

    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Some(interface) = interface {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("bind_interface {interface}: {e}")))?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // Mosquitto's backlog.
    socket.listen(100)?;
    Ok(Listener {
        socket: TcpListener::from_std(socket.into())?,
    })
}

impl Listener {
    /// The address actually bound (the port is chosen by the system when 0 was asked for).
    ///
    /// # Errors
    /// When the socket cannot report it.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Accepts connections for ever, each served by its own task.
    pub async fn run(self, shared: Arc<Shared>, listener: Arc<ListenerShared>) {
        loop {
            let (stream, peer) = match self.socket.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: say so and keep accepting.
                    if matches!(error.raw_os_error(), Some(EMFILE | ENFILE)) {
                        shared.log.warning(
                            "Unable to accept new connection, system socket count has been \
                             exceeded. Try increasing \"ulimit -n\" or equivalent.",
                        );
                    } else {
                        shared.log.error(format_args!(
                            "Unable to accept new connection: {}.",
                            strerror(&error)
                        ));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            shared
                .broker
                .counters
                .sockets
                .fetch_add(1, Ordering::Relaxed);
            let Some(slot) = ConnectionSlot::take(&listener) else {
                shared.log.connection(
                    LogTypes::NOTICE,
                    format_args!(
                        "Client connection from {} denied: max_connections exceeded.",
                        peer.ip()
                    ),
                );
                drop(stream);
                continue;
            };
            // The slot lives as long as the connection.
            spawn_connection(Arc::clone(&shared), Arc::clone(&slot.0), stream, peer, slot);
        }
    }
}

/// One of the listener's `max_connections`; given back when the connection ends.
struct ConnectionSlot(Arc<ListenerShared>);

impl ConnectionSlot {
    fn take(listener: &Arc<ListenerShared>) -> Option<Self> {
        let count: &AtomicUsize = &listener.connections;
        let previous = count.fetch_add(1, Ordering::AcqRel);
        if listener.max_connections.is_some_and(|max| previous >= max) {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot(Arc::clone(listener)))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
