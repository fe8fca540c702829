//! The client's protocol state machine, sans I/O: MQTT 3.1, 3.1.1 and 5.0.
//!
//! [`ClientState`] never touches a socket and never reads a clock. Its inputs are
//! - the transport's life: [`connection_opened`](ClientState::connection_opened) (writes
//!   CONNECT), [`connection_lost`](ClientState::connection_lost);
//! - decoded packets from the server ([`handle_packet`](ClientState::handle_packet)) and
//!   decoding errors ([`handle_decode_error`](ClientState::handle_decode_error));
//! - the application's commands: [`publish`](ClientState::publish),
//!   [`subscribe`](ClientState::subscribe), [`unsubscribe`](ClientState::unsubscribe),
//!   [`ping`](ClientState::ping), [`disconnect`](ClientState::disconnect);
//! - time: [`handle_timeout`](ClientState::handle_timeout) once
//!   [`poll_timeout`](ClientState::poll_timeout) is reached;
//!
//! each with `now` as an argument. Its outputs are packets to write
//! ([`poll_transmit`](ClientState::poll_transmit)), [`Event`]s
//! ([`poll_event`](ClientState::poll_event)) and the next deadline.
//!
//! ```
//! use pigeon_client::clock;
//! use pigeon_client::state::{ClientState, Event, SessionConfig};
//! use pigeon_proto::{ConnAck, Packet, PacketType};
//!
//! let mut state = ClientState::new(SessionConfig::default());
//! let t0 = clock::now();
//! state.connection_opened(t0);
//! let connect = state.poll_transmit().unwrap();
//! assert_eq!(connect.packet_type(), PacketType::Connect);
//! state.handle_packet(Packet::ConnAck(ConnAck::default()), t0);
//! assert!(matches!(state.poll_event(), Some(Event::Connected(c)) if !c.session_present));
//! ```
//!
//! # Sessions
//!
//! The session state the client keeps (section 4.1) is what it has in flight: QoS 1 and 2
//! messages sent and not completely acknowledged, and QoS 2 messages received and waiting for
//! PUBREL. Messages queued behind the in-flight window were never sent and are not part of it.
//!
//! - A CONNECT with Clean Start (Clean Session in 3.x) discards the session on both sides
//!   [MQTT-3.1.2-4] (3.1.1: [MQTT-3.1.2-6]): messages in flight fail with
//!   [`RequestError::SessionDiscarded`].
//! - A CONNACK with Session Present 0 after a CONNECT without Clean Start means the server has
//!   no session; the client discards its own the same way, since the identifiers it holds no
//!   longer mean anything to the server [MQTT-3.2.2-5]. MQTT 3.1 has no Session Present flag:
//!   there the server keeps the session exactly when Clean Session is 0, and the client
//!   assumes it did.
//! - A CONNACK with Session Present 1 resumes the session: unacknowledged PUBLISH packets are
//!   sent again with their original identifiers and DUP set, and PUBREL for those past PUBREC
//!   [MQTT-4.4.0-1], [MQTT-3.3.1-1], in their original order [MQTT-4.6.0-1]. A client that
//!   asked to resume is taken to have a session even when nothing is in flight, so
//!   [MQTT-3.2.2-4] (close when the server has a session and the client has none) does not
//!   apply to it; Session Present 1 in answer to Clean Start is the server's error
//!   [MQTT-3.2.2-2] (3.1.1: [MQTT-3.2.2-1]), and the client closes.
//! - SUBSCRIBE and UNSUBSCRIBE requests not yet acknowledged when the connection is lost are
//!   sent again on the next connection, whatever happened to the session.
//!
//! MQTT 5.0 reconnections (every [`connection_opened`](ClientState::connection_opened) after a
//! first successful CONNACK) ask to resume, with Clean Start 0, whatever
//! [`SessionConfig::clean_start`] says: in 5.0 the Session Expiry Interval decides whether the
//! server kept the session, and Clean Start only whether the first connection starts afresh.
//! In MQTT 3.x every CONNECT carries the configured Clean Session, since a 3.x session with
//! Clean Session 1 lasts exactly one network connection.
//!
//! # Flow control
//!
//! QoS 1 and 2 messages in flight are limited to [`SessionConfig::max_inflight`] and, in MQTT
//! 5.0, to the server's Receive Maximum [MQTT-3.3.4-7]. Messages beyond that wait in a queue
//! of at most [`SessionConfig::max_queued`] messages; past that [`ClientState::publish`]
//! refuses with [`RequestError::QueueFull`] and gives the message back. Before the first
//! CONNACK, and between connections, every message is queued.
//!
//! The server's other MQTT 5.0 limits are respected: Maximum QoS [MQTT-3.2.2-11], Retain
//! Available [MQTT-3.2.2-14], Maximum Packet Size [MQTT-3.2.2-15] and Server Keep Alive
//! [MQTT-3.2.2-21]. The client does not send Topic Aliases; it resolves those the server
//! sends, up to the Topic Alias Maximum it sent in CONNECT.
//!
//! # Keep alive
//!
//! With a non-zero Keep Alive the client sends PINGREQ when it has sent nothing for the Keep
//! Alive period [MQTT-3.1.2-20] (3.1.1: [MQTT-3.1.2-23]), and also when it has received
//! nothing for that long, so a connection that only publishes notices a dead server. The
//! connection is considered dead when no PINGRESP arrives within
//! [`SessionConfig::ping_timeout`] (by default the Keep Alive again) of the PINGREQ.
//!
//! # Protocol errors
//!
//! A packet the server may not send (CONNACK twice [MQTT-3.2.0-2], anything before CONNACK
//! [MQTT-3.2.0-1], SUBSCRIBE, AUTH since enhanced authentication is not supported...) or a
//! packet that does not decode closes the connection. In MQTT 5.0 the client first sends
//! DISCONNECT with the reason code; in 3.x it just closes, so that the server publishes the
//! Will as it should after an abnormal end.

