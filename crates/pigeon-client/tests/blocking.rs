//! The blocking client against Debian's `mosquitto` broker, each test with its own broker on
//! a free loopback port (killed when the test ends).

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pigeon_client::blocking::{Client, Error};
use pigeon_client::{ConnectOptions, DisconnectReason, QoS, ReasonCode};

use crate::common::{PATIENCE, mosquitto};

fn client(port: u16, client_id: &str) -> Client {
    Client::new(ConnectOptions::new("127.0.0.1", port).client_id(client_id))
}

/// What the callbacks saw, one line each.
fn recorder() -> (mpsc::Sender<String>, mpsc::Receiver<String>) {
    mpsc::channel()
}

fn next(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(PATIENCE).expect("a callback in time")
}

/// Runs `loop_forever` on a thread, failing the test if it does not return in time.
fn loop_forever_within(client: &Client) {
    let (tx, rx) = mpsc::channel();
    let looping = client.clone();
    thread::spawn(move || {
        let _ = tx.send(looping.loop_forever());
    });
    rx.recv_timeout(PATIENCE)
        .expect("loop_forever returned in time")
        .expect("loop_forever succeeded");
}

#[test]
fn callbacks_fire_in_order_and_callbacks_can_subscribe_and_publish() {
    let broker = mosquitto();
    let client = client(broker.port(), "blocking-order");
    let (tx, seen) = recorder();

    let log = tx.clone();
    client.on_connect(move |client, result| {
        log.send(format!(
            "connect session_present={}",
            result.session_present
        ))
        .unwrap();
        client.subscribe("order/#", QoS::AtLeastOnce).unwrap();
    });
    let log = tx.clone();
    client.on_subscribe(move |client, _mid, reasons| {
        log.send(format!("subscribe {reasons:?}")).unwrap();
        client
            .publish("order/1", "hello", QoS::AtLeastOnce, false)
            .unwrap();
    });
    let log = tx.clone();
    client.on_message(move |client, message| {
        log.send(format!(
            "Received message '{}' on topic '{}'",
            String::from_utf8_lossy(&message.payload),
            message.topic
        ))
        .unwrap();
        client.disconnect().unwrap();
    });
    let log = tx;
    client.on_disconnect(move |_client, disconnected| {
        log.send(format!(
            "disconnect local={} reconnect={:?}",
            disconnected.reason == DisconnectReason::Local,
            disconnected.reconnect_in
        ))
        .unwrap();
    });

    client.connect().unwrap();
    assert!(client.is_connected());
    loop_forever_within(&client);
    assert!(!client.is_connected());

    let lines: Vec<String> = seen.try_iter().collect();
    assert_eq!(
        lines,
        [
            "connect session_present=false".to_owned(),
            format!("subscribe {:?}", [ReasonCode::GRANTED_QOS_1]),
            "Received message 'hello' on topic 'order/1'".to_owned(),
            "disconnect local=true reconnect=None".to_owned(),
        ]
    );
    // Over: requests fail at once.
    assert!(matches!(
        client.publish("order/2", "x", QoS::AtMostOnce, false),
        Err(Error::NotConnected)
    ));
}

#[test]
fn on_subscribe_comes_before_the_retained_messages() {
    let broker = mosquitto();
    let port = broker.port();
    let publisher = client(port, "blocking-retainer");
    publisher.connect().unwrap();
    publisher.loop_start().unwrap();
    publisher
        .publish("retained/a", "kept", QoS::AtLeastOnce, true)
        .unwrap()
        .wait_for_publish_timeout(PATIENCE)
        .unwrap();
    publisher.disconnect().unwrap();
    publisher.loop_stop();

    let client = client(port, "blocking-retained");
    let (tx, seen) = recorder();
    let log = tx.clone();
    client.on_connect(move |client, _result| {
        log.send("connect".to_owned()).unwrap();
        client.subscribe("retained/#", QoS::AtLeastOnce).unwrap();
    });
    let log = tx.clone();
    client.on_subscribe(move |_client, _mid, _reasons| log.send("subscribe".to_owned()).unwrap());
    client.on_message(move |client, message| {
        tx.send(format!("message retain={}", message.retain))
            .unwrap();
        client.disconnect().unwrap();
    });
    client.connect().unwrap();
    loop_forever_within(&client);
    let lines: Vec<String> = seen.try_iter().collect();
    assert_eq!(lines, ["connect", "subscribe", "message retain=true"]);
}

