//! MQTT 5.0 reason codes (section 2.4), and the MQTT 3.x return codes they map to.

use std::fmt;

use crate::PacketType;

/// A one-byte MQTT 5.0 Reason Code.
///
/// A newtype rather than an enum because the spec gives some values several names
/// (0x00 is Success, Normal disconnection and Granted QoS 0). The constants follow the order
/// and values of table 2-6. Decoders accept only the codes the spec lists for each packet
/// ([`ReasonCode::is_valid_for`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReasonCode(pub u8);

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $text:literal, [$($packet:ident),*]; )*) => {
        impl ReasonCode {
            $( $(#[$doc])* pub const $name: ReasonCode = ReasonCode($value); )*

            /// The spec's name for this code, as the packet it appears in reads it. Unknown codes
            /// read as "Unknown reason code".
            pub fn description(self, packet: PacketType) -> &'static str {
                match (self.0, packet) {
                    (0x00, PacketType::Disconnect) => "Normal disconnection",
                    (0x00, PacketType::SubAck) => "Granted QoS 0",
                    $( ($value, _) => $text, )*
                    _ => "Unknown reason code",
                }
            }

            /// Whether MQTT 5.0 lets `packet` carry this code.
            pub fn is_valid_for(self, packet: PacketType) -> bool {
                match packet {
                    // These codes are listed once for several packets; the macro expands each
                    // code's list of packets.
                    PacketType::Connect
                    | PacketType::Publish
                    | PacketType::Subscribe
                    | PacketType::Unsubscribe
                    | PacketType::PingReq
                    | PacketType::PingResp => false,
                    _ => match self.0 {
                        $( $value => [$(PacketType::$packet),*].contains(&packet), )*
                        _ => false,
                    },
                }
            }
        }
    };
}

