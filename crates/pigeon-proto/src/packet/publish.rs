//! PUBLISH (section 3.3): an application message.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Encode, read_packet_id};
use crate::codec::{Reader, prefixed_len, put_string};
use crate::properties::PublishProperties;
use crate::{
    DecodeError, EncodeError, PacketId, PacketType, Protocol, QoS, TopicError, TopicName,
};

/// A PUBLISH packet.
///
/// `packet_id` is `Some` exactly when `qos` is 1 or 2; the encoder refuses anything else. The
/// topic is empty only in an MQTT 5.0 PUBLISH that names its topic by Topic Alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this may be a re-delivery.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Topic Name.
    pub topic: TopicName,
    /// Packet Identifier, for QoS 1 and 2.
    pub packet_id: Option<PacketId>,
    /// Properties (MQTT 5.0).
    pub properties: PublishProperties,
    /// The Application Message, shared with the buffer it was decoded from.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message, not retained, without properties.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: PublishProperties::default(),
            payload: payload.into(),
        }
    }

    pub(crate) fn decode(
        r: &mut Reader<'_>,
        flags: u8,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        let dup = flags & 0x08 != 0;
        let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
        let retain = flags & 0x01 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        let topic = r.string()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(read_packet_id(r)?)
        };
        let properties = if protocol.is_v5() {
            PublishProperties::decode(r)?
        } else {
            PublishProperties::default()
        };
        let topic = match TopicName::from_string(topic) {
            Ok(t) => t,
            // An empty topic is allowed when a Topic Alias names it (MQTT 5.0, 3.3.2.3.4).
            Err(TopicError::Empty) if protocol.is_v5() => {
                if properties.topic_alias.is_none() {
                    return Err(DecodeError::EmptyTopicWithoutAlias);
                }
                TopicName::empty()
            }
            Err(e) => return Err(DecodeError::InvalidTopicName(e)),
        };
        let payload = r.rest();
        Ok(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
        })
    }
}

impl Encode for Publish {
    const TYPE: PacketType = PacketType::Publish;

    fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    fn validate(&self, protocol: Protocol) -> Result<(), EncodeError> {
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(EncodeError::PacketIdMismatch);
        }
        if self.topic.is_empty() && !(protocol.is_v5() && self.properties.topic_alias.is_some()) {
            return Err(EncodeError::EmptyTopicWithoutAlias);
        }
        Ok(())
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        let mut n = prefixed_len(self.topic.len()) + self.payload.len();
        if self.packet_id.is_some() {
            n += 2;
        }
        if protocol.is_v5() {
            n += self.properties.encoded_len();
        }
        n
    }

    fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        put_string(buf, self.topic.as_mqtt_string());
        if let Some(id) = self.packet_id {
            buf.put_u16(id.get());
        }
        if protocol.is_v5() {
            self.properties.encode(buf)?;
        }
        buf.put_slice(&self.payload);
        Ok(())
    }
}
