//! MQTT 5.0 properties (section 2.2.2), one typed set per packet.
//!
//! Each packet has its own property struct holding only the properties the spec allows in it,
//! so an invalid combination cannot be built, and decoding one is a Malformed Packet
//! (section 2.2.2.2). Properties that may appear once are `Option`s; a second occurrence is a
//! Protocol Error. User Properties may repeat and keep the order they arrived in, since a
//! server forwards them unaltered and in order [MQTT-3.3.2-17], [MQTT-3.3.2-18].
//!
//! MQTT 3.x packets carry no properties: the encoder leaves them out and the decoder returns
//! the empty set.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes};

use crate::codec::{Reader, prefixed_len, put_binary, put_string, put_var_int, var_int_len};
use crate::{DecodeError, EncodeError, MqttString, PacketType, QoS, TopicName};

/// A User Property: a name and a value, both UTF-8 strings (property 0x26).
pub type UserProperty = (MqttString, MqttString);

/// Payload Format Indicator (property 0x01).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    Unspecified = 0,
    /// 1: UTF-8 encoded character data.
    Utf8 = 1,
}

/// A Subscription Identifier: 1 to 268,435,455 (property 0x0B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(NonZeroU32);

impl SubscriptionId {
    /// The identifier for `value`, or `None` outside 1..=268,435,455 (0 is a Protocol Error).
    pub const fn new(value: u32) -> Option<SubscriptionId> {
        if value > crate::MAX_VAR_INT {
            return None;
        }
        match NonZeroU32::new(value) {
            Some(v) => Some(SubscriptionId(v)),
            None => None,
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

/// How one property value type is read, sized and written.
trait Value: Sized {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError>;
    fn len(&self) -> usize;
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError>;
}

fn bool_byte(r: &mut Reader<'_>, id: u8) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

impl Value for bool {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        bool_byte(r, id)
    }
    fn len(&self) -> usize {
        1
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        buf.put_u8(u8::from(*self));
        Ok(())
    }
}

impl Value for PayloadFormat {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        Ok(if bool_byte(r, id)? {
            PayloadFormat::Utf8
        } else {
            PayloadFormat::Unspecified
        })
    }
    fn len(&self) -> usize {
        1
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        buf.put_u8(*self as u8);
        Ok(())
    }
}

/// Maximum QoS (0x24) may only be 0 or 1.
impl Value for QoS {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }
    fn len(&self) -> usize {
        1
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        buf.put_u8(*self as u8);
        Ok(())
    }
}

impl Value for u16 {
    fn read(r: &mut Reader<'_>, _id: u8) -> Result<Self, DecodeError> {
        r.u16()
    }
    fn len(&self) -> usize {
        2
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        buf.put_u16(*self);
        Ok(())
    }
}

/// Receive Maximum and Topic Alias: zero is a Protocol Error.
impl Value for NonZeroU16 {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        NonZeroU16::new(r.u16()?).ok_or(DecodeError::InvalidPropertyValue(id))
    }
    fn len(&self) -> usize {
        2
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        buf.put_u16(self.get());
        Ok(())
    }
}

impl Value for u32 {
    fn read(r: &mut Reader<'_>, _id: u8) -> Result<Self, DecodeError> {
        r.u32()
    }
    fn len(&self) -> usize {
        4
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        buf.put_u32(*self);
        Ok(())
    }
}

/// Maximum Packet Size: zero is a Protocol Error.
impl Value for NonZeroU32 {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        NonZeroU32::new(r.u32()?).ok_or(DecodeError::InvalidPropertyValue(id))
    }
    fn len(&self) -> usize {
        4
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        buf.put_u32(self.get());
        Ok(())
    }
}

/// Subscription Identifier: a Variable Byte Integer; zero is a Protocol Error.
impl Value for SubscriptionId {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        SubscriptionId::new(r.var_int()?).ok_or(DecodeError::InvalidPropertyValue(id))
    }
    fn len(&self) -> usize {
        var_int_len(self.get() as usize)
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        put_var_int(buf, self.get() as usize);
        Ok(())
    }
}

impl Value for MqttString {
    fn read(r: &mut Reader<'_>, _id: u8) -> Result<Self, DecodeError> {
        r.string()
    }
    fn len(&self) -> usize {
        prefixed_len(self.as_bytes().len())
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        put_string(buf, self);
        Ok(())
    }
}

/// Response Topic: a Topic Name, so no wildcards [MQTT-3.3.2-14].
impl Value for TopicName {
    fn read(r: &mut Reader<'_>, _id: u8) -> Result<Self, DecodeError> {
        TopicName::from_string(r.string()?).map_err(DecodeError::InvalidTopicName)
    }
    fn len(&self) -> usize {
        prefixed_len(self.as_str().len())
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        put_string(buf, self.as_mqtt_string());
        Ok(())
    }
}

