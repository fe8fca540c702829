//! The labs' first publisher: "Hello, MQTT!" on `test/topic` every 5 seconds.
//!
//! ```text
//! cargo run -p pigeon-client --example hello_publisher -- --host localhost --interval 5
//! ```
//!
//! Prints `Published 'Hello, MQTT!' to topic 'test/topic'` for each message (sent at QoS 1,
//! so the line means the broker has it). Runs until Ctrl-C, or `--count` messages.

mod common;

use std::time::Duration;

use clap::Parser;
use pigeon_client::QoS;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    broker: common::Broker,
    /// The topic to publish to.
    #[arg(short, long, default_value = "test/topic")]
    topic: String,
    /// The message.
    #[arg(short, long, default_value = "Hello, MQTT!")]
    message: String,
    /// Seconds between messages.
    #[arg(short, long, default_value = "5", value_parser = common::seconds)]
    interval: Duration,
    /// Stop after this many messages (0: run until interrupted).
    #[arg(short, long, default_value_t = 0)]
    count: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (client, events) = args.broker.connect(args.broker.options()).await?;
    let drained = common::drain(events);
    println!("Connected to {}:{}", args.broker.host, args.broker.port);

    let mut ticker = tokio::time::interval(args.interval);
    let mut sent = 0;
    while args.count == 0 || sent < args.count {
        tokio::select! {
            _ = ticker.tick() => {}
            () = common::interrupted() => break,
        }
        client
            .publish(&args.topic, args.message.clone(), QoS::AtLeastOnce, false)
            .await?;
        sent += 1;
        println!("Published '{}' to topic '{}'", args.message, args.topic);
    }
    client.disconnect().await?;
    let _ = drained.await;
    Ok(())
}
