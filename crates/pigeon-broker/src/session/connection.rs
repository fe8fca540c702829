//! The protocol state machine of one network connection (MQTT 3.1, 3.1.1 and 5.0).
//!
//! Inputs: decoded packets ([`Connection::handle_packet`]), deliveries from the router
//! ([`Connection::deliver`]), the broker's answer to CONNECT ([`Connection::accept`],
//! [`Connection::refuse`]) and timeouts ([`Connection::handle_timeout`]), each with `now`.
//! Outputs: packets to write ([`Connection::take_transmit`]), [`Event`]s for the broker
//! ([`Connection::poll_event`]) and the next deadline ([`Connection::poll_timeout`]).

use std::collections::{HashMap, VecDeque};
use std::mem;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pigeon_proto::properties::{AckProperties, AuthProperties};
use pigeon_proto::{
    Auth, Bytes, ConnAck, Connect, DecodeError, Disconnect, MqttString, Packet, PacketId,
    PayloadFormat, PingResp, Protocol, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode,
    SubAck, TopicFilter, TopicName, UnsubAck, Will,
};

use super::enhanced_auth::{AuthExchange, AuthMethods, AuthStep};
use super::{Link, Pushed, Session, Subscription};
use crate::auth::ClientAccess;
use crate::auth::acl::{self, Verdict};
use crate::message::{Delivery, Message};

/// Broker settings the state machine applies (Mosquitto's directives of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// `max_qos`: the highest QoS the broker accepts and grants (default 2).
    pub max_qos: QoS,
    /// `retain_available`: whether clients may publish retained messages (default true).
    pub retain_available: bool,
    /// `message_size_limit`: the largest payload accepted; larger ones are acknowledged and
    /// dropped, as Mosquitto does (default 0: no limit beyond the packet size).
    pub message_size_limit: usize,
    /// How long a new connection may take to send CONNECT before it is closed (a guard
    /// against connections that never speak; Mosquitto 2.0.11 drops them after about 95 s).
    pub connect_timeout: Duration,
    /// `acl_subscribe_check` (Pigeon only): refuse a subscription under which the client's
    /// ACL leaves no readable topic (default false: granted, as Mosquitto does).
    pub acl_subscribe_check: bool,
    /// `max_topic_alias`: the Topic Alias Maximum offered to MQTT 5.0 clients (default 10).
    pub max_topic_alias: u16,
    /// `max_keepalive`: MQTT 5.0 clients asking for a longer Keep Alive, or none, are told to
    /// use this one (Server Keep Alive; default 65535).
    pub max_keepalive: u16,
    /// `max_inflight_messages`, told to MQTT 5.0 clients as the broker's Receive Maximum and
    /// enforced on what they publish (default 20; `None`: 65,535).
    pub receive_maximum: Option<NonZeroU16>,
    /// `max_packet_size`, told to MQTT 5.0 clients as the broker's Maximum Packet Size.
    pub max_packet_size: Option<NonZeroU32>,
    /// The MQTT 5.0 enhanced authentication methods offered (none by default: a CONNECT
    /// naming one is refused with 0x8C, as by Mosquitto without a plugin).
    pub auth_methods: AuthMethods,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
            message_size_limit: 0,
            connect_timeout: Duration::from_secs(60),
            acl_subscribe_check: false,
            max_topic_alias: 10,
            max_keepalive: u16::MAX,
            receive_maximum: NonZeroU16::new(20),
            max_packet_size: None,
            auth_methods: AuthMethods::default(),
        }
    }
}

/// A protocol violation by the client: the connection is closed over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The MQTT 5.0 reason code for the DISCONNECT (or CONNACK) that reports it.
    pub reason: ReasonCode,
    /// The normative statement broken, where there is one.
    pub rule: Option<&'static str>,
    /// What happened, for the log.
    pub what: &'static str,
}

impl Violation {
    /// The violation a decode error is.
    pub fn from_decode(error: DecodeError, protocol: Protocol) -> Self {
        Violation {
            reason: error.reason_code(),
            rule: error.rule(protocol),
            what: if error.reason_code() == ReasonCode::PROTOCOL_ERROR {
                "protocol error"
            } else {
                "malformed packet"
            },
        }
    }

    fn protocol(what: &'static str, rule: Option<&'static str>) -> Self {
        Violation {
            reason: ReasonCode::PROTOCOL_ERROR,
            rule,
            what,
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT: the will is discarded [MQTT-3.14.4-3], unless an MQTT 5.0
    /// client asked for it with Reason Code 0x04 (Disconnect with Will Message).
    Disconnected {
        /// Whether the will is published all the same (0x04).
        with_will: bool,
    },
    /// The client went quiet for 1.5 times its Keep Alive [MQTT-3.1.2-24].
    KeepAliveTimeout,
    /// No CONNECT arrived within the connect timeout.
    ConnectTimeout,
    /// The client broke the protocol.
    Violation(Violation),
    /// The broker refused the CONNECT with this reason (after sending CONNACK).
    Refused(ReasonCode),
    /// Another connection took over the session [MQTT-3.1.4-2].
    TakenOver,
    /// The broker no longer lets the client in (a configuration reload refused anonymous
    /// clients).
    Revoked,
    /// The broker is shutting down.
    ServerShutdown,
    /// The broker cannot store the client's message (a full disk), and an MQTT 3.x
    /// acknowledgement cannot say so: the connection is closed rather than the message
    /// acknowledged.
    Unstorable,
}

impl CloseReason {
    /// Whether the will is published: on every ending but a DISCONNECT (without 0x04), a
    /// refusal and the broker's own shutdown.
    pub fn publishes_will(self) -> bool {
        match self {
            CloseReason::Disconnected { with_will } => with_will,
            CloseReason::Refused(_) | CloseReason::ServerShutdown => false,
            _ => true,
        }
    }

    /// The Reason Code of the DISCONNECT the broker sends an MQTT 5.0 client before closing
    /// (section 4.13), if it sends one.
    pub fn disconnect_reason(self) -> Option<ReasonCode> {
        match self {
            CloseReason::Violation(v) => Some(v.reason),
            CloseReason::KeepAliveTimeout => Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
            // [MQTT-3.1.4-3].
            CloseReason::TakenOver => Some(ReasonCode::SESSION_TAKEN_OVER),
            CloseReason::ServerShutdown => Some(ReasonCode::SERVER_SHUTTING_DOWN),
            CloseReason::Revoked => Some(ReasonCode::NOT_AUTHORIZED),
            CloseReason::Unstorable => Some(ReasonCode::QUOTA_EXCEEDED),
            CloseReason::Disconnected { .. }
            | CloseReason::ConnectTimeout
            | CloseReason::Refused(_) => None,
        }
    }
}

/// What an MQTT 5.0 client asked of the broker in its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Receive Maximum: QoS 1 and 2 messages it takes in flight at once.
    pub receive_maximum: Option<NonZeroU16>,
    /// Maximum Packet Size it accepts.
    pub max_packet_size: Option<NonZeroU32>,
    /// Topic Alias Maximum: the aliases the broker may use towards it.
    pub topic_alias_maximum: u16,
    /// Request Problem Information: whether Reason Strings may be sent on packets other
    /// than PUBLISH, CONNACK and DISCONNECT [MQTT-3.1.2-29].
    pub problem_information: bool,
    /// Session Expiry Interval asked for in CONNECT, in seconds.
    pub session_expiry_interval: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            receive_maximum: None,
            max_packet_size: None,
            topic_alias_maximum: 0,
            problem_information: true,
            session_expiry_interval: 0,
        }
    }
}

