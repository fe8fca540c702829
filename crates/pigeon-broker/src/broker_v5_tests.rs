//! MQTT 5.0 features of the shared broker state ([`Broker`]): session expiry, overlapping
//! subscriptions, subscription options, shared subscriptions and delayed wills, driven without
//! sockets. Connected clients are mailboxes read with `try_recv`; time is a simulated
//! `Instant`.
//!
//! Each test cites the normative statement of the MQTT 5.0 specification that decides it, or
//! the section where the behaviour is described without a numbered statement.

use std::collections::BTreeSet;

use bytes::Bytes;
use pigeon_proto::properties::WillProperties;
use pigeon_proto::{PacketId, PayloadFormat, SubscriptionOptions, TopicName, Will};

use super::*;
use crate::clock;

fn broker(allow_duplicate_messages: bool) -> Broker {
    Broker::new(RoutingSettings {
        upgrade_outgoing_qos: false,
        allow_duplicate_messages,
        outbound: OutboundLimits::default(),
    })
}

fn name(s: &str) -> MqttString {
    MqttString::try_from(s).expect("valid string")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A connected client: its mailbox, generation and session.
struct Online {
    rx: MailboxReceiver,
    generation: u64,
    session: Session,
}

/// Connects `client` (a clean or persistent session) and returns what its connection would
/// hold.
fn connect(b: &Broker, client: &str, protocol: Protocol, clean: bool) -> Online {
    let (tx, rx) = mailbox(64);
    let generation = b.next_generation();
    let session = match b.claim(&name(client), protocol, clean, tx, generation) {
        Claim::Fresh(s) | Claim::Resumed(s) => s,
        Claim::TakeOver(_) => panic!("{client} is connected already"),
    };
    Online {
        rx,
        generation,
        session,
    }
}

/// What `client`'s mailbox received so far.
fn received(client: &mut Online) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Some(mail) = client.rx.try_recv() {
        if let Mail::Deliver(d) = mail {
            out.push(d);
        }
    }
    out
}

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::new(qos)
}

/// Subscribes `client` to `filter` with `options` and identifier `id` (0: none), as new;
/// returns the retained messages due.
fn subscribe(
    b: &Broker,
    client: &mut Online,
    filter: &str,
    options: SubscriptionOptions,
    id: u32,
) -> Vec<Delivery> {
    let sub = Subscription {
        filter: TopicFilter::from_string(name(filter)).expect("valid filter"),
        options,
        id: SubscriptionId::new(id),
    };
    client
        .session
        .subscriptions
        .insert(sub.filter.as_mqtt_string().clone(), sub.clone());
    b.subscribe(&client.session.client_id, &[(sub, true)])
}

fn message(topic: &str, qos: QoS, retain: bool, payload: &'static [u8]) -> Arc<Message> {
    Arc::new(Message::new(
        TopicName::from_string(name(topic)).expect("valid topic"),
        Bytes::from_static(payload),
        qos,
        retain,
    ))
}

fn from(origin: &str, topic: &str) -> Arc<Message> {
    let mut m = Message::new(
        TopicName::from_string(name(topic)).expect("valid topic"),
        Bytes::from_static(b"mine"),
        QoS::AtLeastOnce,
        false,
    );
    m.origin = Some(name(origin));
    Arc::new(m)
}

fn ids(d: &Delivery) -> BTreeSet<u32> {
    d.subscription_ids.iter().map(|i| i.get()).collect()
}

// ---------------------------------------------------------------------------------------------
// 2. Session Expiry Interval
// ---------------------------------------------------------------------------------------------

// [MQTT-3.1.2-23]: the session is kept after the connection closes for its Session Expiry
// Interval; [MQTT-4.1.0-2]: then discarded, with its subscriptions and queued messages.
#[test]
fn session_expires_after_its_interval_and_not_before() {
    let b = broker(true);
    let t0 = clock::now();
    let mut c = connect(&b, "c", Protocol::V5, false);
    subscribe(&b, &mut c, "a/#", options(QoS::AtLeastOnce), 0);
    c.session.set_expiry_interval(10);
    b.release(&name("c"), c.generation, Some(c.session), t0)
        .expect("owns its identifier");
    assert_eq!(
        b.publish(&message("a/1", QoS::AtLeastOnce, false, b"queued")),
        1
    );
    assert!(b.has_timers());
    assert!(
        b.expire_sessions(t0 + Duration::from_millis(9_999), None)
            .is_empty()
    );
    assert_eq!(b.client_count(), 1);
    assert_eq!(b.expire_sessions(t0 + secs(10), None), [name("c")]);
    assert_eq!(b.client_count(), 0);
    assert_eq!(b.publish(&message("a/1", QoS::AtLeastOnce, false, b"x")), 0);
    // Back after that: a fresh session.
    let (tx, _rx) = mailbox(8);
    assert!(matches!(
        b.claim(&name("c"), Protocol::V5, false, tx, 99),
        Claim::Fresh(s) if s.subscriptions.is_empty()
    ));
}

