//! The async client's errors.

use std::io;
use std::sync::Arc;

use pigeon_proto::{StringError, TopicError};

use crate::state::{DisconnectReason, RequestError};
use crate::tls::TlsError;

/// What can go wrong with the async client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A string option (client identifier, user name, will topic) is not a valid MQTT string.
    #[error("invalid {what}: {error}")]
    InvalidString {
        /// Which option.
        what: &'static str,
        /// Why.
        error: StringError,
    },
    /// A topic name (to publish to, or of the will) is not valid.
    #[error("invalid topic name: {0}")]
    InvalidTopic(TopicError),
    /// A topic filter (to subscribe to or unsubscribe from) is not valid.
    #[error("invalid topic filter: {0}")]
    InvalidFilter(TopicError),
    /// The options cannot make a valid CONNECT.
    #[error("invalid connect options: {0}")]
    InvalidOptions(&'static str),
    /// A server URL could not be parsed ([`ConnectOptions::from_url`](crate::ConnectOptions::from_url)).
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// TLS failed: the options could not be loaded (a missing CA file, say), or the handshake
    /// failed (`certificate verify failed: ...`).
    #[error("{0}")]
    Tls(TlsError),
    /// The WebSocket handshake failed (the server answered 404, refused the subprotocol...).
    #[error("WebSocket handshake failed: {0}")]
    WebSocket(String),
    /// The transport failed (resolving, connecting, reading or writing).
    #[error("I/O error: {0}")]
    Io(Arc<io::Error>),
    /// The transport did not connect within the connect timeout.
    #[error("timed out connecting")]
    ConnectTimeout,
    /// The connection ended: CONNACK refused it, it was lost, or the server closed it.
    #[error("{0}")]
    Disconnected(DisconnectReason),
    /// The request was refused or failed (see [`RequestError`]).
    #[error("{0}")]
    Request(RequestError),
    /// The client's task is over ([`Client::disconnect`](crate::Client::disconnect) was
    /// called, or the connection ended without automatic reconnection).
    #[error("the client is closed")]
    Closed,
    /// The request channel is full (only from the `try_` methods): back-pressure.
    #[error("the client's request channel is full")]
    Full,
}

impl Error {
    /// The reason code of the CONNACK that refused the connection, if that is what happened.
    pub fn connack_reason(&self) -> Option<pigeon_proto::ReasonCode> {
        match self {
            Error::Disconnected(DisconnectReason::Refused(ack)) => Some(ack.reason),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}