mod inbound;
mod outbound;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pigeon_proto::properties::{
    AckProperties, ConnAckProperties, ConnectProperties, DisconnectProperties, SubscribeProperties,
    UnsubscribeProperties,
};
use pigeon_proto::{
    ConnAck, Connect, DecodeError, Decoder, Disconnect, MqttString, Packet, PacketId, PingReq,
    Protocol, PubAck, PubComp, PubRec, Publish, QoS, ReasonCode, SubAck, Subscribe,
    SubscriptionOptions, TopicFilter, UnsubAck, Unsubscribe, Will,
};

use self::inbound::Inbound;
use self::outbound::Outbound;

/// What the client asks for in CONNECT, and its own limits.
///
/// MQTT 5.0 CONNECT properties go in [`properties`](Self::properties): among them Session
/// Expiry Interval, Receive Maximum (the QoS 2 messages the server may have waiting for
/// PUBREL), Maximum Packet Size (applied to incoming packets by
/// [`ClientState::max_incoming_packet_size`]) and Topic Alias Maximum. MQTT 3.x leaves them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The protocol version (default 3.1.1, as Mosquitto's clients).
    pub protocol: Protocol,
    /// The Client Identifier. Empty asks the server to assign one (MQTT 3.1.1 allows that
    /// only with Clean Session); an identifier the server assigns in MQTT 5.0 is used for
    /// reconnections.
    pub client_id: MqttString,
    /// Clean Session (3.x) or Clean Start (5.0), default true. See the module documentation
    /// for what MQTT 5.0 reconnections send.
    pub clean_start: bool,
    /// Keep Alive in seconds, default 60; 0 turns pings off.
    pub keep_alive: u16,
    /// The User Name.
    pub username: Option<MqttString>,
    /// The Password (MQTT 3.x needs a user name with it).
    pub password: Option<Bytes>,
    /// The Will Message.
    pub will: Option<Will>,
    /// MQTT 5.0 CONNECT properties. The default sets Topic Alias Maximum 16. Enhanced
    /// authentication is not supported: with an Authentication Method the server's AUTH
    /// packets close the connection as a protocol error.
    pub properties: ConnectProperties,
    /// The most QoS 1 and 2 messages in flight at once (default 20, as Mosquitto's clients;
    /// 0 counts as 1). The server's Receive Maximum lowers it.
    pub max_inflight: u16,
    /// The most messages queued behind the window (default 1000). Past it,
    /// [`ClientState::publish`] refuses with [`RequestError::QueueFull`].
    pub max_queued: usize,
    /// How long to wait for CONNACK after CONNECT (default 30 s).
    pub connect_timeout: Duration,
    /// How long to wait for PINGRESP after PINGREQ; `None` (the default) waits one Keep
    /// Alive period.
    pub ping_timeout: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        let mut properties = ConnectProperties::default();
        properties.topic_alias_maximum = Some(DEFAULT_TOPIC_ALIAS_MAXIMUM);
        SessionConfig {
            protocol: Protocol::V311,
            client_id: MqttString::new(),
            clean_start: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
            properties,
            max_inflight: 20,
            max_queued: 1000,
            connect_timeout: Duration::from_secs(30),
            ping_timeout: None,
        }
    }
}

/// The Topic Alias Maximum [`SessionConfig::default`] sends in MQTT 5.0.
pub const DEFAULT_TOPIC_ALIAS_MAXIMUM: u16 = 16;

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No connection (before the first one, between two, or after the last).
    Disconnected,
    /// CONNECT written; waiting for CONNACK.
    Connecting,
    /// CONNACK accepted the connection.
    Connected,
}

/// Identifies one request (publish, subscribe, unsubscribe) in the [`Event`] that completes
/// it. Unlike Packet Identifiers these are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// The number: requests are numbered from 0 in the order they were made.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a publish ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The Packet Identifier the message was sent under; `None` at QoS 0.
    pub packet_id: Option<PacketId>,
    /// The reason code of the PUBACK (QoS 1), or of the PUBCOMP, or of the PUBREC when it
    /// failed or the PUBCOMP reports plain success (QoS 2). Always Success at QoS 0 and in
    /// MQTT 3.x; in 5.0, 0x80 and above are refusals.
    pub reason: ReasonCode,
    /// The acknowledgement's properties (MQTT 5.0 Reason String, User Properties).
    pub properties: AckProperties,
}