impl Value for Bytes {
    fn read(r: &mut Reader<'_>, _id: u8) -> Result<Self, DecodeError> {
        r.binary()
    }
    fn len(&self) -> usize {
        prefixed_len(self.len())
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        put_binary(buf, self)
    }
}

impl Value for UserProperty {
    fn read(r: &mut Reader<'_>, _id: u8) -> Result<Self, DecodeError> {
        Ok((r.string()?, r.string()?))
    }
    fn len(&self) -> usize {
        prefixed_len(self.0.as_bytes().len()) + prefixed_len(self.1.as_bytes().len())
    }
    fn write(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        put_string(buf, &self.0);
        put_string(buf, &self.1);
        Ok(())
    }
}

/// Property identifier of User Property, allowed in every packet with properties.
const USER_PROPERTY: u8 = 0x26;

/// Builds a property struct. `one` fields may appear at most once, `many` fields any number of
/// times; every struct also has `user_properties`.
macro_rules! property_set {
    (
        $(#[$doc:meta])*
        $name:ident for $packet:ident {
            $( one $(#[$fdoc:meta])* $field:ident : $ty:ty = $id:literal, )*
            $( many $(#[$mdoc:meta])* $mfield:ident : $mty:ty = $mid:literal, )*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $name {
            $( $(#[$fdoc])* pub $field: Option<$ty>, )*
            $( $(#[$mdoc])* pub $mfield: Vec<$mty>, )*
            /// User Properties (0x26), in order; names may repeat.
            pub user_properties: Vec<UserProperty>,
        }

        impl $name {
            /// Whether no property is set.
            pub fn is_empty(&self) -> bool {
                true $( && self.$field.is_none() )* $( && self.$mfield.is_empty() )*
                    && self.user_properties.is_empty()
            }

            /// Reads the Property Length and the properties it covers.
            pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let len = r.var_int()? as usize;
                let mut r = r.sub(len)?;
                let mut props = Self::default();
                while !r.is_empty() {
                    // The identifier is a Variable Byte Integer; every defined one fits a byte.
                    let id = r.var_int()?;
                    let id = u8::try_from(id).map_err(|_| DecodeError::InvalidProperty {
                        packet: PacketType::$packet,
                        id: u8::MAX,
                    })?;
                    match id {
                        $( $id => {
                            if props.$field.is_some() {
                                return Err(DecodeError::DuplicateProperty(id));
                            }
                            props.$field = Some(<$ty as Value>::read(&mut r, id)?);
                        } )*
                        $( $mid => props.$mfield.push(<$mty as Value>::read(&mut r, id)?), )*
                        USER_PROPERTY => props
                            .user_properties
                            .push(<UserProperty as Value>::read(&mut r, id)?),
                        _ => {
                            return Err(DecodeError::InvalidProperty {
                                packet: PacketType::$packet,
                                id,
                            });
                        }
                    }
                }
                Ok(props)
            }

            /// Bytes of the properties, without the Property Length prefix.
            pub(crate) fn body_len(&self) -> usize {
                let mut n = 0;
                $( if let Some(v) = &self.$field { n += 1 + Value::len(v); } )*
                $( for v in &self.$mfield { n += 1 + Value::len(v); } )*
                for v in &self.user_properties {
                    n += 1 + Value::len(v);
                }
                n
            }

            /// Bytes of the properties with their Property Length prefix.
            pub(crate) fn encoded_len(&self) -> usize {
                let n = self.body_len();
                var_int_len(n) + n
            }

            pub(crate) fn encode(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
                put_var_int(buf, self.body_len());
                $( if let Some(v) = &self.$field { buf.put_u8($id); v.write(buf)?; } )*
                $( for v in &self.$mfield { buf.put_u8($mid); v.write(buf)?; } )*
                for v in &self.user_properties {
                    buf.put_u8(USER_PROPERTY);
                    v.write(buf)?;
                }
                Ok(())
            }
        }
    };
}

property_set! {
    /// Properties of CONNECT (section 3.1.2.11).
    ConnectProperties for Connect {
        one /// Session Expiry Interval (0x11), seconds.
            session_expiry_interval: u32 = 0x11,
        one /// Receive Maximum (0x21).
            receive_maximum: NonZeroU16 = 0x21,
        one /// Maximum Packet Size (0x27).
            maximum_packet_size: NonZeroU32 = 0x27,
        one /// Topic Alias Maximum (0x22).
            topic_alias_maximum: u16 = 0x22,
        one /// Request Response Information (0x19).
            request_response_information: bool = 0x19,
        one /// Request Problem Information (0x17).
            request_problem_information: bool = 0x17,
        one /// Authentication Method (0x15).
            authentication_method: MqttString = 0x15,
        one /// Authentication Data (0x16).
            authentication_data: Bytes = 0x16,
    }
}

property_set! {
    /// Will Properties of CONNECT (section 3.1.3.2).
    WillProperties for Connect {
        one /// Will Delay Interval (0x18), seconds.
            will_delay_interval: u32 = 0x18,
        one /// Payload Format Indicator (0x01).
            payload_format_indicator: PayloadFormat = 0x01,
        one /// Message Expiry Interval (0x02), seconds.
            message_expiry_interval: u32 = 0x02,
        one /// Content Type (0x03).
            content_type: MqttString = 0x03,
        one /// Response Topic (0x08).
            response_topic: TopicName = 0x08,
        one /// Correlation Data (0x09).
            correlation_data: Bytes = 0x09,
    }
}

property_set! {
    /// Properties of CONNACK (section 3.2.2.3), encoded in the order Mosquitto sends them.
    ConnAckProperties for ConnAck {
        one /// Topic Alias Maximum (0x22).
            topic_alias_maximum: u16 = 0x22,
        one /// Server Keep Alive (0x13), seconds.
            server_keep_alive: u16 = 0x13,
        one /// Assigned Client Identifier (0x12).
            assigned_client_identifier: MqttString = 0x12,
        one /// Authentication Method (0x15).
            authentication_method: MqttString = 0x15,
        one /// Authentication Data (0x16).
            authentication_data: Bytes = 0x16,
        one /// Retain Available (0x25).
            retain_available: bool = 0x25,
        one /// Maximum Packet Size (0x27).
            maximum_packet_size: NonZeroU32 = 0x27,
        one /// Receive Maximum (0x21).
            receive_maximum: NonZeroU16 = 0x21,
        one /// Maximum QoS (0x24): 0 or 1; absent means 2.
            maximum_qos: QoS = 0x24,
        one /// Session Expiry Interval (0x11), seconds.
            session_expiry_interval: u32 = 0x11,
        one /// Reason String (0x1F).
            reason_string: MqttString = 0x1F,
        one /// Wildcard Subscription Available (0x28).
            wildcard_subscription_available: bool = 0x28,
        one /// Subscription Identifiers Available (0x29).
            subscription_identifiers_available: bool = 0x29,
        one /// Shared Subscription Available (0x2A).
            shared_subscription_available: bool = 0x2A,
        one /// Response Information (0x1A).
            response_information: MqttString = 0x1A,
        one /// Server Reference (0x1C).
            server_reference: MqttString = 0x1C,
    }
}

property_set! {
    /// Properties of PUBLISH (section 3.3.2.3).
    PublishProperties for Publish {
        one /// Payload Format Indicator (0x01).
            payload_format_indicator: PayloadFormat = 0x01,
        one /// Message Expiry Interval (0x02), seconds.
            message_expiry_interval: u32 = 0x02,
        one /// Topic Alias (0x23); zero is a Protocol Error [MQTT-3.3.2-8].
            topic_alias: NonZeroU16 = 0x23,
        one /// Response Topic (0x08).
            response_topic: TopicName = 0x08,
        one /// Correlation Data (0x09).
            correlation_data: Bytes = 0x09,
        one /// Content Type (0x03).
            content_type: MqttString = 0x03,
        many /// Subscription Identifiers (0x0B) of the matching subscriptions (server to
             /// client only).
            subscription_identifiers: SubscriptionId = 0x0B,
    }
}

property_set! {
    /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
    AckProperties for PubAck {
        one /// Reason String (0x1F).
            reason_string: MqttString = 0x1F,
    }
}

property_set! {
    /// Properties of SUBSCRIBE (section 3.8.2.1).
    SubscribeProperties for Subscribe {
        one /// Subscription Identifier (0x0B).
            subscription_identifier: SubscriptionId = 0x0B,
    }
}

property_set! {
    /// Properties of UNSUBSCRIBE (section 3.10.2.1): only User Properties.
    UnsubscribeProperties for Unsubscribe {}
}

property_set! {
    /// Properties of DISCONNECT (section 3.14.2.2).
    DisconnectProperties for Disconnect {
        one /// Session Expiry Interval (0x11), seconds.
            session_expiry_interval: u32 = 0x11,
        one /// Reason String (0x1F).
            reason_string: MqttString = 0x1F,
        one /// Server Reference (0x1C).
            server_reference: MqttString = 0x1C,
    }
}

property_set! {
    /// Properties of AUTH (section 3.15.2.2).
    AuthProperties for Auth {
        one /// Authentication Method (0x15).
            authentication_method: MqttString = 0x15,
        one /// Authentication Data (0x16).
            authentication_data: Bytes = 0x16,
        one /// Reason String (0x1F).
            reason_string: MqttString = 0x1F,
    }
}

impl AckProperties {
    /// Decodes with errors naming `packet` rather than PUBACK.
    pub(crate) fn decode_for(r: &mut Reader<'_>, packet: PacketType) -> Result<Self, DecodeError> {
        Self::decode(r).map_err(|e| match e {
            DecodeError::InvalidProperty { id, .. } => DecodeError::InvalidProperty { packet, id },
            e => e,
        })
    }
}
