//! Decode and encode errors. Every decode error names the MQTT 5.0 reason code a receiver
//! answers it with and, where one applies, the normative statement it breaks.

use crate::{PacketType, Protocol, ReasonCode, StringError, TopicError};

/// Why bytes are not a valid MQTT control packet.
///
/// Incomplete input is never an error: decoders return `Ok(None)` and wait for more bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet (fixed header included) is larger than the configured maximum. Detected from
    /// the fixed header, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Total size the fixed header announced.
        size: u64,
        /// The configured maximum.
        max: u32,
    },
    /// A Variable Byte Integer continued past its fourth byte (section 1.5.5).
    #[error("variable byte integer longer than 4 bytes")]
    VarIntTooLong,
    /// A Variable Byte Integer not in its shortest form, such as `0x80 0x00` for 0
    /// [MQTT-1.5.5-1]; Mosquitto refuses these too.
    #[error("variable byte integer not in its shortest form")]
    VarIntNotMinimal,
    /// A reserved control packet type: 0, or 15 (AUTH) before MQTT 5.0.
    #[error("reserved control packet type {0}")]
    ReservedPacketType(u8),
    /// The flag bits of the fixed header are not those the spec fixes for this packet type.
    #[error("invalid fixed header flags {flags:#06b} for {packet:?}")]
    InvalidFlags {
        /// The packet type.
        packet: PacketType,
        /// The low four bits of the first byte.
        flags: u8,
    },
    /// A PUBLISH with QoS 3.
    #[error("QoS 3 is not a valid QoS")]
    InvalidQoS,
    /// A Will QoS of 3 in CONNECT.
    #[error("will QoS 3 is not a valid QoS")]
    InvalidWillQoS,
    /// A subscription asking for QoS 3 (a Protocol Error in 5.0, malformed in 3.1.1).
    #[error("subscription QoS 3 is not a valid QoS")]
    InvalidSubscriptionQoS,
    /// DUP set on a QoS 0 PUBLISH.
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQoS0,
    /// A field runs past the end the Remaining Length sets.
    #[error("{0:?} ends before its fields do")]
    Truncated(PacketType),
    /// Bytes are left over after the last field the packet can have.
    #[error("{0:?} has bytes after its last field")]
    TrailingBytes(PacketType),
    /// A UTF-8 Encoded String broke a rule of section 1.5.4.
    #[error("invalid string: {0}")]
    InvalidString(StringError),
    /// A Topic Name is not valid.
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// A Topic Filter is not valid.
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// The CONNECT protocol name is neither `MQTT` nor `MQIsdp`.
    #[error("unknown protocol name in CONNECT")]
    InvalidProtocolName,
    /// The CONNECT protocol level is not 3, 4 or 5, or does not go with the protocol name.
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// The reserved bit of the CONNECT flags is set.
    #[error("reserved CONNECT flag set")]
    ConnectReservedFlag,
    /// Will QoS set without the Will Flag.
    #[error("will QoS set without the will flag")]
    WillQoSWithoutWill,
    /// Will Retain set without the Will Flag.
    #[error("will retain set without the will flag")]
    WillRetainWithoutWill,
    /// The password flag is set without the user name flag (MQTT 3.1 and 3.1.1 only).
    #[error("password flag set without user name flag")]
    PasswordWithoutUserName,
    /// Reserved bits of the CONNACK acknowledge flags are set.
    #[error("reserved CONNACK flags set")]
    ConnAckReservedFlags,
    /// Session Present set on a CONNACK that refuses the connection.
    #[error("session present set on a refused CONNACK")]
    SessionPresentOnError,
    /// A Packet Identifier of zero where one is required.
    #[error("packet identifier 0 in {0:?}")]
    ZeroPacketId(PacketType),
    /// A SUBSCRIBE or UNSUBSCRIBE without a topic filter.
    #[error("{0:?} without any topic filter")]
    NoTopicFilters(PacketType),
    /// Reserved bits of the subscription options are set.
    #[error("reserved subscription option bits set")]
    SubscriptionOptionsReserved,
    /// Retain Handling 3.
    #[error("retain handling 3 is not valid")]
    InvalidRetainHandling,
    /// No Local on a shared subscription.
    #[error("no local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// A reason code the spec does not allow in this packet.
    #[error("reason code {code:#04x} is not valid in {packet:?}")]
    InvalidReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The code received.
        code: u8,
    },
    /// A property identifier that is unknown or not valid in this packet.
    #[error("property {id:#04x} is not valid in {packet:?}")]
    InvalidProperty {
        /// The packet type.
        packet: PacketType,
        /// The property identifier.
        id: u8,
    },
    /// A property that may appear once appeared again.
    #[error("property {0:#04x} appears more than once")]
    DuplicateProperty(u8),
    /// A property value outside its allowed range (a Receive Maximum of 0, a Maximum QoS of 2,
    /// a Topic Alias of 0, a boolean other than 0 or 1, ...).
    #[error("property {0:#04x} has a value the spec does not allow")]
    InvalidPropertyValue(u8),
    /// Authentication Data without an Authentication Method.
    #[error("authentication data without authentication method")]
    AuthDataWithoutMethod,
    /// An AUTH packet with a reason code but no Authentication Method (section 3.15.2.2.2).
    #[error("AUTH without authentication method")]
    AuthWithoutMethod,
    /// A PUBLISH with an empty topic and no Topic Alias.
    #[error("PUBLISH with an empty topic name and no topic alias")]
    EmptyTopicWithoutAlias,
}

