//! SUBSCRIBE (section 3.8).

use bytes::{BufMut, BytesMut};

use super::{Encode, read_packet_id};
use crate::codec::{Reader, prefixed_len, put_string};
use crate::properties::SubscribeProperties;
use crate::{DecodeError, EncodeError, PacketId, PacketType, Protocol, QoS, TopicFilter};

/// A SUBSCRIBE packet: one or more topic filters with their options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0).
    pub properties: SubscribeProperties,
    /// The topic filters and their options, in the order sent; never empty on the wire.
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
}

/// Subscription Options (section 3.8.3.1). In MQTT 3.x only the QoS exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local: do not send the subscriber its own messages (5.0).
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag on forwarded messages (5.0).
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

/// Retain Handling: whether retained messages are sent when the subscription is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not already exist.
    SendAtSubscribeIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

impl SubscriptionOptions {
    /// Options with this maximum QoS and the defaults for the rest.
    pub fn new(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            ..Self::default()
        }
    }

    fn decode(byte: u8, protocol: Protocol, shared: bool) -> Result<Self, DecodeError> {
        let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::InvalidQoS)?;
        if !protocol.is_v5() {
            // Bits 7-2 of the Requested QoS byte are reserved [MQTT-3-8.3-4].
            if byte & 0xFC != 0 {
                return Err(DecodeError::SubscriptionOptionsReserved);
            }
            return Ok(SubscriptionOptions::new(qos));
        }
        // Bits 7-6 are reserved [MQTT-3.8.3-5].
        if byte & 0xC0 != 0 {
            return Err(DecodeError::SubscriptionOptionsReserved);
        }
        let no_local = byte & 0x04 != 0;
        // No Local on a Shared Subscription is a Protocol Error [MQTT-3.8.3-4].
        if no_local && shared {
            return Err(DecodeError::NoLocalOnSharedSubscription);
        }
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn encode(self, protocol: Protocol) -> u8 {
        let mut byte = self.qos as u8;
        if protocol.is_v5() {
            byte |= u8::from(self.no_local) << 2;
            byte |= u8::from(self.retain_as_published) << 3;
            byte |= (self.retain_handling as u8) << 4;
        }
        byte
    }
}

impl Subscribe {
    /// A SUBSCRIBE to one filter.
    pub fn new(packet_id: PacketId, filter: TopicFilter, options: SubscriptionOptions) -> Self {
        Subscribe {
            packet_id,
            properties: SubscribeProperties::default(),
            filters: vec![(filter, options)],
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if protocol.is_v5() {
            SubscribeProperties::decode(r)?
        } else {
            SubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter =
                TopicFilter::from_string(r.string()?).map_err(DecodeError::InvalidTopicFilter)?;
            let options = SubscriptionOptions::decode(r.u8()?, protocol, filter.is_shared())?;
            filters.push((filter, options));
        }
        // At least one filter [MQTT-3.8.3-2] (3.1.1: [MQTT-3.8.3-3]).
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Subscribe));
        }
        Ok(Subscribe {
            packet_id,
            properties,
            filters,
        })
    }
}

impl Encode for Subscribe {
    const TYPE: PacketType = PacketType::Subscribe;

    fn flags(&self) -> u8 {
        0b0010
    }

    fn validate(&self, _: Protocol) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters(PacketType::Subscribe));
        }
        Ok(())
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        let mut n = 2;
        if protocol.is_v5() {
            n += self.properties.encoded_len();
        }
        for (filter, _) in &self.filters {
            n += prefixed_len(filter.as_str().len()) + 1;
        }
        n
    }

    fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if protocol.is_v5() {
            self.properties.encode(buf)?;
        }
        for (filter, options) in &self.filters {
            put_string(buf, filter.as_mqtt_string());
            buf.put_u8(options.encode(protocol));
        }
        Ok(())
    }
}
