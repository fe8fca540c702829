//! CONNECT (section 3.1): the first packet a client sends.

use bytes::{BufMut, Bytes, BytesMut};

use super::Encode;
use crate::codec::{Reader, prefixed_len, put_binary, put_string};
use crate::properties::{ConnectProperties, WillProperties};
use crate::{
    DecodeError, EncodeError, MqttString, PacketType, Protocol, QoS, TopicName,
};

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
        let will_qos = QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::InvalidQoS)?;
        let will_retain = flags & 0x20 != 0;
        let password_flag = flags & 0x40 != 0;
        let username_flag = flags & 0x80 != 0;
        if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
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
            let topic = TopicName::from_string(r.string()?).map_err(DecodeError::InvalidTopicName)?;
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
        let username = if username_flag { Some(r.string()?) } else { None };
        let password = if password_flag { Some(r.binary()?) } else { None };
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
