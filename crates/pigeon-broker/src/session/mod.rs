//! Per-client state, apart from any socket or clock.
//!
//! - [`Session`]: what outlives a connection when the client asks for a persistent session:
//!   its subscriptions and its message state.
//! - [`Connection`]: the protocol state machine of one network connection. It takes decoded
//!   packets, deliveries and ticks with `now` as an argument, and produces packets to send and
//!   [`Event`]s for the broker; it never touches a socket or reads a clock.
//! - [`Outbound`]: messages to the client: the in-flight window, the queue behind it, packet
//!   identifier assignment, acknowledgement states and redelivery on resumption.
//! - [`Inbound`]: QoS 2 messages from the client, delivered exactly once.

mod connection;
mod inbound;
mod outbound;

use std::collections::HashMap;

use crate::auth::ClientAccess;
use pigeon_proto::{MqttString, Protocol, SubscriptionOptions, TopicFilter};

pub use self::connection::{CloseReason, Connection, ConnectionSettings, Event, Violation};
pub use self::inbound::Inbound;
pub use self::outbound::{AckError, Link, Outbound, OutboundLimits, Pushed};

/// The state a session keeps between connections (MQTT 5.0 section 4.1, 3.1.1 section 4.1).
#[derive(Debug)]
pub struct Session {
    /// The Client Identifier.
    pub client_id: MqttString,
    /// The protocol version of the connection that last used the session.
    pub protocol: Protocol,
    /// Whether the session ends with its connection (Clean Session / Clean Start).
    pub clean: bool,
    /// Subscriptions by their full filter text (with any `$share/group/` prefix).
    pub subscriptions: HashMap<MqttString, (TopicFilter, SubscriptionOptions)>,
    /// Messages to the client.
    pub outbound: Outbound,
    /// QoS 2 messages from the client waiting for PUBREL.
    pub inbound: Inbound,
    /// What the client may read and write (its ACL, username and identifier), set when it
    /// connects and on each reload; `None` until then (everything allowed). Messages are
    /// checked against it when they are delivered or queued.
    pub access: Option<ClientAccess>,
}

impl Session {
    /// A new, empty session.
    pub fn new(
        client_id: MqttString,
        protocol: Protocol,
        clean: bool,
        limits: OutboundLimits,
    ) -> Self {
        Session {
            client_id,
            protocol,
            clean,
            subscriptions: HashMap::new(),
            outbound: Outbound::new(limits),
            inbound: Inbound::new(),
            access: None,
        }
    }
}
