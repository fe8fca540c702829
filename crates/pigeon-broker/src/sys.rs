//! The `$SYS/broker/...` tree: the broker's statistics, under Mosquitto's topic names and in
//! its payload formats, so that dashboards written for Mosquitto keep working.
//!
//! [`SysTree`] is sans I/O: given a [`Snapshot`] of the counters and the instant, it returns
//! the `(topic, payload)` pairs to publish. [`run`] is the task around it: every
//! `sys_interval` (as a reload sets it) it takes a snapshot and publishes what changed,
//! retained, at QoS 0.
//!
//! As in Mosquitto: `$SYS/broker/version` is published once at start; `$SYS/broker/uptime`
//! on every update; everything else on the first update and then only when its payload
//! changed. Load averages (`$SYS/broker/load/...`) are per-minute rates averaged over the last
//! 1, 5 and 15 minutes with exponential decay, as Unix load averages are, and written with two
//! decimals.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use pigeon_proto::{QoS, TopicName};
use tokio::time::MissedTickBehavior;

use crate::broker::Broker;
use crate::clock;
use crate::message::Message;
use crate::server::Shared;

/// One `$SYS` message: its topic and payload.
pub type SysMessage = (&'static str, String);

/// What one `$SYS` update reports: the counters (totals since start) and the gauges (values
/// now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Clients with a session, connected or not.
    pub clients_total: u64,
    /// Clients connected now.
    pub clients_connected: u64,
    /// The most clients connected at the same time.
    pub clients_maximum: u64,
    /// Persistent sessions removed by `persistent_client_expiration`.
    pub clients_expired: u64,
    /// CONNECTs refused for bad credentials or missing authorisation (a Pigeon topic:
    /// Mosquitto 2.0 has none).
    pub auth_failures: u64,
    /// MQTT packets of any type received.
    pub messages_received: u64,
    /// MQTT packets of any type sent.
    pub messages_sent: u64,
    /// Messages held: retained, and queued for disconnected clients.
    pub store_count: u64,
    /// Payload bytes of the messages held.
    pub store_bytes: u64,
    /// Subscriptions.
    pub subscriptions: u64,
    /// Retained messages.
    pub retained: u64,
    /// PUBLISH packets received.
    pub publish_received: u64,
    /// PUBLISH packets sent.
    pub publish_sent: u64,
    /// Messages dropped by queue limits.
    pub publish_dropped: u64,
    /// Payload bytes of the PUBLISH packets received.
    pub publish_bytes_received: u64,
    /// Payload bytes of the PUBLISH packets sent.
    pub publish_bytes_sent: u64,
    /// Bytes read from client sockets.
    pub bytes_received: u64,
    /// Bytes written to client sockets.
    pub bytes_sent: u64,
    /// CONNECT packets received.
    pub connections: u64,
    /// TCP connections accepted.
    pub sockets: u64,
    /// PUBLISH packets received, by QoS (index 0, 1, 2). Not in `$SYS` (Mosquitto has no
    /// such topics); for `/metrics` and the JSON API.
    pub publish_received_by_qos: [u64; 3],
    /// PUBLISH packets sent, by QoS.
    pub publish_sent_by_qos: [u64; 3],
    /// Payload bytes of the PUBLISH packets received, by QoS.
    pub publish_bytes_received_by_qos: [u64; 3],
    /// Payload bytes of the PUBLISH packets sent, by QoS.
    pub publish_bytes_sent_by_qos: [u64; 3],
}

