//! Per-client session state, apart from any socket or clock.
//!
//! - [`Outbound`]: messages to the client: the in-flight window, the queue behind it, packet
//!   identifier assignment, acknowledgement states and redelivery on resumption.
//! - [`Inbound`]: QoS 2 messages from the client, delivered exactly once.

mod inbound;
mod outbound;

pub use self::inbound::Inbound;
pub use self::outbound::{AckError, Link, Outbound, OutboundLimits, Pushed};
