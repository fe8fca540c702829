//! Transports: how the client reaches the server.
//!
//! The client's task sees a transport only as a byte stream ([`AsyncRead`] + [`AsyncWrite`]),
//! boxed, so a new transport is one more [`Transport`] variant and one more arm in
//! [`Transport::connect`]: TLS wraps the TCP stream, WebSockets adapt their binary frames to a
//! byte stream (MQTT over WebSockets carries the same bytes, section 6).

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How to reach the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// Plain TCP (MQTT's port 1883), with `TCP_NODELAY`.
    #[default]
    Tcp,
}

/// A connected byte stream.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A connected transport of any kind.
pub(crate) type BoxedStream = Box<dyn Stream>;

impl Transport {
    /// Connects to `host` (a name or an address) and `port`, trying each address the name
    /// resolves to in turn.
    pub(crate) async fn connect(&self, host: &str, port: u16) -> io::Result<BoxedStream> {
        match self {
            Transport::Tcp => {
                let stream = TcpStream::connect((host, port)).await?;
                // MQTT packets are small and latency matters more than segment count.
                stream.set_nodelay(true)?;
                Ok(Box::new(stream))
            }
        }
    }
}