impl PublishOutcome {
    /// A QoS 0 message handed to the transport.
    fn sent() -> Self {
        PublishOutcome {
            packet_id: None,
            reason: ReasonCode::SUCCESS,
            properties: AckProperties::default(),
        }
    }

    /// Whether the server accepted the message (reason below 0x80).
    pub fn is_success(&self) -> bool {
        !self.reason.is_error()
    }
}

/// A successful CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// Whether the server resumed a session (for MQTT 3.1, which has no such flag: whether
    /// the client asked to resume).
    pub session_present: bool,
    /// The CONNACK properties (MQTT 5.0; empty in 3.x).
    pub properties: ConnAckProperties,
}

/// What the state machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server accepted the connection.
    Connected(Box<Connected>),
    /// A message from the server, with its topic resolved if it came by Topic Alias. A QoS 2
    /// message is reported once, however often the server sends it.
    Message(Publish),
    /// A publish is complete: a QoS 0 message was handed to the transport, a QoS 1 message
    /// was answered by PUBACK, a QoS 2 message by PUBCOMP (or by a failing PUBREC).
    Published {
        /// The request.
        request: RequestId,
        /// The acknowledgement.
        outcome: PublishOutcome,
    },
    /// A SUBSCRIBE was answered.
    Subscribed {
        /// The request.
        request: RequestId,
        /// The SUBACK: one reason code per filter, in order.
        ack: SubAck,
    },
    /// An UNSUBSCRIBE was answered.
    Unsubscribed {
        /// The request.
        request: RequestId,
        /// The UNSUBACK (its reason codes are empty in MQTT 3.x).
        ack: UnsubAck,
    },
    /// A request that was accepted failed later, before the server answered it.
    Failed {
        /// The request.
        request: RequestId,
        /// Why.
        error: RequestError,
    },
    /// The connection ended. Anything to write (a DISCONNECT) is in the transmit queue; the
    /// driver writes it and closes the transport.
    Disconnected(DisconnectReason),
}

/// A rule the server broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The MQTT 5.0 reason code for the DISCONNECT that reports it.
    pub reason: ReasonCode,
    /// The normative statement broken, where there is one.
    pub rule: Option<&'static str>,
    /// What happened.
    pub what: &'static str,
}

impl Violation {
    fn protocol(what: &'static str, rule: Option<&'static str>) -> Self {
        Violation {
            reason: ReasonCode::PROTOCOL_ERROR,
            rule,
            what,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)?;
        if let Some(rule) = self.rule {
            write!(f, " [{rule}]")?;
        }
        Ok(())
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The application disconnected.
    Local,
    /// The server refused the connection with this CONNACK.
    Refused(Box<ConnAck>),
    /// The server sent DISCONNECT (MQTT 5.0).
    Server(Box<Disconnect>),
    /// No CONNACK within the connect timeout.
    ConnectTimeout,
    /// No PINGRESP within the ping timeout.
    KeepAliveTimeout,
    /// The transport closed or failed.
    ConnectionLost,
    /// The server sent bytes that are not a valid packet.
    Malformed(DecodeError),
    /// The server broke the protocol.
    ProtocolError(Violation),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Local => f.write_str("disconnected by the client"),
            DisconnectReason::Refused(ack) => write!(
                f,
                "connection refused: {} ({})",
                ack.reason.description(pigeon_proto::PacketType::ConnAck),
                ack.reason
            ),
            DisconnectReason::Server(d) => write!(
                f,
                "disconnected by the server: {} ({})",
                d.reason.description(pigeon_proto::PacketType::Disconnect),
                d.reason
            ),
            DisconnectReason::ConnectTimeout => f.write_str("no CONNACK in time"),
            DisconnectReason::KeepAliveTimeout => f.write_str("no PINGRESP in time"),
            DisconnectReason::ConnectionLost => f.write_str("connection lost"),
            DisconnectReason::Malformed(e) => write!(f, "malformed packet from the server: {e}"),
            DisconnectReason::ProtocolError(v) => write!(f, "protocol error by the server: {v}"),
        }
    }
}