/// What the broker must act on.
#[derive(Debug)]
pub enum Event {
    /// A CONNECT arrived. The broker authenticates, resolves the Client Identifier and the
    /// session, then calls [`Connection::accept`] or [`Connection::refuse`]. Until then the
    /// connection reads nothing further (the driver stops feeding packets).
    Connect(Box<Connect>),
    /// A message to route, and to retain when its RETAIN flag is set. A QoS 1 or 2 message
    /// is acknowledged once routed: the broker calls [`Connection::routed`] with `ack` and
    /// whether any subscription matched (MQTT 5.0 acknowledges with 0x10 when none did).
    Publish {
        /// The message.
        message: Arc<Message>,
        /// Its Packet Identifier and QoS, when it awaits PUBACK or PUBREC.
        ack: Option<(PacketId, QoS)>,
    },
    /// A message refused (too large): acknowledged to the publisher and dropped.
    Dropped(Arc<Message>),
    /// Subscriptions made or replaced, each with whether it is new; retained messages matching
    /// them are due as their Retain Handling says ([MQTT-3.3.1-6], [MQTT-3.3.1-9..11]).
    Subscribe(Vec<(Subscription, bool)>),
    /// Subscriptions removed.
    Unsubscribe(Vec<TopicFilter>),
    /// The connection is over; the driver closes the socket after writing what is queued.
    Close(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for CONNECT [MQTT-3.1.0-1].
    AwaitingConnect,
    /// CONNECT named an enhanced authentication method: AUTH packets go back and forth
    /// until it succeeds or fails (section 4.12).
    Authenticating,
    /// CONNECT passed to the broker; waiting for its answer.
    Connecting,
    /// Connected.
    Active,
    /// Over; everything further is ignored.
    Closed,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    /// Shared with the listener's other connections.
    settings: Arc<ConnectionSettings>,
    state: State,
    protocol: Protocol,
    session: Option<Session>,
    /// Keep Alive in seconds (in 16 bits, as on the wire: every connection's state holds it).
    keep_alive: Option<u16>,
    deadline: Option<Instant>,
    /// Packets to write and events for the broker, while there are any.
    pending: Option<Box<Pending>>,
    /// What the client asked for in CONNECT (MQTT 5.0).
    client: ClientLimits,
    /// The will, Topic Aliases and enhanced authentication, once there is any of them.
    rare: Option<Box<Rare>>,
}

/// A connection's packets to write and events for the broker, on the heap while there are
/// any: an idle connection carries one pointer for them.
#[derive(Debug, Default)]
struct Pending {
    transmit: Vec<Packet>,
    events: VecDeque<Event>,
}

/// What few connections have, on the heap together: a connection without any carries one
/// pointer for them.
#[derive(Debug, Default)]
struct Rare {
    /// The will message, until it is published or discarded.
    will: Option<Box<Will>>,
    /// Topic Aliases (MQTT 5.0, section 3.3.2.3.4), once there is one.
    aliases: Option<Box<Aliases>>,
    /// Enhanced authentication (MQTT 5.0, section 4.12), when CONNECT named a method.
    auth: Option<Box<EnhancedAuth>>,
}

/// An enhanced authentication's state on one connection.
#[derive(Debug)]
struct EnhancedAuth {
    /// The method CONNECT named; AUTH packets must name the same [MQTT-4.12.0-5].
    method: MqttString,
    /// The exchange in progress, if any.
    exchange: Option<Box<dyn AuthExchange>>,
    /// The CONNECT, held back from the broker until authentication succeeds.
    connect: Option<Box<Connect>>,
    /// The method's last Authentication Data, for the CONNACK.
    data: Option<Bytes>,
    /// The identity the method established, if it named one.
    username: Option<String>,
}

/// MQTT 5.0 Topic Aliases of one connection, both ways: created with the first alias, so
/// that connections without any (every 3.x client, most 5.0 ones) carry none.
#[derive(Debug, Default)]
struct Aliases {
    /// Set by the client.
    incoming: HashMap<u16, TopicName>,
    /// Set by the broker towards the client.
    outgoing: HashMap<TopicName, NonZeroU16>,
}

impl Connection {
    /// The packets to write and the events, made room for.
    fn pending(&mut self) -> &mut Pending {
        self.pending.get_or_insert_default()
    }

    /// A connection just accepted at `now`.
    pub fn new(settings: impl Into<Arc<ConnectionSettings>>, now: Instant) -> Self {
        let settings = settings.into();
        let deadline = now.checked_add(settings.connect_timeout);
        Connection {
            settings,
            state: State::AwaitingConnect,
            protocol: Protocol::V311,
            session: None,
            keep_alive: None,
            deadline,
            pending: None,
            client: ClientLimits::default(),
            rare: None,
        }
    }

    /// The enhanced authentication method the client authenticated with, and the identity
    /// it established (`None` inside: the CONNECT's User Name stands). `None` when CONNECT
    /// named no method: the broker checks the User Name and Password itself.
    pub fn authenticated_by(&self) -> Option<(&MqttString, Option<&str>)> {
        self.rare
            .as_ref()
            .and_then(|r| r.auth.as_ref())
            .map(|a| (&a.method, a.username.as_deref()))
    }

    /// What the client asked for in CONNECT (the defaults for MQTT 3.x).
    pub fn client_limits(&self) -> &ClientLimits {
        &self.client
    }

    /// The protocol version (3.1.1 until CONNECT says otherwise).
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The session, while connected.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The session, to change (the store's journals are taken from it).
    pub fn session_mut(&mut self) -> Option<&mut Session> {
        self.session.as_mut()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the broker's answer to CONNECT is awaited; packets must not be fed meanwhile.
    pub fn is_connecting(&self) -> bool {
        self.state == State::Connecting
    }

    /// Packets to write, in order. PUBLISH packets to an MQTT 5.0 client that accepts Topic
    /// Aliases get one here, in the order they are written: the first PUBLISH to a topic
    /// carries the topic and sets the alias, later ones carry the alias and an empty topic
    /// (section 3.3.2.3.4), so a repeated long topic costs two bytes.
    pub fn take_transmit(&mut self) -> Vec<Packet> {
        let mut packets = self
            .pending
            .as_mut()
            .map(|p| mem::take(&mut p.transmit))
            .unwrap_or_default();
        if self.client.topic_alias_maximum > 0 {
            for packet in &mut packets {
                if let Packet::Publish(publish) = packet {
                    self.alias_out(publish);
                }
            }
        }
        packets
    }

    fn alias_out(&mut self, publish: &mut Publish) {
        if publish.topic.is_empty() {
            return;
        }
        // The Topic Alias property adds three bytes, and an alias in place of a short topic
        // may too: a PUBLISH that fits the client's Maximum Packet Size without the alias
        // must not be pushed over it by one [MQTT-3.1.2-24]; it goes as it was.
        let max = self.client.max_packet_size;
        let fits =
            |p: &Publish| max.is_none_or(|max| p.encoded_len(Protocol::V5) <= max.get() as usize);
        if let Some(&alias) = self
            .rare
            .as_ref()
            .and_then(|r| r.aliases.as_ref())
            .and_then(|a| a.outgoing.get(&publish.topic))
        {
            let topic = mem::replace(&mut publish.topic, TopicName::empty());
            publish.properties.topic_alias = Some(alias);
            if !fits(publish) {
                publish.topic = topic;
                publish.properties.topic_alias = None;
            }
            return;
        }
        let used = self
            .rare
            .as_ref()
            .and_then(|r| r.aliases.as_ref())
            .map_or(0, |a| a.outgoing.len());
        // Aliases are handed out until the client's maximum; topics after that go in full.
        if used < usize::from(self.client.topic_alias_maximum)
            && let Some(alias) = u16::try_from(used + 1).ok().and_then(NonZeroU16::new)
        {
            publish.properties.topic_alias = Some(alias);
            if fits(publish) {
                self.rare
                    .get_or_insert_default()
                    .aliases
                    .get_or_insert_default()
                    .outgoing
                    .insert(publish.topic.detach(), alias);
            } else {
                publish.properties.topic_alias = None;
            }
        }
    }

    /// Whether packets wait to be written.
    pub fn has_transmit(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| !p.transmit.is_empty())
    }

    /// The next event for the broker.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.pending.as_mut()?.events.pop_front()
    }

