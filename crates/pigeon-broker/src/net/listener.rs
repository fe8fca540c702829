//! TCP listeners.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

use super::serve_connection;
use crate::server::{ListenerShared, Shared};

/// A bound listening socket.
#[derive(Debug)]
pub struct Listener {
    socket: TcpListener,
}

/// Binds `addr`.
///
/// # Errors
/// The bind failure (address in use, permission denied, ...).
pub async fn bind(addr: SocketAddr) -> io::Result<Listener> {
    Ok(Listener {
        socket: TcpListener::bind(addr).await?,
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
                    shared
                        .log
                        .error(&format!("Unable to accept new connection: {error}."));
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(slot) = ConnectionSlot::take(&listener) else {
                shared.log.notice(&format!(
                    "Client connection from {peer} denied: max_connections exceeded."
                ));
                drop(stream);
                continue;
            };
            tokio::spawn(serve(Arc::clone(&shared), stream, peer, slot));
        }
    }
}

async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, slot: ConnectionSlot) {
    // The slot lives as long as the connection.
    serve_connection(shared, Arc::clone(&slot.0), stream, peer).await;
}

/// One of the listener's `max_connections`; given back when the connection ends.
struct ConnectionSlot(Arc<ListenerShared>);

impl ConnectionSlot {
    fn take(listener: &Arc<ListenerShared>) -> Option<Self> {
        let count: &AtomicUsize = &listener.connections;
        let previous = count.fetch_add(1, Ordering::AcqRel);
        if listener
            .settings
            .max_connections
            .is_some_and(|max| previous >= max)
        {
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