/// Why a request was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The message queue is full ([`SessionConfig::max_queued`]): back-pressure.
    #[error("the message queue is full")]
    QueueFull,
    /// The message was in flight when the session state was discarded (Clean Start, or the
    /// server had no session) [MQTT-3.1.2-4], [MQTT-3.2.2-5]: it may or may not have arrived.
    #[error("the session was discarded with the message in flight")]
    SessionDiscarded,
    /// The server's Maximum QoS is lower than the message's [MQTT-3.2.2-11].
    #[error("the server accepts QoS {} at most", *.maximum as u8)]
    QosNotSupported {
        /// The server's Maximum QoS.
        maximum: QoS,
    },
    /// The server does not accept retained messages [MQTT-3.2.2-14].
    #[error("the server does not accept retained messages")]
    RetainNotSupported,
    /// The packet is larger than the server accepts [MQTT-3.2.2-15], or than MQTT allows.
    #[error("packet of {size} bytes exceeds the maximum packet size of {maximum} bytes")]
    PacketTooLarge {
        /// The packet's size.
        size: usize,
        /// The limit.
        maximum: u32,
    },
    /// The PUBLISH carries a Topic Alias or an empty topic: this client does not send aliases.
    #[error("the client does not send topic aliases")]
    TopicAliasNotSupported,
    /// SUBSCRIBE and UNSUBSCRIBE need at least one filter.
    #[error("no topic filters")]
    NoTopicFilters,
    /// All 65,535 Packet Identifiers are in use.
    #[error("all packet identifiers are in use")]
    PacketIdsExhausted,
    /// A non-zero Session Expiry Interval in DISCONNECT after a CONNECT without one
    /// [MQTT-3.14.2-2].
    #[error("session expiry interval set on DISCONNECT but not on CONNECT")]
    SessionExpiryNotAllowed,
}

/// A message [`ClientState::publish`] refused, given back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct PublishRejected {
    /// Why.
    pub error: RequestError,
    /// The message.
    pub publish: Box<Publish>,
}

/// The server's limits for the current connection (defaults until CONNACK says otherwise).
#[derive(Debug, Clone, Copy)]
struct Limits {
    protocol: Protocol,
    /// The in-flight window: the client's own maximum, lowered by Receive Maximum.
    window: usize,
    max_qos: QoS,
    retain_available: bool,
    max_packet_size: u32,
}

impl Limits {
    fn initial(config: &SessionConfig) -> Self {
        Limits {
            protocol: config.protocol,
            window: usize::from(config.max_inflight.max(1)),
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
            max_packet_size: Decoder::MAX_PACKET_SIZE,
        }
    }

    fn check_size(&self, packet: &Packet) -> Result<(), RequestError> {
        let size = packet.encoded_len(self.protocol);
        if size > self.max_packet_size as usize {
            return Err(RequestError::PacketTooLarge {
                size,
                maximum: self.max_packet_size,
            });
        }
        Ok(())
    }

    /// Checks a message against the limits; its packet identifier must be set (a placeholder
    /// for QoS 1 and 2) so that its size is exact.
    fn check_publish(&self, publish: &Publish) -> Result<(), RequestError> {
        if publish.qos > self.max_qos {
            return Err(RequestError::QosNotSupported {
                maximum: self.max_qos,
            });
        }
        if publish.retain && !self.retain_available {
            return Err(RequestError::RetainNotSupported);
        }
        let size = publish.encoded_len(self.protocol);
        if size > self.max_packet_size as usize {
            return Err(RequestError::PacketTooLarge {
                size,
                maximum: self.max_packet_size,
            });
        }
        Ok(())
    }
}

/// Packets to write and events, in order.
#[derive(Debug, Default)]
struct Output {
    transmit: VecDeque<Packet>,
    events: VecDeque<Event>,
}

/// The clocks of one connection.
#[derive(Debug, Clone, Copy)]
struct Timers {
    last_sent: Instant,
    last_received: Instant,
    /// When the PINGREQ still unanswered was sent.
    ping_sent: Option<Instant>,
    /// When CONNACK is due, while connecting.
    connack_deadline: Option<Instant>,
}

/// The protocol state of one MQTT client, across connections. See the module documentation.
#[derive(Debug)]
pub struct ClientState {
    config: SessionConfig,
    status: Status,
    /// The Client Identifier for the next CONNECT (the server may have assigned one).
    client_id: MqttString,
    /// Whether a CONNACK ever accepted a connection.
    connected_once: bool,
    /// Whether the current CONNECT asked for Clean Start.
    sent_clean: bool,
    limits: Limits,
    /// The Keep Alive in force (the server's in 5.0 when it sets one).
    keep_alive: Option<Duration>,
    timers: Option<Timers>,
    reads_paused: bool,
    outbound: Outbound,
    inbound: Inbound,
    next_request: u64,
    out: Output,
}