// MQTT 5.0 section 3.1.2.11.2: 0xFFFFFFFF never expires; 0 (or a 3.x clean session) ends with
// the connection.
#[test]
fn session_expiry_bounds() {
    let b = broker(true);
    let t0 = clock::now();
    let mut forever = connect(&b, "forever", Protocol::V5, false);
    forever.session.set_expiry_interval(u32::MAX);
    b.release(
        &name("forever"),
        forever.generation,
        Some(forever.session),
        t0,
    )
    .expect("owns");
    let mut gone = connect(&b, "gone", Protocol::V5, false);
    gone.session.set_expiry_interval(0);
    b.release(&name("gone"), gone.generation, Some(gone.session), t0)
        .expect("owns");
    assert_eq!(
        b.client_count(),
        1,
        "the 0 session ended with its connection"
    );
    assert!(
        b.expire_sessions(t0 + secs(10 * 365 * 86_400), None)
            .is_empty()
    );
    assert_eq!(b.client_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// 5. Overlapping subscriptions and Subscription Identifiers
// ---------------------------------------------------------------------------------------------

/// Subscribes `client` to three filters matching `a/b`: QoS 1 id 1, QoS 2 id 2, QoS 0 no id.
fn overlap(b: &Broker, client: &mut Online) {
    subscribe(b, client, "a/+", options(QoS::AtLeastOnce), 1);
    subscribe(b, client, "a/b", options(QoS::ExactlyOnce), 2);
    subscribe(b, client, "#", options(QoS::AtMostOnce), 0);
}

// [MQTT-3.3.4-3], [MQTT-3.3.4-5]: with allow_duplicate_messages, a v5 client whose
// subscriptions overlap gets one PUBLISH per matching subscription, each with that
// subscription's identifier (and its QoS).
#[test]
fn overlapping_subscriptions_give_one_copy_each_with_its_identifier() {
    let b = broker(true);
    let mut c = connect(&b, "c", Protocol::V5, true);
    overlap(&b, &mut c);
    assert_eq!(b.publish(&message("a/b", QoS::ExactlyOnce, false, b"p")), 1);
    let mut got: Vec<(QoS, BTreeSet<u32>)> =
        received(&mut c).iter().map(|d| (d.qos, ids(d))).collect();
    got.sort_by_key(|(qos, _)| *qos);
    assert_eq!(
        got,
        [
            (QoS::AtMostOnce, BTreeSet::new()),
            (QoS::AtLeastOnce, BTreeSet::from([1])),
            (QoS::ExactlyOnce, BTreeSet::from([2])),
        ]
    );
}

// [MQTT-3.3.4-2], [MQTT-3.3.4-4]: sending a single copy, the broker uses the highest QoS of
// the matching subscriptions and includes every matching Subscription Identifier: so it does
// for a v5 client without allow_duplicate_messages, and always for a 3.1.1 client (3.1.1
// [MQTT-3.3.5-1]).
#[test]
fn overlapping_subscriptions_give_one_copy_at_the_highest_qos() {
    for (protocol, duplicates) in [
        (Protocol::V5, false),
        (Protocol::V311, true),
        (Protocol::V311, false),
    ] {
        let b = broker(duplicates);
        let mut c = connect(&b, "c", protocol, true);
        overlap(&b, &mut c);
        assert_eq!(b.publish(&message("a/b", QoS::ExactlyOnce, false, b"p")), 1);
        let got = received(&mut c);
        let [d] = &got[..] else {
            panic!("{protocol:?} {duplicates}: {got:?}");
        };
        assert_eq!(d.qos, QoS::ExactlyOnce);
        assert_eq!(ids(d), BTreeSet::from([1, 2]));
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Subscription options
// ---------------------------------------------------------------------------------------------

// [MQTT-3.8.3-3]: with No Local, messages are not forwarded to the connection with the
// publisher's Client Identifier; other subscribers, and other publishers' messages, are not
// affected.
#[test]
fn no_local_keeps_a_clients_own_messages_from_it() {
    let b = broker(true);
    let mut me = connect(&b, "me", Protocol::V5, true);
    let mut other = connect(&b, "other", Protocol::V5, true);
    let mut no_local = options(QoS::AtLeastOnce);
    no_local.no_local = true;
    subscribe(&b, &mut me, "chat/#", no_local, 0);
    subscribe(&b, &mut other, "chat/#", options(QoS::AtLeastOnce), 0);
    assert_eq!(b.publish(&from("me", "chat/room")), 1);
    assert!(received(&mut me).is_empty());
    assert_eq!(received(&mut other).len(), 1);
    assert_eq!(b.publish(&from("other", "chat/room")), 2);
    assert_eq!(received(&mut me).len(), 1);
    // Without No Local a client hears itself.
    assert_eq!(b.publish(&from("other", "chat/room")), 2);
    assert_eq!(received(&mut other).len(), 2);
}

// [MQTT-3.3.1-12]: Retain As Published 0 forwards with RETAIN 0; [MQTT-3.3.1-13]: 1 keeps the
// RETAIN flag the message was published with.
#[test]
fn retain_as_published_keeps_or_clears_the_flag() {
    let b = broker(true);
    let mut kept = connect(&b, "kept", Protocol::V5, true);
    let mut cleared = connect(&b, "cleared", Protocol::V5, true);
    let mut rap = options(QoS::AtLeastOnce);
    rap.retain_as_published = true;
    subscribe(&b, &mut kept, "s/#", rap, 0);
    subscribe(&b, &mut cleared, "s/#", options(QoS::AtLeastOnce), 0);
    b.publish(&message("s/1", QoS::AtLeastOnce, true, b"r"));
    b.publish(&message("s/2", QoS::AtLeastOnce, false, b"n"));
    let flags = |c: &mut Online| -> Vec<bool> { received(c).iter().map(|d| d.retain).collect() };
    assert_eq!(flags(&mut kept), [true, false]);
    assert_eq!(flags(&mut cleared), [false, false]);
}

// [MQTT-3.3.1-9]: Retain Handling 0 sends the retained messages at every SUBSCRIBE
// ([MQTT-3.8.4-4]: also when it replaces a subscription); [MQTT-3.3.1-10]: 1 only when the
// subscription is new; [MQTT-3.3.1-11]: 2 never. They go with RETAIN set and the
// subscription's identifier.
#[test]
fn retain_handling_decides_when_retained_messages_are_sent() {
    let b = broker(true);
    b.publish(&message("r/1", QoS::AtLeastOnce, true, b"v"));
    let cases = [
        (RetainHandling::SendAtSubscribe, true, 1),
        (RetainHandling::SendAtSubscribe, false, 1),
        (RetainHandling::SendAtSubscribeIfNew, true, 1),
        (RetainHandling::SendAtSubscribeIfNew, false, 0),
        (RetainHandling::DoNotSend, true, 0),
        (RetainHandling::DoNotSend, false, 0),
    ];
    for (handling, new, expected) in cases {
        let mut o = options(QoS::AtLeastOnce);
        o.retain_handling = handling;
        let sub = Subscription {
            filter: TopicFilter::from_static("r/#"),
            options: o,
            id: SubscriptionId::new(5),
        };
        let got = b.subscribe(&name("s"), &[(sub, new)]);
        assert_eq!(got.len(), expected, "{handling:?} new {new}");
        for d in got {
            assert!(d.retain);
            assert_eq!(ids(&d), BTreeSet::from([5]));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Shared subscriptions
// ---------------------------------------------------------------------------------------------

const SHARE: &str = "$share/workers/jobs/#";

// MQTT 5.0 section 4.8.2: each message of a shared subscription goes to one member of the
// group, here in turn; [MQTT-4.8.2-3]: at the member's granted QoS. A non-shared subscription
// to the same topics still gets every message.
#[test]
fn shared_subscription_delivers_round_robin() {
    let b = broker(true);
    let mut m1 = connect(&b, "m1", Protocol::V5, true);
    let mut m2 = connect(&b, "m2", Protocol::V5, true);
    let mut watcher = connect(&b, "watcher", Protocol::V5, true);
    subscribe(&b, &mut m1, SHARE, options(QoS::AtLeastOnce), 0);
    subscribe(&b, &mut m2, SHARE, options(QoS::AtMostOnce), 0);
    subscribe(&b, &mut watcher, "jobs/#", options(QoS::AtLeastOnce), 0);
    let mut turns = Vec::new();
    for _ in 0..6 {
        // One group and one client matched.
        assert_eq!(
            b.publish(&message("jobs/1", QoS::AtLeastOnce, false, b"j")),
            2
        );
        let (a, z) = (received(&mut m1), received(&mut m2));
        assert_eq!(a.len() + z.len(), 1);
        if let Some(d) = a.first() {
            assert_eq!(d.qos, QoS::AtLeastOnce);
            assert_eq!(d.shared.as_ref().map(MqttString::as_str), Some(SHARE));
            turns.push(1);
        }
        if let Some(d) = z.first() {
            assert_eq!(d.qos, QoS::AtMostOnce);
            turns.push(2);
        }
    }
    assert!(turns.windows(2).all(|w| w[0] != w[1]), "in turn: {turns:?}");
    assert_eq!(received(&mut watcher).len(), 6);
}

// MQTT 5.0 section 4.8.2 ("Shared Subscriptions"): shared subscriptions work for 3.1.1 clients
// as well (Mosquitto allows it); the turn still alternates.
#[test]
fn shared_subscription_works_for_v311_clients() {
    let b = broker(true);
    let mut m1 = connect(&b, "m1", Protocol::V311, true);
    let mut m2 = connect(&b, "m2", Protocol::V311, true);
    subscribe(&b, &mut m1, SHARE, options(QoS::AtLeastOnce), 0);
    subscribe(&b, &mut m2, SHARE, options(QoS::AtLeastOnce), 0);
    for _ in 0..4 {
        b.publish(&message("jobs/x", QoS::AtLeastOnce, false, b"j"));
    }
    assert_eq!((received(&mut m1).len(), received(&mut m2).len()), (2, 2));
}

// MQTT 5.0 section 4.8.2: retained messages are not sent for a shared subscription when it is
// made.
#[test]
fn shared_subscription_gets_no_retained_messages() {
    let b = broker(true);
    b.publish(&message("jobs/1", QoS::AtLeastOnce, true, b"retained"));
    let mut m = connect(&b, "m", Protocol::V5, true);
    assert!(subscribe(&b, &mut m, SHARE, options(QoS::AtLeastOnce), 0).is_empty());
    let mut plain = connect(&b, "plain", Protocol::V5, true);
    assert_eq!(
        subscribe(&b, &mut plain, "jobs/#", options(QoS::AtLeastOnce), 0).len(),
        1
    );
}

// MQTT 5.0 section 4.8.2: when a member's session ends, the shared-subscription messages it had
// queued, and the QoS 1 ones it had not acknowledged, go to another member of the group; a
// QoS 2 one whose delivery had started does not [MQTT-4.8.2-5]. Its other messages do not.
#[test]
fn departed_members_messages_go_to_the_rest_of_the_group() {
    let b = broker(true);
    let mut m1 = connect(&b, "m1", Protocol::V5, true);
    let mut m2 = connect(&b, "m2", Protocol::V5, true);
    subscribe(&b, &mut m1, SHARE, options(QoS::ExactlyOnce), 0);
    subscribe(&b, &mut m2, SHARE, options(QoS::ExactlyOnce), 0);
    subscribe(&b, &mut m1, "own/#", options(QoS::AtLeastOnce), 0);
    // What m1's connection holds: in flight (window of 2) and queued behind.
    let now = clock::now();
    let online = Link::Online { backlog: 0 };
    let shared = |topic: &str, qos: QoS, payload: &'static [u8]| {
        let mut d = Delivery::new(message(topic, qos, false, payload), qos, false);
        d.shared = Some(name(SHARE));
        d
    };
    let out = &mut m1.session.outbound;
    out.set_receive_maximum(Some(2));
    assert!(matches!(
        out.push(
            shared("jobs/a", QoS::ExactlyOnce, b"q2 started"),
            online,
            now
        ),
        Pushed::Send(_)
    ));
    assert!(matches!(
        out.push(
            shared("jobs/b", QoS::AtLeastOnce, b"q1 unacked"),
            online,
            now
        ),
        Pushed::Send(_)
    ));
    assert_eq!(
        out.push(
            shared("jobs/c", QoS::ExactlyOnce, b"q2 queued"),
            online,
            now
        ),
        Pushed::Queued
    );
    let own = Delivery::new(
        message("own/x", QoS::AtLeastOnce, false, b"own"),
        QoS::AtLeastOnce,
        false,
    );
    assert_eq!(out.push(own, online, now), Pushed::Queued);
    // m1's clean session ends.
    b.release(&name("m1"), m1.generation, Some(m1.session), now)
        .expect("owns");
    let mut got: Vec<Bytes> = received(&mut m2)
        .into_iter()
        .map(|d| d.message.payload.clone())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            Bytes::from_static(b"q1 unacked"),
            Bytes::from_static(b"q2 queued")
        ]
    );
    // m1 is no longer a member: everything goes to m2 now.
    b.publish(&message("jobs/z", QoS::AtLeastOnce, false, b"j"));
    b.publish(&message("jobs/z", QoS::AtLeastOnce, false, b"j"));
    assert_eq!(received(&mut m2).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 10. Will Delay Interval
// ---------------------------------------------------------------------------------------------

fn will(delay: Option<u32>) -> Will {
    let mut properties = WillProperties::default();
    properties.will_delay_interval = delay;
    Will {
        topic: TopicName::from_static("wills/c"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    }
}

/// A subscriber to every will.
fn will_watcher(b: &Broker) -> Online {
    let mut w = connect(b, "watcher", Protocol::V5, true);
    subscribe(b, &mut w, "wills/#", options(QoS::AtLeastOnce), 0);
    w
}

// MQTT 5.0 section 3.1.3.2.2 and [MQTT-3.1.2-8]: the will is published once its Will Delay
// Interval has passed after the connection closed, not before.
#[test]
fn will_is_published_after_its_delay() {
    let b = broker(true);
    let mut watcher = will_watcher(&b);
    let t0 = clock::now();
    let mut c = connect(&b, "c", Protocol::V5, false);
    c.session.set_expiry_interval(3600);
    let due = will_due(t0, Some(30), Some(&c.session)).expect("delayed");
    assert_eq!(due, t0 + secs(30));
    b.schedule_will(
        &name("c"),
        Arc::new(Message::from_will(will(Some(30)), name("c"), t0)),
        due,
    );
    b.release(&name("c"), c.generation, Some(c.session), t0)
        .expect("owns");
    assert!(b.has_timers());
    assert_eq!(b.publish_due_wills(t0 + secs(29)), 0);
    assert!(received(&mut watcher).is_empty());
    assert_eq!(b.publish_due_wills(t0 + secs(30)), 1);
    let got = received(&mut watcher);
    assert!(matches!(&got[..], [d] if d.message.payload == "gone"));
    assert_eq!(b.publish_due_wills(t0 + secs(60)), 0, "published once");
}

// [MQTT-3.1.3-9]: a client back on its session before the Will Delay Interval passed cancels
// the will.
#[test]
fn will_is_cancelled_when_the_client_returns_in_time() {
    let b = broker(true);
    let mut watcher = will_watcher(&b);
    let t0 = clock::now();
    let mut c = connect(&b, "c", Protocol::V5, false);
    c.session.set_expiry_interval(3600);
    let message = Arc::new(Message::from_will(will(Some(30)), name("c"), t0));
    b.schedule_will(&name("c"), message, t0 + secs(30));
    b.release(&name("c"), c.generation, Some(c.session), t0)
        .expect("owns");
    let _back = connect(&b, "c", Protocol::V5, false);
    assert_eq!(b.publish_due_wills(t0 + secs(60)), 0);
    assert!(received(&mut watcher).is_empty());
}

// MQTT 5.0 section 3.1.3.2.2: the will is published when the Will Delay Interval passes or the
// session ends, whichever comes first: a session expiring sooner sends it then (and only then).
#[test]
fn will_is_published_when_the_session_ends_first() {
    let b = broker(true);
    let mut watcher = will_watcher(&b);
    let t0 = clock::now();
    let mut c = connect(&b, "c", Protocol::V5, false);
    c.session.set_expiry_interval(5);
    let due = will_due(t0, Some(60), Some(&c.session)).expect("delayed");
    assert_eq!(due, t0 + secs(5), "bounded by the session");
    // Even scheduled for its full delay, the session's end publishes it.
    let message = Arc::new(Message::from_will(will(Some(60)), name("c"), t0));
    b.schedule_will(&name("c"), message, t0 + secs(60));
    b.release(&name("c"), c.generation, Some(c.session), t0)
        .expect("owns");
    assert!(b.expire_sessions(t0 + secs(4), None).is_empty());
    assert!(received(&mut watcher).is_empty());
    assert_eq!(b.expire_sessions(t0 + secs(5), None), [name("c")]);
    assert_eq!(received(&mut watcher).len(), 1);
    assert_eq!(b.publish_due_wills(t0 + secs(60)), 0, "not twice");
}

// MQTT 5.0 section 3.1.3.2.2: no delay, or a session ending with the connection (Session
// Expiry 0, a 3.x clean session, or no session), publishes the will at once.
#[test]
fn will_without_delay_is_due_at_once() {
    let b = broker(true);
    let t0 = clock::now();
    let mut lasting = connect(&b, "lasting", Protocol::V5, false);
    lasting.session.set_expiry_interval(u32::MAX);
    assert_eq!(will_due(t0, None, Some(&lasting.session)), None);
    assert_eq!(will_due(t0, Some(0), Some(&lasting.session)), None);
    assert_eq!(
        will_due(t0, Some(10), Some(&lasting.session)),
        Some(t0 + secs(10))
    );
    let clean = connect(&b, "clean", Protocol::V5, true);
    assert_eq!(will_due(t0, Some(10), Some(&clean.session)), None);
    assert_eq!(will_due(t0, Some(10), None), None);
}

// MQTT 5.0 section 3.1.3.2: the will's Payload Format Indicator, Message Expiry Interval,
// Content Type, Response Topic, Correlation Data and User Properties (in order,
// [MQTT-3.1.3-10]) go with the published will; the Will Delay Interval does not.
#[test]
fn will_properties_are_published_with_it() {
    let b = broker(true);
    let mut watcher = will_watcher(&b);
    let t0 = clock::now();
    let mut w = will(Some(30));
    let p = &mut w.properties;
    p.payload_format_indicator = Some(PayloadFormat::Utf8);
    p.message_expiry_interval = Some(120);
    p.content_type = Some(name("text/plain"));
    p.response_topic = Some(TopicName::from_static("wills/ack"));
    p.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
    p.user_properties = vec![
        (name("k"), name("2")),
        (name("a"), name("1")),
        (name("k"), name("3")),
    ];
    let expected = w.properties.clone();
    let message = Arc::new(Message::from_will(w, name("c"), t0));
    assert_eq!(message.origin, Some(name("c")));
    assert_eq!(message.expires_at, Some(t0 + secs(120)));
    b.schedule_will(&name("c"), message, t0 + secs(30));
    b.publish_due_wills(t0 + secs(30));
    let got = received(&mut watcher);
    let [d] = &got[..] else {
        panic!("{got:?}");
    };
    let sent = d.to_publish(Some(PacketId::FIRST), false, t0 + secs(30));
    let props = &sent.properties;
    assert_eq!(
        props.payload_format_indicator,
        expected.payload_format_indicator
    );
    // What is left of the interval when it goes out [MQTT-3.3.2-6].
    assert_eq!(props.message_expiry_interval, Some(90));
    assert_eq!(props.content_type, expected.content_type);
    assert_eq!(props.response_topic, expected.response_topic);
    assert_eq!(props.correlation_data, expected.correlation_data);
    assert_eq!(props.user_properties, expected.user_properties);
    assert_eq!(sent.topic, "wills/c");
    assert_eq!((sent.qos, sent.retain), (QoS::AtLeastOnce, false));
}

// ---------------------------------------------------------------------------------------------
// 14. No matching subscribers
// ---------------------------------------------------------------------------------------------

// MQTT 5.0 section 3.4.2.1: PUBACK 0x10 (No matching subscribers) is for a message that
// matched nothing: routing reports how many matched, which the connection acknowledges with
// (see session::v5_tests); a No Local subscription of the publisher itself does not count.
#[test]
fn publish_reports_when_nothing_matched() {
    let b = broker(true);
    assert_eq!(
        b.publish(&message("nobody/here", QoS::AtLeastOnce, false, b"x")),
        0
    );
    let mut me = connect(&b, "me", Protocol::V5, true);
    let mut no_local = options(QoS::AtLeastOnce);
    no_local.no_local = true;
    subscribe(&b, &mut me, "nobody/#", no_local, 0);
    assert_eq!(b.publish(&from("me", "nobody/here")), 0);
    assert_eq!(b.publish(&from("you", "nobody/here")), 1);
}
