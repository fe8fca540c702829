//! Between the broker's types and the stored ones: messages (instants become wall-clock
//! milliseconds and back), sessions and their held messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use pigeon_proto::properties::SubscriptionId;
use pigeon_proto::{
    MqttString, Packet, PacketId, Protocol, QoS, RetainHandling, SubscriptionOptions, TopicFilter,
};

use super::record::{StoredDelivery, StoredMessage, StoredSession, StoredSubscription};
use crate::message::{Delivery, Message};
use crate::session::{OutboundLimits, Session, Subscription};

/// The clock at one moment, both ways: instants for the broker, Unix time for the disk.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    /// The monotonic instant.
    pub now: Instant,
    /// The same moment as Unix milliseconds.
    pub wall_ms: u64,
}

impl Clocks {
    /// The clocks now.
    pub fn read() -> Clocks {
        Clocks {
            now: crate::clock::now(),
            wall_ms: unix_ms(crate::clock::wall()),
        }
    }

    /// `at` as Unix milliseconds.
    pub fn to_wall(&self, at: Instant) -> u64 {
        let ahead = at.saturating_duration_since(self.now).as_millis();
        let behind = self.now.saturating_duration_since(at).as_millis();
        let ahead = u64::try_from(ahead).unwrap_or(u64::MAX);
        let behind = u64::try_from(behind).unwrap_or(u64::MAX);
        self.wall_ms.saturating_add(ahead).saturating_sub(behind)
    }

    /// Unix milliseconds `ms` as an instant (moments before the process started become its
    /// first instant or so: what matters is that they are past).
    pub fn to_instant(&self, ms: u64) -> Instant {
        if ms >= self.wall_ms {
            self.now + Duration::from_millis(ms - self.wall_ms)
        } else {
            self.now
                .checked_sub(Duration::from_millis(self.wall_ms - ms))
                .unwrap_or(self.now)
        }
    }
}

/// Unix milliseconds of `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A message as stored.
pub fn stored_message(m: &Message, clocks: &Clocks) -> StoredMessage {
    let publish = pigeon_proto::Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: (m.qos != QoS::AtMostOnce).then_some(PacketId::FIRST),
        properties: m.properties.clone(),
        payload: m.payload.clone(),
    };
    let mut buf = BytesMut::with_capacity(m.payload.len() + m.topic.as_str().len() + 16);
    // Every message the broker holds was decoded or built within the protocol's limits.
    let _ = Packet::Publish(publish).encode(Protocol::V5, &mut buf);
    StoredMessage {
        publish: buf.freeze(),
        expires_ms: m.expires_at.map(|at| clocks.to_wall(at)),
        origin: m.origin.as_ref().map(ToString::to_string),
    }
}

/// A stored message back; `None` if it cannot be read (the record's check passed, so only
/// a format change explains it).
pub fn message(s: &StoredMessage, clocks: &Clocks) -> Option<Message> {
    let Ok(Packet::Publish(p)) = Packet::decode(s.publish.clone(), Some(Protocol::V5)) else {
        return None;
    };
    let mut m = Message::new(p.topic, p.payload, p.qos, p.retain);
    m.properties = p.properties;
    m.expires_at = s.expires_ms.map(|ms| clocks.to_instant(ms));
    m.origin = s
        .origin
        .as_deref()
        .and_then(|o| MqttString::try_from(o).ok());
    Some(m)
}

/// The options byte, as MQTT 5.0 encodes it.
pub fn options_byte(o: SubscriptionOptions) -> u8 {
    (o.qos as u8)
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
}

fn options(byte: u8) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::from_u8(byte & 3).unwrap_or(QoS::AtMostOnce),
        no_local: byte & 4 != 0,
        retain_as_published: byte & 8 != 0,
        retain_handling: match (byte >> 4) & 3 {
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => RetainHandling::SendAtSubscribe,
        },
    }
}

fn protocol(level: u8) -> Protocol {
    match level {
        3 => Protocol::V31,
        5 => Protocol::V5,
        _ => Protocol::V311,
    }
}

/// A session's protocol, expiry and subscriptions as stored (nothing it holds).
pub fn stored_meta(s: &Session, disconnected_ms: Option<u64>) -> StoredSession {
    let mut subscriptions: Vec<StoredSubscription> = s
        .subscriptions
        .values()
        .map(|sub| StoredSubscription {
            filter: sub.filter.as_str().to_owned(),
            options: options_byte(sub.options),
            id: sub.id.map_or(0, SubscriptionId::get),
        })
        .collect();
    subscriptions.sort_by(|a, b| a.filter.cmp(&b.filter));
    StoredSession {
        client: s.client_id.to_string(),
        protocol: s.protocol.level(),
        expiry: s
            .expiry()
            .map(|e| u32::try_from(e.as_secs()).unwrap_or(u32::MAX - 1)),
        disconnected_ms,
        subscriptions,
        deliveries: Vec::new(),
        inbound: Vec::new(),
    }
}