impl Snapshot {
    /// Reads the broker's counters and sizes now.
    pub fn take(broker: &Broker) -> Snapshot {
        let c = &broker.counters;
        let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let (store_count, store_bytes) = broker.stored();
        Snapshot {
            clients_total: broker.client_count() as u64,
            clients_connected: get(&c.clients_connected),
            clients_maximum: get(&c.clients_maximum),
            clients_expired: get(&c.clients_expired),
            auth_failures: get(&c.auth_failures),
            messages_received: get(&c.packets_received),
            messages_sent: get(&c.packets_sent),
            store_count: store_count as u64,
            store_bytes: store_bytes as u64,
            subscriptions: broker.subscription_count() as u64,
            retained: broker.retained_count() as u64,
            publish_received: get(&c.messages_received),
            publish_sent: get(&c.publish_sent),
            publish_dropped: get(&c.messages_dropped),
            publish_bytes_received: get(&c.publish_bytes_received),
            publish_bytes_sent: get(&c.publish_bytes_sent),
            bytes_received: get(&c.bytes_received),
            bytes_sent: get(&c.bytes_sent),
            connections: get(&c.connections),
            sockets: get(&c.sockets),
            publish_received_by_qos: c.publish_received_by_qos.each_ref().map(get),
            publish_sent_by_qos: c.publish_sent_by_qos.each_ref().map(get),
            publish_bytes_received_by_qos: c.publish_bytes_received_by_qos.each_ref().map(get),
            publish_bytes_sent_by_qos: c.publish_bytes_sent_by_qos.each_ref().map(get),
        }
    }
}

/// The averaging windows of the load averages, in seconds.
const WINDOWS: [f64; 3] = [60.0, 300.0, 900.0];