impl DecodeError {
    /// The MQTT 5.0 reason code a receiver sends (in CONNACK or DISCONNECT) when it closes the
    /// connection over this error.
    pub fn reason_code(self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            UnsupportedProtocolVersion(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            InvalidTopicName(e) | InvalidTopicFilter(e) => e.reason_code(),
            ZeroPacketId(_)
            | NoTopicFilters(_)
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription
            | InvalidReasonCode { .. }
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | AuthDataWithoutMethod
            | AuthWithoutMethod
            | InvalidSubscriptionQoS
            | EmptyTopicWithoutAlias
            | InvalidProtocolName
            | SessionPresentOnError => ReasonCode::PROTOCOL_ERROR,
            VarIntTooLong
            | VarIntNotMinimal
            | ReservedPacketType(_)
            | InvalidFlags { .. }
            | InvalidQoS
            | InvalidWillQoS
            | DupWithQoS0
            | Truncated(_)
            | TrailingBytes(_)
            | InvalidString(_)
            | ConnectReservedFlag
            | WillQoSWithoutWill
            | WillRetainWithoutWill
            | PasswordWithoutUserName
            | ConnAckReservedFlags
            | SubscriptionOptionsReserved
            | InvalidProperty { .. } => ReasonCode::MALFORMED_PACKET,
        }
    }

    /// The normative statement this error breaks, as numbered in the specification of
    /// `protocol` (MQTT 3.1 has no numbered statements; it uses 3.1.1's), or `None` where the
    /// rule is not a numbered statement.
    pub fn rule(self, protocol: Protocol) -> Option<&'static str> {
        use DecodeError::*;
        let v5 = protocol == Protocol::V5;
        let pick = |v311: &'static str, v500: &'static str| Some(if v5 { v500 } else { v311 });
        match self {
            InvalidFlags {
                packet: PacketType::PubRel,
                ..
            } => pick("MQTT-3.6.1-1", "MQTT-3.6.1-1"),
            InvalidFlags {
                packet: PacketType::Subscribe,
                ..
            } => pick("MQTT-3.8.1-1", "MQTT-3.8.1-1"),
            InvalidFlags {
                packet: PacketType::Unsubscribe,
                ..
            } => pick("MQTT-3.10.1-1", "MQTT-3.10.1-1"),
            InvalidFlags { .. } => pick("MQTT-2.2.2-2", "MQTT-2.1.3-1"),
            InvalidQoS => pick("MQTT-3.3.1-4", "MQTT-3.3.1-4"),
            DupWithQoS0 => pick("MQTT-3.3.1-2", "MQTT-3.3.1-2"),
            InvalidString(StringError::InvalidUtf8) => pick("MQTT-1.5.3-1", "MQTT-1.5.4-1"),
            InvalidString(StringError::NullCharacter) => pick("MQTT-1.5.3-2", "MQTT-1.5.4-2"),
            InvalidTopicName(e) | InvalidTopicFilter(e) => e.rule(protocol),
            InvalidProtocolName => pick("MQTT-3.1.2-1", "MQTT-3.1.2-1"),
            UnsupportedProtocolVersion(_) => pick("MQTT-3.1.2-2", "MQTT-3.1.2-2"),
            ConnectReservedFlag => pick("MQTT-3.1.2-3", "MQTT-3.1.2-3"),
            InvalidWillQoS => pick("MQTT-3.1.2-14", "MQTT-3.1.2-12"),
            WillQoSWithoutWill => pick("MQTT-3.1.2-13", "MQTT-3.1.2-11"),
            WillRetainWithoutWill => pick("MQTT-3.1.2-15", "MQTT-3.1.2-13"),
            InvalidSubscriptionQoS => pick("MQTT-3-8.3-4", "MQTT-3.8.3-5"),
            PasswordWithoutUserName => pick("MQTT-3.1.2-22", "MQTT-3.1.2-22"),
            // Numbered only in 5.0; 3.1.1 states the rule without a number.
            ConnAckReservedFlags if v5 => Some("MQTT-3.2.2-1"),
            SessionPresentOnError => pick("MQTT-3.2.2-4", "MQTT-3.2.2-6"),
            ZeroPacketId(_) => pick("MQTT-2.3.1-1", "MQTT-2.2.1-3"),
            NoTopicFilters(PacketType::Unsubscribe) => pick("MQTT-3.10.3-2", "MQTT-3.10.3-2"),
            NoTopicFilters(_) => pick("MQTT-3.8.3-3", "MQTT-3.8.3-2"),
            SubscriptionOptionsReserved => pick("MQTT-3.8.3-4", "MQTT-3.8.3-5"),
            NoLocalOnSharedSubscription if v5 => Some("MQTT-3.8.3-4"),
            InvalidPropertyValue(0x23) if v5 => Some("MQTT-3.3.2-8"),
            VarIntNotMinimal if v5 => Some("MQTT-1.5.5-1"),
            _ => None,
        }
    }
}