/// A delivery as stored, its message being stored under `message`.
pub fn stored_delivery(
    d: &Delivery,
    message: u64,
    inflight: Option<(PacketId, bool)>,
) -> StoredDelivery {
    StoredDelivery {
        message,
        qos: d.qos as u8,
        retain: d.retain,
        subscription_ids: d.subscription_ids.iter().map(|i| i.get()).collect(),
        shared: d.shared.as_ref().map(ToString::to_string),
        inflight: inflight.map(|(id, released)| (id.get(), released)),
    }
}

/// A whole session as stored; `id` gives the store number of each held message (storing it
/// first if need be).
pub fn stored_session(
    s: &Session,
    disconnected_ms: Option<u64>,
    mut id: impl FnMut(&Arc<Message>) -> u64,
) -> StoredSession {
    let mut stored = stored_meta(s, disconnected_ms);
    stored.deliveries = s
        .outbound
        .held()
        .map(|(d, inflight)| stored_delivery(d, id(&d.message), inflight))
        .collect();
    stored.inbound = s.inbound.ids().map(PacketId::get).collect();
    stored.inbound.sort_unstable();
    stored
}

/// A session back from the store, with its subscriptions (to enter into the index) and its
/// held messages (`messages` by store number).
pub fn session(
    stored: &StoredSession,
    messages: &HashMap<u64, Arc<Message>>,
    limits: Arc<OutboundLimits>,
) -> Option<Session> {
    let client = MqttString::try_from(stored.client.as_str()).ok()?;
    let mut s = Session::new(client, protocol(stored.protocol), false, limits);
    s.set_expiry_interval(stored.expiry.unwrap_or(u32::MAX));
    for sub in &stored.subscriptions {
        let Ok(text) = MqttString::try_from(sub.filter.as_str()) else {
            continue;
        };
        let Ok(filter) = TopicFilter::from_string(text.clone()) else {
            continue;
        };
        s.subscriptions.insert(
            text,
            Subscription {
                filter,
                options: options(sub.options),
                id: SubscriptionId::new(sub.id),
            },
        );
    }
    for d in &stored.deliveries {
        let Some(message) = messages.get(&d.message) else {
            continue;
        };
        let mut delivery = Delivery::new(
            Arc::clone(message),
            QoS::from_u8(d.qos).unwrap_or(QoS::AtMostOnce),
            d.retain,
        );
        delivery.subscription_ids = d
            .subscription_ids
            .iter()
            .filter_map(|&i| SubscriptionId::new(i))
            .collect();
        delivery.shared = d
            .shared
            .as_deref()
            .and_then(|s| MqttString::try_from(s).ok());
        let inflight = d
            .inflight
            .and_then(|(id, released)| Some((PacketId::new(id)?, released)));
        s.outbound.restore(delivery, inflight);
    }
    for &id in &stored.inbound {
        if let Some(id) = PacketId::new(id) {
            s.inbound.on_publish(id);
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use pigeon_proto::TopicName;

    use super::*;

    #[test]
    fn a_message_comes_back_as_it_went_with_its_expiry_in_wall_time() {
        let clocks = Clocks::read();
        let mut m = Message::new(
            TopicName::from_static("a/b"),
            Bytes::from_static(b"payload"),
            QoS::ExactlyOnce,
            true,
        );
        m.properties.content_type = Some(MqttString::from_static("text/plain"));
        m.properties.message_expiry_interval = Some(60);
        m.expires_at = Some(clocks.now + Duration::from_secs(60));
        m.origin = Some(MqttString::from_static("pub"));
        let stored = stored_message(&m, &clocks);
        assert_eq!(stored.expires_ms, Some(clocks.wall_ms + 60_000));
        // After a restart ten seconds later (wall clock), 50 seconds are left.
        let later = Clocks {
            now: clocks.now,
            wall_ms: clocks.wall_ms + 10_000,
        };
        let back = message(&stored, &later).expect("decodes");
        assert_eq!(back.expires_at, Some(clocks.now + Duration::from_secs(50)));
        assert_eq!(
            Message {
                expires_at: m.expires_at,
                ..back
            },
            m
        );
    }

    #[test]
    fn options_round_trip() {
        for byte in 0..0x30u8 {
            if byte & 3 == 3 || (byte >> 4) == 3 {
                continue;
            }
            assert_eq!(options_byte(options(byte)), byte);
        }
    }
}