impl ClientState {
    /// A client with no connection yet.
    pub fn new(config: SessionConfig) -> Self {
        ClientState {
            status: Status::Disconnected,
            client_id: config.client_id.clone(),
            connected_once: false,
            sent_clean: false,
            limits: Limits::initial(&config),
            keep_alive: keep_alive(config.keep_alive),
            timers: None,
            reads_paused: false,
            outbound: Outbound::new(),
            inbound: Inbound::default(),
            next_request: 0,
            out: Output::default(),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The protocol version.
    pub fn protocol(&self) -> Protocol {
        self.config.protocol
    }

    /// Where the connection stands.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether CONNACK accepted the current connection.
    pub fn is_connected(&self) -> bool {
        self.status == Status::Connected
    }

    /// The Client Identifier the next CONNECT carries: the configured one, or the one the
    /// server assigned (MQTT 5.0).
    pub fn client_id(&self) -> &MqttString {
        &self.client_id
    }

    /// The Keep Alive in force: the configured one, or the server's (MQTT 5.0).
    pub fn keep_alive(&self) -> Option<Duration> {
        self.keep_alive
    }

    /// The largest packet the client accepts, for the [`Decoder`]: the Maximum Packet Size
    /// sent in an MQTT 5.0 CONNECT, else the largest MQTT allows.
    pub fn max_incoming_packet_size(&self) -> u32 {
        match self.config.protocol {
            Protocol::V5 => self
                .config
                .properties
                .maximum_packet_size
                .map_or(Decoder::MAX_PACKET_SIZE, |m| m.get()),
            _ => Decoder::MAX_PACKET_SIZE,
        }
    }

    /// QoS 1 and 2 messages in flight (sent, or waiting to be sent again, and not completely
    /// acknowledged).
    pub fn inflight_len(&self) -> usize {
        self.outbound.inflight_len()
    }

    /// Messages queued behind the in-flight window.
    pub fn queued_len(&self) -> usize {
        self.outbound.queued_len()
    }

    /// SUBSCRIBE and UNSUBSCRIBE requests waiting for their acknowledgement.
    pub fn pending_requests(&self) -> usize {
        self.outbound.requests_len()
    }

    /// Whether [`publish`](Self::publish) would accept a message now (of any QoS) rather than
    /// refuse it with [`RequestError::QueueFull`].
    pub fn can_publish(&self) -> bool {
        self.outbound.queued_len() < self.config.max_queued
            || (self.status == Status::Connected
                && self.outbound.can_send_now(QoS::ExactlyOnce, &self.limits))
    }

    /// The next packet to write.
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        self.out.transmit.pop_front()
    }

    /// Whether packets wait to be written.
    pub fn has_transmit(&self) -> bool {
        !self.out.transmit.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: CONNACK's deadline, the
    /// next PINGREQ, or the PINGRESP's deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timers.as_ref()?;
        match self.status {
            Status::Disconnected => None,
            Status::Connecting => t.connack_deadline,
            Status::Connected => {
                let keep_alive = self.keep_alive?;
                match t.ping_sent {
                    Some(_) if self.reads_paused => None,
                    Some(sent) => sent.checked_add(self.ping_timeout()),
                    None => t.last_sent.min(t.last_received).checked_add(keep_alive),
                }
            }
        }
    }

    fn ping_timeout(&self) -> Duration {
        self.config
            .ping_timeout
            .or(self.keep_alive)
            .unwrap_or(Duration::MAX)
    }

    /// Tells the state whether the driver reads from the transport. While it does not (the
    /// application is slow to take events), a PINGRESP may be waiting unread, so the PINGRESP
    /// deadline is suspended; when reading resumes, the server gets a full ping timeout again.
    pub fn set_reads_paused(&mut self, paused: bool, now: Instant) {
        if self.reads_paused
            && !paused
            && let Some(t) = &mut self.timers
            && t.ping_sent.is_some()
        {
            t.ping_sent = Some(now);
        }
        self.reads_paused = paused;
    }

    fn next_request(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    fn send(&mut self, packet: Packet, now: Instant) {
        self.out.transmit.push_back(packet);
        if let Some(t) = &mut self.timers {
            t.last_sent = now;
        }
    }

    /// Writes what the window and queue allow, when connected.
    fn fill(&mut self, now: Instant) {
        if self.status != Status::Connected {
            return;
        }
        let before = self.out.transmit.len();
        self.outbound.fill(&self.limits, &mut self.out);
        self.sent_since(before, now);
    }

    /// Records `now` as the last time something was sent, if packets were queued since the
    /// transmit queue was `before` long.
    fn sent_since(&mut self, before: usize, now: Instant) {
        if self.out.transmit.len() > before
            && let Some(t) = &mut self.timers
        {
            t.last_sent = now;
        }
    }

    /// Discards the session state: messages in flight fail, held QoS 2 identifiers are
    /// forgotten.
    fn discard_session(&mut self) {
        self.outbound.discard_session(&mut self.out);
        self.inbound.discard_session();
    }

    // ---------------------------------------------------------------------------------------
    // Transport
    // ---------------------------------------------------------------------------------------

    /// A new transport connection is open: writes CONNECT. Packets still waiting from an
    /// earlier connection are dropped. A connection still open is first closed as lost.
    pub fn connection_opened(&mut self, now: Instant) {
        if self.status != Status::Disconnected {
            self.close(DisconnectReason::ConnectionLost);
        }
        self.out.transmit.clear();
        let clean =
            self.config.clean_start && !(self.config.protocol.is_v5() && self.connected_once);
        if clean {
            // [MQTT-3.1.2-4] (3.1.1: [MQTT-3.1.2-6]): Clean Start discards the session.
            self.discard_session();
        }
        self.inbound.new_connection();
        self.sent_clean = clean;
        self.limits = Limits::initial(&self.config);
        self.keep_alive = keep_alive(self.config.keep_alive);
        let connect = Connect {
            protocol: self.config.protocol,
            bridge: false,
            clean_start: clean,
            keep_alive: self.config.keep_alive,
            properties: self.config.properties.clone(),
            client_id: self.client_id.clone(),
            will: self.config.will.clone(),
            username: self.config.username.clone(),
            password: self.config.password.clone(),
        };
        self.status = Status::Connecting;
        self.timers = Some(Timers {
            last_sent: now,
            last_received: now,
            ping_sent: None,
            connack_deadline: now.checked_add(self.config.connect_timeout),
        });
        self.send(Packet::Connect(Box::new(connect)), now);
    }

    /// The transport closed or failed. Unwritten packets are dropped; the session stays, for
    /// the next connection to resume.
    pub fn connection_lost(&mut self, _now: Instant) {
        self.close(DisconnectReason::ConnectionLost);
        self.out.transmit.clear();
    }

    fn close(&mut self, reason: DisconnectReason) {
        if self.status == Status::Disconnected {
            return;
        }
        self.status = Status::Disconnected;
        self.timers = None;
        self.reads_paused = false;
        self.outbound.connection_lost();
        self.out.events.push_back(Event::Disconnected(reason));
    }

    /// Closes over a rule the server broke: with DISCONNECT in MQTT 5.0, without in 3.x (so
    /// that the server publishes the Will).
    fn violation(&mut self, violation: Violation, now: Instant) {
        if self.status == Status::Disconnected {
            return;
        }
        if self.config.protocol.is_v5() {
            self.send(Packet::Disconnect(Disconnect::new(violation.reason)), now);
        }
        self.close(DisconnectReason::ProtocolError(violation));
    }

    /// The server's bytes did not decode: the connection closes (with DISCONNECT and the
    /// error's reason code in MQTT 5.0).
    pub fn handle_decode_error(&mut self, error: DecodeError, now: Instant) {
        if self.status == Status::Disconnected {
            return;
        }
        if self.config.protocol.is_v5() {
            self.send(
                Packet::Disconnect(Disconnect::new(error.reason_code())),
                now,
            );
        }
        self.close(DisconnectReason::Malformed(error));
    }

    /// Time has reached `now`: CONNACK overdue closes the connection, a ping due is sent, an
    /// overdue PINGRESP closes the connection.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(t) = self.timers else {
            return;
        };
        match self.status {
            Status::Disconnected => {}
            Status::Connecting => {
                if t.connack_deadline.is_some_and(|d| now >= d) {
                    self.close(DisconnectReason::ConnectTimeout);
                }
            }
            Status::Connected => {
                let Some(keep_alive) = self.keep_alive else {
                    return;
                };
                match t.ping_sent {
                    Some(sent) => {
                        let overdue = sent
                            .checked_add(self.ping_timeout())
                            .is_some_and(|d| now >= d);
                        if overdue && !self.reads_paused {
                            self.close(DisconnectReason::KeepAliveTimeout);
                        }
                    }
                    None => {
                        let due = t.last_sent.min(t.last_received).checked_add(keep_alive);
                        if due.is_some_and(|d| now >= d) {
                            self.send_ping(now);
                        }
                    }
                }
            }
        }
    }

