//! The labs' first subscriber, written against the blocking client with paho-style callbacks:
//! subscribes to `test/topic` and prints every message.
//!
//! ```text
//! cargo run -p pigeon-client --example hello_subscriber -- --host localhost
//! ```
//!
//! Prints `Subscribed to 'test/topic'` once the broker granted the subscription, then
//! `Received message 'Hello, MQTT!' on topic 'test/topic'` for each message. Runs until
//! Ctrl-C, or `--count` messages.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Parser;
use pigeon_client::QoS;
use pigeon_client::blocking::Client;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    broker: common::Broker,
    /// The topic filter to subscribe to.
    #[arg(short, long, default_value = "test/topic")]
    topic: String,
    /// Exit after this many messages (0: run until interrupted).
    #[arg(short, long, default_value_t = 0)]
    count: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::new(args.broker.options());

    let topic = args.topic.clone();
    // Subscribing in on_connect subscribes again after a reconnection, as in the paho labs.
    client.on_connect(move |client, _| {
        println!("Connected with result code Success");
        if let Err(e) = client.subscribe(&topic, QoS::AtLeastOnce) {
            eprintln!("cannot subscribe to {topic}: {e}");
        }
    });
    let topic = args.topic.clone();
    client.on_subscribe(move |_, _, reasons| {
        println!("Subscribed to '{topic}' ({reasons:?})");
    });
    let received = Arc::new(AtomicU64::new(0));
    let count = args.count;
    client.on_message(move |client, message| {
        println!(
            "Received message '{}' on topic '{}'",
            String::from_utf8_lossy(&message.payload),
            message.topic
        );
        if received.fetch_add(1, Ordering::Relaxed) + 1 == count {
            // Ends loop_forever once the DISCONNECT is sent.
            let _ = client.disconnect();
        }
    });

    client.connect().map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to {}:{}: {e}",
            args.broker.host,
            args.broker.port
        )
    })?;
    client.loop_forever()?;
    Ok(())
}