/// A counter with load averages: how to read it, and its topics for the 1, 5 and 15 minute
/// windows.
type Load = (fn(&Snapshot) -> u64, [&'static str; 3]);

/// The counters with load averages, in the order Mosquitto publishes them.
const LOADS: [Load; 9] = [
    (
        |s| s.messages_received,
        [
            "$SYS/broker/load/messages/received/1min",
            "$SYS/broker/load/messages/received/5min",
            "$SYS/broker/load/messages/received/15min",
        ],
    ),
    (
        |s| s.messages_sent,
        [
            "$SYS/broker/load/messages/sent/1min",
            "$SYS/broker/load/messages/sent/5min",
            "$SYS/broker/load/messages/sent/15min",
        ],
    ),
    (
        |s| s.publish_dropped,
        [
            "$SYS/broker/load/publish/dropped/1min",
            "$SYS/broker/load/publish/dropped/5min",
            "$SYS/broker/load/publish/dropped/15min",
        ],
    ),
    (
        |s| s.publish_received,
        [
            "$SYS/broker/load/publish/received/1min",
            "$SYS/broker/load/publish/received/5min",
            "$SYS/broker/load/publish/received/15min",
        ],
    ),
    (
        |s| s.publish_sent,
        [
            "$SYS/broker/load/publish/sent/1min",
            "$SYS/broker/load/publish/sent/5min",
            "$SYS/broker/load/publish/sent/15min",
        ],
    ),
    (
        |s| s.bytes_received,
        [
            "$SYS/broker/load/bytes/received/1min",
            "$SYS/broker/load/bytes/received/5min",
            "$SYS/broker/load/bytes/received/15min",
        ],
    ),
    (
        |s| s.bytes_sent,
        [
            "$SYS/broker/load/bytes/sent/1min",
            "$SYS/broker/load/bytes/sent/5min",
            "$SYS/broker/load/bytes/sent/15min",
        ],
    ),
    (
        |s| s.sockets,
        [
            "$SYS/broker/load/sockets/1min",
            "$SYS/broker/load/sockets/5min",
            "$SYS/broker/load/sockets/15min",
        ],
    ),
    (
        |s| s.connections,
        [
            "$SYS/broker/load/connections/1min",
            "$SYS/broker/load/connections/5min",
            "$SYS/broker/load/connections/15min",
        ],
    ),
];

/// The topic of the broker's version.
pub const VERSION_TOPIC: &str = "$SYS/broker/version";
const UPTIME_TOPIC: &str = "$SYS/broker/uptime";

/// The `$SYS` state between updates: the last snapshot (for rates), the load averages, and
/// what was last published on each topic.
#[derive(Debug)]
pub struct SysTree {
    start: Instant,
    last: Option<(Instant, Snapshot)>,
    loads: [[f64; 3]; LOADS.len()],
    published: HashMap<&'static str, String>,
}

impl SysTree {
    /// A tree for a broker that started at `start`.
    pub fn new(start: Instant) -> Self {
        SysTree {
            start,
            last: None,
            loads: [[0.0; 3]; LOADS.len()],
            published: HashMap::new(),
        }
    }

    /// The `$SYS/broker/version` message, published once at start.
    pub fn version(version: &str) -> SysMessage {
        (VERSION_TOPIC, format!("pigeon version {version}"))
    }

    /// The messages to publish at `now`, given the counters then: the uptime, and every other
    /// topic whose payload differs from the one last published on it (all of them the first
    /// time).
    pub fn update(&mut self, now: Instant, snapshot: &Snapshot) -> Vec<SysMessage> {
        self.update_loads(now, snapshot);
        let s = snapshot;
        let disconnected = s.clients_total.saturating_sub(s.clients_connected);
        let mut all: Vec<SysMessage> = vec![
            ("$SYS/broker/clients/total", s.clients_total.to_string()),
            ("$SYS/broker/clients/maximum", s.clients_maximum.to_string()),
            ("$SYS/broker/clients/inactive", disconnected.to_string()),
            ("$SYS/broker/clients/disconnected", disconnected.to_string()),
            (
                "$SYS/broker/clients/active",
                s.clients_connected.to_string(),
            ),
            (
                "$SYS/broker/clients/connected",
                s.clients_connected.to_string(),
            ),
            ("$SYS/broker/clients/expired", s.clients_expired.to_string()),
            (
                "$SYS/broker/clients/auth_failures",
                s.auth_failures.to_string(),
            ),
        ];
        for ((_, topics), loads) in LOADS.iter().zip(&self.loads) {
            for (topic, load) in topics.iter().zip(loads) {
                all.push((topic, format!("{load:.2}")));
            }
        }
        all.extend([
            ("$SYS/broker/messages/stored", s.store_count.to_string()),
            (
                "$SYS/broker/messages/received",
                s.messages_received.to_string(),
            ),
            ("$SYS/broker/messages/sent", s.messages_sent.to_string()),
            (
                "$SYS/broker/store/messages/count",
                s.store_count.to_string(),
            ),
            (
                "$SYS/broker/store/messages/bytes",
                s.store_bytes.to_string(),
            ),
            (
                "$SYS/broker/subscriptions/count",
                s.subscriptions.to_string(),
            ),
            (
                "$SYS/broker/retained messages/count",
                s.retained.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/dropped",
                s.publish_dropped.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/received",
                s.publish_received.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/sent",
                s.publish_sent.to_string(),
            ),
            (
                "$SYS/broker/publish/bytes/received",
                s.publish_bytes_received.to_string(),
            ),
            (
                "$SYS/broker/publish/bytes/sent",
                s.publish_bytes_sent.to_string(),
            ),
            ("$SYS/broker/bytes/received", s.bytes_received.to_string()),
            ("$SYS/broker/bytes/sent", s.bytes_sent.to_string()),
        ]);
        let uptime = now.saturating_duration_since(self.start).as_secs();
        let mut out = vec![(UPTIME_TOPIC, format!("{uptime} seconds"))];
        for (topic, payload) in all {
            if self.published.get(topic) != Some(&payload) {
                self.published.insert(topic, payload.clone());
                out.push((topic, payload));
            }
        }
        out
    }

    /// Folds the counts since the last update into the load averages: each is a per-minute
    /// rate, averaged over its window with weights decaying as `exp(-age / window)`.
    fn update_loads(&mut self, now: Instant, snapshot: &Snapshot) {
        let Some((then, previous)) = self.last else {
            self.last = Some((now, *snapshot));
            return;
        };
        let elapsed = now.saturating_duration_since(then).as_secs_f64();
        if elapsed <= 0.0 {
            return;
        }
        for ((counter, _), loads) in LOADS.iter().zip(&mut self.loads) {
            let count = counter(snapshot).saturating_sub(counter(&previous));
            let per_minute = count as f64 * 60.0 / elapsed;
            for (load, window) in loads.iter_mut().zip(WINDOWS) {
                // The weight the old average keeps after `elapsed` more seconds.
                let kept = (-elapsed / window).exp();
                *load = *load * kept + per_minute * (1.0 - kept);
            }
        }
        self.last = Some((now, *snapshot));
    }
}

/// Publishes the `$SYS` tree every `sys_interval` until the task is aborted: the version once,
/// then an update at once and after each interval. Idle while `sys_interval` is 0; a reload
/// that changes it takes effect at once (the next update comes one new interval after the
/// last one, or now if that is past).
pub async fn run(shared: Arc<Shared>) {
    let broker = &shared.broker;
    let mut settings = shared.settings.subscribe();
    let mut tree = SysTree::new(clock::now());
    let mut version_published = false;
    let mut last_update: Option<Instant> = None;
    loop {
        let configured = settings.borrow_and_update().sys_interval;
        let Some(interval) = configured else {
            if settings.changed().await.is_err() {
                return;
            }
            continue;
        };
        if !version_published {
            publish(broker, SysTree::version(env!("CARGO_PKG_VERSION")));
            version_published = true;
        }
        let now = clock::now();
        let first = last_update.map_or(now, |last| (last + interval).max(now));
        let mut ticks = tokio::time::interval_at(first.into(), interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let now = clock::now();
                    let snapshot = Snapshot::take(broker);
                    for message in tree.update(now, &snapshot) {
                        publish(broker, message);
                    }
                    last_update = Some(now);
                }
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if settings.borrow().sys_interval != configured {
                        break;
                    }
                }
            }
        }
    }
}

