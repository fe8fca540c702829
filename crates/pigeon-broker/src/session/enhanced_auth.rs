//! MQTT 5.0 enhanced authentication (section 4.12): where an authentication method plugs in.
//!
//! A client names a method in CONNECT's Authentication Method property; the broker runs an
//! exchange of AUTH packets (Continue authentication, 0x18) with that method until it
//! succeeds (CONNACK Success, carrying the method and any last data) or fails (CONNACK with
//! the failure's reason). A connected client may authenticate again with AUTH
//! Re-authenticate (0x19), using the same method [MQTT-4.12.1-1]. The broker offers the
//! methods in [`AuthMethods`]; a method it does not offer is refused with 0x8C (Bad
//! authentication method), as Mosquitto does without a plugin that knows it.
//!
//! A method is the [`AuthMethod`] trait: it starts an [`AuthExchange`] per attempt, and the
//! exchange answers each piece of the client's Authentication Data with an [`AuthStep`]. The
//! state machine in [`Connection`](super::Connection) does the rest (packets, states,
//! Protocol Errors), so a method is only its own logic and is tested without sockets.

use std::fmt;
use std::sync::Arc;

use pigeon_proto::{Bytes, ReasonCode};

/// What one step of an exchange decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// More is needed: send the client AUTH Continue authentication (0x18) with this
    /// Authentication Data, and wait for its answer.
    Continue(Bytes),
    /// Authenticated.
    Success {
        /// Authentication Data for the CONNACK (or the AUTH Success of a
        /// re-authentication), if the method has a last word.
        data: Option<Bytes>,
        /// The identity established, used as the username for ACLs (`None` keeps the
        /// CONNECT's User Name).
        username: Option<String>,
    },
    /// Refused with this reason code (0x87 Not authorized, 0x86 Bad User Name or
    /// Password, ...).
    Failed(ReasonCode),
}

/// One attempt at authentication by one method.
pub trait AuthExchange: Send + fmt::Debug {
    /// The client's next Authentication Data (from AUTH Continue authentication).
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep;
}

/// An enhanced authentication method the broker offers.
pub trait AuthMethod: Send + Sync + fmt::Debug {
    /// Its name, as the Authentication Method property carries it (e.g. `SCRAM-SHA-512`).
    fn name(&self) -> &str;

    /// Begins an attempt for client `client_id` (with the CONNECT's User Name, if any) whose
    /// CONNECT, or AUTH Re-authenticate, carried `data`; returns the exchange and its first
    /// step.
    fn start(
        &self,
        client_id: &str,
        username: Option<&str>,
        data: Option<&[u8]>,
    ) -> (Box<dyn AuthExchange>, AuthStep);
}

/// The methods a listener offers (none by default).
#[derive(Clone, Default)]
pub struct AuthMethods(Arc<[Arc<dyn AuthMethod>]>);

impl AuthMethods {
    /// These methods.
    pub fn new(methods: Vec<Arc<dyn AuthMethod>>) -> Self {
        AuthMethods(methods.into())
    }

    /// The method called `name`, if offered.
    pub fn find(&self, name: &str) -> Option<&Arc<dyn AuthMethod>> {
        self.0.iter().find(|m| m.name() == name)
    }

    /// Whether no method is offered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for AuthMethods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|m| m.name()))
            .finish()
    }
}

/// Equal when they offer the same methods by name (settings are compared on reload).
impl PartialEq for AuthMethods {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(other.0.iter())
                .all(|(a, b)| a.name() == b.name())
    }
}

impl Eq for AuthMethods {}
