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
//! - [`AuthMethod`]: where an MQTT 5.0 enhanced authentication method plugs in.

mod connection;
mod enhanced_auth;
mod inbound;
mod outbound;
#[cfg(test)]
mod v5_props;
#[cfg(test)]
mod v5_tests;

use std::collections::BTreeMap;

use std::time::Duration;

use crate::auth::ClientAccess;
use pigeon_proto::properties::SubscriptionId;
use pigeon_proto::{MqttString, Protocol, SubscriptionOptions, TopicFilter};

pub use self::connection::{CloseReason, Connection, ConnectionSettings, Event, Violation};
pub use self::enhanced_auth::{AuthExchange, AuthMethod, AuthMethods, AuthStep};
pub use self::inbound::Inbound;
pub use self::outbound::{AckError, Journal, Link, Outbound, OutboundLimits, Pushed};

/// The value the subscription index keeps per subscriber and filter.
pub type SubscriptionEntry = (SubscriptionOptions, Option<SubscriptionId>);

/// The state a session keeps between connections (MQTT 5.0 section 4.1, 3.1.1 section 4.1).
#[derive(Debug)]
pub struct Session {
    /// The Client Identifier.
    pub client_id: MqttString,
    /// The protocol version of the connection that last used the session.
    pub protocol: Protocol,
    /// Whether the session ends with its connection: an MQTT 3.x Clean Session, or an MQTT 5.0
    /// Session Expiry Interval of 0 (kept in step with `expiry`).
    pub clean: bool,
    /// How long the session outlives its connection, in seconds (see
    /// [`expiry`](Self::expiry); 32 bits, as on the wire: every connection's state holds it).
    expiry_secs: Option<u32>,
    /// Subscriptions by their full filter text (with any `$share/group/` prefix). (A
    /// `BTreeMap`: 24 bytes in every session, where a `HashMap` takes 48.)
    pub subscriptions: BTreeMap<MqttString, Subscription>,
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
        limits: impl Into<std::sync::Arc<OutboundLimits>>,
    ) -> Self {
        Session {
            client_id,
            protocol,
            clean,
            expiry_secs: if clean { Some(0) } else { None },
            subscriptions: BTreeMap::new(),
            outbound: Outbound::new(limits),
            inbound: Inbound::new(),
            access: None,
        }
    }
}

impl Session {
    /// How long the session outlives its connection: `Some(0)` not at all, `None` for ever
    /// (MQTT 3.x persistent sessions, and 5.0's 0xFFFFFFFF) [MQTT-3.1.2-23].
    pub fn expiry(&self) -> Option<Duration> {
        self.expiry_secs
            .map(|secs| Duration::from_secs(u64::from(secs)))
    }

    /// Sets how long the session outlives its connection, from an MQTT 5.0 Session Expiry
    /// Interval in seconds (0xFFFFFFFF: for ever) [MQTT-3.1.2-23].
    pub fn set_expiry_interval(&mut self, secs: u32) {
        self.expiry_secs = match secs {
            u32::MAX => None,
            secs => Some(secs),
        };
        self.clean = secs == 0;
    }
}

/// One subscription as the session and the subscription index keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The filter (with any `$share/{group}/` prefix).
    pub filter: TopicFilter,
    /// Its options: maximum QoS, No Local, Retain As Published, Retain Handling.
    pub options: SubscriptionOptions,
    /// The Subscription Identifier the client gave it (MQTT 5.0) (section 3.8.2.1.2).
    pub id: Option<SubscriptionId>,
}