/// Publishes one `$SYS` message, retained, at QoS 0.
fn publish(broker: &Broker, (topic, payload): SysMessage) {
    broker.publish(&Arc::new(Message::new(
        TopicName::from_static(topic),
        Bytes::from(payload),
        QoS::AtMostOnce,
        true,
    )));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    fn payload<'a>(out: &'a [SysMessage], topic: &str) -> Option<&'a str> {
        out.iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, p)| p.as_str())
    }

    #[test]
    fn version_names_pigeon() {
        assert_eq!(
            SysTree::version("1.2.3"),
            ("$SYS/broker/version", "pigeon version 1.2.3".to_owned())
        );
    }

    #[test]
    fn first_update_publishes_every_topic_in_mosquitto_formats() {
        let start = clock::now();
        let mut tree = SysTree::new(start);
        let snapshot = Snapshot {
            clients_total: 3,
            clients_connected: 1,
            clients_maximum: 2,
            store_count: 4,
            store_bytes: 40,
            retained: 4,
            ..Snapshot::default()
        };
        let out = tree.update(start, &snapshot);
        // Uptime, 7 client topics, 27 load averages, 14 others.
        assert_eq!(out.len(), 1 + 8 + 27 + 14);
        assert_eq!(out[0], ("$SYS/broker/uptime", "0 seconds".to_owned()));
        for (topic, expected) in [
            ("$SYS/broker/clients/total", "3"),
            ("$SYS/broker/clients/connected", "1"),
            ("$SYS/broker/clients/active", "1"),
            ("$SYS/broker/clients/disconnected", "2"),
            ("$SYS/broker/clients/inactive", "2"),
            ("$SYS/broker/clients/maximum", "2"),
            ("$SYS/broker/clients/expired", "0"),
            ("$SYS/broker/messages/stored", "4"),
            ("$SYS/broker/store/messages/count", "4"),
            ("$SYS/broker/store/messages/bytes", "40"),
            ("$SYS/broker/retained messages/count", "4"),
            ("$SYS/broker/load/connections/15min", "0.00"),
            ("$SYS/broker/load/bytes/received/1min", "0.00"),
        ] {
            assert_eq!(payload(&out, topic), Some(expected), "{topic}");
        }
        for (topic, _) in &out {
            assert!(TopicName::try_from(*topic).is_ok(), "{topic}");
        }
    }

    #[test]
    fn later_updates_publish_the_uptime_and_only_what_changed() {
        let start = clock::now();
        let mut tree = SysTree::new(start);
        let mut snapshot = Snapshot::default();
        tree.update(start, &snapshot);
        assert_eq!(
            tree.update(at(start, 10), &snapshot),
            [("$SYS/broker/uptime", "10 seconds".to_owned())]
        );
        snapshot.subscriptions = 2;
        assert_eq!(
            tree.update(at(start, 20), &snapshot),
            [
                ("$SYS/broker/uptime", "20 seconds".to_owned()),
                ("$SYS/broker/subscriptions/count", "2".to_owned()),
            ]
        );
        // Back to a value published before, but not the last one: published again.
        snapshot.subscriptions = 0;
        let out = tree.update(at(start, 30), &snapshot);
        assert_eq!(payload(&out, "$SYS/broker/subscriptions/count"), Some("0"));
    }

    #[test]
    fn load_averages_decay_exponentially() {
        let start = clock::now();
        let mut tree = SysTree::new(start);
        let mut snapshot = Snapshot::default();
        tree.update(start, &snapshot);
        // 60 packets in one minute: a rate of 60 per minute, of which each average has taken
        // in 1 - exp(-60 s / window).
        snapshot.messages_received = 60;
        let out = tree.update(at(start, 60), &snapshot);
        let load = |out: &[SysMessage], window: &str| {
            payload(out, &format!("$SYS/broker/load/messages/received/{window}")).map(str::to_owned)
        };
        assert_eq!(load(&out, "1min").as_deref(), Some("37.93"));
        assert_eq!(load(&out, "5min").as_deref(), Some("10.88"));
        assert_eq!(load(&out, "15min").as_deref(), Some("3.87"));
        assert_eq!(payload(&out, "$SYS/broker/load/messages/sent/1min"), None);
        // A quiet minute: each keeps exp(-60 s / window) of itself.
        let out = tree.update(at(start, 120), &snapshot);
        assert_eq!(load(&out, "1min").as_deref(), Some("13.95"));
        assert_eq!(load(&out, "5min").as_deref(), Some("8.90"));
        assert_eq!(load(&out, "15min").as_deref(), Some("3.62"));
    }

    #[test]
    fn load_averages_match_mosquitto_after_two_seconds() {
        // Mosquitto 2.0.11, sys_interval 1, one mosquitto_sub connecting: two packets and one
        // socket in two seconds gave these.
        let start = clock::now();
        let mut tree = SysTree::new(start);
        tree.update(start, &Snapshot::default());
        let snapshot = Snapshot {
            messages_received: 2,
            sockets: 1,
            connections: 1,
            ..Snapshot::default()
        };
        let out = tree.update(at(start, 2), &snapshot);
        for (topic, expected) in [
            ("$SYS/broker/load/messages/received/1min", "1.97"),
            ("$SYS/broker/load/messages/received/5min", "0.40"),
            ("$SYS/broker/load/messages/received/15min", "0.13"),
            ("$SYS/broker/load/sockets/1min", "0.98"),
            ("$SYS/broker/load/sockets/5min", "0.20"),
            ("$SYS/broker/load/connections/15min", "0.07"),
        ] {
            assert_eq!(payload(&out, topic), Some(expected), "{topic}");
        }
    }

    #[test]
    fn a_steady_rate_is_its_own_average() {
        let start = clock::now();
        let mut tree = SysTree::new(start);
        let mut snapshot = Snapshot::default();
        tree.update(start, &snapshot);
        // 5 PUBLISH every 10 s (30 per minute) for four hours.
        for tick in 1..=1440 {
            snapshot.publish_received += 5;
            tree.update(at(start, tick * 10), &snapshot);
        }
        let i = LOADS
            .iter()
            .position(|(_, t)| t[0].contains("publish/received"))
            .unwrap();
        for load in tree.loads[i] {
            assert!((load - 30.0).abs() < 0.01, "{load}");
        }
    }

    #[test]
    fn an_update_at_the_same_instant_changes_no_average() {
        let start = clock::now();
        let mut tree = SysTree::new(start);
        let mut snapshot = Snapshot::default();
        tree.update(start, &snapshot);
        snapshot.bytes_sent = 1000;
        let out = tree.update(start, &snapshot);
        assert_eq!(payload(&out, "$SYS/broker/load/bytes/sent/1min"), None);
        assert_eq!(payload(&out, "$SYS/broker/bytes/sent"), Some("1000"));
        // The bytes count into the next interval's rate.
        let out = tree.update(at(start, 60), &snapshot);
        assert_eq!(
            payload(&out, "$SYS/broker/load/bytes/sent/1min"),
            Some("632.12")
        );
    }
}
