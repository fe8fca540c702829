//! [`ConnectOptions`]: everything [`Client::connect`](crate::Client::connect) needs.

use std::net::IpAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use pigeon_proto::properties::{ConnectProperties, WillProperties};
use pigeon_proto::{MqttString, Protocol, QoS, TopicName, Will};

use crate::error::Error;
use crate::state::SessionConfig;
use crate::tls::TlsOptions;
use crate::transport::Transport;
use crate::url::ServerUrl;
use crate::websocket::WebSocketOptions;

/// Automatic reconnection: the delay before attempt `n` (counted from 0 since the last
/// successful CONNACK) is `initial * 2^n`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first reconnection attempt.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// Delays from `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// The delay before reconnection attempt `attempt` (0 for the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

impl Default for Backoff {
    /// 1 second, doubling up to 1 minute.
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// The Will, as given to the builder (checked when connecting).
#[derive(Debug, Clone)]
struct WillOptions {
    topic: String,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    properties: WillProperties,
}

/// Options for [`Client::connect`](crate::Client::connect): where to connect, the CONNECT
/// packet, the session's limits, and the client task's behaviour.
///
/// A builder: each method takes and returns the options. Strings are checked by
/// [`session_config`](Self::session_config), which `connect` calls.
///
/// ```
/// use std::time::Duration;
/// use pigeon_client::{Backoff, ConnectOptions, Protocol, QoS};
///
/// let options = ConnectOptions::new("localhost", 1883)
///     .protocol(Protocol::V5)
///     .client_id("sensor-7")
///     .clean_start(false)
///     .session_expiry_interval(3600)
///     .keep_alive(30)
///     .credentials("user", Some("secret"))
///     .will("sensors/7/status", "offline", QoS::AtLeastOnce, true)
///     .reconnect(Backoff::new(Duration::from_millis(500), Duration::from_secs(30)));
/// let config = options.session_config().unwrap();
/// assert_eq!(config.client_id, "sensor-7");
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    host: String,
    port: u16,
    transport: Transport,
    client_id: String,
    username: Option<String>,
    will: Option<WillOptions>,
    /// Everything else of the session, strings aside.
    session: SessionConfig,
    reconnect: Option<Backoff>,
    request_capacity: usize,
    event_capacity: usize,
    packet_events: bool,
    local: LocalEnd,
}

/// Where the client's end of the connection is: a local address to bind (`-A`), or a Unix
/// domain socket to connect through instead of TCP (`--unix`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalEnd {
    /// The local IP address to bind before connecting over TCP.
    pub bind_address: Option<IpAddr>,
    /// A Unix domain socket to connect to instead of `host:port` (plain MQTT only).
    pub unix_socket: Option<PathBuf>,
}

