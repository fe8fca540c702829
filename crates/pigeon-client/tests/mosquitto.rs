//! The async client against Debian's `mosquitto` broker, each test with its own broker on a
//! free loopback port (killed when the test ends).

mod common;

use std::time::Duration;

use pigeon_client::proto::MqttString;
use pigeon_client::{
    Backoff, Client, ConnectOptions, DisconnectReason, Error, Event, Packet, Protocol, Publish,
    QoS, ReasonCode, TopicName,
};

use crate::common::{
    Proxy, mosquitto, next_matching, next_message, quiet_for, wait_for_log, within,
};

fn options(port: u16, client_id: &str, protocol: Protocol) -> ConnectOptions {
    ConnectOptions::new("127.0.0.1", port)
        .client_id(client_id)
        .protocol(protocol)
}

fn connected(event: Event) -> Option<bool> {
    match event {
        Event::Connected(c) => Some(c.session_present),
        _ => None,
    }
}

const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

async fn round_trips(protocol: Protocol) {
    let broker = mosquitto();
    let port = broker.port();
    let (subscriber, mut inbox) = Client::connect(options(port, "rt-sub", protocol))
        .await
        .unwrap();
    assert!(
        !next_matching(&mut inbox, connected).await,
        "session present"
    );
    let ack = subscriber
        .subscribe("rt/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_2]);

    let (publisher, _events) = Client::connect(options(port, "rt-pub", protocol))
        .await
        .unwrap();
    for (i, qos) in QOS.into_iter().enumerate() {
        let outcome = publisher
            .publish(format!("rt/{i}"), format!("m{i}"), qos, false)
            .await
            .unwrap();
        assert!(outcome.is_success(), "{outcome:?}");
        assert_eq!(outcome.packet_id.is_some(), qos != QoS::AtMostOnce);
        let message = next_message(&mut inbox).await;
        assert_eq!(message.topic, format!("rt/{i}").as_str());
        assert_eq!(message.payload, format!("m{i}").as_bytes());
        assert_eq!(message.qos, qos);
    }

    // Subscribed at QoS 1: QoS 2 messages arrive at QoS 1.
    let ack = subscriber
        .subscribe("rt/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_1]);
    publisher
        .publish("rt/down", "x", QoS::ExactlyOnce, false)
        .await
        .unwrap();
    assert_eq!(next_message(&mut inbox).await.qos, QoS::AtLeastOnce);

    subscriber.unsubscribe("rt/#").await.unwrap();
    publisher
        .publish("rt/after", "x", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert!(
        quiet_for(&mut inbox, Duration::from_millis(300))
            .await
            .is_none()
    );

    publisher.disconnect().await.unwrap();
    subscriber.disconnect().await.unwrap();
    let end = next_matching(&mut inbox, |e| match e {
        Event::Disconnected(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!(end.reason, DisconnectReason::Local);
    assert_eq!(end.reconnect_in, None);
    assert!(
        within("the end of the stream", inbox.recv())
            .await
            .is_none()
    );
    assert!(matches!(
        subscriber
            .publish("rt/x", "x", QoS::AtMostOnce, false)
            .await,
        Err(Error::Closed)
    ));
    subscriber.disconnect().await.unwrap();
}

#[tokio::test]
async fn qos_round_trips_mqtt_3_1() {
    round_trips(Protocol::V31).await;
}

#[tokio::test]
async fn qos_round_trips_mqtt_3_1_1() {
    round_trips(Protocol::V311).await;
}

#[tokio::test]
async fn qos_round_trips_mqtt_5() {
    round_trips(Protocol::V5).await;
}

#[tokio::test]
async fn v5_properties_travel_and_limits_are_read() {
    let broker = mosquitto();
    let port = broker.port();
    let (subscriber, mut inbox) = Client::connect(options(port, "p-sub", Protocol::V5))
        .await
        .unwrap();
    assert!(
        !next_matching(&mut inbox, connected).await,
        "session present"
    );
    subscriber.subscribe("p/#", QoS::AtLeastOnce).await.unwrap();
    let (publisher, _events) = Client::connect(options(port, "p-pub", Protocol::V5))
        .await
        .unwrap();
    let mut publish = Publish {
        qos: QoS::AtLeastOnce,
        ..Publish::new(TopicName::from_static("p/1"), "{}")
    };
    publish.properties.content_type = Some(MqttString::from_static("application/json"));
    publish
        .properties
        .user_properties
        .push((MqttString::from_static("k"), MqttString::from_static("v")));
    let outcome = publisher.send(publish).await.unwrap().await.unwrap();
    assert_eq!(outcome.reason, ReasonCode::SUCCESS);
    let message = next_message(&mut inbox).await;
    assert_eq!(
        message.properties.content_type.as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    assert_eq!(message.properties.user_properties.len(), 1);

    // Nobody listens on this topic: Mosquitto says so, and that is still a success.
    let outcome = publisher
        .publish("nobody/here", "x", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(outcome.reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    assert!(outcome.is_success());
}

#[tokio::test]
async fn persistent_session_is_resumed_with_its_queued_messages() {
    for protocol in [Protocol::V311, Protocol::V5] {
        let broker = mosquitto();
        let port = broker.port();
        let resuming = options(port, "resume", protocol)
            .clean_start(false)
            .session_expiry_interval(300);
        let (client, mut events) = Client::connect(resuming.clone()).await.unwrap();
        assert!(
            !next_matching(&mut events, connected).await,
            "session present"
        );
        client.subscribe("q/#", QoS::AtLeastOnce).await.unwrap();
        client.disconnect().await.unwrap();

        let (publisher, _e) = Client::connect(options(port, "q-pub", protocol))
            .await
            .unwrap();
        for i in 0..3 {
            publisher
                .publish(format!("q/{i}"), format!("{i}"), QoS::AtLeastOnce, false)
                .await
                .unwrap();
        }

        let (client, mut events) = Client::connect(resuming).await.unwrap();
        assert!(
            next_matching(&mut events, connected).await,
            "{protocol:?}: no session present"
        );
        for i in 0..3 {
            let message = next_message(&mut events).await;
            assert_eq!(message.payload, format!("{i}").as_bytes(), "{protocol:?}");
        }
        client.disconnect().await.unwrap();
    }
}

/// A message in flight when the network fails is sent again, with DUP and its identifier,
/// once the client has reconnected and resumed its session [MQTT-4.4.0-1].
async fn resent_after_network_failure(protocol: Protocol, qos: QoS) {
    let broker = mosquitto();
    let proxy = Proxy::start(broker.port()).await;
    let (watcher, mut watched) = Client::connect(options(broker.port(), "watcher", protocol))
        .await
        .unwrap();
    watcher.subscribe("dup/#", QoS::ExactlyOnce).await.unwrap();

    let flaky = options(proxy.port(), "flaky", protocol)
        .clean_start(false)
        .session_expiry_interval(300)
        .reconnect(Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(200),
        ))
        .packet_events(true);
    let (client, mut events) = Client::connect(flaky).await.unwrap();
    proxy.hold_downstream(true);
    let publish = Publish {
        qos,
        ..Publish::new(TopicName::from_static("dup/1"), "once")
    };
    let receipt = client.send(publish).await.unwrap();
    let q = qos as u8;
    wait_for_log(&broker, &format!("Received PUBLISH from flaky (d0, q{q}")).await;
    let ack = if qos == QoS::ExactlyOnce {
        "PUBREC"
    } else {
        "PUBACK"
    };
    wait_for_log(&broker, &format!("Sending {ack} to flaky")).await;
    // Let the proxy swallow the acknowledgement, then fail the network.
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(20)).await;
    proxy.hold_downstream(false);

    let first_id = next_matching(&mut events, |e| match e {
        Event::PacketSent(Packet::Publish(p)) => p.packet_id,
        _ => None,
    })
    .await;
    let lost = next_matching(&mut events, |e| match e {
        Event::Disconnected(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!(lost.reason, DisconnectReason::ConnectionLost);
    assert_eq!(lost.reconnect_in, Some(Duration::from_millis(50)));
    // Packets written in answer to CONNACK are reported before the connection event.
    let resent = next_matching(&mut events, |e| match e {
        Event::PacketSent(Packet::Publish(p)) => Some(p),
        _ => None,
    })
    .await;
    assert!(resent.dup);
    assert_eq!(resent.packet_id, Some(first_id));
    assert!(
        next_matching(&mut events, connected).await,
        "no session present"
    );

    let outcome = within("the publish to complete", receipt).await.unwrap();
    assert!(outcome.is_success());
    assert_eq!(outcome.packet_id, Some(first_id));
    wait_for_log(&broker, &format!("Received PUBLISH from flaky (d1, q{q}")).await;

    let message = next_message(&mut watched).await;
    assert_eq!(message.payload, "once".as_bytes());
    if qos == QoS::ExactlyOnce {
        assert!(
            quiet_for(&mut watched, Duration::from_millis(500))
                .await
                .is_none(),
            "QoS 2 is delivered exactly once"
        );
    }
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn qos1_is_resent_after_a_network_failure() {
    resent_after_network_failure(Protocol::V311, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn qos2_is_resent_after_a_network_failure() {
    resent_after_network_failure(Protocol::V311, QoS::ExactlyOnce).await;
}

#[tokio::test]
async fn qos2_is_resent_after_a_network_failure_v5() {
    resent_after_network_failure(Protocol::V5, QoS::ExactlyOnce).await;
}

#[tokio::test]
async fn subscriptions_survive_reconnection_and_the_will_is_published() {
    let broker = mosquitto();
    let proxy = Proxy::start(broker.port()).await;
    let (watcher, mut watched) = Client::connect(options(broker.port(), "w", Protocol::V311))
        .await
        .unwrap();
    watcher
        .subscribe("status/#", QoS::AtLeastOnce)
        .await
        .unwrap();

    let (client, mut events) = Client::connect(
        options(proxy.port(), "will-client", Protocol::V311)
            .clean_start(false)
            .will("status/will-client", "gone", QoS::AtLeastOnce, false)
            .reconnect(Backoff::new(
                Duration::from_millis(50),
                Duration::from_millis(50),
            )),
    )
    .await
    .unwrap();
    assert!(
        !next_matching(&mut events, connected).await,
        "session present"
    );
    client.subscribe("cmd/#", QoS::AtLeastOnce).await.unwrap();
    proxy.cut();

    // The connection ended without DISCONNECT: the Will goes out.
    let will = next_message(&mut watched).await;
    assert_eq!(will.topic, "status/will-client");
    assert_eq!(will.payload, "gone".as_bytes());

    // Reconnected with the session: the subscription is still there.
    assert!(
        next_matching(&mut events, connected).await,
        "no session present"
    );
    watcher
        .publish("cmd/go", "now", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next_message(&mut events).await.payload, "now".as_bytes());

    // A DISCONNECT discards the Will.
    client.disconnect().await.unwrap();
    assert!(
        quiet_for(&mut watched, Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn without_reconnection_a_lost_connection_ends_the_client() {
    let broker = mosquitto();
    let proxy = Proxy::start(broker.port()).await;
    let (client, mut events) = Client::connect(options(proxy.port(), "once", Protocol::V311))
        .await
        .unwrap();
    proxy.cut();
    let lost = next_matching(&mut events, |e| match e {
        Event::Disconnected(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!(lost.reason, DisconnectReason::ConnectionLost);
    assert_eq!(lost.reconnect_in, None);
    assert!(
        within("the end of the stream", events.recv())
            .await
            .is_none()
    );
    assert!(matches!(
        client.subscribe("a", QoS::AtMostOnce).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn keep_alive_pings() {
    let broker = mosquitto();
    let (client, mut events) = Client::connect(
        options(broker.port(), "pinger", Protocol::V311)
            .keep_alive(1)
            .packet_events(true),
    )
    .await
    .unwrap();
    next_matching(&mut events, |e| match e {
        Event::PacketSent(Packet::PingReq(_)) => Some(()),
        _ => None,
    })
    .await;
    next_matching(&mut events, |e| match e {
        Event::PacketReceived(Packet::PingResp(_)) => Some(()),
        _ => None,
    })
    .await;
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn packet_events_show_the_handshake_in_order() {
    let broker = mosquitto();
    let (client, mut events) =
        Client::connect(options(broker.port(), "dbg", Protocol::V311).packet_events(true))
            .await
            .unwrap();
    let first: Vec<String> = [
        within("an event", events.recv()).await,
        within("an event", events.recv()).await,
        within("an event", events.recv()).await,
    ]
    .into_iter()
    .map(|e| match e {
        Some(Event::PacketSent(p)) => format!("sent {}", p.packet_type()),
        Some(Event::PacketReceived(p)) => format!("received {}", p.packet_type()),
        Some(Event::Connected(_)) => "connected".to_owned(),
        other => format!("{other:?}"),
    })
    .collect();
    assert_eq!(first, ["sent CONNECT", "received CONNACK", "connected"]);
    client.disconnect().await.unwrap();
    let last = next_matching(&mut events, |e| match e {
        Event::PacketSent(p) => Some(p),
        _ => None,
    })
    .await;
    assert!(matches!(last, Packet::Disconnect(_)));
}

#[tokio::test]
async fn pipelined_messages_keep_their_order() {
    let broker = mosquitto();
    let port = broker.port();
    let (subscriber, mut inbox) = Client::connect(options(port, "o-sub", Protocol::V5))
        .await
        .unwrap();
    subscriber.subscribe("o/#", QoS::ExactlyOnce).await.unwrap();
    let (publisher, _e) = Client::connect(
        options(port, "o-pub", Protocol::V5)
            .max_inflight(3)
            .max_queued(5)
            .request_capacity(2),
    )
    .await
    .unwrap();
    let mut receipts = Vec::new();
    for i in 0..60u32 {
        let publish = Publish {
            qos: QOS[(i % 3) as usize],
            ..Publish::new(TopicName::from_static("o/1"), i.to_string())
        };
        receipts.push(publisher.send(publish).await.unwrap());
    }
    for receipt in receipts {
        assert!(within("a receipt", receipt).await.unwrap().is_success());
    }
    // Mosquitto releases a QoS 2 message on PUBREL, so QoS levels may overtake each other
    // (section 4.6 orders messages of one QoS); within each, the order is the publisher's.
    let mut last: [Option<u32>; 3] = [None; 3];
    for _ in 0..60 {
        let message = next_message(&mut inbox).await;
        let i: u32 = std::str::from_utf8(&message.payload)
            .unwrap()
            .parse()
            .unwrap();
        let qos = (i % 3) as usize;
        assert!(
            last[qos] < Some(i),
            "{i} after {:?} at QoS {qos}",
            last[qos]
        );
        last[qos] = Some(i);
    }
    assert_eq!(last, [Some(57), Some(58), Some(59)]);
}

#[tokio::test]
async fn refused_and_failed_connections() {
    let broker = mosquitto();
    // MQTT 3.1.1: an empty Client Identifier needs Clean Session [MQTT-3.1.3-8].
    let refused = Client::connect(options(broker.port(), "", Protocol::V311).clean_start(false))
        .await
        .unwrap_err();
    assert_eq!(
        refused.connack_reason(),
        Some(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        "{refused}"
    );

    let closed_port = pigeon_test::free_port();
    let failed = Client::connect(options(closed_port, "x", Protocol::V311))
        .await
        .unwrap_err();
    assert!(matches!(failed, Error::Io(_)), "{failed}");
}

#[tokio::test]
async fn a_full_client_pushes_back() {
    let broker = mosquitto();
    let proxy = Proxy::start(broker.port()).await;
    let (client, _events) = Client::connect(
        options(proxy.port(), "slow", Protocol::V311)
            .max_inflight(1)
            .max_queued(1)
            .request_capacity(1),
    )
    .await
    .unwrap();
    proxy.hold_downstream(true);
    let message = || Publish {
        qos: QoS::AtLeastOnce,
        ..Publish::new(TopicName::from_static("bp/1"), "x")
    };
    // One in flight (its PUBACK is held back), one queued, one waiting in the channel.
    let _in_flight = client.try_send(message()).unwrap();
    wait_for_log(&broker, "Received PUBLISH from slow").await;
    let _queued = client.send(message()).await.unwrap();
    let mut full = None;
    for _ in 0..50 {
        match client.try_send(message()) {
            Ok(receipt) => drop(receipt),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(full, Some(Error::Full)), "{full:?}");
}

#[tokio::test]
async fn dropping_every_handle_and_the_events_disconnects() {
    let broker = mosquitto();
    let (client, events) = Client::connect(options(broker.port(), "dropped", Protocol::V311))
        .await
        .unwrap();
    let other = client.clone();
    drop(client);
    drop(events);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!other.is_closed(), "a handle is left");
    drop(other);
    wait_for_log(&broker, "Received DISCONNECT from dropped").await;
}
