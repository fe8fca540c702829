//! Application messages as the broker holds them.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pigeon_proto::properties::{PublishProperties, SubscriptionId};
use pigeon_proto::{MqttString, PacketId, Publish, QoS, TopicName, Will};

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
    /// are per connection and never stored here; the Message Expiry Interval is replaced by
    /// what is left of it when the message is sent [MQTT-3.3.2-6]).
    pub properties: PublishProperties,
    /// When the message expires (its Message Expiry Interval counted from its arrival);
    /// `None` for a message that does not.
    pub expires_at: Option<Instant>,
    /// The Client Identifier of the client that published it (for No Local); `None` for
    /// messages of the broker's own.
    pub origin: Option<MqttString>,
    /// Its number in the persistence store, once stored there (see [`crate::store`]).
    pub store_id: OnceLock<u64>,
}

impl Message {
    /// A message of the broker's own (a `$SYS` value, a will): no expiry, no origin.
    pub fn new(topic: TopicName, payload: Bytes, qos: QoS, retain: bool) -> Message {
        Message {
            topic,
            payload,
            qos,
            retain,
            properties: PublishProperties::default(),
            expires_at: None,
            origin: None,
            store_id: OnceLock::new(),
        }
    }

    /// Takes the message out of a decoded PUBLISH from `origin`, received at `now`.
    pub fn from_publish(
        publish: Publish,
        origin: Option<MqttString>,
        now: Instant,
    ) -> Arc<Message> {
        let mut properties = publish.properties;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let expires_at = properties
            .message_expiry_interval
            .and_then(|secs| now.checked_add(Duration::from_secs(u64::from(secs))));
        Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
            expires_at,
            origin,
            store_id: OnceLock::new(),
        })
    }

    /// The will of `origin`, published at `now`: its properties go with it (MQTT 5.0 section
    /// 3.1.3.2), User Properties in order [MQTT-3.1.3-10], and its Message Expiry Interval
    /// counts from `now`. (The Will Delay Interval says when, not what: it is not forwarded.)
    pub fn from_will(will: Will, origin: MqttString, now: Instant) -> Message {
        let props = will.properties;
        let mut message = Message::new(will.topic, will.payload, will.qos, will.retain);
        message.properties.payload_format_indicator = props.payload_format_indicator;
        message.properties.message_expiry_interval = props.message_expiry_interval;
        message.properties.content_type = props.content_type;
        message.properties.response_topic = props.response_topic;
        message.properties.correlation_data = props.correlation_data;
        message.properties.user_properties = props.user_properties;
        message.expires_at = props
            .message_expiry_interval
            .and_then(|secs| now.checked_add(Duration::from_secs(u64::from(secs))));
        message.origin = Some(origin);
        message
    }

    /// Bytes this message counts against byte limits (`max_queued_bytes`,
    /// `max_inflight_bytes`): its payload, as Mosquitto counts it.
    pub fn size(&self) -> usize {
        self.payload.len()
    }

    /// Whether the message has expired by `now` [MQTT-3.3.2-5].
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// What is left of its Message Expiry Interval at `now`, in whole seconds rounded up (so
    /// that a message still alive is never sent with 0).
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX).max(1)
        })
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
    /// The Subscription Identifiers of the subscriptions it matched [MQTT-3.3.4-3].
    pub subscription_ids: Vec<SubscriptionId>,
    /// The shared subscription (`$share/{group}/{filter}`) it was delivered through, if any: a
    /// message left unacknowledged when the session ends goes to another member of the group.
    pub shared: Option<MqttString>,
}

impl Delivery {
    /// A delivery of `message` at `qos` with this RETAIN flag, through a plain subscription
    /// without an identifier.
    pub fn new(message: Arc<Message>, qos: QoS, retain: bool) -> Delivery {
        Delivery {
            message,
            qos,
            retain,
            subscription_ids: Vec::new(),
            shared: None,
        }
    }

    /// The PUBLISH that carries this delivery, sent at `now`.
    pub fn to_publish(&self, packet_id: Option<PacketId>, dup: bool, now: Instant) -> Publish {
        let mut properties = self.message.properties.clone();
        properties.message_expiry_interval = self.message.remaining_expiry(now);
        properties
            .subscription_identifiers
            .clone_from(&self.subscription_ids);
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.message.topic.clone(),
            packet_id,
            properties,
            payload: self.message.payload.clone(),
        }
    }
}