impl From<StringError> for DecodeError {
    fn from(e: StringError) -> Self {
        DecodeError::InvalidString(e)
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet's Remaining Length would exceed 268,435,455 bytes.
    #[error("packet too large to encode: remaining length {0} exceeds 268435455")]
    PacketTooLarge(usize),
    /// A binary field or string is longer than 65,535 bytes.
    #[error("field of {0} bytes is longer than 65535 bytes")]
    FieldTooLong(usize),
    /// A PUBLISH with QoS 1 or 2 has no packet identifier, or a QoS 0 PUBLISH has one.
    #[error("PUBLISH packet identifier does not match its QoS")]
    PacketIdMismatch,
    /// The packet does not exist in this protocol version (AUTH before MQTT 5.0).
    #[error("{0:?} does not exist in this protocol version")]
    NotInProtocol(PacketType),
    /// A SUBSCRIBE or UNSUBSCRIBE without topic filters.
    #[error("{0:?} needs at least one topic filter")]
    NoTopicFilters(PacketType),
    /// A PUBLISH with an empty topic and no Topic Alias.
    #[error("PUBLISH with an empty topic name needs a topic alias")]
    EmptyTopicWithoutAlias,
    /// A field the receiver would refuse: a Maximum QoS of 2, Session Present on a refused
    /// CONNACK, and the like.
    #[error("invalid packet: {0}")]
    Invalid(&'static str),
    /// A password without a user name, which MQTT 3.x does not allow [MQTT-3.1.2-22].
    #[error("MQTT 3.x cannot send a password without a user name")]
    PasswordWithoutUserName,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_follow_the_spec() {
        assert_eq!(
            DecodeError::PacketTooLarge { size: 10, max: 5 }.reason_code(),
            ReasonCode::PACKET_TOO_LARGE
        );
        assert_eq!(
            DecodeError::InvalidQoS.reason_code(),
            ReasonCode::MALFORMED_PACKET
        );
        assert_eq!(
            DecodeError::DuplicateProperty(0x11).reason_code(),
            ReasonCode::PROTOCOL_ERROR
        );
        assert_eq!(
            DecodeError::UnsupportedProtocolVersion(6).reason_code(),
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
        );
    }

    #[test]
    fn rules_are_numbered_per_version() {
        let e = DecodeError::InvalidString(StringError::InvalidUtf8);
        assert_eq!(e.rule(Protocol::V5), Some("MQTT-1.5.4-1"));
        assert_eq!(e.rule(Protocol::V311), Some("MQTT-1.5.3-1"));
        assert_eq!(e.rule(Protocol::V31), Some("MQTT-1.5.3-1"));
    }
}