    /// Gives back the room for packets, events and held messages while there are none: a
    /// driver calls this when it has nothing buffered and is about to wait, so that an idle
    /// connection holds none.
    pub fn release_idle_room(&mut self) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.transmit.is_empty() && p.events.is_empty())
        {
            self.pending = None;
        }
        if let Some(session) = &mut self.session {
            session.outbound.release_idle_room();
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Gives up the session when the connection is over, for the broker to keep or drop.
    pub fn take_session(&mut self) -> Option<Session> {
        self.session.take()
    }

    /// Gives up the will message, for the broker to publish when the ending calls for it.
    pub fn take_will(&mut self) -> Option<Will> {
        self.rare
            .as_mut()
            .and_then(|r| r.will.take())
            .map(|will| *will)
    }

    /// A decoding error: the connection is malformed from here on.
    pub fn handle_decode_error(&mut self, error: DecodeError) {
        // A CONNECT of a protocol level the broker does not speak is answered with CONNACK
        // 0x01 (unacceptable protocol level) before the connection closes [MQTT-3.1.2-2], as
        // Mosquitto does.
        if self.state == State::AwaitingConnect
            && matches!(error, DecodeError::UnsupportedProtocolVersion(_))
        {
            self.pending().transmit.push(Packet::ConnAck(ConnAck {
                session_present: false,
                reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                ..ConnAck::default()
            }));
        }
        let violation = Violation::from_decode(error, self.protocol);
        self.close(CloseReason::Violation(violation));
    }

    /// A packet from the client.
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) {
        match self.state {
            State::Closed => return,
            // The driver holds packets back while the broker answers CONNECT; one arriving
            // here is a driver bug, so refuse rather than reorder.
            State::Connecting => {
                return self.violation(Violation::protocol("packet before CONNACK", None));
            }
            State::Authenticating => {
                return match packet {
                    Packet::Auth(auth) => self.on_auth(auth),
                    // A DISCONNECT ends the attempt: nothing to answer.
                    Packet::Disconnect(_) => {
                        self.close(CloseReason::Disconnected { with_will: false });
                    }
                    _ => self.violation(Violation::protocol(
                        "packet other than AUTH during authentication",
                        None,
                    )),
                };
            }
            State::AwaitingConnect => {
                return match packet {
                    Packet::Connect(connect) => self.on_connect(connect),
                    // The first packet must be CONNECT [MQTT-3.1.0-1].
                    _ => self.violation(Violation::protocol(
                        "first packet is not CONNECT",
                        Some("MQTT-3.1.0-1"),
                    )),
                };
            }
            State::Active => {}
        }
        self.touch(now);
        match packet {
            // A second CONNECT is a Protocol Error [MQTT-3.1.0-2].
            Packet::Connect(_) => {
                self.violation(Violation::protocol("second CONNECT", Some("MQTT-3.1.0-2")));
            }
            Packet::Publish(publish) => self.on_publish(publish, now),
            Packet::PubAck(ack) => {
                if let Some(session) = &mut self.session
                    && let Ok(next) = session.outbound.on_puback(ack.packet_id, now)
                {
                    self.pending()
                        .transmit
                        .extend(next.into_iter().map(Packet::Publish));
                }
            }
            Packet::PubRec(rec) => self.on_pubrec(rec, now),
            Packet::PubRel(rel) => self.on_pubrel(rel),
            Packet::PubComp(comp) => {
                if let Some(session) = &mut self.session
                    && let Ok(next) = session.outbound.on_pubcomp(comp.packet_id, now)
                {
                    self.pending()
                        .transmit
                        .extend(next.into_iter().map(Packet::Publish));
                }
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe),
            Packet::PingReq(_) => self.pending().transmit.push(Packet::PingResp(PingResp)),
            Packet::Disconnect(disconnect) => self.on_disconnect(&disconnect),
            Packet::Auth(auth) if self.protocol.is_v5() => self.on_auth(auth),
            Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp(_)
            | Packet::Auth(_) => {
                self.violation(Violation::protocol("packet a client may not send", None));
            }
        }
    }

    /// The broker accepts the CONNECT: `session` is the client's (new or resumed), and
    /// `session_present` says which [MQTT-3.2.2-2], [MQTT-3.2.2-3]. Sends CONNACK, then
    /// resends what the resumed session had in flight [MQTT-4.4.0-1].
    pub fn accept(&mut self, session: Session, session_present: bool, now: Instant) {
        self.accept_assigned(session, session_present, None, now);
    }

    /// As [`accept`](Self::accept), for a client whose empty Client Identifier the broker
    /// replaced by `assigned`: an MQTT 5.0 CONNACK tells it the identifier in the Assigned
    /// Client Identifier property [MQTT-3.2.2-16]; 3.x has no way to.
    pub fn accept_assigned(
        &mut self,
        mut session: Session,
        session_present: bool,
        assigned: Option<MqttString>,
        now: Instant,
    ) {
        if self.state != State::Connecting {
            return;
        }
        self.state = State::Active;
        session.protocol = self.protocol;
        session
            .outbound
            .set_receive_maximum(self.client.receive_maximum.map(NonZeroU16::get));
        session
            .outbound
            .set_max_packet_size(self.client.max_packet_size.map(NonZeroU32::get));
        if self.protocol.is_v5() {
            // [MQTT-3.1.2-23]: the session lives as long as the CONNECT says.
            session.set_expiry_interval(self.client.session_expiry_interval);
        }
        let mut connack = ConnAck {
            session_present,
            reason: ReasonCode::SUCCESS,
            ..ConnAck::default()
        };
        if self.protocol.is_v5() {
            // The broker's limits, in the order Mosquitto sends them.
            let props = &mut connack.properties;
            let limits = &self.settings;
            if limits.max_topic_alias > 0 {
                props.topic_alias_maximum = Some(limits.max_topic_alias);
            }
            // A client asking for no Keep Alive, or a longer one than `max_keepalive`, is told
            // to use `max_keepalive` [MQTT-3.2.2-21], as Mosquitto does.
            let asked = self.keep_alive.unwrap_or(0);
            if asked == 0 || asked > limits.max_keepalive {
                props.server_keep_alive = Some(limits.max_keepalive);
                self.keep_alive = Some(limits.max_keepalive);
            }
            props.assigned_client_identifier = assigned;
            if !limits.retain_available {
                props.retain_available = Some(false);
            }
            props.maximum_packet_size = limits.max_packet_size;
            props.receive_maximum = limits.receive_maximum;
            if limits.max_qos != QoS::ExactlyOnce {
                props.maximum_qos = Some(limits.max_qos);
            }
            // A CONNACK after enhanced authentication names the method and carries its last
            // data (section 4.12).
            if let Some(auth) = self.rare.as_ref().and_then(|r| r.auth.as_ref()) {
                props.authentication_method = Some(auth.method.clone());
                props.authentication_data = auth.data.clone();
            }
        }
        self.touch(now);
        let resend = session.outbound.resume(now);
        self.session = Some(session);
        self.pending().transmit.push(Packet::ConnAck(connack));
        self.pending().transmit.extend(resend);
    }