    fn send_ping(&mut self, now: Instant) {
        self.send(Packet::PingReq(PingReq), now);
        if let Some(t) = &mut self.timers {
            t.ping_sent = Some(now);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Packets from the server
    // ---------------------------------------------------------------------------------------

    /// A packet from the server.
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) {
        match self.status {
            Status::Disconnected => return,
            Status::Connecting => {
                return match packet {
                    Packet::ConnAck(ack) => self.on_connack(ack, now),
                    _ => self.violation(
                        Violation::protocol("packet before CONNACK", Some("MQTT-3.2.0-1")),
                        now,
                    ),
                };
            }
            Status::Connected => {}
        }
        if let Some(t) = &mut self.timers {
            t.last_received = now;
        }
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, now),
            Packet::PubAck(ack) => {
                if self.outbound.on_puback(ack, &mut self.out) {
                    self.fill(now);
                }
            }
            Packet::PubRec(rec) => {
                let before = self.out.transmit.len();
                self.outbound
                    .on_pubrec(rec, self.config.protocol.is_v5(), &mut self.out);
                self.sent_since(before, now);
                self.fill(now);
            }
            Packet::PubRel(rel) => {
                let known = self.inbound.release(rel.packet_id);
                let mut comp = PubComp::new(rel.packet_id);
                if !known && self.config.protocol.is_v5() {
                    comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                self.send(Packet::PubComp(comp), now);
            }
            Packet::PubComp(comp) => {
                if self.outbound.on_pubcomp(comp, &mut self.out) {
                    self.fill(now);
                }
            }
            Packet::SubAck(ack) => {
                self.outbound.on_suback(ack, &mut self.out);
            }
            Packet::UnsubAck(ack) => {
                self.outbound.on_unsuback(ack, &mut self.out);
            }
            Packet::PingResp(_) => {
                if let Some(t) = &mut self.timers {
                    t.ping_sent = None;
                }
            }
            // No answer to a server's DISCONNECT: the server closes (section 3.14.4).
            Packet::Disconnect(disconnect) => {
                self.close(DisconnectReason::Server(Box::new(disconnect)));
            }
            Packet::ConnAck(_) => self.violation(
                Violation::protocol("second CONNACK", Some("MQTT-3.2.0-2")),
                now,
            ),
            Packet::Auth(_) => self.violation(
                Violation::protocol("AUTH without enhanced authentication", None),
                now,
            ),
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq(_) => self.violation(
                Violation::protocol("packet only a client may send", None),
                now,
            ),
        }
    }

