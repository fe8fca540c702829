//! Application messages as the broker holds them.

use std::sync::Arc;

use bytes::Bytes;
use pigeon_proto::properties::PublishProperties;
use pigeon_proto::{PacketId, Publish, QoS, TopicName};

/// A message as received from its publisher, shared by every subscriber it reaches.
///
/// Fan-out clones the `Arc`, never the payload; only the fixed header, packet identifier and
/// per-subscriber properties differ from one copy on the wire to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published to (never empty: aliases are resolved before routing).
    pub topic: TopicName,
    /// The payload, shared with the publisher's read buffer.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// MQTT 5.0 properties forwarded to subscribers (Topic Alias and Subscription Identifiers
    /// are per connection and never stored here).
    pub properties: PublishProperties,
}

impl Message {
    /// Takes the message out of a decoded PUBLISH.
    pub fn from_publish(publish: Publish) -> Arc<Message> {
        let mut properties = publish.properties;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
        })
    }

    /// Bytes this message counts against byte limits (`max_queued_bytes`,
    /// `max_inflight_bytes`): its payload, as Mosquitto counts it.
    pub fn size(&self) -> usize {
        self.payload.len()
    }
}

/// One message on its way to one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// The QoS it is delivered with: the lower of the published QoS and the subscription's.
    pub qos: QoS,
    /// The RETAIN flag as sent to this subscriber.
    pub retain: bool,
}

impl Delivery {
    /// The PUBLISH that carries this delivery.
    pub fn to_publish(&self, packet_id: Option<PacketId>, dup: bool) -> Publish {
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.message.topic.clone(),
            packet_id,
            properties: self.message.properties.clone(),
            payload: self.message.payload.clone(),
        }
    }
}
