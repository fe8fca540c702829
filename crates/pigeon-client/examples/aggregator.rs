//! An aggregator: subscribes to every group's sensor values with a wildcard, averages them
//! per time window, prints the average and republishes it on a summary topic.
//!
//! ```text
//! cargo run -p pigeon-client --example aggregator -- --filter 'groups/+/temperature' --window 10
//! ```
//!
//! At the end of each window with readings it prints `Average of 4 readings from 2 groups
//! over 10s: 21.25` and publishes `21.25` on `--summary-topic` (`summary/temperature`; keep
//! it outside the filter, or the aggregator reads its own averages). A payload that is not a
//! number is reported and left out. The group is the topic level the filter's first `+`
//! matches.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Parser;
use pigeon_client::{Event, QoS};

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    broker: common::Broker,
    /// The wildcard filter matching every group's readings.
    #[arg(short, long, default_value = "groups/+/temperature")]
    filter: String,
    /// Where averages are published.
    #[arg(short, long, default_value = "summary/temperature")]
    summary_topic: String,
    /// The averaging window, seconds.
    #[arg(short, long, default_value = "10", value_parser = common::seconds)]
    window: Duration,
    /// Exit after this many averages (0: run until interrupted).
    #[arg(short, long, default_value_t = 0)]
    count: u64,
}

/// The readings of the current window.
#[derive(Debug, Default)]
struct Window {
    sum: f64,
    readings: u64,
    groups: BTreeSet<String>,
}

impl Window {
    fn add(&mut self, group: String, value: f64) {
        self.sum += value;
        self.readings += 1;
        self.groups.insert(group);
    }

    /// The average, or `None` for an empty window.
    fn average(&self) -> Option<f64> {
        (self.readings > 0).then(|| self.sum / self.readings as f64)
    }
}

/// The topic level under the filter's first `+` (the whole topic when it has none).
fn group_of(filter: &str, topic: &str) -> String {
    filter
        .split('/')
        .zip(topic.split('/'))
        .find(|(f, _)| *f == "+")
        .map_or_else(|| topic.to_owned(), |(_, t)| t.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (client, mut events) = args.broker.connect(args.broker.options()).await?;
    client.subscribe(&args.filter, QoS::AtLeastOnce).await?;
    println!(
        "Averaging '{}' every {:?} onto '{}'",
        args.filter, args.window, args.summary_topic
    );

    let mut tasks = tokio::task::JoinSet::new();
    let mut window = Window::default();
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + args.window, args.window);
    let mut published = 0;
    while args.count == 0 || published < args.count {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Message(message)) => {
                    let text = String::from_utf8_lossy(&message.payload);
                    match text.trim().parse::<f64>() {
                        Ok(value) if value.is_finite() => {
                            window.add(group_of(&args.filter, message.topic.as_str()), value);
                        }
                        _ => println!("Ignoring '{text}' on '{}': not a number", message.topic),
                    }
                }
                Some(_) => {}
                None => anyhow::bail!("the connection to the broker ended"),
            },
            _ = ticker.tick() => {
                let done = std::mem::take(&mut window);
                let Some(average) = done.average() else { continue };
                let average = format!("{average:.2}");
                println!(
                    "Average of {} readings from {} groups over {:?}: {average}",
                    done.readings,
                    done.groups.len(),
                    args.window
                );
                let client = client.clone();
                let topic = args.summary_topic.clone();
                while tasks.try_join_next().is_some() {} // forget finished ones
                tasks.spawn(async move {
                    if let Err(e) = client.publish(&topic, average, QoS::AtLeastOnce, false).await {
                        eprintln!("cannot publish the average: {e}");
                    }
                });
                published += 1;
            }
            () = common::interrupted() => break,
        }
    }
    common::finish(&client, &mut events, tasks).await
}