    /// The broker refuses the CONNECT: sends CONNACK with `reason` (written as the nearest
    /// return code in 3.x) and closes [MQTT-3.2.2-5].
    pub fn refuse(&mut self, reason: ReasonCode) {
        if self.state != State::Connecting {
            return;
        }
        if let Some(rare) = &mut self.rare {
            rare.will = None;
        }
        self.pending().transmit.push(Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            ..ConnAck::default()
        }));
        self.close(CloseReason::Refused(reason));
    }

    /// Another connection took the session over [MQTT-3.1.4-2]; this one ends (its will is
    /// published), telling an MQTT 5.0 client why with DISCONNECT 0x8E [MQTT-3.1.4-3].
    pub fn take_over(&mut self) {
        self.close(CloseReason::TakenOver);
    }

    /// The broker is shutting down: an MQTT 5.0 client is told so (DISCONNECT 0x8B).
    pub fn shut_down(&mut self) {
        self.close(CloseReason::ServerShutdown);
    }

    /// The Session Expiry Interval in force (MQTT 5.0: from CONNECT, or as DISCONNECT
    /// changed it), in seconds.
    pub fn session_expiry_interval(&self) -> u32 {
        self.client.session_expiry_interval
    }

    /// The broker no longer lets this client in (a configuration reload): the connection
    /// ends, and its will is published, as when Mosquitto disconnects a client on reload.
    pub fn revoke(&mut self) {
        self.close(CloseReason::Revoked);
    }

    /// The settings in force.
    pub fn settings(&self) -> &ConnectionSettings {
        &self.settings
    }

    /// New settings (a configuration reload): the packets that follow are judged by them. A
    /// deadline already set (the connect timeout) stays.
    pub fn set_settings(&mut self, settings: impl Into<Arc<ConnectionSettings>>) {
        self.settings = settings.into();
    }

    /// A message for this client from the router. `backlog` is how many packets wait unwritten
    /// in the connection's buffer. Returns whether it was dropped (queue full).
    pub fn deliver(&mut self, delivery: Delivery, backlog: usize, now: Instant) -> bool {
        let Some(session) = &mut self.session else {
            return true;
        };
        // A message the client may not read is left out, silently (Mosquitto checks each
        // message as it is delivered, whatever the subscription).
        if let Some(access) = &session.access
            && !access.may_read(&session.client_id, delivery.message.topic.as_str())
        {
            return false;
        }
        let link = if self.state == State::Active {
            Link::Online { backlog }
        } else {
            Link::Offline
        };
        match session.outbound.push(delivery, link, now) {
            Pushed::Send(publish) => {
                self.pending().transmit.push(Packet::Publish(publish));
                false
            }
            Pushed::Queued | Pushed::Discarded => false,
            Pushed::Dropped => true,
        }
    }

    /// Time has reached `now`: closes the connection when its Keep Alive or connect timeout
    /// expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline || self.state == State::Closed {
            return;
        }
        match self.state {
            State::AwaitingConnect | State::Authenticating => {
                self.close(CloseReason::ConnectTimeout);
            }
            State::Active => self.close(CloseReason::KeepAliveTimeout),
            State::Connecting | State::Closed => {}
        }
    }

    fn touch(&mut self, now: Instant) {
        // A Keep Alive of 0 turns the mechanism off; otherwise one and a half times it
        // [MQTT-3.1.2-24].
        self.deadline = self.keep_alive.and_then(|k| {
            let k = Duration::from_secs(u64::from(k));
            now.checked_add(k + k / 2)
        });
    }

    fn violation(&mut self, violation: Violation) {
        self.close(CloseReason::Violation(violation));
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        // An MQTT 5.0 client the broker has accepted is told why it is disconnected
        // (section 4.13); a Reason String may go on DISCONNECT whatever Request Problem
        // Information says [MQTT-3.1.2-29].
        if self.state == State::Active
            && self.protocol.is_v5()
            && let Some(code) = reason.disconnect_reason()
        {
            let mut disconnect = Disconnect::new(code);
            if let CloseReason::Violation(v) = reason {
                disconnect.properties.reason_string = MqttString::try_from(v.what).ok();
                // Left out rather than take the packet over the client's Maximum Packet
                // Size [MQTT-3.14.2-3].
                let len = Packet::Disconnect(disconnect.clone()).encoded_len(Protocol::V5);
                if self
                    .client
                    .max_packet_size
                    .is_some_and(|max| len > max.get() as usize)
                {
                    disconnect.properties.reason_string = None;
                }
            }
            self.pending().transmit.push(Packet::Disconnect(disconnect));
        }
        self.state = State::Closed;
        self.deadline = None;
        self.pending().events.push_back(Event::Close(reason));
    }

    fn on_connect(&mut self, connect: Box<Connect>) {
        self.protocol = connect.protocol;
        if connect.protocol.is_v5() {
            let props = &connect.properties;
            self.client = ClientLimits {
                receive_maximum: props.receive_maximum,
                max_packet_size: props.maximum_packet_size,
                topic_alias_maximum: props.topic_alias_maximum.unwrap_or(0),
                problem_information: props.request_problem_information.unwrap_or(true),
                session_expiry_interval: props.session_expiry_interval.unwrap_or(0),
            };
        }
        self.keep_alive = match connect.keep_alive {
            0 => None,
            secs => Some(secs),
        };
        // Kept for the whole connection: detached from the CONNECT's read buffer.
        let will = connect.will.as_ref().map(|will| {
            let mut properties = will.properties.clone();
            properties.content_type = properties.content_type.map(|c| c.detach());
            properties.response_topic = properties.response_topic.map(|t| t.detach());
            properties.correlation_data = properties
                .correlation_data
                .map(|d| Bytes::copy_from_slice(&d));
            for (name, value) in &mut properties.user_properties {
                *name = name.detach();
                *value = value.detach();
            }
            // Boxed: most clients have none, and every connection would carry the room.
            Box::new(Will {
                topic: will.topic.detach(),
                payload: Bytes::copy_from_slice(&will.payload),
                properties,
                ..will.clone()
            })
        });
        match (&mut self.rare, will) {
            (rare, Some(will)) => rare.get_or_insert_default().will = Some(will),
            (Some(rare), None) => rare.will = None,
            (None, None) => {}
        }
        if self.protocol.is_v5()
            && let Some(method) = connect.properties.authentication_method.clone()
        {
            return self.begin_authentication(method, connect);
        }
        // Until the broker answers, only the connect timeout runs.
        self.state = State::Connecting;
        self.pending().events.push_back(Event::Connect(connect));
    }

    /// CONNECT named `method`: starts the exchange if the method is offered, else refuses
    /// with 0x8C (Bad authentication method) and closes [MQTT-4.12.0-1].
    fn begin_authentication(&mut self, method: MqttString, connect: Box<Connect>) {
        let Some(offered) = self.settings.auth_methods.find(method.as_str()).cloned() else {
            self.state = State::Connecting;
            return self.refuse(ReasonCode::BAD_AUTHENTICATION_METHOD);
        };
        let (exchange, step) = offered.start(
            connect.client_id.as_str(),
            connect.username.as_ref().map(MqttString::as_str),
            connect.properties.authentication_data.as_deref(),
        );
        self.rare.get_or_insert_default().auth = Some(Box::new(EnhancedAuth {
            method: method.detach(),
            exchange: Some(exchange),
            connect: Some(connect),
            data: None,
            username: None,
        }));
        self.state = State::Authenticating;
        self.auth_step(step);
    }

    /// An AUTH from the client: the next step of the exchange in progress, or the start of
    /// a re-authentication (section 4.12.1).
    fn on_auth(&mut self, auth: Auth) {
        let Some(state) = self.rare.as_mut().and_then(|r| r.auth.as_mut()) else {
            // AUTH from a client that named no method in CONNECT is a Protocol Error
            // (section 4.12).
            return self.violation(Violation::protocol(
                "AUTH without enhanced authentication",
                None,
            ));
        };
        // The method may not change [MQTT-4.12.0-5], [MQTT-4.12.1-1].
        if auth.properties.authentication_method.as_ref() != Some(&state.method) {
            return self.violation(Violation::protocol(
                "AUTH with another Authentication Method",
                Some("MQTT-4.12.1-1"),
            ));
        }
        let data = auth.properties.authentication_data.as_deref();
        let step = match (auth.reason, state.exchange.as_mut()) {
            (ReasonCode::CONTINUE_AUTHENTICATION, Some(exchange)) => exchange.step(data),
            (ReasonCode::RE_AUTHENTICATE, None) if self.state == State::Active => {
                let Some(offered) = self
                    .settings
                    .auth_methods
                    .find(state.method.as_str())
                    .cloned()
                else {
                    // A reload withdrew the method.
                    return self.violation(Violation {
                        reason: ReasonCode::BAD_AUTHENTICATION_METHOD,
                        rule: None,
                        what: "authentication method no longer offered",
                    });
                };
                let client_id = self.session.as_ref().map(|s| s.client_id.to_string());
                let (exchange, step) =
                    offered.start(client_id.as_deref().unwrap_or_default(), None, data);
                state.exchange = Some(exchange);
                step
            }
            _ => {
                return self.violation(Violation::protocol(
                    "AUTH out of turn in the authentication exchange",
                    None,
                ));
            }
        };
        self.auth_step(step);
    }

    /// Acts on what the exchange decided: at CONNECT time, carries on or answers with
    /// CONNACK; in a re-authentication, with AUTH or DISCONNECT.
    fn auth_step(&mut self, step: AuthStep) {
        let connecting = self.state == State::Authenticating;
        let Some(state) = self.rare.as_mut().and_then(|r| r.auth.as_mut()) else {
            return;
        };
        match step {
            AuthStep::Continue(data) => {
                let mut properties = AuthProperties::default();
                properties.authentication_method = Some(state.method.clone());
                properties.authentication_data = Some(data);
                self.pending().transmit.push(Packet::Auth(Auth {
                    reason: ReasonCode::CONTINUE_AUTHENTICATION,
                    properties,
                }));
            }
            AuthStep::Success { data, username } => {
                state.exchange = None;
                if username.is_some() {
                    state.username = username;
                }
                if connecting {
                    state.data = data;
                    let connect = state.connect.take();
                    self.state = State::Connecting;
                    if let Some(connect) = connect {
                        self.pending().events.push_back(Event::Connect(connect));
                    }
                } else {
                    let mut properties = AuthProperties::default();
                    properties.authentication_method = Some(state.method.clone());
                    properties.authentication_data = data;
                    self.pending().transmit.push(Packet::Auth(Auth {
                        reason: ReasonCode::SUCCESS,
                        properties,
                    }));
                }
            }
            AuthStep::Failed(reason) => {
                state.exchange = None;
                if connecting {
                    self.state = State::Connecting;
                    self.refuse(reason);
                } else {
                    // A failed re-authentication ends the connection with DISCONNECT
                    // [MQTT-4.12.1-2].
                    self.violation(Violation {
                        reason,
                        rule: Some("MQTT-4.12.1-2"),
                        what: "re-authentication failed",
                    });
                }
            }
        }
    }

    fn on_publish(&mut self, mut publish: Publish, now: Instant) {
        if publish.qos > self.settings.max_qos {
            return self.violation(Violation {
                reason: ReasonCode::QOS_NOT_SUPPORTED,
                rule: Some("MQTT-3.2.2-11"),
                what: "QoS above max_qos",
            });
        }
        if publish.retain && !self.settings.retain_available {
            return self.violation(Violation {
                reason: ReasonCode::RETAIN_NOT_SUPPORTED,
                rule: Some("MQTT-3.2.2-14"),
                what: "retain not available",
            });
        }
        if self.protocol.is_v5() && !self.resolve_alias(&mut publish) {
            return;
        }
        let packet_id = publish.packet_id;
        let qos = publish.qos;
        // The broker's Receive Maximum: QoS 2 messages the client has not released count
        // against it (QoS 1 ones are acknowledged at once) [MQTT-3.3.4-7].
        if self.protocol.is_v5()
            && qos == QoS::ExactlyOnce
            && let (Some(max), Some(session), Some(id)) =
                (self.settings.receive_maximum, &self.session, packet_id)
            && !session.inbound.contains(id)
            && session.inbound.len() >= usize::from(max.get())
        {
            return self.violation(Violation {
                reason: ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                rule: Some("MQTT-3.3.4-7"),
                what: "Receive Maximum exceeded",
            });
        }
        let too_large = self.settings.message_size_limit != 0
            && publish.payload.len() > self.settings.message_size_limit;
        // Payload Format Indicator 1 promises UTF-8: a payload that is not is refused with
        // 0x99 (section 3.3.2.3.2), and dropped.
        let bad_format = self.protocol.is_v5()
            && publish.properties.payload_format_indicator == Some(PayloadFormat::Utf8)
            && std::str::from_utf8(&publish.payload).is_err();
        // Clients may not publish under $SYS nor $share, and an ACL may refuse the topic: as
        // in Mosquitto, acknowledged (with Not authorized in 5.0) and dropped.
        let refusal = if bad_format {
            Some(ReasonCode::PAYLOAD_FORMAT_INVALID)
        } else if too_large {
            None
        } else if !self.publish_verdict(publish.topic.as_str()).is_allowed() {
            Some(ReasonCode::NOT_AUTHORIZED)
        } else {
            None
        };
        let origin = self.session.as_ref().map(|s| s.client_id.clone());
        let message = Message::from_publish(publish, origin, now);
        if let Some(reason) = refusal {
            // Not remembered: the exchange ends here in 5.0, and a PUBREL for an unknown
            // identifier is answered anyway in 3.1.1.
            if let Some(id) = packet_id {
                self.acknowledge(id, qos, reason);
            }
            return;
        }
        if too_large {
            // Acknowledged as if accepted, as Mosquitto does, and dropped.
            if let Some(id) = packet_id {
                self.acknowledge(id, qos, ReasonCode::SUCCESS);
            }
            self.pending().events.push_back(Event::Dropped(message));
            return;
        }
        match (qos, packet_id) {
            (QoS::ExactlyOnce, Some(id)) => {
                // Route only the first arrival under this identifier [MQTT-4.3.3-9].
                let new = self
                    .session
                    .as_mut()
                    .is_some_and(|s| s.inbound.on_publish(id));
                if new {
                    self.pending().events.push_back(Event::Publish {
                        message,
                        ack: Some((id, qos)),
                    });
                } else {
                    self.acknowledge(id, qos, ReasonCode::SUCCESS);
                }
            }
            (QoS::AtLeastOnce, Some(id)) => self.pending().events.push_back(Event::Publish {
                message,
                ack: Some((id, qos)),
            }),
            _ => self
                .pending()
                .events
                .push_back(Event::Publish { message, ack: None }),
        }
    }

    /// Resolves or records the Topic Alias of an MQTT 5.0 PUBLISH (section 3.3.2.3.4).
    /// Returns false when the connection is closed over it.
    fn resolve_alias(&mut self, publish: &mut Publish) -> bool {
        let Some(alias) = publish.properties.topic_alias else {
            return true;
        };
        // A client may not send an alias above the Topic Alias Maximum the broker sent
        // [MQTT-3.3.2-9] (0x94, section 3.3.2.3.4), and 0 never decodes [MQTT-3.3.2-8].
        if alias.get() > self.settings.max_topic_alias {
            self.violation(Violation {
                reason: ReasonCode::TOPIC_ALIAS_INVALID,
                rule: Some("MQTT-3.3.2-9"),
                what: "Topic Alias above the maximum",
            });
            return false;
        }
        if publish.topic.is_empty() {
            match self
                .rare
                .as_ref()
                .and_then(|r| r.aliases.as_ref())
                .and_then(|a| a.incoming.get(&alias.get()))
            {
                Some(topic) => publish.topic = topic.clone(),
                None => {
                    // An alias never set names no topic: a Protocol Error.
                    self.violation(Violation::protocol("unknown Topic Alias", None));
                    return false;
                }
            }
        } else {
            // Kept for the connection: detached from the read buffer.
            self.rare
                .get_or_insert_default()
                .aliases
                .get_or_insert_default()
                .incoming
                .insert(alias.get(), publish.topic.detach());
        }
        true
    }

    /// The Reason String explaining a refusal to an MQTT 5.0 client that wants one: only
    /// when its Request Problem Information allows it [MQTT-3.1.2-29], and only when the
    /// acknowledgement (`base` bytes without it) stays within the client's Maximum Packet
    /// Size (a Reason String is left out rather than exceed it, [MQTT-3.4.2-2]).
    fn problem(&self, reason: ReasonCode, base: usize) -> Option<MqttString> {
        if !self.protocol.is_v5() || !self.client.problem_information {
            return None;
        }
        let text = match reason {
            ReasonCode::NOT_AUTHORIZED => "not authorised",
            ReasonCode::PAYLOAD_FORMAT_INVALID => {
                "payload is not UTF-8 but its Payload Format Indicator says it is"
            }
            _ => return None,
        };
        // The property's identifier and length prefix, and up to four bytes more of
        // Remaining Length and property length encoding.
        let size = base + 1 + 2 + text.len() + 4;
        let fits = self
            .client
            .max_packet_size
            .is_none_or(|max| size <= max.get() as usize);
        fits.then(|| MqttString::from_static(text))
    }

    /// Sends the PUBACK or PUBREC for a message from the client, with `reason` in MQTT 5.0.
    fn acknowledge(&mut self, id: PacketId, qos: QoS, reason: ReasonCode) {
        let mut properties = AckProperties::default();
        // Fixed header, Packet Identifier, Reason Code and Property Length.
        properties.reason_string = self.problem(reason, 2 + 2 + 1 + 1);
        match qos {
            QoS::ExactlyOnce => {
                let mut rec = PubRec::new(id);
                rec.reason = reason;
                rec.properties = properties;
                self.pending().transmit.push(Packet::PubRec(rec));
            }
            QoS::AtLeastOnce => {
                let mut ack = PubAck::new(id);
                ack.reason = reason;
                ack.properties = properties;
                self.pending().transmit.push(Packet::PubAck(ack));
            }
            QoS::AtMostOnce => {}
        }
    }

    /// The broker cannot store a message from [`Event::Publish`] (a full disk): MQTT 5.0 is
    /// answered with 0x97 Quota exceeded, and MQTT 3.x, whose acknowledgements cannot refuse,
    /// is disconnected so that the client sends the message again later. Either way a QoS 2
    /// exchange is over: the message is not held as received.
    pub fn refuse_publish(&mut self, ack: Option<(PacketId, QoS)>) {
        let Some((id, qos)) = ack else {
            return;
        };
        if qos == QoS::ExactlyOnce
            && let Some(session) = &mut self.session
        {
            session.inbound.on_pubrel(id);
        }
        if self.protocol.is_v5() {
            self.acknowledge(id, qos, ReasonCode::QUOTA_EXCEEDED);
        } else {
            self.close(CloseReason::Unstorable);
        }
    }

    /// Closes the connection because what it was acknowledged for could not be stored
    /// (MQTT 3.x: see [`refuse_publish`](Self::refuse_publish)).
    pub fn close_unstorable(&mut self) {
        self.close(CloseReason::Unstorable);
    }

    /// The broker routed a message from [`Event::Publish`]: sends its PUBACK or PUBREC, with
    /// 0x10 (No matching subscribers) in MQTT 5.0 when no subscription matched, as Mosquitto
    /// does.
    pub fn routed(&mut self, ack: Option<(PacketId, QoS)>, matched: bool) {
        if let Some((id, qos)) = ack {
            let reason = if matched || !self.protocol.is_v5() {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_MATCHING_SUBSCRIBERS
            };
            self.acknowledge(id, qos, reason);
        }
    }

    fn on_disconnect(&mut self, disconnect: &Disconnect) {
        if self.protocol.is_v5()
            && let Some(secs) = disconnect.properties.session_expiry_interval
        {
            // A session that was to end with its connection cannot be given a life after it: a
            // Protocol Error (section 3.14.2.2.2; no numbered statement, [MQTT-3.14.2-2] being
            // the rule that a server never sends the property).
            if self.client.session_expiry_interval == 0 && secs != 0 {
                return self.violation(Violation::protocol(
                    "Session Expiry Interval set on DISCONNECT after 0 on CONNECT",
                    None,
                ));
            }
            self.client.session_expiry_interval = secs;
            if let Some(session) = &mut self.session {
                session.set_expiry_interval(secs);
            }
        }
        // The will is discarded [MQTT-3.14.4-3], unless an MQTT 5.0 client asks for it.
        let with_will =
            self.protocol.is_v5() && disconnect.reason == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE;
        if !with_will && let Some(rare) = &mut self.rare {
            rare.will = None;
        }
        self.close(CloseReason::Disconnected { with_will });
    }

    /// Whether this client may publish to `topic`: never under `$SYS` or `$share`, and
    /// otherwise as its ACL says (everything without one).
    pub fn publish_verdict(&self, topic: &str) -> Verdict {
        match self
            .session
            .as_ref()
            .and_then(|s| Some((s.access.as_ref()?, s.client_id.as_str())))
        {
            Some((access, client_id)) => access.check_write(client_id, topic),
            None if acl::reserved_for_writing(topic) => Verdict::Denied,
            None => Verdict::Allowed,
        }
    }

    /// What the client may read and write, once connected (`None` also without an ACL
    /// check configured).
    pub fn access(&self) -> Option<&ClientAccess> {
        self.session.as_ref().and_then(|s| s.access.as_ref())
    }

    /// Sets what the client may read and write (when a reload brings a new ACL). Messages
    /// already queued or in flight stay; those that follow are checked against it.
    pub fn set_access(&mut self, access: ClientAccess) {
        if let Some(session) = &mut self.session {
            session.access = Some(access);
        }
    }

    fn on_pubrec(&mut self, rec: PubRec, now: Instant) {
        let Some(session) = &mut self.session else {
            return;
        };
        match session
            .outbound
            .on_pubrec(rec.packet_id, rec.reason.is_error(), now)
        {
            Ok(packets) => self.pending().transmit.extend(packets),
            // In 5.0 an unknown identifier still gets its PUBREL, saying so.
            Err(_) if self.protocol.is_v5() => {
                let mut rel = PubRel::new(rec.packet_id);
                rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                self.pending().transmit.push(Packet::PubRel(rel));
            }
            Err(_) => {}
        }
    }

    fn on_pubrel(&mut self, rel: PubRel) {
        let known = self
            .session
            .as_mut()
            .is_some_and(|s| s.inbound.on_pubrel(rel.packet_id));
        let mut comp = PubComp::new(rel.packet_id);
        if !known && self.protocol.is_v5() {
            comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        self.pending().transmit.push(Packet::PubComp(comp));
    }

    fn on_subscribe(&mut self, subscribe: pigeon_proto::Subscribe) {
        let Some(session) = &mut self.session else {
            return;
        };
        // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
        if subscribe
            .filters
            .iter()
            .any(|(filter, options)| filter.is_shared() && options.no_local)
        {
            return self.violation(Violation::protocol(
                "No Local on a shared subscription",
                Some("MQTT-3.8.3-4"),
            ));
        }
        let id = subscribe.properties.subscription_identifier;
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut granted = Vec::with_capacity(subscribe.filters.len());
        for (filter, mut options) in subscribe.filters {
            if self.settings.acl_subscribe_check
                && let Some(access) = &session.access
                && !access.may_read_under(&session.client_id, filter.filter())
            {
                // 0x80 in 3.1.1.
                reasons.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            options.qos = options.qos.min(self.settings.max_qos);
            reasons.push(ReasonCode(options.qos as u8));
            // A subscription to an existing filter replaces it [MQTT-3.8.4-3]. The stored copy
            // is detached so that the session does not pin the SUBSCRIBE's read buffer.
            let subscription = Subscription {
                filter: filter.detach(),
                options,
                id,
            };
            let new = session
                .subscriptions
                .insert(
                    subscription.filter.as_mqtt_string().clone(),
                    subscription.clone(),
                )
                .is_none();
            granted.push((subscription, new));
        }
        // One return code per filter, in order [MQTT-3.8.4-4], [MQTT-3.9.3-1].
        let refused = reasons.contains(&ReasonCode::NOT_AUTHORIZED);
        let mut suback = SubAck::new(subscribe.packet_id, reasons);
        if refused {
            let base = 2 + 2 + 1 + suback.reasons.len();
            suback.properties.reason_string = self.problem(ReasonCode::NOT_AUTHORIZED, base);
        }
        self.pending().transmit.push(Packet::SubAck(suback));
        if !granted.is_empty() {
            self.pending().events.push_back(Event::Subscribe(granted));
        }
    }

    fn on_unsubscribe(&mut self, unsubscribe: pigeon_proto::Unsubscribe) {
        let Some(session) = &mut self.session else {
            return;
        };
        let mut reasons = Vec::new();
        let mut removed = Vec::new();
        for filter in unsubscribe.filters {
            if session
                .subscriptions
                .remove(filter.as_mqtt_string())
                .is_some()
            {
                reasons.push(ReasonCode::SUCCESS);
                removed.push(filter);
            } else {
                reasons.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        if !self.protocol.is_v5() {
            reasons.clear();
        }
        // UNSUBACK even when nothing matched [MQTT-3.10.4-5].
        self.pending().transmit.push(Packet::UnsubAck(UnsubAck::new(
            unsubscribe.packet_id,
            reasons,
        )));
        if !removed.is_empty() {
            self.pending().events.push_back(Event::Unsubscribe(removed));
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use pigeon_proto::{
        Disconnect, MqttString, PacketId, PingReq, Subscribe, TopicName, Unsubscribe,
    };

    use super::*;
    use crate::session::OutboundLimits;
    use pigeon_proto::SubscriptionOptions;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    fn connect_packet(keep_alive: u16, will: bool) -> Packet {
        let mut c = Connect::new(Protocol::V311, MqttString::from_static("c1"));
        c.keep_alive = keep_alive;
        if will {
            c.will = Some(Will {
                topic: TopicName::from_static("dead"),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            });
        }
        Packet::Connect(Box::new(c))
    }

    /// A connection that went through CONNECT / CONNACK at `t0`.
    fn connected(t0: Instant, keep_alive: u16, will: bool) -> Connection {
        let mut conn = Connection::new(ConnectionSettings::default(), t0);
        conn.handle_packet(connect_packet(keep_alive, will), t0);
        assert!(matches!(conn.poll_event(), Some(Event::Connect(_))));
        assert!(conn.is_connecting());
        let session = Session::new(
            MqttString::from_static("c1"),
            Protocol::V311,
            true,
            OutboundLimits::default(),
        );
        conn.accept(session, false, t0);
        let sent = conn.take_transmit();
        assert!(matches!(&sent[..], [Packet::ConnAck(a)] if a.reason == ReasonCode::SUCCESS));
        conn
    }

    // [MQTT-3.2.2-16]: a v5 CONNACK names the identifier the server assigned; a 3.1.1 CONNACK
    // has no property to carry it.
    #[test]
    fn assigned_client_identifier_is_sent_to_v5_clients_only() {
        for (protocol, expected) in [
            (Protocol::V5, Some(MqttString::from_static("auto-1"))),
            (Protocol::V311, None),
        ] {
            let t0 = crate::clock::now();
            let mut conn = Connection::new(ConnectionSettings::default(), t0);
            let c = Connect::new(protocol, MqttString::new());
            conn.handle_packet(Packet::Connect(Box::new(c)), t0);
            assert!(matches!(conn.poll_event(), Some(Event::Connect(_))));
            let session = Session::new(
                MqttString::from_static("auto-1"),
                protocol,
                true,
                OutboundLimits::default(),
            );
            conn.accept_assigned(session, false, Some(MqttString::from_static("auto-1")), t0);
            let sent = conn.take_transmit();
            let [Packet::ConnAck(ack)] = &sent[..] else {
                panic!("one CONNACK, got {sent:?}");
            };
            assert_eq!(
                ack.properties.assigned_client_identifier, expected,
                "{protocol:?}"
            );
        }
    }

    fn publish(qos: QoS, packet_id: Option<u16>, payload: &'static [u8]) -> Packet {
        let mut p = Publish::new(
            TopicName::from_static("home/led"),
            Bytes::from_static(payload),
        );
        p.qos = qos;
        p.packet_id = packet_id.map(id);
        Packet::Publish(p)
    }

    /// Plays the broker: routes every message the connection reports (as matched) and
    /// returns how many there were.
    fn route_all(conn: &mut Connection) -> usize {
        let mut n = 0;
        while let Some(event) = conn.poll_event() {
            if let Event::Publish { ack, .. } = event {
                conn.routed(ack, true);
                n += 1;
            }
        }
        n
    }

    fn close_reason(conn: &mut Connection) -> Option<CloseReason> {
        while let Some(event) = conn.poll_event() {
            if let Event::Close(reason) = event {
                return Some(reason);
            }
        }
        None
    }

    // [MQTT-3.1.0-1]: the first packet must be CONNECT.
    #[test]
    fn first_packet_must_be_connect() {
        let t0 = crate::clock::now();
        let mut conn = Connection::new(ConnectionSettings::default(), t0);
        conn.handle_packet(Packet::PingReq(PingReq), t0);
        let Some(CloseReason::Violation(v)) = close_reason(&mut conn) else {
            panic!("not closed");
        };
        assert_eq!(v.rule, Some("MQTT-3.1.0-1"));
        assert!(conn.take_transmit().is_empty(), "nothing is answered");
    }

    // [MQTT-3.1.2-2]: an unsupported protocol level gets CONNACK 0x01, then the close.
    #[test]
    fn unsupported_protocol_level_is_answered_before_closing() {
        let t0 = crate::clock::now();
        let mut conn = Connection::new(ConnectionSettings::default(), t0);
        conn.handle_decode_error(DecodeError::UnsupportedProtocolVersion(6));
        assert!(matches!(
            close_reason(&mut conn),
            Some(CloseReason::Violation(_))
        ));
        let sent = conn.take_transmit();
        assert!(
            matches!(&sent[..], [Packet::ConnAck(a)]
                if a.reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION && !a.session_present),
            "{sent:?}"
        );
    }

    // Client PUBLISH under $SYS or $share is acknowledged and dropped, as Mosquitto does.
    #[test]
    fn publish_to_sys_is_acknowledged_not_routed() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 60, false);
        for (n, topic) in [(1, "$SYS/broker/uptime"), (2, "$share/g/t"), (3, "$SYSTEM")] {
            let mut p = Publish::new(
                TopicName::try_from(topic.to_owned()).unwrap(),
                Bytes::from_static(b"spoof"),
            );
            p.qos = QoS::AtLeastOnce;
            p.packet_id = Some(id(n));
            conn.handle_packet(Packet::Publish(p), t0);
            assert!(
                matches!(&conn.take_transmit()[..], [Packet::PubAck(a)] if a.packet_id == id(n))
            );
            assert!(conn.poll_event().is_none(), "{topic} not routed");
        }
        conn.handle_packet(publish(QoS::AtLeastOnce, Some(4), b"fine"), t0);
        assert!(matches!(conn.poll_event(), Some(Event::Publish { .. })));
    }

    // A reload changes the settings of a connection already open.
    #[test]
    fn new_settings_judge_the_packets_that_follow() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 60, false);
        conn.handle_packet(publish(QoS::AtLeastOnce, Some(1), b"big"), t0);
        assert!(matches!(conn.poll_event(), Some(Event::Publish { .. })));
        conn.take_transmit();
        let settings = ConnectionSettings {
            message_size_limit: 2,
            retain_available: false,
            ..ConnectionSettings::default()
        };
        conn.set_settings(settings.clone());
        assert_eq!(conn.settings(), &settings);
        conn.handle_packet(publish(QoS::AtLeastOnce, Some(2), b"big"), t0);
        assert!(matches!(conn.poll_event(), Some(Event::Dropped(_))));
        let Packet::Publish(mut retained) = publish(QoS::AtMostOnce, None, b"r") else {
            unreachable!()
        };
        retained.retain = true;
        conn.handle_packet(Packet::Publish(retained), t0);
        assert!(matches!(
            close_reason(&mut conn),
            Some(CloseReason::Violation(v)) if v.reason == ReasonCode::RETAIN_NOT_SUPPORTED
        ));
    }

    // A reload that no longer lets the client in closes the connection; the will goes out.
    #[test]
    fn revoking_closes_and_publishes_the_will() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 60, true);
        conn.revoke();
        assert!(conn.is_closed());
        assert_eq!(close_reason(&mut conn), Some(CloseReason::Revoked));
        assert!(CloseReason::Revoked.publishes_will());
        assert!(conn.take_will().is_some());
        assert!(
            conn.take_transmit().is_empty(),
            "3.1.1 has no DISCONNECT to send"
        );
    }

    // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
    #[test]
    fn second_connect_closes() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 60, true);
        conn.handle_packet(connect_packet(60, false), t0);
        let Some(CloseReason::Violation(v)) = close_reason(&mut conn) else {
            panic!("not closed");
        };
        assert_eq!(v.rule, Some("MQTT-3.1.0-2"));
        assert!(CloseReason::Violation(v).publishes_will());
        assert!(conn.take_will().is_some());
    }

    // [MQTT-3.1.2-24]: one and a half times the Keep Alive without a packet closes.
    #[test]
    fn keep_alive_is_one_and_a_half_times() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 10, true);
        assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        conn.handle_timeout(t0 + Duration::from_secs(14));
        assert!(!conn.is_closed());
        // Any packet restarts the clock.
        conn.handle_packet(Packet::PingReq(PingReq), t0 + Duration::from_secs(14));
        assert_eq!(conn.take_transmit(), vec![Packet::PingResp(PingResp)]);
        conn.handle_timeout(t0 + Duration::from_secs(28));
        assert!(!conn.is_closed());
        conn.handle_timeout(t0 + Duration::from_secs(29));
        assert_eq!(close_reason(&mut conn), Some(CloseReason::KeepAliveTimeout));
        assert!(CloseReason::KeepAliveTimeout.publishes_will());
    }

    #[test]
    fn keep_alive_zero_never_times_out() {
        let t0 = crate::clock::now();
        let conn = connected(t0, 0, false);
        assert_eq!(conn.poll_timeout(), None);
    }

    #[test]
    fn connect_timeout_closes_silent_connections() {
        let t0 = crate::clock::now();
        let mut conn = Connection::new(ConnectionSettings::default(), t0);
        conn.handle_timeout(t0 + Duration::from_secs(61));
        assert_eq!(close_reason(&mut conn), Some(CloseReason::ConnectTimeout));
    }

    #[test]
    fn qos1_publish_is_acknowledged_and_routed() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 60, false);
        conn.handle_packet(publish(QoS::AtLeastOnce, Some(3), b"ON"), t0);
        // Acknowledged once routed.
        assert!(conn.take_transmit().is_empty());
        let Some(Event::Publish { message: m, ack }) = conn.poll_event() else {
            panic!("not routed");
        };
        conn.routed(ack, false);
        // 3.1.1 has no reason code for "no matching subscribers".
        assert_eq!(
            conn.take_transmit(),
            vec![Packet::PubAck(PubAck::new(id(3)))]
        );
        assert_eq!((m.topic.as_str(), &m.payload[..]), ("home/led", &b"ON"[..]));
    }

    // [MQTT-4.3.3-9]: a QoS 2 PUBLISH resent before PUBREL is acknowledged but not routed
    // again.
    #[test]
    fn qos2_publish_is_routed_once() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 60, false);
        conn.handle_packet(publish(QoS::ExactlyOnce, Some(9), b"x"), t0);
        assert_eq!(route_all(&mut conn), 1);
        let mut resent = publish(QoS::ExactlyOnce, Some(9), b"x");
        if let Packet::Publish(p) = &mut resent {
            p.dup = true;
        }
        conn.handle_packet(resent, t0);
        assert_eq!(
            conn.take_transmit(),
            vec![
                Packet::PubRec(PubRec::new(id(9))),
                Packet::PubRec(PubRec::new(id(9)))
            ]
        );
        assert_eq!(route_all(&mut conn), 0, "routed twice");
        conn.handle_packet(Packet::PubRel(PubRel::new(id(9))), t0);
        assert_eq!(
            conn.take_transmit(),
            vec![Packet::PubComp(PubComp::new(id(9)))]
        );
        // After PUBREL the identifier carries a new message.
        conn.handle_packet(publish(QoS::ExactlyOnce, Some(9), b"y"), t0);
        assert_eq!(route_all(&mut conn), 1);
    }

    #[test]
    fn oversized_messages_are_acknowledged_and_dropped() {
        let t0 = crate::clock::now();
        let mut conn = Connection::new(
            ConnectionSettings {
                message_size_limit: 3,
                ..ConnectionSettings::default()
            },
            t0,
        );
        conn.handle_packet(connect_packet(60, false), t0);
        conn.poll_event();
        let session = Session::new(
            MqttString::from_static("c1"),
            Protocol::V311,
            true,
            OutboundLimits::default(),
        );
        conn.accept(session, false, t0);
        conn.take_transmit();
        conn.handle_packet(publish(QoS::AtLeastOnce, Some(1), b"toolong"), t0);
        assert_eq!(
            conn.take_transmit(),
            vec![Packet::PubAck(PubAck::new(id(1)))]
        );
        assert!(matches!(conn.poll_event(), Some(Event::Dropped(_))));
        assert!(!conn.is_closed());
    }

    #[test]
    fn qos_above_max_qos_closes() {
        let t0 = crate::clock::now();
        let mut conn = Connection::new(
            ConnectionSettings {
                max_qos: QoS::AtLeastOnce,
                ..ConnectionSettings::default()
            },
            t0,
        );
        conn.handle_packet(connect_packet(60, false), t0);
        conn.poll_event();
        let session = Session::new(
            MqttString::from_static("c1"),
            Protocol::V311,
            true,
            OutboundLimits::default(),
        );
        conn.accept(session, false, t0);
        conn.handle_packet(publish(QoS::ExactlyOnce, Some(1), b"x"), t0);
        assert!(matches!(
            close_reason(&mut conn),
            Some(CloseReason::Violation(v)) if v.reason == ReasonCode::QOS_NOT_SUPPORTED
        ));
    }

    #[test]
    fn subscribe_grants_and_replaces() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 60, false);
        let mut sub = Subscribe::new(
            id(1),
            TopicFilter::from_static("home/#"),
            SubscriptionOptions::new(QoS::ExactlyOnce),
        );
        sub.filters.push((
            TopicFilter::from_static("$share/g/x"),
            SubscriptionOptions::new(QoS::AtMostOnce),
        ));
        conn.handle_packet(Packet::Subscribe(sub), t0);
        assert_eq!(
            conn.take_transmit(),
            vec![Packet::SubAck(SubAck::new(
                id(1),
                vec![ReasonCode::GRANTED_QOS_2, ReasonCode::GRANTED_QOS_0]
            ))]
        );
        let Some(Event::Subscribe(granted)) = conn.poll_event() else {
            panic!("no subscribe event");
        };
        // Both new, the shared one included (section 4.8.2, also for 3.1.1 clients as
        // Mosquitto allows).
        assert_eq!(granted.iter().filter(|(_, new)| *new).count(), 2);
        // [MQTT-3.8.4-3]: the same filter again replaces the subscription.
        let again = Subscribe::new(
            id(2),
            TopicFilter::from_static("home/#"),
            SubscriptionOptions::new(QoS::AtMostOnce),
        );
        conn.handle_packet(Packet::Subscribe(again), t0);
        let session = conn.session().unwrap();
        assert_eq!(session.subscriptions.len(), 2);
        assert_eq!(
            session.subscriptions[&MqttString::from_static("home/#")]
                .options
                .qos,
            QoS::AtMostOnce
        );
    }

    #[test]
    fn unsubscribe_answers_even_without_match() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 60, false);
        conn.handle_packet(
            Packet::Unsubscribe(Unsubscribe::new(id(4), vec![TopicFilter::from_static("a")])),
            t0,
        );
        // [MQTT-3.10.4-5]: UNSUBACK even when nothing was removed; 3.1.1 has no payload.
        assert_eq!(
            conn.take_transmit(),
            vec![Packet::UnsubAck(UnsubAck::new(id(4), vec![]))]
        );
        assert!(conn.poll_event().is_none());
    }

    // [MQTT-3.14.4-3]: DISCONNECT discards the will.
    #[test]
    fn disconnect_discards_will() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 60, true);
        conn.handle_packet(Packet::Disconnect(Disconnect::default()), t0);
        assert_eq!(
            close_reason(&mut conn),
            Some(CloseReason::Disconnected { with_will: false })
        );
        assert!(conn.take_will().is_none());
    }

    #[test]
    fn refusal_sends_connack_and_closes() {
        let t0 = crate::clock::now();
        let mut conn = Connection::new(ConnectionSettings::default(), t0);
        conn.handle_packet(connect_packet(60, true), t0);
        conn.poll_event();
        conn.refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        let sent = conn.take_transmit();
        assert!(matches!(&sent[..], [Packet::ConnAck(a)]
            if a.reason == ReasonCode::CLIENT_IDENTIFIER_NOT_VALID && !a.session_present));
        assert_eq!(
            close_reason(&mut conn),
            Some(CloseReason::Refused(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
            ))
        );
        assert!(conn.take_will().is_none());
    }

    #[test]
    fn deliveries_flow_through_the_window() {
        let t0 = crate::clock::now();
        let mut conn = connected(t0, 60, false);
        let message = Arc::new(Message::new(
            TopicName::from_static("t"),
            Bytes::from_static(b"p"),
            QoS::AtLeastOnce,
            false,
        ));
        let d = Delivery::new(message, QoS::AtLeastOnce, false);
        assert!(!conn.deliver(d, 0, t0));
        let sent = conn.take_transmit();
        assert!(matches!(&sent[..], [Packet::Publish(p)] if p.packet_id == Some(id(1))));
        conn.handle_packet(Packet::PubAck(PubAck::new(id(1))), t0);
        assert_eq!(conn.session().unwrap().outbound.inflight_len(), 0);
    }

    // [MQTT-4.4.0-1]: a resumed session resends what was in flight, after CONNACK.
    #[test]
    fn resumed_session_resends_after_connack() {
        let t0 = crate::clock::now();
        let mut session = Session::new(
            MqttString::from_static("c1"),
            Protocol::V311,
            false,
            OutboundLimits::default(),
        );
        let message = Arc::new(Message::new(
            TopicName::from_static("t"),
            Bytes::from_static(b"p"),
            QoS::ExactlyOnce,
            false,
        ));
        let d = Delivery::new(message, QoS::ExactlyOnce, false);
        assert!(matches!(
            session.outbound.push(d, Link::Online { backlog: 0 }, t0),
            Pushed::Send(_)
        ));
        let mut conn = Connection::new(ConnectionSettings::default(), t0);
        conn.handle_packet(connect_packet(60, false), t0);
        conn.poll_event();
        conn.accept(session, true, t0);
        let sent = conn.take_transmit();
        assert!(matches!(&sent[0], Packet::ConnAck(a) if a.session_present));
        assert!(matches!(&sent[1], Packet::Publish(p) if p.dup && p.packet_id == Some(id(1))));
    }
}