    fn on_connack(&mut self, ack: ConnAck, now: Instant) {
        if ack.reason != ReasonCode::SUCCESS {
            // The server closes the connection after a refusal (section 3.2.2.2).
            return self.close(DisconnectReason::Refused(Box::new(ack)));
        }
        if self.sent_clean && ack.session_present {
            let rule = match self.config.protocol {
                Protocol::V5 => "MQTT-3.2.2-2",
                Protocol::V311 | Protocol::V31 => "MQTT-3.2.2-1",
            };
            return self.violation(
                Violation::protocol("Session Present in answer to Clean Start", Some(rule)),
                now,
            );
        }
        let session_present = match self.config.protocol {
            // MQTT 3.1 has no Session Present flag: the server keeps a session exactly when
            // Clean Session is 0.
            Protocol::V31 => !self.sent_clean,
            Protocol::V311 | Protocol::V5 => ack.session_present,
        };
        if self.config.protocol.is_v5() {
            let p = &ack.properties;
            if let Some(receive_maximum) = p.receive_maximum {
                self.limits.window = self.limits.window.min(usize::from(receive_maximum.get()));
            }
            self.limits.max_qos = p.maximum_qos.unwrap_or(QoS::ExactlyOnce);
            self.limits.retain_available = p.retain_available.unwrap_or(true);
            if let Some(max) = p.maximum_packet_size {
                self.limits.max_packet_size = max.get().min(Decoder::MAX_PACKET_SIZE);
            }
            // The server's Keep Alive replaces the client's [MQTT-3.2.2-21].
            if let Some(server_keep_alive) = p.server_keep_alive {
                self.keep_alive = keep_alive(server_keep_alive);
            }
            if let Some(id) = &p.assigned_client_identifier {
                self.client_id = id.clone();
            }
        }
        self.status = Status::Connected;
        self.connected_once = true;
        if let Some(t) = &mut self.timers {
            t.connack_deadline = None;
            t.last_received = now;
        }
        if !session_present {
            // [MQTT-3.2.2-5]: the server has no session, so the client's is void.
            self.discard_session();
        }
        self.out
            .events
            .push_back(Event::Connected(Box::new(Connected {
                session_present,
                properties: ack.properties,
            })));
        // Redelivery first, in order, then requests made while offline, then the queue
        // [MQTT-4.4.0-1].
        self.fill(now);
    }