impl ConnectOptions {
    /// Options to connect to `host` (a name or an IP address) on `port`, with the defaults of
    /// [`SessionConfig`]: MQTT 3.1.1, an empty client identifier (assigned by the server),
    /// Clean Start, Keep Alive 60 s, no automatic reconnection.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ConnectOptions {
            host: host.into(),
            port,
            transport: Transport::Tcp,
            client_id: String::new(),
            username: None,
            will: None,
            session: SessionConfig::default(),
            reconnect: None,
            request_capacity: 64,
            event_capacity: 256,
            packet_events: false,
            local: LocalEnd::default(),
        }
    }

    /// The server's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Options for the server at `url`: `mqtt://` (or `tcp://`), `mqtts://` (or `ssl://`),
    /// `ws://` or `wss://`, then `[user[:password]@]host[:port][/path]`. The transport comes
    /// from the scheme (with default TLS options: the system's trust store), the WebSocket
    /// path from the path (`/mqtt` when there is none; the path of `mqtt://` and `mqtts://`
    /// URLs is ignored), the credentials from the user information. See [`ServerUrl`] to read
    /// the parts.
    ///
    /// ```
    /// use pigeon_client::{ConnectOptions, TlsOptions, Transport};
    ///
    /// let options = ConnectOptions::from_url("wss://user:pass@broker.example:8081/mqtt")
    ///     .unwrap()
    ///     .tls(TlsOptions::new().ca_file("ca.crt"))
    ///     .client_id("dashboard");
    /// assert_eq!((options.host(), options.port()), ("broker.example", 8081));
    /// assert!(matches!(options.transport_kind(), Transport::SecureWebSocket(..)));
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidUrl`].
    pub fn from_url(url: &str) -> Result<Self, Error> {
        Ok(ServerUrl::parse(url)?.connect_options())
    }

    /// Binds the TCP connection to this local address before connecting, like
    /// `mosquitto_pub -A`.
    #[must_use]
    pub fn bind_address(mut self, address: IpAddr) -> Self {
        self.local.bind_address = Some(address);
        self
    }

    /// Connects through the Unix domain socket at `path` instead of TCP (plain MQTT: TLS and
    /// WebSocket settings are ignored), like `mosquitto_pub --unix`.
    #[must_use]
    pub fn unix_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.local.unix_socket = Some(path.into());
        self
    }

    /// The local end: bind address or Unix socket.
    pub fn local_end(&self) -> &LocalEnd {
        &self.local
    }

    /// How the bytes travel (see [`Transport`]).
    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Uses TLS with these options: TCP becomes TLS, a WebSocket a secure WebSocket, and a
    /// transport with TLS already gets these options instead.
    #[must_use]
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.transport = match self.transport {
            Transport::WebSocket(ws) | Transport::SecureWebSocket(_, ws) => {
                Transport::SecureWebSocket(tls, ws)
            }
            Transport::Tcp | Transport::Tls(_) => Transport::Tls(tls),
        };
        self
    }

    /// Uses a WebSocket with these options: TCP becomes a WebSocket, TLS a secure WebSocket,
    /// and a WebSocket gets these options instead.
    #[must_use]
    pub fn websocket(mut self, websocket: WebSocketOptions) -> Self {
        self.transport = match self.transport {
            Transport::Tls(tls) | Transport::SecureWebSocket(tls, _) => {
                Transport::SecureWebSocket(tls, websocket)
            }
            Transport::Tcp | Transport::WebSocket(_) => Transport::WebSocket(websocket),
        };
        self
    }

    /// The transport.
    pub fn transport_kind(&self) -> &Transport {
        &self.transport
    }

    /// The protocol version (3.1.1 by default).
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.session.protocol = protocol;
        self
    }

    /// The Client Identifier. Empty (the default) asks the server to assign one.
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Clean Session (MQTT 3.x) or Clean Start (5.0); true by default. See
    /// [`state`](crate::state) for what reconnections send.
    #[must_use]
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.session.clean_start = clean;
        self
    }

    /// The Session Expiry Interval in seconds (MQTT 5.0; 0, the default, ends the session with
    /// the connection; `u32::MAX` never expires).
    #[must_use]
    pub fn session_expiry_interval(mut self, secs: u32) -> Self {
        self.session.properties.session_expiry_interval = Some(secs);
        self
    }

    /// Keep Alive in seconds (60 by default; 0 turns it off).
    #[must_use]
    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.session.keep_alive = secs;
        self
    }

    /// A user name and, optionally, a password.
    #[must_use]
    pub fn credentials(
        mut self,
        username: impl Into<String>,
        password: Option<impl Into<Bytes>>,
    ) -> Self {
        self.username = Some(username.into());
        self.session.password = password.map(Into::into);
        self
    }

    /// A password without a user name (MQTT 5.0 only).
    #[must_use]
    pub fn password(mut self, password: impl Into<Bytes>) -> Self {
        self.session.password = Some(password.into());
        self
    }

    /// The Will Message, published by the server when the connection ends without
    /// DISCONNECT.
    #[must_use]
    pub fn will(
        mut self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Self {
        self.will = Some(WillOptions {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            properties: WillProperties::default(),
        });
        self
    }

    /// The Will Properties (MQTT 5.0); needs [`will`](Self::will) first.
    #[must_use]
    pub fn will_properties(mut self, properties: WillProperties) -> Self {
        if let Some(will) = &mut self.will {
            will.properties = properties;
        }
        self
    }

    /// All the MQTT 5.0 CONNECT properties at once (replacing those set so far, the Session
    /// Expiry Interval and the default Topic Alias Maximum included).
    #[must_use]
    pub fn properties(mut self, properties: ConnectProperties) -> Self {
        self.session.properties = properties;
        self
    }

    /// The MQTT 5.0 CONNECT properties, to change in place (User Properties, Request Problem
    /// Information, ...).
    pub fn properties_mut(&mut self) -> &mut ConnectProperties {
        &mut self.session.properties
    }

    /// Receive Maximum (MQTT 5.0): how many QoS 2 messages the server may have waiting for
    /// PUBREL. 0 leaves it out (65,535).
    #[must_use]
    pub fn receive_maximum(mut self, max: u16) -> Self {
        self.session.properties.receive_maximum = NonZeroU16::new(max);
        self
    }

    /// Maximum Packet Size (MQTT 5.0): larger packets from the server close the connection.
    /// 0 leaves it out (no limit).
    #[must_use]
    pub fn maximum_packet_size(mut self, max: u32) -> Self {
        self.session.properties.maximum_packet_size = NonZeroU32::new(max);
        self
    }

    /// Topic Alias Maximum (MQTT 5.0): how many topic aliases the server may use towards the
    /// client (16 by default; 0 for none).
    #[must_use]
    pub fn topic_alias_maximum(mut self, max: u16) -> Self {
        self.session.properties.topic_alias_maximum = (max != 0).then_some(max);
        self
    }

    /// The most QoS 1 and 2 messages in flight (20 by default); the server's Receive Maximum
    /// lowers it.
    #[must_use]
    pub fn max_inflight(mut self, max: u16) -> Self {
        self.session.max_inflight = max;
        self
    }

    /// The most messages queued behind the in-flight window (1000 by default). When the queue
    /// is full, [`Client::send`](crate::Client::send) waits.
    #[must_use]
    pub fn max_queued(mut self, max: usize) -> Self {
        self.session.max_queued = max;
        self
    }

    /// How long connecting may take: the transport, then CONNACK (30 s by default, each).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.session.connect_timeout = timeout;
        self
    }

    /// How long to wait for PINGRESP (one Keep Alive period by default).
    #[must_use]
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.session.ping_timeout = Some(timeout);
        self
    }

    /// Reconnects automatically with this backoff when an established connection is lost
    /// (not when the first connection fails, nor after
    /// [`Client::disconnect`](crate::Client::disconnect)). Off by default.
    #[must_use]
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = Some(backoff);
        self
    }

    /// The automatic reconnection backoff, if any.
    pub fn reconnect_backoff(&self) -> Option<Backoff> {
        self.reconnect
    }

    /// Capacity of the channels from the handles to the client's task (64 by default): how
    /// many requests may wait for the task before callers wait.
    #[must_use]
    pub fn request_capacity(mut self, capacity: usize) -> Self {
        self.request_capacity = capacity.max(1);
        self
    }

    /// Capacity of the event stream (256 by default). When the application does not keep up,
    /// the task stops reading from the server.
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Reports every packet written and read as [`Event::PacketSent`](crate::Event::PacketSent)
    /// and [`Event::PacketReceived`](crate::Event::PacketReceived), in order with the other
    /// events (for debug output such as `mosquitto_sub -d`). Off by default.
    #[must_use]
    pub fn packet_events(mut self, on: bool) -> Self {
        self.packet_events = on;
        self
    }

    pub(crate) fn capacities(&self) -> (usize, usize) {
        (self.request_capacity, self.event_capacity)
    }

    pub(crate) fn wants_packet_events(&self) -> bool {
        self.packet_events
    }

    /// The state machine's configuration: the strings checked and converted.
    ///
    /// # Errors
    /// [`Error::InvalidString`] or [`Error::InvalidTopic`] for a string MQTT cannot carry,
    /// [`Error::InvalidOptions`] for a password without a user name in MQTT 3.x.
    pub fn session_config(&self) -> Result<SessionConfig, Error> {
        let string = |what, s: &str| {
            MqttString::try_from(s).map_err(|error| Error::InvalidString { what, error })
        };
        let mut config = self.session.clone();
        config.client_id = string("client identifier", &self.client_id)?;
        config.username = self
            .username
            .as_deref()
            .map(|u| string("user name", u))
            .transpose()?;
        config.will = match &self.will {
            Some(w) => Some(Will {
                topic: TopicName::try_from(w.topic.as_str()).map_err(Error::InvalidTopic)?,
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
                properties: w.properties.clone(),
            }),
            None => None,
        };
        if config.password.is_some() && config.username.is_none() && !config.protocol.is_v5() {
            return Err(Error::InvalidOptions(
                "MQTT 3.x cannot send a password without a user name",
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn strings_are_checked() {
        let bad = ConnectOptions::new("h", 1).client_id("a\0b");
        assert!(matches!(
            bad.session_config(),
            Err(Error::InvalidString {
                what: "client identifier",
                ..
            })
        ));
        let bad = ConnectOptions::new("h", 1).will("a/#", "x", QoS::AtMostOnce, false);
        assert!(matches!(bad.session_config(), Err(Error::InvalidTopic(_))));
        let bad = ConnectOptions::new("h", 1).password("p");
        assert!(matches!(
            bad.session_config(),
            Err(Error::InvalidOptions(_))
        ));
        let ok = ConnectOptions::new("h", 1)
            .protocol(Protocol::V5)
            .password("p");
        assert!(ok.session_config().is_ok());
    }

    #[test]
    fn tls_and_websocket_combine() {
        let tls = TlsOptions::new().insecure(true);
        let ws = WebSocketOptions::new().path("/ws");
        let options = ConnectOptions::new("h", 1).tls(tls.clone());
        assert_eq!(options.transport_kind(), &Transport::Tls(tls.clone()));
        let options = options.websocket(ws.clone());
        assert_eq!(
            options.transport_kind(),
            &Transport::SecureWebSocket(tls.clone(), ws.clone())
        );
        let options = ConnectOptions::new("h", 1)
            .websocket(ws.clone())
            .tls(tls.clone());
        assert_eq!(
            options.transport_kind(),
            &Transport::SecureWebSocket(tls, ws)
        );
    }

    #[test]
    fn builder_sets_the_session() {
        let config = ConnectOptions::new("h", 1)
            .protocol(Protocol::V5)
            .client_id("c")
            .clean_start(false)
            .session_expiry_interval(10)
            .keep_alive(5)
            .credentials("u", Some("p"))
            .receive_maximum(8)
            .topic_alias_maximum(0)
            .max_inflight(3)
            .max_queued(7)
            .session_config()
            .unwrap();
        assert_eq!(config.client_id, "c");
        assert!(!config.clean_start);
        assert_eq!(config.properties.session_expiry_interval, Some(10));
        assert_eq!(config.keep_alive, 5);
        assert_eq!(config.username.as_ref().map(|u| u.as_str()), Some("u"));
        assert_eq!(config.password.as_deref(), Some(&b"p"[..]));
        assert_eq!(config.properties.receive_maximum, NonZeroU16::new(8));
        assert_eq!(config.properties.topic_alias_maximum, None);
        assert_eq!((config.max_inflight, config.max_queued), (3, 7));
    }
}