#[test]
fn publish_qos_1_and_2_waits_for_the_acknowledgement() {
    let broker = mosquitto();
    let client = client(broker.port(), "blocking-publish");
    let (tx, published) = mpsc::channel();
    client.on_publish(move |_client, mid, outcome| {
        tx.send((mid, outcome.packet_id.is_some())).unwrap();
    });
    client.connect().unwrap();
    client.loop_start().unwrap();
    assert!(matches!(client.loop_start(), Err(Error::LoopRunning)));

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let info = client.publish("pub/q", "payload", qos, false).unwrap();
        let outcome = info.wait_for_publish_timeout(PATIENCE).unwrap();
        assert!(info.is_published());
        assert!(outcome.is_success(), "{outcome:?}");
        assert_eq!(outcome.packet_id.is_some(), qos != QoS::AtMostOnce);
        let (mid, with_id) = published.recv_timeout(PATIENCE).unwrap();
        assert_eq!((mid, with_id), (info.mid(), qos != QoS::AtMostOnce));
    }
    assert!(
        broker.wait_for_log("PUBREL"),
        "the QoS 2 flow went through: {}",
        broker.log()
    );

    client.disconnect().unwrap();
    client.loop_stop();
    assert!(!client.is_connected());
}

#[test]
fn loop_stop_pauses_callbacks_and_loop_start_resumes_them() {
    let broker = mosquitto();
    let port = broker.port();

    let subscriber = client(port, "blocking-sub");
    let (tx, seen) = recorder();
    let log = tx.clone();
    subscriber.on_subscribe(move |_client, _mid, reasons| {
        log.send(format!("subscribe {reasons:?}")).unwrap();
    });
    subscriber.on_message(move |_client, message| {
        tx.send(String::from_utf8_lossy(&message.payload).into_owned())
            .unwrap();
    });
    subscriber.connect().unwrap();
    subscriber.subscribe("pause/#", QoS::AtLeastOnce).unwrap();
    subscriber.loop_start().unwrap();
    assert_eq!(
        next(&seen),
        format!("subscribe {:?}", [ReasonCode::GRANTED_QOS_1])
    );

    let publisher = client(port, "blocking-pub");
    publisher.connect().unwrap();
    publisher.loop_start().unwrap();
    let send = |payload: &str| {
        publisher
            .publish("pause/x", payload.to_owned(), QoS::AtLeastOnce, false)
            .unwrap()
            .wait_for_publish_timeout(PATIENCE)
            .unwrap();
    };

    send("one");
    assert_eq!(next(&seen), "one");

    subscriber.loop_stop();
    assert!(subscriber.is_connected());
    send("two");
    assert!(
        seen.recv_timeout(Duration::from_millis(300)).is_err(),
        "no callback while the loop is stopped"
    );

    subscriber.loop_start().unwrap();
    assert_eq!(next(&seen), "two");

    for client in [&subscriber, &publisher] {
        client.disconnect().unwrap();
        client.loop_stop();
    }
}

#[test]
fn disconnect_without_a_loop_runs_the_pending_callbacks() {
    let broker = mosquitto();
    let client = client(broker.port(), "blocking-disconnect");
    let (tx, seen) = recorder();
    let log = tx.clone();
    client.on_connect(move |_client, _result| log.send("connect".to_owned()).unwrap());
    client.on_disconnect(move |_client, disconnected| {
        tx.send(format!("disconnect {}", disconnected.reason))
            .unwrap();
    });
    client.connect().unwrap();
    assert!(matches!(client.connect(), Err(Error::AlreadyConnected)));
    client.disconnect().unwrap();
    let lines: Vec<String> = seen.try_iter().collect();
    assert_eq!(lines, ["connect", "disconnect disconnected by the client"]);
    // And again: a new connection.
    client.connect().unwrap();
    client.disconnect().unwrap();
    assert_eq!(seen.try_iter().count(), 2);
}

#[test]
fn waiting_inside_a_callback_fails_instead_of_deadlocking() {
    let broker = mosquitto();
    let client = client(broker.port(), "blocking-in-callback");
    let (tx, seen) = mpsc::channel();
    client.on_connect(move |client, _result| {
        let info = client
            .publish("cb/x", "x", QoS::AtLeastOnce, false)
            .unwrap();
        tx.send(info.wait_for_publish().map(|_| ())).unwrap();
        client.disconnect().unwrap();
    });
    client.connect().unwrap();
    loop_forever_within(&client);
    assert!(matches!(
        seen.recv_timeout(PATIENCE).unwrap(),
        Err(Error::InCallback)
    ));
}

#[test]
fn requests_need_a_connection() {
    let client = Client::new(ConnectOptions::new("127.0.0.1", 1));
    assert!(matches!(
        client.publish("t", "x", QoS::AtMostOnce, false),
        Err(Error::NotConnected)
    ));
    assert!(matches!(
        client.subscribe("t/#", QoS::AtMostOnce),
        Err(Error::NotConnected)
    ));
    assert!(matches!(
        client.subscribe("t/#/x", QoS::AtMostOnce),
        Err(Error::Client(pigeon_client::Error::InvalidFilter(_)))
    ));
    assert!(matches!(client.loop_start(), Err(Error::NotConnected)));
    assert!(matches!(client.loop_forever(), Err(Error::NotConnected)));
    client.loop_stop();
    client.disconnect().unwrap();
    assert!(client.connect().is_err(), "nothing listens on port 1");
}