    fn on_publish(&mut self, mut publish: Publish, now: Instant) {
        if self.config.protocol.is_v5() {
            let maximum = self.config.properties.topic_alias_maximum.unwrap_or(0);
            if let Err(violation) = self.inbound.resolve_alias(&mut publish, maximum) {
                return self.violation(violation, now);
            }
        }
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                self.send(Packet::PubAck(PubAck::new(id)), now);
            }
            (QoS::ExactlyOnce, Some(id)) => {
                if self.inbound.is_held(id) {
                    // The same message again: PUBREC, no second delivery [MQTT-4.3.3-9].
                    return self.send(Packet::PubRec(PubRec::new(id)), now);
                }
                let receive_maximum = match self.config.protocol {
                    Protocol::V5 => self.config.properties.receive_maximum.map(|r| r.get()),
                    _ => None,
                };
                if let Some(max) = receive_maximum
                    && self.inbound.held_len() >= usize::from(max)
                {
                    return self.violation(
                        Violation {
                            reason: ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                            rule: Some("MQTT-3.3.4-9"),
                            what: "more QoS 2 messages than the Receive Maximum sent in CONNECT",
                        },
                        now,
                    );
                }
                self.inbound.hold(id);
                self.send(Packet::PubRec(PubRec::new(id)), now);
            }
            // QoS 0; the decoder guarantees identifiers for QoS 1 and 2.
            _ => {}
        }
        self.out.events.push_back(Event::Message(publish));
    }

    // ---------------------------------------------------------------------------------------
    // Commands
    // ---------------------------------------------------------------------------------------

    /// Publishes a message. Its DUP flag and Packet Identifier are the state's to set.
    ///
    /// When connected, the message is written at once if the window allows, and checked
    /// against the server's limits now; otherwise it is queued (and checked when it leaves
    /// the queue, failing then with [`Event::Failed`]). [`Event::Published`] reports the end.
    ///
    /// # Errors
    /// [`PublishRejected`] with the message given back: the queue is full
    /// ([`RequestError::QueueFull`]: back-pressure), the message breaks a limit of the
    /// server's, or it carries a Topic Alias.
    pub fn publish(
        &mut self,
        mut publish: Publish,
        now: Instant,
    ) -> Result<RequestId, PublishRejected> {
        let reject = |error, publish| {
            Err(PublishRejected {
                error,
                publish: Box::new(publish),
            })
        };
        if publish.properties.topic_alias.is_some() || publish.topic.is_empty() {
            return reject(RequestError::TopicAliasNotSupported, publish);
        }
        publish.dup = false;
        // A placeholder until the message enters the window, so that its size is exact.
        publish.packet_id = (publish.qos != QoS::AtMostOnce).then_some(PacketId::FIRST);
        let connected = self.status == Status::Connected;
        if connected && let Err(error) = self.limits.check_publish(&publish) {
            return reject(error, publish);
        }
        let now_or_never = connected && self.outbound.can_send_now(publish.qos, &self.limits);
        if !now_or_never && self.outbound.queued_len() >= self.config.max_queued {
            return reject(RequestError::QueueFull, publish);
        }
        let request = self.next_request();
        self.outbound.enqueue(request, publish);
        self.fill(now);
        Ok(request)
    }

    /// Subscribes to `filters`. Written at once when connected, else on the next connection;
    /// [`Event::Subscribed`] reports the SUBACK.
    ///
    /// # Errors
    /// [`RequestError::NoTopicFilters`], or [`RequestError::PacketIdsExhausted`].
    pub fn subscribe(
        &mut self,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: SubscribeProperties,
        now: Instant,
    ) -> Result<RequestId, RequestError> {
        if filters.is_empty() {
            return Err(RequestError::NoTopicFilters);
        }
        let request = self.next_request();
        let subscribe = Subscribe {
            packet_id: PacketId::FIRST,
            properties,
            filters,
        };
        self.outbound
            .subscribe(request, subscribe)
            .ok_or(RequestError::PacketIdsExhausted)?;
        self.fill(now);
        Ok(request)
    }

    /// Unsubscribes from `filters`. Written at once when connected, else on the next
    /// connection; [`Event::Unsubscribed`] reports the UNSUBACK.
    ///
    /// # Errors
    /// [`RequestError::NoTopicFilters`], or [`RequestError::PacketIdsExhausted`].
    pub fn unsubscribe(
        &mut self,
        filters: Vec<TopicFilter>,
        properties: UnsubscribeProperties,
        now: Instant,
    ) -> Result<RequestId, RequestError> {
        if filters.is_empty() {
            return Err(RequestError::NoTopicFilters);
        }
        let request = self.next_request();
        let unsubscribe = Unsubscribe {
            packet_id: PacketId::FIRST,
            properties,
            filters,
        };
        self.outbound
            .unsubscribe(request, unsubscribe)
            .ok_or(RequestError::PacketIdsExhausted)?;
        self.fill(now);
        Ok(request)
    }

    /// Sends PINGREQ now, unless one is unanswered or the client is not connected. Returns
    /// whether it did.
    pub fn ping(&mut self, now: Instant) -> bool {
        let idle = self.timers.is_some_and(|t| t.ping_sent.is_none());
        if self.status != Status::Connected || !idle {
            return false;
        }
        self.send_ping(now);
        true
    }

    /// Ends the connection with DISCONNECT (its reason and properties are MQTT 5.0's;
    /// 0x04 Disconnect with Will Message asks the server to publish the Will all the same).
    /// Does nothing when there is no connection.
    ///
    /// # Errors
    /// [`RequestError::SessionExpiryNotAllowed`] for a non-zero Session Expiry Interval when
    /// CONNECT had none [MQTT-3.14.2-2]; nothing is sent then.
    pub fn disconnect(
        &mut self,
        reason: ReasonCode,
        properties: DisconnectProperties,
        now: Instant,
    ) -> Result<(), RequestError> {
        let sets_expiry = properties.session_expiry_interval.is_some_and(|e| e != 0);
        let had_expiry = self
            .config
            .properties
            .session_expiry_interval
            .is_some_and(|e| e != 0);
        if self.config.protocol.is_v5() && sets_expiry && !had_expiry {
            return Err(RequestError::SessionExpiryNotAllowed);
        }
        if self.status == Status::Disconnected {
            return Ok(());
        }
        self.send(Packet::Disconnect(Disconnect { reason, properties }), now);
        self.close(DisconnectReason::Local);
        Ok(())
    }
}

fn keep_alive(secs: u16) -> Option<Duration> {
    match secs {
        0 => None,
        s => Some(Duration::from_secs(u64::from(s))),
    }
}
