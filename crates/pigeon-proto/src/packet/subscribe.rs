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
        let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::InvalidSubscriptionQoS)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_vectors::{assert_encodes, assert_vector, decode_err, short_len};
    use crate::properties::SubscriptionId;
    use crate::{MqttString, Packet, ReasonCode, TopicError};

    fn s(text: &'static str) -> MqttString {
        MqttString::from_static(text)
    }

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).unwrap()
    }

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    /// MQTT 3.1.1 sections 3.8.2.1 and 3.8.3.1 (Figures 3.21 and 3.23): packet identifier 10,
    /// "a/b" at QoS 1 and "c/d" at QoS 2.
    #[test]
    fn v311_spec_example() {
        let bytes = [
            0x82, 0x0E, // SUBSCRIBE, flags 0010; remaining length 14
            0x00, 0x0A, // packet identifier 10
            0x00, 0x03, b'a', b'/', b'b', // topic filter "a/b"
            0x01, // requested QoS 1
            0x00, 0x03, b'c', b'/', b'd', // topic filter "c/d"
            0x02, // requested QoS 2
        ];
        let subscribe = Subscribe {
            packet_id: id(10),
            properties: SubscribeProperties::default(),
            filters: vec![
                (filter("a/b"), SubscriptionOptions::new(QoS::AtLeastOnce)),
                (filter("c/d"), SubscriptionOptions::new(QoS::ExactlyOnce)),
            ],
        };
        assert_vector(Protocol::V311, &bytes, subscribe.clone());
        assert_vector(Protocol::V31, &bytes, subscribe);
    }

    #[test]
    fn v5_minimal() {
        let bytes = [
            0x82, 0x07, // SUBSCRIBE, flags 0010; remaining length 7
            0x00, 0x01, // packet identifier 1
            0x00, // property length 0
            0x00, 0x01, b'x', // topic filter "x"
            0x00, // options: QoS 0, retain handling 0
        ];
        let subscribe = Subscribe::new(id(1), filter("x"), SubscriptionOptions::default());
        assert_vector(Protocol::V5, &bytes, subscribe);
    }

    // Section 3.8.2.1 (Subscription Identifier, User Property) and every option bit of section
    // 3.8.3.1, on a wildcard filter, a shared subscription ($share, section 4.8.2) and a plain
    // one.
    #[test]
    fn v5_properties_and_options() {
        let bytes = [
            0x82, 0x2E, // SUBSCRIBE, flags 0010; remaining length 46
            0x00, 0x0A, // packet identifier 10
            0x12, // property length 18
            0x0B, 0x80, 0x80, 0x01, // subscription identifier 16384
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // user property ("a", "b")
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'c', // user property ("a", "c")
            0x00, 0x03, b'a', b'/', b'#', // topic filter "a/#"
            0x2E, // options: retain handling 2, retain as published, no local, QoS 2
            0x00, 0x0C, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b's', b'/',
            b'+', // topic filter "$share/g/s/+"
            0x19, // options: retain handling 1, retain as published, QoS 1
            0x00, 0x01, b'b', // topic filter "b"
            0x00, // options: retain handling 0, QoS 0
        ];
        let subscribe = Subscribe {
            packet_id: id(10),
            properties: SubscribeProperties {
                subscription_identifier: SubscriptionId::new(16_384),
                user_properties: vec![(s("a"), s("b")), (s("a"), s("c"))],
            },
            filters: vec![
                (
                    filter("a/#"),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                ),
                (
                    filter("$share/g/s/+"),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: false,
                        retain_as_published: true,
                        retain_handling: RetainHandling::SendAtSubscribeIfNew,
                    },
                ),
                (filter("b"), SubscriptionOptions::default()),
            ],
        };
        assert_vector(Protocol::V5, &bytes, subscribe);
    }

    // MQTT 3.x has only the QoS in the options byte: the v5 bits are not written.
    #[test]
    fn v3_encoder_drops_v5_options_and_properties() {
        let subscribe = Subscribe {
            packet_id: id(2),
            properties: SubscribeProperties {
                subscription_identifier: SubscriptionId::new(1),
                ..SubscribeProperties::default()
            },
            filters: vec![(
                filter("a"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            )],
        };
        assert_encodes(
            Protocol::V311,
            &Packet::Subscribe(subscribe),
            &[
                0x82, 0x06, // SUBSCRIBE, flags 0010; remaining length 6
                0x00, 0x02, // packet identifier 2
                0x00, 0x01, b'a', // topic filter "a"
                0x01, // requested QoS 1
            ],
        );
    }

    // [MQTT-3.8.1-1]: the flags are 0010.
    #[test]
    fn reserved_fixed_header_flags() {
        for flags in [0x0, 0x3, 0xA] {
            let err = decode_err(
                Some(Protocol::V311),
                &[0x80 | flags, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
            );
            assert_eq!(
                err,
                DecodeError::InvalidFlags {
                    packet: PacketType::Subscribe,
                    flags
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
            assert_eq!(err.rule(Protocol::V311), Some("MQTT-3.8.1-1"));
        }
    }

    // 5.0 [MQTT-2.2.1-3], 3.1.1 [MQTT-2.3.1-1].
    #[test]
    fn zero_packet_id() {
        let err = decode_err(
            Some(Protocol::V311),
            &[
                0x82, 0x06, // SUBSCRIBE, remaining length 6
                0x00, 0x00, // packet identifier 0
                0x00, 0x01, b'a', 0x00, // "a", QoS 0
            ],
        );
        assert_eq!(err, DecodeError::ZeroPacketId(PacketType::Subscribe));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    // 3.1.1 [MQTT-3.8.3-3], 5.0 [MQTT-3.8.3-2]: at least one topic filter.
    #[test]
    fn empty_payload() {
        let err = decode_err(Some(Protocol::V311), &[0x82, 0x02, 0x00, 0x01]);
        assert_eq!(err, DecodeError::NoTopicFilters(PacketType::Subscribe));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        assert_eq!(err.rule(Protocol::V311), Some("MQTT-3.8.3-3"));
        let err = decode_err(
            Some(Protocol::V5),
            &[
                0x82, 0x03, // SUBSCRIBE, remaining length 3
                0x00, 0x01, // packet identifier 1
                0x00, // property length 0, and no filter
            ],
        );
        assert_eq!(err, DecodeError::NoTopicFilters(PacketType::Subscribe));
        assert_eq!(err.rule(Protocol::V5), Some("MQTT-3.8.3-2"));

        let mut out = BytesMut::new();
        let empty = Subscribe {
            filters: Vec::new(),
            ..Subscribe::new(id(1), filter("a"), SubscriptionOptions::default())
        };
        assert_eq!(
            empty.encode(Protocol::V5, &mut out),
            Err(EncodeError::NoTopicFilters(PacketType::Subscribe))
        );
    }

    /// A v3.1.1 SUBSCRIBE of "a" with this requested QoS byte.
    fn v311_options(byte: u8) -> [u8; 8] {
        [
            0x82, 0x06, // SUBSCRIBE, remaining length 6
            0x00, 0x01, // packet identifier 1
            0x00, 0x01, b'a', // topic filter "a"
            byte, // requested QoS byte
        ]
    }

    /// A v5 SUBSCRIBE of `topic_filter` (at most 120 bytes) with this options byte.
    fn v5_options(topic_filter: &[u8], byte: u8) -> Vec<u8> {
        // SUBSCRIBE, remaining length
        let mut bytes = vec![0x82, short_len(6 + topic_filter.len())];
        bytes.extend_from_slice(&[
            0x00, 0x01, // packet identifier 1
            0x00, // property length 0
            0x00, // topic filter length, high byte
        ]);
        bytes.push(short_len(topic_filter.len())); // topic filter length, low byte
        bytes.extend_from_slice(topic_filter);
        bytes.push(byte); // subscription options
        bytes
    }

    // 3.1.1 [MQTT-3-8.3-4] (numbered so in the spec): bits 7-2 are reserved and QoS 3 is
    // malformed.
    #[test]
    fn v3_reserved_option_bits() {
        for byte in [0x04, 0x40, 0x80, 0x81] {
            for protocol in [Protocol::V31, Protocol::V311] {
                let err = decode_err(Some(protocol), &v311_options(byte));
                assert_eq!(err, DecodeError::SubscriptionOptionsReserved, "{byte:#04x}");
                assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
            }
        }
        assert_eq!(
            decode_err(Some(Protocol::V311), &v311_options(0x03)),
            DecodeError::InvalidSubscriptionQoS
        );
        // The helper is right.
        let subscribe = Subscribe::new(id(1), filter("a"), SubscriptionOptions::default());
        assert_vector(Protocol::V311, &v311_options(0x00), subscribe);
    }

    // 5.0 [MQTT-3.8.3-5]: bits 7-6 are reserved.
    #[test]
    fn v5_reserved_option_bits() {
        for byte in [0x40, 0x80, 0xC1] {
            let err = decode_err(Some(Protocol::V5), &v5_options(b"a", byte));
            assert_eq!(err, DecodeError::SubscriptionOptionsReserved, "{byte:#04x}");
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
            assert_eq!(err.rule(Protocol::V5), Some("MQTT-3.8.3-5"));
        }
        // The helper is right.
        let subscribe = Subscribe::new(id(1), filter("a"), SubscriptionOptions::default());
        assert_vector(Protocol::V5, &v5_options(b"a", 0x00), subscribe);
    }

    // Section 3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value 3."
    #[test]
    fn v5_qos_3() {
        let err = decode_err(Some(Protocol::V5), &v5_options(b"a", 0x03));
        assert_eq!(err, DecodeError::InvalidSubscriptionQoS);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    // Section 3.8.3.1: "It is a Protocol Error to send a Retain Handling value of 3."
    #[test]
    fn v5_retain_handling_3() {
        let err = decode_err(Some(Protocol::V5), &v5_options(b"a", 0x30));
        assert_eq!(err, DecodeError::InvalidRetainHandling);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    // [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error.
    #[test]
    fn v5_no_local_on_shared_subscription() {
        let err = decode_err(Some(Protocol::V5), &v5_options(b"$share/g/a", 0x04));
        assert_eq!(err, DecodeError::NoLocalOnSharedSubscription);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        assert_eq!(err.rule(Protocol::V5), Some("MQTT-3.8.3-4"));
        // No Local on an ordinary filter is fine.
        let subscribe = Subscribe::new(
            id(1),
            filter("$sharex/a"),
            SubscriptionOptions {
                no_local: true,
                ..SubscriptionOptions::default()
            },
        );
        assert_vector(Protocol::V5, &v5_options(b"$sharex/a", 0x04), subscribe);
    }

    #[test]
    fn invalid_topic_filter() {
        assert_eq!(
            decode_err(Some(Protocol::V5), &v5_options(b"a/#/b", 0x00)),
            DecodeError::InvalidTopicFilter(TopicError::MultiLevelNotLast)
        );
        // [MQTT-4.7.3-1]: topic filters are at least one character long.
        assert_eq!(
            decode_err(Some(Protocol::V5), &v5_options(b"", 0x00)),
            DecodeError::InvalidTopicFilter(TopicError::Empty)
        );
    }

    /// A v5 SUBSCRIBE of "a" with these properties (at most 120 bytes).
    fn v5_with_properties(props: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x82, short_len(7 + props.len())]; // SUBSCRIBE, remaining length
        bytes.extend_from_slice(&[0x00, 0x01]); // packet identifier 1
        bytes.push(short_len(props.len())); // property length
        bytes.extend_from_slice(props);
        bytes.extend_from_slice(&[
            0x00, 0x01, b'a', // topic filter "a"
            0x00, // options: QoS 0
        ]);
        bytes
    }

    // Section 3.8.2.1.2: a Subscription Identifier of 0, or two of them, are Protocol Errors.
    #[test]
    fn subscription_identifier() {
        let err = decode_err(Some(Protocol::V5), &v5_with_properties(&[0x0B, 0x00]));
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x0B));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        let err = decode_err(
            Some(Protocol::V5),
            &v5_with_properties(&[
                0x0B, 0x01, // subscription identifier 1
                0x0B, 0x02, // subscription identifier 2
            ]),
        );
        assert_eq!(err, DecodeError::DuplicateProperty(0x0B));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    // Section 2.2.2.2: Reason String does not belong in SUBSCRIBE.
    #[test]
    fn property_not_valid_in_subscribe() {
        let err = decode_err(
            Some(Protocol::V5),
            &v5_with_properties(&[0x1F, 0x00, 0x01, b'r']),
        );
        assert_eq!(
            err,
            DecodeError::InvalidProperty {
                packet: PacketType::Subscribe,
                id: 0x1F
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    #[test]
    fn truncated() {
        // A topic filter without its options byte.
        assert_eq!(
            decode_err(
                Some(Protocol::V311),
                &[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']
            ),
            DecodeError::Truncated(PacketType::Subscribe)
        );
        // A topic filter longer than what is left.
        assert_eq!(
            decode_err(
                Some(Protocol::V311),
                &[0x82, 0x06, 0x00, 0x01, 0x00, 0x04, b'a', 0x00]
            ),
            DecodeError::Truncated(PacketType::Subscribe)
        );
    }
}
