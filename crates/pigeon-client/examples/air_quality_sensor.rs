//! The air-quality lab's CO2 sensor: publishes a simulated CO2 concentration (ppm) every 30
//! seconds on `home/livingroom/co2`.
//!
//! ```text
//! cargo run -p pigeon-client --example air_quality_sensor
//! cargo run -p pigeon-client --example air_purifier -- --threshold 1000
//! ```
//!
//! The simulation is a room filling with people: the level rises by 20 to 120 ppm a reading
//! from 450 ppm (outdoor air is about 420), and drops back by 400 ppm when it passes 1,600
//! (a window opened). `--values 800,1200,900` publishes those readings instead, in order, and
//! stops. Prints `Published CO2 1234 ppm to home/livingroom/co2`.

mod common;

use std::time::Duration;

use clap::Parser;
use pigeon_client::QoS;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    broker: common::Broker,
    /// The topic readings go to.
    #[arg(short, long, default_value = "home/livingroom/co2")]
    topic: String,
    /// Seconds between readings.
    #[arg(short, long, default_value = "30", value_parser = common::seconds)]
    interval: Duration,
    /// Publish these readings (ppm, comma-separated) instead of simulating.
    #[arg(long, value_delimiter = ',')]
    values: Vec<u32>,
    /// The simulation's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many readings (0: run until interrupted).
    #[arg(short, long, default_value_t = 0)]
    count: u64,
}

/// The simulated room.
struct Room {
    rng: common::Rng,
    ppm: f64,
}

impl Room {
    fn next_ppm(&mut self) -> u32 {
        self.ppm += self.rng.range(20.0, 120.0);
        if self.ppm > 1600.0 {
            self.ppm -= 400.0;
        }
        self.ppm.round() as u32
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (client, events) = args.broker.connect(args.broker.options()).await?;
    let drained = common::drain(events);

    let mut fixed = args.values.iter().copied();
    let mut room = Room {
        rng: common::Rng::new(args.seed),
        ppm: 450.0,
    };
    let mut ticker = tokio::time::interval(args.interval);
    let mut sent = 0;
    while args.count == 0 || sent < args.count {
        let ppm = if args.values.is_empty() {
            room.next_ppm()
        } else {
            match fixed.next() {
                Some(ppm) => ppm,
                None => break,
            }
        };
        tokio::select! {
            _ = ticker.tick() => {}
            () = common::interrupted() => break,
        }
        client
            .publish(&args.topic, ppm.to_string(), QoS::AtLeastOnce, false)
            .await?;
        println!("Published CO2 {ppm} ppm to {}", args.topic);
        sent += 1;
    }
    client.disconnect().await?;
    let _ = drained.await;
    Ok(())
}
