//! UNSUBSCRIBE (section 3.10).

use bytes::{BufMut, BytesMut};

use super::{Encode, read_packet_id};
use crate::codec::{Reader, prefixed_len, put_string};
use crate::properties::UnsubscribeProperties;
use crate::{DecodeError, EncodeError, PacketId, PacketType, Protocol, TopicFilter};

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0).
    pub properties: UnsubscribeProperties,
    /// The topic filters to remove; never empty on the wire.
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    /// An UNSUBSCRIBE from these filters.
    pub fn new(packet_id: PacketId, filters: Vec<TopicFilter>) -> Self {
        Unsubscribe {
            packet_id,
            properties: UnsubscribeProperties::default(),
            filters,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if protocol.is_v5() {
            UnsubscribeProperties::decode(r)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(
                TopicFilter::from_string(r.string()?).map_err(DecodeError::InvalidTopicFilter)?,
            );
        }
        // At least one filter [MQTT-3.10.3-2].
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }
}

impl Encode for Unsubscribe {
    const TYPE: PacketType = PacketType::Unsubscribe;

    fn flags(&self) -> u8 {
        0b0010
    }

    fn validate(&self, _: Protocol) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters(PacketType::Unsubscribe));
        }
        Ok(())
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        let mut n = 2;
        if protocol.is_v5() {
            n += self.properties.encoded_len();
        }
        for filter in &self.filters {
            n += prefixed_len(filter.as_str().len());
        }
        n
    }

    fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if protocol.is_v5() {
            self.properties.encode(buf)?;
        }
        for filter in &self.filters {
            put_string(buf, filter.as_mqtt_string());
        }
        Ok(())
    }
}
