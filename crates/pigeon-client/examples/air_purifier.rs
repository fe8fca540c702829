//! The air-quality lab's purifier: listens to the CO2 sensor and switches on when the level
//! goes above a threshold, off when it is back below.
//!
//! ```text
//! cargo run -p pigeon-client --example air_purifier -- --threshold 1000
//! ```
//!
//! Subscribes to `home/livingroom/co2`. A reading above `--threshold` ppm while the purifier
//! is off prints `CO2 1234 ppm > 1000 ppm: purifier ON`; one at or below `--threshold` minus
//! `--hysteresis` while it is on prints `CO2 850 ppm <= 900 ppm: purifier OFF` (the
//! hysteresis stops a reading hovering at the threshold from toggling the purifier every
//! time). Each switch is published, retained, as `ON` or `OFF` on `--state-topic`
//! (`home/livingroom/purifier`), where a real purifier's smart plug would listen.

mod common;

use clap::Parser;
use pigeon_client::{Event, QoS};

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    broker: common::Broker,
    /// The sensor's topic.
    #[arg(short, long, default_value = "home/livingroom/co2")]
    topic: String,
    /// Where the purifier's state is published.
    #[arg(short, long, default_value = "home/livingroom/purifier")]
    state_topic: String,
    /// Switch on above this CO2 level, ppm.
    #[arg(long, default_value_t = 1000)]
    threshold: u32,
    /// Switch off only at or below threshold minus this, ppm.
    #[arg(long, default_value_t = 100)]
    hysteresis: u32,
    /// Exit after this many switches (0: run until interrupted).
    #[arg(short, long, default_value_t = 0)]
    count: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let off_at = args.threshold.saturating_sub(args.hysteresis);
    let (client, mut events) = args.broker.connect(args.broker.options()).await?;
    client.subscribe(&args.topic, QoS::AtLeastOnce).await?;
    println!(
        "Purifier OFF; on above {} ppm, off at or below {off_at} ppm of '{}'",
        args.threshold, args.topic
    );

    let mut tasks = tokio::task::JoinSet::new();
    let mut on = false;
    let mut switches = 0;
    while args.count == 0 || switches < args.count {
        let event = tokio::select! {
            event = events.recv() => event,
            () = common::interrupted() => break,
        };
        let message = match event {
            Some(Event::Message(message)) => message,
            Some(_) => continue,
            None => anyhow::bail!("the connection to the broker ended"),
        };
        let text = String::from_utf8_lossy(&message.payload);
        let Ok(ppm) = text.trim().parse::<u32>() else {
            println!("Ignoring '{text}': not a CO2 level in ppm");
            continue;
        };
        let line = if !on && ppm > args.threshold {
            on = true;
            format!("CO2 {ppm} ppm > {} ppm: purifier ON", args.threshold)
        } else if on && ppm <= off_at {
            on = false;
            format!("CO2 {ppm} ppm <= {off_at} ppm: purifier OFF")
        } else {
            println!(
                "CO2 {ppm} ppm: purifier stays {}",
                if on { "ON" } else { "OFF" }
            );
            continue;
        };
        println!("{line}");
        let client = client.clone();
        let topic = args.state_topic.clone();
        while tasks.try_join_next().is_some() {} // forget finished ones
        tasks.spawn(async move {
            let state = if on { "ON" } else { "OFF" };
            if let Err(e) = client.publish(&topic, state, QoS::AtLeastOnce, true).await {
                eprintln!("cannot publish the purifier's state: {e}");
            }
        });
        switches += 1;
    }
    common::finish(&client, &mut events, tasks).await
}
