//! Transports: how the client reaches the server.
//!
//! The client's task sees a transport only as a byte stream ([`AsyncRead`] + [`AsyncWrite`]),
//! boxed, so a new transport is one more [`Transport`] variant and one more arm in
//! [`Connector::connect`]: TLS wraps the TCP stream, WebSockets adapt their binary frames to a
//! byte stream (MQTT over WebSockets carries the same bytes, section 6).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use crate::error::Error;
use crate::options::LocalEnd;
use crate::tls::{TlsError, TlsOptions};
use crate::websocket::{self, HandshakeError, WebSocketOptions};

/// How to reach the server.
///
/// [`ConnectOptions::tls`](crate::ConnectOptions::tls) and
/// [`ConnectOptions::websocket`](crate::ConnectOptions::websocket) combine TLS and WebSockets;
/// [`ConnectOptions::from_url`](crate::ConnectOptions::from_url) picks the transport from a
/// URL's scheme.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// Plain TCP (MQTT's port 1883), with `TCP_NODELAY`.
    #[default]
    Tcp,
    /// TLS over TCP (port 8883, `mqtts://`).
    Tls(TlsOptions),
    /// WebSocket over TCP (`ws://`).
    WebSocket(WebSocketOptions),
    /// WebSocket over TLS (`wss://`).
    SecureWebSocket(TlsOptions, WebSocketOptions),
}

impl Transport {
    /// The TLS options, if the transport uses TLS.
    pub fn tls_options(&self) -> Option<&TlsOptions> {
        match self {
            Transport::Tls(tls) | Transport::SecureWebSocket(tls, _) => Some(tls),
            Transport::Tcp | Transport::WebSocket(_) => None,
        }
    }

    /// The WebSocket options, if the transport is a WebSocket.
    pub fn websocket_options(&self) -> Option<&WebSocketOptions> {
        match self {
            Transport::WebSocket(ws) | Transport::SecureWebSocket(_, ws) => Some(ws),
            Transport::Tcp | Transport::Tls(_) => None,
        }
    }

    /// Whether the transport uses TLS.
    pub fn is_tls(&self) -> bool {
        self.tls_options().is_some()
    }

    /// Loads what the transport needs (certificates and keys) once for every connection.
    pub(crate) fn connector(&self) -> Result<Connector, Error> {
        let tls = match self.tls_options() {
            Some(options) => Some((
                TlsConnector::from(options.client_config().map_err(Error::Tls)?),
                Arc::new(options.clone()),
            )),
            None => None,
        };
        Ok(Connector {
            tls,
            websocket: self.websocket_options().cloned().map(Arc::new),
            local: Arc::new(LocalEnd::default()),
        })
    }
}

/// A connected byte stream.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A connected transport of any kind.
pub(crate) type BoxedStream = Box<dyn Stream>;

/// A [`Transport`] ready to connect: the TLS configuration loaded.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: Option<(TlsConnector, Arc<TlsOptions>)>,
    websocket: Option<Arc<WebSocketOptions>>,
    local: Arc<LocalEnd>,
}

impl Connector {
    /// The same, with the client's end of the connection set (bind address, Unix socket).
    pub(crate) fn with_local(mut self, local: LocalEnd) -> Self {
        self.local = Arc::new(local);
        self
    }

    /// A TCP connection to `host:port`, from the bind address if one is set: each address the
    /// name resolves to is tried in turn (those of the bind address's family only).
    async fn tcp(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let Some(bind) = self.local.bind_address else {
            return TcpStream::connect((host, port)).await;
        };
        let mut last = io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{host} has no address of the bind address's family ({bind})"),
        );
        for addr in tokio::net::lookup_host((host, port)).await? {
            if addr.is_ipv4() != bind.is_ipv4() {
                continue;
            }
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(bind, 0))?;
            match socket.connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connects to `host` (a name or an address) and `port`, trying each address the name
    /// resolves to in turn, then does the TLS and WebSocket handshakes. Their failures come
    /// as [`io::Error`]s carrying a [`TlsError`] or a WebSocket handshake error, which
    /// [`transport_error`] recognises.
    pub(crate) async fn connect(&self, host: &str, port: u16) -> io::Result<BoxedStream> {
        if let Some(path) = &self.local.unix_socket {
            return Ok(Box::new(UnixStream::connect(path).await?));
        }
        let tcp = self.tcp(host, port).await?;
        // MQTT packets are small and latency matters more than segment count.
        tcp.set_nodelay(true)?;
        let host_header = host_header(host, port, self.tls.is_some());
        match &self.tls {
            None => self.websocket(tcp, &host_header).await,
            Some((connector, options)) => {
                let name = options
                    .server_name_for(host)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let stream = connector.connect(name, tcp).await.map_err(|e| {
                    match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                        Some(tls) => io::Error::new(e.kind(), TlsError::from_rustls(tls)),
                        None => e,
                    }
                })?;
                self.websocket(stream, &host_header).await
            }
        }
    }

    async fn websocket<S: Stream + 'static>(
        &self,
        stream: S,
        host_header: &str,
    ) -> io::Result<BoxedStream> {
        match &self.websocket {
            None => Ok(Box::new(stream)),
            Some(options) => Ok(Box::new(
                websocket::connect(stream, host_header, options).await?,
            )),
        }
    }
}

/// The `Host` header: the host (IPv6 addresses in brackets), and the port unless it is the
/// scheme's default.
fn host_header(host: &str, port: u16, tls: bool) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if port == if tls { 443 } else { 80 } {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// The client's error for a transport failure: [`Error::Tls`] and [`Error::WebSocket`] for
/// handshake failures, else `None` (a plain I/O error).
pub(crate) fn transport_error(error: &io::Error) -> Option<Error> {
    let inner = error.get_ref()?;
    if let Some(tls) = inner.downcast_ref::<TlsError>() {
        return Some(Error::Tls(tls.clone()));
    }
    if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
        return Some(Error::Tls(TlsError::from_rustls(tls)));
    }
    inner
        .downcast_ref::<HandshakeError>()
        .map(|ws| Error::WebSocket(ws.0.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers() {
        assert_eq!(host_header("example.com", 80, false), "example.com");
        assert_eq!(host_header("example.com", 443, true), "example.com");
        assert_eq!(host_header("example.com", 443, false), "example.com:443");
        assert_eq!(host_header("::1", 8080, false), "[::1]:8080");
    }

    #[test]
    fn handshake_errors_are_recognised() {
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let error = transport_error(&tls).unwrap();
        assert!(
            error.to_string().starts_with("certificate verify failed: "),
            "{error}"
        );
        let ws = io::Error::new(io::ErrorKind::InvalidData, HandshakeError("no".into()));
        assert!(matches!(transport_error(&ws), Some(Error::WebSocket(_))));
        assert!(transport_error(&io::ErrorKind::ConnectionRefused.into()).is_none());
    }
}
