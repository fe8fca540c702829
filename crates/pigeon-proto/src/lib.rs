//! `pigeon-proto`: the MQTT 3.1, 3.1.1 and 5.0 wire protocol, sans I/O.
//!
//! This crate turns bytes into packets and packets into bytes. It does no I/O, reads no clock,
//! spawns nothing and holds no global state: the same input always gives the same output, so
//! the broker, the client, tests and fuzzers all drive it the same way.
//!
//! ```text
//!   socket bytes --> Decoder::decode(&mut BytesMut) --> Ok(Some(Packet)) | Ok(None) (need more)
//!                                                     | Err(DecodeError { reason code, rule })
//!   Packet --> Packet::encode(protocol, &mut BytesMut) --> socket bytes
//! ```
//!
//! One packet model serves every protocol level; the level is passed to encode and decode.
//! MQTT 3.x encoders leave out what 3.x cannot carry (properties, reason codes on acks).
//!
//! Decoding is zero-copy: payloads, topics, strings and binary properties are [`Bytes`]
//! slices of the input buffer. Every rule of the specifications' chapters 1 to 3 that can be
//! checked on one packet is checked, and each failure is a [`DecodeError`] carrying the MQTT 5.0
//! reason code to answer with and, where there is one, the normative statement broken.
//! Rules that need session state (a second CONNECT, topic alias ranges, receive maximum)
//! belong to the broker and client.
//!
//! Layout:
//! - [`Decoder`], [`Packet`]: framing, incremental decoding, encoding.
//! - `packet/`: one module per control packet type.
//! - [`properties`]: MQTT 5.0 properties, one typed set per packet.
//! - [`ReasonCode`], [`DecodeError`], [`EncodeError`].
//! - [`TopicName`], [`TopicFilter`], [`matches()`]: topic validation and matching.
//! - [`MqttString`]: validated UTF-8 strings.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod error;
mod frame;
mod packet;
pub mod properties;
mod reason;
mod string;
mod topic;

#[doc(hidden)]
pub mod fuzz;

use std::fmt;
use std::num::NonZeroU16;

pub use crate::codec::MAX_VAR_INT;
pub use crate::error::{DecodeError, EncodeError};
pub use crate::frame::{Decoder, FrameHeader};
pub use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PingReq, PingResp, PubAck, PubComp, PubRec, PubRel,
    Publish, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
pub use crate::properties::PayloadFormat;
pub use crate::reason::ReasonCode;
pub use crate::string::{MqttString, StringError};
pub use crate::topic::{Level, TopicError, TopicFilter, TopicName, matches};
pub use bytes::{Bytes, BytesMut};

/// The MQTT protocol version of a connection, from the CONNECT protocol level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl Protocol {
    /// The Protocol Level byte of CONNECT.
    pub const fn level(self) -> u8 {
        match self {
            Protocol::V31 => 3,
            Protocol::V311 => 4,
            Protocol::V5 => 5,
        }
    }

    /// The Protocol Name of CONNECT.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::V31 => "MQIsdp",
            Protocol::V311 | Protocol::V5 => "MQTT",
        }
    }

    /// Whether this version has properties and reason codes.
    pub const fn is_v5(self) -> bool {
        matches!(self, Protocol::V5)
    }
}

/// Quality of Service (section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// QoS 0: at most once.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: at least once.
    AtLeastOnce = 1,
    /// QoS 2: exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a two-bit value; 3 is not a QoS.
    pub const fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// The MQTT control packet types (section 2.1.2), with their wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are the spec's
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The type for the high nibble of a fixed header; 0 is reserved.
    pub const fn from_u8(value: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match value {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }

    /// The name the specifications and Mosquitto's logs use, such as `PUBLISH`.
    pub const fn name(self) -> &'static str {
        use PacketType::*;
        match self {
            Connect => "CONNECT",
            ConnAck => "CONNACK",
            Publish => "PUBLISH",
            PubAck => "PUBACK",
            PubRec => "PUBREC",
            PubRel => "PUBREL",
            PubComp => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubAck => "UNSUBACK",
            PingReq => "PINGREQ",
            PingResp => "PINGRESP",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Packet Identifier: never zero [MQTT-2.2.1-3].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// The first identifier a session hands out (Mosquitto starts every client at 1).
    pub const FIRST: PacketId = PacketId(NonZeroU16::MIN);

    /// The identifier for `value`, or `None` for 0.
    pub const fn new(value: u16) -> Option<PacketId> {
        match NonZeroU16::new(value) {
            Some(v) => Some(PacketId(v)),
            None => None,
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The identifier after this one, wrapping from 65535 to 1.
    pub const fn next(self) -> PacketId {
        match NonZeroU16::new(self.0.get().wrapping_add(1)) {
            Some(v) => PacketId(v),
            None => PacketId::FIRST,
        }
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_wrap_past_zero() {
        assert_eq!(PacketId::new(0), None);
        assert_eq!(PacketId::FIRST.get(), 1);
        assert_eq!(PacketId::new(7).unwrap().next().get(), 8);
        assert_eq!(PacketId::new(u16::MAX).unwrap().next(), PacketId::FIRST);
    }

    #[test]
    fn qos_values() {
        assert_eq!(QoS::from_u8(2), Some(QoS::ExactlyOnce));
        assert_eq!(QoS::from_u8(3), None);
    }

    #[test]
    fn packet_type_values() {
        for v in 1..=15u8 {
            assert_eq!(PacketType::from_u8(v).map(|t| t as u8), Some(v));
        }
        assert_eq!(PacketType::from_u8(0), None);
        assert_eq!(PacketType::from_u8(16), None);
    }
}
