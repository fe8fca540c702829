//! CONNECT (section 3.1): the first packet a client sends.

use bytes::{BufMut, Bytes, BytesMut};

use super::Encode;
use crate::codec::{Reader, prefixed_len, put_binary, put_string};
use crate::properties::{ConnectProperties, WillProperties};
use crate::{DecodeError, EncodeError, MqttString, PacketType, Protocol, QoS, TopicName};

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol version, from the Protocol Name and Level.
    pub protocol: Protocol,
    /// Mosquitto's bridge marker: bit 0x80 of the Protocol Level, which Mosquitto bridges set
    /// with `try_private true` (their default) and Mosquitto accepts.
    pub bridge: bool,
    /// Clean Session (3.x) or Clean Start (5.0).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    /// Properties (MQTT 5.0).
    pub properties: ConnectProperties,
    /// The Client Identifier; may be empty.
    pub client_id: MqttString,
    /// The Will Message.
    pub will: Option<Will>,
    /// The User Name.
    pub username: Option<MqttString>,
    /// The Password: binary data.
    pub password: Option<Bytes>,
}

/// A Will Message, published when the connection ends without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will Topic.
    pub topic: TopicName,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will Properties (MQTT 5.0).
    pub properties: WillProperties,
}

impl Connect {
    /// A CONNECT for `protocol` with clean start, keep alive 60 and everything else empty.
    pub fn new(protocol: Protocol, client_id: MqttString) -> Self {
        Connect {
            protocol,
            bridge: false,
            clean_start: true,
            keep_alive: 60,
            properties: ConnectProperties::default(),
            client_id,
            will: None,
            username: None,
            password: None,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // The name is checked as bytes: a wrong name is reported as such, not as bad UTF-8.
        let name_len = usize::from(r.u16()?);
        let name = r.bytes(name_len)?;
        let level = r.u8()?;
        let bridge = level & 0x80 != 0;
        let protocol = match (&name[..], level & 0x7F) {
            (b"MQTT", 4) => Protocol::V311,
            (b"MQTT", 5) => Protocol::V5,
            (b"MQIsdp", 3) => Protocol::V31,
            (b"MQTT" | b"MQIsdp", _) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
            _ => return Err(DecodeError::InvalidProtocolName),
        };

        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let clean_start = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos = QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::InvalidWillQoS)?;
        let will_retain = flags & 0x20 != 0;
        let password_flag = flags & 0x40 != 0;
        let username_flag = flags & 0x80 != 0;
        if !will_flag && will_qos != QoS::AtMostOnce {
            return Err(DecodeError::WillQoSWithoutWill);
        }
        if !will_flag && will_retain {
            return Err(DecodeError::WillRetainWithoutWill);
        }
        if password_flag && !username_flag && !protocol.is_v5() {
            return Err(DecodeError::PasswordWithoutUserName);
        }
        let keep_alive = r.u16()?;
        let properties = if protocol.is_v5() {
            let p = ConnectProperties::decode(r)?;
            if p.authentication_data.is_some() && p.authentication_method.is_none() {
                return Err(DecodeError::AuthDataWithoutMethod);
            }
            p
        } else {
            ConnectProperties::default()
        };

        let client_id = r.string()?;
        let will = if will_flag {
            let properties = if protocol.is_v5() {
                WillProperties::decode(r)?
            } else {
                WillProperties::default()
            };
            let topic =
                TopicName::from_string(r.string()?).map_err(DecodeError::InvalidTopicName)?;
            let payload = r.binary()?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if username_flag {
            Some(r.string()?)
        } else {
            None
        };
        let password = if password_flag {
            Some(r.binary()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Connect {
            protocol,
            bridge,
            clean_start,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    fn flags_byte(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | ((will.qos as u8) << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        flags
    }
}

impl Encode for Connect {
    const TYPE: PacketType = PacketType::Connect;

    fn validate(&self, _: Protocol) -> Result<(), EncodeError> {
        if self.password.is_some() && self.username.is_none() && !self.protocol.is_v5() {
            return Err(EncodeError::PasswordWithoutUserName);
        }
        Ok(())
    }

    fn remaining_len(&self, _: Protocol) -> usize {
        let v5 = self.protocol.is_v5();
        let mut n = prefixed_len(self.protocol.name().len()) + 1 + 1 + 2;
        if v5 {
            n += self.properties.encoded_len();
        }
        n += prefixed_len(self.client_id.len());
        if let Some(will) = &self.will {
            if v5 {
                n += will.properties.encoded_len();
            }
            n += prefixed_len(will.topic.len()) + prefixed_len(will.payload.len());
        }
        if let Some(u) = &self.username {
            n += prefixed_len(u.len());
        }
        if let Some(p) = &self.password {
            n += prefixed_len(p.len());
        }
        n
    }

    fn encode_body(&self, _: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        // The CONNECT states its own version; the connection's is what it says.
        let v5 = self.protocol.is_v5();
        put_binary(buf, self.protocol.name().as_bytes())?;
        buf.put_u8(self.protocol.level() | if self.bridge { 0x80 } else { 0 });
        buf.put_u8(self.flags_byte());
        buf.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(buf)?;
        }
        put_string(buf, &self.client_id);
        if let Some(will) = &self.will {
            if v5 {
                will.properties.encode(buf)?;
            }
            put_string(buf, will.topic.as_mqtt_string());
            put_binary(buf, &will.payload)?;
        }
        if let Some(u) = &self.username {
            put_string(buf, u);
        }
        if let Some(p) = &self.password {
            put_binary(buf, p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU16, NonZeroU32};

    use super::*;
    use crate::packet::test_vectors::{assert_vector, decode_err, short_len};
    use crate::properties::PayloadFormat;
    use crate::{ReasonCode, StringError, TopicError};

    fn s(text: &'static str) -> MqttString {
        MqttString::from_static(text)
    }

    fn topic(text: &str) -> TopicName {
        TopicName::try_from(text).unwrap()
    }

    fn will(topic_name: &str, payload: &'static [u8], qos: QoS, retain: bool) -> Will {
        Will {
            topic: topic(topic_name),
            payload: Bytes::from_static(payload),
            qos,
            retain,
            properties: WillProperties::default(),
        }
    }

    /// The variable header of the non-normative example of MQTT 3.1.1 section 3.1.2.11
    /// (Figure 3.6): level 4, flags 0xCE, keep alive 10; with a payload for those flags.
    #[test]
    fn v311_spec_example() {
        let bytes = [
            0x10, 0x1F, // CONNECT, remaining length 31
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x04, // protocol level 4
            0xCE, // flags: user name, password, will QoS 1, will, clean session
            0x00, 0x0A, // keep alive 10
            0x00, 0x02, b'c', b'1', // client identifier "c1"
            0x00, 0x03, b'w', b'/', b't', // will topic "w/t"
            0x00, 0x03, b'b', b'y', b'e', // will payload "bye"
            0x00, 0x01, b'u', // user name "u"
            0x00, 0x02, b'p', b'w', // password "pw"
        ];
        let connect = Connect {
            protocol: Protocol::V311,
            bridge: false,
            clean_start: true,
            keep_alive: 10,
            properties: ConnectProperties::default(),
            client_id: s("c1"),
            will: Some(will("w/t", b"bye", QoS::AtLeastOnce, false)),
            username: Some(s("u")),
            password: Some(Bytes::from_static(b"pw")),
        };
        assert_vector(Protocol::V311, &bytes, connect);
    }

    /// The variable header of the non-normative example of MQTT 5.0 section 3.1.2.12: the 3.1.1
    /// one at level 5, plus a Session Expiry Interval of 10; the will has no properties.
    #[test]
    fn v5_spec_example() {
        let bytes = [
            0x10, 0x26, // CONNECT, remaining length 38
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05, // protocol version 5
            0xCE, // flags: user name, password, will QoS 1, will, clean start
            0x00, 0x0A, // keep alive 10
            0x05, // property length 5
            0x11, 0x00, 0x00, 0x00, 0x0A, // session expiry interval 10
            0x00, 0x02, b'c', b'1', // client identifier "c1"
            0x00, // will property length 0
            0x00, 0x03, b'w', b'/', b't', // will topic "w/t"
            0x00, 0x03, b'b', b'y', b'e', // will payload "bye"
            0x00, 0x01, b'u', // user name "u"
            0x00, 0x02, b'p', b'w', // password "pw"
        ];
        let connect = Connect {
            protocol: Protocol::V5,
            bridge: false,
            clean_start: true,
            keep_alive: 10,
            properties: ConnectProperties {
                session_expiry_interval: Some(10),
                ..ConnectProperties::default()
            },
            client_id: s("c1"),
            will: Some(will("w/t", b"bye", QoS::AtLeastOnce, false)),
            username: Some(s("u")),
            password: Some(Bytes::from_static(b"pw")),
        };
        assert_vector(Protocol::V5, &bytes, connect);
    }

    /// Every CONNECT property and every Will property (sections 3.1.2.11 and 3.1.3.2), user
    /// properties repeated and kept in order, and a will of QoS 2 that is retained.
    #[test]
    fn v5_every_property() {
        let bytes = [
            0x10, 0x7B, // CONNECT, remaining length 123
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05, // protocol version 5
            0xF4, // flags: user name, password, will retain, will QoS 2, will; no clean start
            0x00, 0x3C, // keep alive 60
            0x36, // property length 54
            0x11, 0x00, 0x00, 0x0E, 0x10, // session expiry interval 3600
            0x21, 0x00, 0x14, // receive maximum 20
            0x27, 0x00, 0x00, 0x10, 0x00, // maximum packet size 4096
            0x22, 0x00, 0x0A, // topic alias maximum 10
            0x19, 0x01, // request response information 1
            0x17, 0x00, // request problem information 0
            0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // authentication method "SCRAM"
            0x16, 0x00, 0x03, 0x01, 0x02, 0x03, // authentication data 01 02 03
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'1', // user property ("a", "1")
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'2', // user property ("a", "2")
            0x26, 0x00, 0x01, b'b', 0x00, 0x00, // user property ("b", "")
            0x00, 0x03, b'd', b'e', b'v', // client identifier "dev"
            0x25, // will property length 37
            0x18, 0x00, 0x00, 0x00, 0x05, // will delay interval 5
            0x01, 0x01, // payload format indicator: UTF-8
            0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry interval 60
            0x03, 0x00, 0x04, b't', b'e', b'x', b't', // content type "text"
            0x08, 0x00, 0x03, b'r', b'/', b't', // response topic "r/t"
            0x09, 0x00, 0x02, 0xCA, 0xFE, // correlation data CA FE
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property ("k", "v")
            0x00, 0x02, b's', b't', // will topic "st"
            0x00, 0x03, b'o', b'f', b'f', // will payload "off"
            0x00, 0x01, b'u', // user name "u"
            0x00, 0x01, b'p', // password "p"
        ];
        let connect = Connect {
            protocol: Protocol::V5,
            bridge: false,
            clean_start: false,
            keep_alive: 60,
            properties: ConnectProperties {
                session_expiry_interval: Some(3600),
                receive_maximum: NonZeroU16::new(20),
                maximum_packet_size: NonZeroU32::new(4096),
                topic_alias_maximum: Some(10),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(&[1, 2, 3])),
                user_properties: vec![(s("a"), s("1")), (s("a"), s("2")), (s("b"), s(""))],
            },
            client_id: s("dev"),
            will: Some(Will {
                topic: topic("st"),
                payload: Bytes::from_static(b"off"),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: WillProperties {
                    will_delay_interval: Some(5),
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    message_expiry_interval: Some(60),
                    content_type: Some(s("text")),
                    response_topic: Some(topic("r/t")),
                    correlation_data: Some(Bytes::from_static(&[0xCA, 0xFE])),
                    user_properties: vec![(s("k"), s("v"))],
                },
            }),
            username: Some(s("u")),
            password: Some(Bytes::from_static(b"p")),
        };
        assert_vector(Protocol::V5, &bytes, connect);
    }

    /// MQTT 5.0 drops the rule that a password needs a user name (section 3.1.2.9); the
    /// client identifier may be empty (section 3.1.3.1).
    #[test]
    fn v5_password_without_user_name() {
        let bytes = [
            0x10, 0x11, // CONNECT, remaining length 17
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05, // protocol version 5
            0x42, // flags: password, clean start
            0x00, 0x00, // keep alive 0
            0x00, // property length 0
            0x00, 0x00, // client identifier ""
            0x00, 0x02, b's', b'k', // password "sk"
        ];
        let connect = Connect {
            keep_alive: 0,
            password: Some(Bytes::from_static(b"sk")),
            ..Connect::new(Protocol::V5, s(""))
        };
        assert_vector(Protocol::V5, &bytes, connect);
    }

    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    #[test]
    fn v31_minimal() {
        let bytes = [
            0x10, 0x0F, // CONNECT, remaining length 15
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name "MQIsdp"
            0x03, // protocol level 3
            0x02, // flags: clean session
            0x00, 0x3C, // keep alive 60
            0x00, 0x01, b'c', // client identifier "c"
        ];
        assert_vector(Protocol::V31, &bytes, Connect::new(Protocol::V31, s("c")));
    }

    /// MQTT 3.1 with a retained QoS 0 will, a user name and a password.
    #[test]
    fn v31_will_user_name_password() {
        let bytes = [
            0x10, 0x1C, // CONNECT, remaining length 28
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name "MQIsdp"
            0x03, // protocol level 3
            0xE6, // flags: user name, password, will retain, will QoS 0, will, clean session
            0x00, 0x05, // keep alive 5
            0x00, 0x01, b'c', // client identifier "c"
            0x00, 0x01, b'w', // will topic "w"
            0x00, 0x00, // will payload, empty
            0x00, 0x02, b'u', b'1', // user name "u1"
            0x00, 0x02, b'p', b'1', // password "p1"
        ];
        let connect = Connect {
            keep_alive: 5,
            will: Some(will("w", b"", QoS::AtMostOnce, true)),
            username: Some(s("u1")),
            password: Some(Bytes::from_static(b"p1")),
            ..Connect::new(Protocol::V31, s("c"))
        };
        assert_vector(Protocol::V31, &bytes, connect);
    }

    /// MQTT 3.1.1 with a retained QoS 2 will and a user name without a password.
    #[test]
    fn v311_will_qos2_retain_user_name_only() {
        let bytes = [
            0x10, 0x18, // CONNECT, remaining length 24
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x04, // protocol level 4
            0xB4, // flags: user name, will retain, will QoS 2, will; no clean session
            0xFF, 0xFF, // keep alive 65535
            0x00, 0x01, b'c', // client identifier "c"
            0x00, 0x03, b'a', b'/', b'b', // will topic "a/b"
            0x00, 0x01, 0x00, // will payload 00 (binary, a zero byte is fine)
            0x00, 0x01, b'u', // user name "u"
        ];
        let connect = Connect {
            clean_start: false,
            keep_alive: u16::MAX,
            will: Some(will("a/b", &[0], QoS::ExactlyOnce, true)),
            username: Some(s("u")),
            ..Connect::new(Protocol::V311, s("c"))
        };
        assert_vector(Protocol::V311, &bytes, connect);
    }

    /// Mosquitto bridges set bit 0x80 of the protocol level (`try_private`).
    #[test]
    fn bridge_bit() {
        let v311 = [
            0x10, 0x0D, // CONNECT, remaining length 13
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x84, // protocol level 4 with the bridge bit
            0x02, // flags: clean session
            0x00, 0x3C, // keep alive 60
            0x00, 0x01, b'b', // client identifier "b"
        ];
        let connect = Connect {
            bridge: true,
            ..Connect::new(Protocol::V311, s("b"))
        };
        assert_vector(Protocol::V311, &v311, connect);

        let v31 = [
            0x10, 0x0F, // CONNECT, remaining length 15
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name "MQIsdp"
            0x83, // protocol level 3 with the bridge bit
            0x02, // flags: clean session
            0x00, 0x3C, // keep alive 60
            0x00, 0x01, b'b', // client identifier "b"
        ];
        let connect = Connect {
            bridge: true,
            ..Connect::new(Protocol::V31, s("b"))
        };
        assert_vector(Protocol::V31, &v31, connect);
    }

    /// A v3.1.1 CONNECT with `flags` and nothing after the client identifier "c".
    fn v311_with_flags(flags: u8) -> [u8; 15] {
        [
            0x10, 0x0D, // CONNECT, remaining length 13
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x04, // protocol level 4
            flags, 0x00, 0x3C, // flags, keep alive 60
            0x00, 0x01, b'c', // client identifier "c"
        ]
    }

    /// A v5 CONNECT whose properties are `props` (at most 127 bytes), client identifier "c".
    fn v5_with_properties(props: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x10, short_len(14 + props.len())]; // CONNECT, remaining length
        bytes.extend_from_slice(&[
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05, // protocol version 5
            0x02, // flags: clean start
            0x00, 0x3C, // keep alive 60
        ]);
        bytes.push(short_len(props.len())); // property length
        bytes.extend_from_slice(props);
        bytes.extend_from_slice(&[0x00, 0x01, b'c']); // client identifier "c"
        bytes
    }

    #[test]
    fn helper_builds_valid_packets() {
        assert_vector(
            Protocol::V311,
            &v311_with_flags(0x02),
            Connect::new(Protocol::V311, s("c")),
        );
        assert_vector(
            Protocol::V5,
            &v5_with_properties(&[0x11, 0x00, 0x00, 0x00, 0x01]),
            Connect {
                properties: ConnectProperties {
                    session_expiry_interval: Some(1),
                    ..ConnectProperties::default()
                },
                ..Connect::new(Protocol::V5, s("c"))
            },
        );
    }

    // [MQTT-3.1.2-3]: the reserved flag must be 0.
    #[test]
    fn reserved_connect_flag() {
        let err = decode_err(None, &v311_with_flags(0x03));
        assert_eq!(err, DecodeError::ConnectReservedFlag);
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        assert_eq!(err.rule(Protocol::V311), Some("MQTT-3.1.2-3"));
    }

    // [MQTT-2.1.3-1] (3.1.1: [MQTT-2.2.2-2]): CONNECT's fixed header flags are 0000.
    #[test]
    fn reserved_fixed_header_flags() {
        let mut bytes = v311_with_flags(0x02);
        bytes[0] = 0x12;
        assert_eq!(
            decode_err(None, &bytes),
            DecodeError::InvalidFlags {
                packet: PacketType::Connect,
                flags: 0x2
            }
        );
    }

    // 3.1.1 [MQTT-3.1.2-13] and [MQTT-3.1.2-15], 5.0 [MQTT-3.1.2-11] and [MQTT-3.1.2-13]: without
    // the will flag, will QoS and will retain are 0.
    #[test]
    fn will_qos_or_retain_without_will() {
        for (flags, expected) in [
            (0x0A, DecodeError::WillQoSWithoutWill),
            (0x12, DecodeError::WillQoSWithoutWill),
            (0x22, DecodeError::WillRetainWithoutWill),
        ] {
            let err = decode_err(None, &v311_with_flags(flags));
            assert_eq!(err, expected, "flags {flags:#04x}");
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        }
        assert_eq!(
            DecodeError::WillRetainWithoutWill.rule(Protocol::V311),
            Some("MQTT-3.1.2-15")
        );
        assert_eq!(
            DecodeError::WillRetainWithoutWill.rule(Protocol::V5),
            Some("MQTT-3.1.2-13")
        );
    }

    // 3.1.1 [MQTT-3.1.2-14], 5.0 [MQTT-3.1.2-12]: a will QoS of 3 is malformed.
    #[test]
    fn will_qos_3() {
        let bytes = [
            0x10, 0x13, // CONNECT, remaining length 19
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x04, // protocol level 4
            0x1E, // flags: will QoS 3, will, clean session
            0x00, 0x3C, // keep alive 60
            0x00, 0x01, b'c', // client identifier "c"
            0x00, 0x01, b'w', // will topic "w"
            0x00, 0x01, b'x', // will payload "x"
        ];
        let err = decode_err(None, &bytes);
        assert_eq!(err, DecodeError::InvalidWillQoS);
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        assert_eq!(err.rule(Protocol::V311), Some("MQTT-3.1.2-14"));
    }

    // [MQTT-3.1.2-22]: in 3.1.1 (and 3.1, as Mosquitto reads it) a password needs a user name.
    #[test]
    fn v3_password_without_user_name() {
        let err = decode_err(None, &v311_with_flags(0x42));
        assert_eq!(err, DecodeError::PasswordWithoutUserName);
        assert_eq!(err.rule(Protocol::V311), Some("MQTT-3.1.2-22"));

        let v31 = [
            0x10, 0x10, // CONNECT, remaining length 16
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name "MQIsdp"
            0x03, // protocol level 3
            0x42, // flags: password, clean session
            0x00, 0x3C, // keep alive 60
            0x00, 0x00, // client identifier ""
            0x00, 0x00, // password, empty
        ];
        assert_eq!(decode_err(None, &v31), DecodeError::PasswordWithoutUserName);

        // ...and the encoder will not produce one.
        let connect = Connect {
            password: Some(Bytes::from_static(b"pw")),
            ..Connect::new(Protocol::V311, s("c"))
        };
        let mut out = BytesMut::new();
        assert_eq!(
            connect.encode(Protocol::V311, &mut out),
            Err(EncodeError::PasswordWithoutUserName)
        );
        assert!(out.is_empty());
    }

    // [MQTT-3.1.2-1] (both versions): the name is "MQTT" ("MQIsdp" for 3.1), case included.
    #[test]
    fn bad_protocol_name() {
        for name in [*b"MQTX", *b"mqtt"] {
            let mut bytes = v311_with_flags(0x02);
            bytes[4..8].copy_from_slice(&name);
            let err = decode_err(None, &bytes);
            assert_eq!(err, DecodeError::InvalidProtocolName);
            assert_eq!(err.rule(Protocol::V5), Some("MQTT-3.1.2-1"));
        }
    }

    // [MQTT-3.1.2-2]: a level the server does not support is refused with return code 1
    // (5.0: reason code 0x84), and the level must go with the name.
    #[test]
    fn bad_protocol_level() {
        for level in [6, 3, 0] {
            let mut bytes = v311_with_flags(0x02);
            bytes[8] = level;
            let err = decode_err(None, &bytes);
            assert_eq!(err, DecodeError::UnsupportedProtocolVersion(level));
            assert_eq!(err.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
            assert_eq!(err.reason_code().to_v3_connack(), 1);
        }
        let mq_isdp_level_4 = [
            0x10, 0x0F, // CONNECT, remaining length 15
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name "MQIsdp"
            0x04, // protocol level 4: not MQTT 3.1
            0x02, 0x00, 0x3C, // flags: clean session, keep alive 60
            0x00, 0x01, b'c', // client identifier "c"
        ];
        assert_eq!(
            decode_err(None, &mq_isdp_level_4),
            DecodeError::UnsupportedProtocolVersion(4)
        );
    }

    // 3.1.1 [MQTT-1.5.3-2], 5.0 [MQTT-1.5.4-2]: no U+0000 in a UTF-8 string.
    #[test]
    fn null_character_in_client_id() {
        let bytes = [
            0x10, 0x0E, // CONNECT, remaining length 14
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x04, 0x02, 0x00, 0x3C, // level 4, flags: clean session, keep alive 60
            0x00, 0x02, b'c', 0x00, // client identifier "c\0"
        ];
        let err = decode_err(None, &bytes);
        assert_eq!(err, DecodeError::InvalidString(StringError::NullCharacter));
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        assert_eq!(err.rule(Protocol::V311), Some("MQTT-1.5.3-2"));
    }

    // A will topic is a Topic Name, and Topic Names have no wildcards: 5.0 [MQTT-4.7.0-1],
    // 3.1.1 [MQTT-4.7.1-1]. Mosquitto refuses such a will too.
    #[test]
    fn wildcard_will_topic() {
        let bytes = [
            0x10, 0x14, // CONNECT, remaining length 20
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x04, 0x06, 0x00, 0x3C, // level 4, flags: will QoS 0, will, clean session
            0x00, 0x01, b'c', // client identifier "c"
            0x00, 0x02, b'a', b'#', // will topic "a#"
            0x00, 0x01, b'x', // will payload "x"
        ];
        assert_eq!(
            decode_err(None, &bytes),
            DecodeError::InvalidTopicName(TopicError::Wildcard)
        );
    }

    #[test]
    fn string_past_the_end_of_the_packet() {
        let bytes = [
            0x10, 0x0D, // CONNECT, remaining length 13
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x04, 0x02, 0x00, 0x3C, // level 4, flags: clean session, keep alive 60
            0x00, 0x05, b'c', // client identifier of 5 bytes, but 1 left
        ];
        let err = decode_err(None, &bytes);
        assert_eq!(err, DecodeError::Truncated(PacketType::Connect));
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    // A flag says a user name follows; it does not.
    #[test]
    fn missing_user_name() {
        assert_eq!(
            decode_err(None, &v311_with_flags(0x82)),
            DecodeError::Truncated(PacketType::Connect)
        );
    }

    #[test]
    fn trailing_bytes() {
        let bytes = [
            0x10, 0x0E, // CONNECT, remaining length 14
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x04, 0x02, 0x00, 0x3C, // level 4, flags: clean session, keep alive 60
            0x00, 0x01, b'c', // client identifier "c"
            0x00, // a byte no flag announced
        ];
        assert_eq!(
            decode_err(None, &bytes),
            DecodeError::TrailingBytes(PacketType::Connect)
        );
    }

    // Section 3.1.2.11: each property at most once, a second one is a Protocol Error.
    #[test]
    fn duplicate_property() {
        let err = decode_err(
            None,
            &v5_with_properties(&[
                0x11, 0x00, 0x00, 0x00, 0x0A, // session expiry interval 10
                0x11, 0x00, 0x00, 0x00, 0x14, // session expiry interval 20
            ]),
        );
        assert_eq!(err, DecodeError::DuplicateProperty(0x11));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    // Section 2.2.2.2: a property not allowed in the packet makes it malformed.
    #[test]
    fn property_not_valid_in_connect() {
        let err = decode_err(
            None,
            &v5_with_properties(&[
                0x24, 0x01, // maximum QoS: a CONNACK property
            ]),
        );
        assert_eq!(
            err,
            DecodeError::InvalidProperty {
                packet: PacketType::Connect,
                id: 0x24
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        // An identifier no version defines.
        assert_eq!(
            decode_err(None, &v5_with_properties(&[0x7F, 0x00])),
            DecodeError::InvalidProperty {
                packet: PacketType::Connect,
                id: 0x7F
            }
        );
    }

    // Sections 3.1.2.11.3, 3.1.2.11.4, 3.1.2.11.6, 3.1.2.11.7: Protocol Errors.
    #[test]
    fn property_values_out_of_range() {
        let cases: [(&[u8], u8); 4] = [
            (&[0x21, 0x00, 0x00], 0x21),             // receive maximum 0
            (&[0x27, 0x00, 0x00, 0x00, 0x00], 0x27), // maximum packet size 0
            (&[0x19, 0x02], 0x19),                   // request response information 2
            (&[0x17, 0x02], 0x17),                   // request problem information 2
        ];
        for (props, id) in cases {
            let err = decode_err(None, &v5_with_properties(props));
            assert_eq!(err, DecodeError::InvalidPropertyValue(id));
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
    }

    // Section 3.1.2.11.10: Authentication Data without an Authentication Method.
    #[test]
    fn auth_data_without_method() {
        let err = decode_err(
            None,
            &v5_with_properties(&[
                0x16, 0x00, 0x01, 0xAA, // authentication data AA
            ]),
        );
        assert_eq!(err, DecodeError::AuthDataWithoutMethod);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    #[test]
    fn property_length_past_the_end_of_the_packet() {
        let mut bytes = v5_with_properties(&[0x17, 0x01]);
        bytes[12] = 0x10; // property length 16: more than the packet holds
        assert_eq!(
            decode_err(None, &bytes),
            DecodeError::Truncated(PacketType::Connect)
        );
    }

    /// A v5 CONNECT with a QoS 0 will "w" / "x" whose properties are `will_props`.
    fn v5_will_with_properties(will_props: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x10, short_len(21 + will_props.len())]; // CONNECT, remaining length
        bytes.extend_from_slice(&[
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05, // protocol version 5
            0x06, // flags: will, clean start
            0x00, 0x3C, // keep alive 60
            0x00, // property length 0
            0x00, 0x01, b'c', // client identifier "c"
        ]);
        bytes.push(short_len(will_props.len())); // will property length
        bytes.extend_from_slice(will_props);
        bytes.extend_from_slice(&[
            0x00, 0x01, b'w', // will topic "w"
            0x00, 0x01, b'x', // will payload "x"
        ]);
        bytes
    }

    #[test]
    fn will_properties() {
        // The helper itself: a will with a will delay interval.
        let connect = Connect {
            will: Some(Will {
                properties: WillProperties {
                    will_delay_interval: Some(1),
                    ..WillProperties::default()
                },
                ..will("w", b"x", QoS::AtMostOnce, false)
            }),
            ..Connect::new(Protocol::V5, s("c"))
        };
        assert_vector(
            Protocol::V5,
            &v5_will_with_properties(&[0x18, 0x00, 0x00, 0x00, 0x01]),
            connect,
        );

        // A CONNECT property among the will properties is malformed.
        assert_eq!(
            decode_err(
                None,
                &v5_will_with_properties(&[0x11, 0x00, 0x00, 0x00, 0x01])
            ),
            DecodeError::InvalidProperty {
                packet: PacketType::Connect,
                id: 0x11
            }
        );
        // Payload format indicator 2.
        assert_eq!(
            decode_err(None, &v5_will_with_properties(&[0x01, 0x02])),
            DecodeError::InvalidPropertyValue(0x01)
        );
        // [MQTT-3.3.2-14] applies to the will's response topic too: no wildcards.
        assert_eq!(
            decode_err(
                None,
                &v5_will_with_properties(&[0x08, 0x00, 0x02, b'r', b'+'])
            ),
            DecodeError::InvalidTopicName(TopicError::Wildcard)
        );
        // Twice the same will property.
        assert_eq!(
            decode_err(None, &v5_will_with_properties(&[0x01, 0x00, 0x01, 0x01])),
            DecodeError::DuplicateProperty(0x01)
        );
    }
}