reason_codes! {
    /// 0x00 Success (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH), also
    /// Normal disconnection (DISCONNECT) and Granted QoS 0 (SUBACK).
    SUCCESS = 0x00, "Success", [ConnAck, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Disconnect, Auth];
    /// 0x01 Granted QoS 1 (SUBACK).
    GRANTED_QOS_1 = 0x01, "Granted QoS 1", [SubAck];
    /// 0x02 Granted QoS 2 (SUBACK).
    GRANTED_QOS_2 = 0x02, "Granted QoS 2", [SubAck];
    /// 0x04 Disconnect with Will Message (DISCONNECT).
    DISCONNECT_WITH_WILL_MESSAGE = 0x04, "Disconnect with Will Message", [Disconnect];
    /// 0x10 No matching subscribers (PUBACK, PUBREC).
    NO_MATCHING_SUBSCRIBERS = 0x10, "No matching subscribers", [PubAck, PubRec];
    /// 0x11 No subscription existed (UNSUBACK).
    NO_SUBSCRIPTION_EXISTED = 0x11, "No subscription existed", [UnsubAck];
    /// 0x18 Continue authentication (AUTH).
    CONTINUE_AUTHENTICATION = 0x18, "Continue authentication", [Auth];
    /// 0x19 Re-authenticate (AUTH).
    RE_AUTHENTICATE = 0x19, "Re-authenticate", [Auth];
    /// 0x80 Unspecified error.
    UNSPECIFIED_ERROR = 0x80, "Unspecified error", [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    /// 0x81 Malformed Packet.
    MALFORMED_PACKET = 0x81, "Malformed Packet", [ConnAck, Disconnect];
    /// 0x82 Protocol Error.
    PROTOCOL_ERROR = 0x82, "Protocol Error", [ConnAck, Disconnect];
    /// 0x83 Implementation specific error.
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83, "Implementation specific error", [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    /// 0x84 Unsupported Protocol Version (CONNACK).
    UNSUPPORTED_PROTOCOL_VERSION = 0x84, "Unsupported Protocol Version", [ConnAck];
    /// 0x85 Client Identifier not valid (CONNACK).
    CLIENT_IDENTIFIER_NOT_VALID = 0x85, "Client Identifier not valid", [ConnAck];
    /// 0x86 Bad User Name or Password (CONNACK).
    BAD_USER_NAME_OR_PASSWORD = 0x86, "Bad User Name or Password", [ConnAck];
    /// 0x87 Not authorized.
    NOT_AUTHORIZED = 0x87, "Not authorized", [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    /// 0x88 Server unavailable (CONNACK).
    SERVER_UNAVAILABLE = 0x88, "Server unavailable", [ConnAck];
    /// 0x89 Server busy.
    SERVER_BUSY = 0x89, "Server busy", [ConnAck, Disconnect];
    /// 0x8A Banned (CONNACK).
    BANNED = 0x8A, "Banned", [ConnAck];
    /// 0x8B Server shutting down (DISCONNECT).
    SERVER_SHUTTING_DOWN = 0x8B, "Server shutting down", [Disconnect];
    /// 0x8C Bad authentication method.
    BAD_AUTHENTICATION_METHOD = 0x8C, "Bad authentication method", [ConnAck, Disconnect];
    /// 0x8D Keep Alive timeout (DISCONNECT).
    KEEP_ALIVE_TIMEOUT = 0x8D, "Keep Alive timeout", [Disconnect];
    /// 0x8E Session taken over (DISCONNECT).
    SESSION_TAKEN_OVER = 0x8E, "Session taken over", [Disconnect];
    /// 0x8F Topic Filter invalid.
    TOPIC_FILTER_INVALID = 0x8F, "Topic Filter invalid", [SubAck, UnsubAck, Disconnect];
    /// 0x90 Topic Name invalid.
    TOPIC_NAME_INVALID = 0x90, "Topic Name invalid", [ConnAck, PubAck, PubRec, Disconnect];
    /// 0x91 Packet Identifier in use.
    PACKET_IDENTIFIER_IN_USE = 0x91, "Packet Identifier in use", [PubAck, PubRec, SubAck, UnsubAck];
    /// 0x92 Packet Identifier not found (PUBREL, PUBCOMP).
    PACKET_IDENTIFIER_NOT_FOUND = 0x92, "Packet Identifier not found", [PubRel, PubComp];
    /// 0x93 Receive Maximum exceeded (DISCONNECT).
    RECEIVE_MAXIMUM_EXCEEDED = 0x93, "Receive Maximum exceeded", [Disconnect];
    /// 0x94 Topic Alias invalid (DISCONNECT).
    TOPIC_ALIAS_INVALID = 0x94, "Topic Alias invalid", [Disconnect];
    /// 0x95 Packet too large.
    PACKET_TOO_LARGE = 0x95, "Packet too large", [ConnAck, Disconnect];
    /// 0x96 Message rate too high (DISCONNECT).
    MESSAGE_RATE_TOO_HIGH = 0x96, "Message rate too high", [Disconnect];
    /// 0x97 Quota exceeded.
    QUOTA_EXCEEDED = 0x97, "Quota exceeded", [ConnAck, PubAck, PubRec, SubAck, Disconnect];
    /// 0x98 Administrative action (DISCONNECT).
    ADMINISTRATIVE_ACTION = 0x98, "Administrative action", [Disconnect];
    /// 0x99 Payload format invalid.
    PAYLOAD_FORMAT_INVALID = 0x99, "Payload format invalid", [ConnAck, PubAck, PubRec, Disconnect];
    /// 0x9A Retain not supported.
    RETAIN_NOT_SUPPORTED = 0x9A, "Retain not supported", [ConnAck, Disconnect];
    /// 0x9B QoS not supported.
    QOS_NOT_SUPPORTED = 0x9B, "QoS not supported", [ConnAck, Disconnect];
    /// 0x9C Use another server.
    USE_ANOTHER_SERVER = 0x9C, "Use another server", [ConnAck, Disconnect];
    /// 0x9D Server moved.
    SERVER_MOVED = 0x9D, "Server moved", [ConnAck, Disconnect];
    /// 0x9E Shared Subscriptions not supported.
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E, "Shared Subscriptions not supported", [SubAck, Disconnect];
    /// 0x9F Connection rate exceeded.
    CONNECTION_RATE_EXCEEDED = 0x9F, "Connection rate exceeded", [ConnAck, Disconnect];
    /// 0xA0 Maximum connect time (DISCONNECT).
    MAXIMUM_CONNECT_TIME = 0xA0, "Maximum connect time", [Disconnect];
    /// 0xA1 Subscription Identifiers not supported.
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1, "Subscription Identifiers not supported", [SubAck, Disconnect];
    /// 0xA2 Wildcard Subscriptions not supported.
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2, "Wildcard Subscriptions not supported", [SubAck, Disconnect];
}

impl ReasonCode {
    /// 0x00 Normal disconnection (DISCONNECT).
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode(0x00);
    /// 0x00 Granted QoS 0 (SUBACK).
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode(0x00);

    /// Codes of 0x80 and above report failure [MQTT-2.4].
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The MQTT 3.1 / 3.1.1 CONNACK return code for this reason: 0 accepted, 1 unacceptable
    /// protocol version, 2 identifier rejected, 3 server unavailable, 4 bad user name or
    /// password, 5 not authorized. v5-only codes map to the nearest of these, as Mosquitto maps
    /// them.
    pub fn to_v3_connack(self) -> u8 {
        match self {
            ReasonCode::SUCCESS => 0,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => 1,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => 2,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD | ReasonCode::BAD_AUTHENTICATION_METHOD => 4,
            ReasonCode::NOT_AUTHORIZED | ReasonCode::BANNED => 5,
            _ => 3,
        }
    }

    /// The reason code for an MQTT 3.1 / 3.1.1 CONNACK return code, or `None` for the reserved
    /// values 6..=255.
    pub fn from_v3_connack(code: u8) -> Option<ReasonCode> {
        Some(match code {
            0 => ReasonCode::SUCCESS,
            1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            3 => ReasonCode::SERVER_UNAVAILABLE,
            4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            5 => ReasonCode::NOT_AUTHORIZED,
            _ => return None,
        })
    }
}

impl Default for ReasonCode {
    /// Success (0x00).
    fn default() -> Self {
        ReasonCode::SUCCESS
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReasonCode(0x{:02X})", self.0)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Table 2-6 of MQTT 5.0 lists which packets may carry which codes.
    #[test]
    fn validity_per_packet_follows_table_2_6() {
        use PacketType as P;
        let cases = [
            (ReasonCode::SUCCESS, P::PubAck, true),
            (ReasonCode::GRANTED_QOS_2, P::SubAck, true),
            (ReasonCode::GRANTED_QOS_2, P::PubAck, false),
            (ReasonCode::NO_MATCHING_SUBSCRIBERS, P::PubRec, true),
            (ReasonCode::NO_MATCHING_SUBSCRIBERS, P::PubRel, false),
            (ReasonCode::PACKET_IDENTIFIER_NOT_FOUND, P::PubComp, true),
            (ReasonCode::PACKET_IDENTIFIER_NOT_FOUND, P::PubAck, false),
            (
                ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
                P::Disconnect,
                true,
            ),
            (ReasonCode::CONTINUE_AUTHENTICATION, P::Auth, true),
            (ReasonCode::CONTINUE_AUTHENTICATION, P::ConnAck, false),
            (ReasonCode::MALFORMED_PACKET, P::PubAck, false),
            (ReasonCode::PACKET_TOO_LARGE, P::Disconnect, true),
            (ReasonCode(0x03), P::Disconnect, false),
            (ReasonCode(0xA3), P::Disconnect, false),
            (ReasonCode::SUCCESS, P::Publish, false),
        ];
        for (code, packet, valid) in cases {
            assert_eq!(code.is_valid_for(packet), valid, "{code} in {packet:?}");
        }
    }

    #[test]
    fn names_depend_on_packet() {
        assert_eq!(
            ReasonCode(0).description(PacketType::Disconnect),
            "Normal disconnection"
        );
        assert_eq!(
            ReasonCode(0).description(PacketType::SubAck),
            "Granted QoS 0"
        );
        assert_eq!(ReasonCode(0).description(PacketType::PubAck), "Success");
        assert_eq!(
            ReasonCode(0x97).description(PacketType::PubAck),
            "Quota exceeded"
        );
    }

    #[test]
    fn v3_connack_codes_round_trip() {
        for code in 0..=5 {
            let reason = ReasonCode::from_v3_connack(code).unwrap();
            assert_eq!(reason.to_v3_connack(), code);
        }
        assert_eq!(ReasonCode::from_v3_connack(6), None);
        assert_eq!(ReasonCode::BANNED.to_v3_connack(), 5);
        assert_eq!(ReasonCode::QUOTA_EXCEEDED.to_v3_connack(), 3);
    }
}
