//! A temperature sensor: publishes a reading on `building1/room2/temperature3` at a sampling
//! rate.
//!
//! ```text
//! cargo run -p pigeon-client --example temperature_sensor -- --interval 2
//! cargo run -p pigeon-client --example temperature_sensor -- --sensor-file /sys/bus/w1/devices/28-0316a2795bff/temperature
//! ```
//!
//! The reading comes from a [`TemperatureSensor`]: a simulated one by default (a random walk
//! around 21 °C), or `--sensor-file` for a real one whose driver exposes the temperature as a
//! file: a DS18B20 on a Raspberry Pi's 1-Wire bus (`.../temperature` in millidegrees, or
//! `w1_slave` with its `t=21437` line), a thermal zone (`/sys/class/thermal/thermal_zone0/temp`),
//! or any file holding degrees. Another sensor (I2C, SPI) is one more implementation of the
//! trait. Each message is the temperature in °C with two decimals, e.g. `21.43`; the program
//! prints `Published 21.43 to building1/room2/temperature3`.

mod common;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pigeon_client::QoS;

/// Where readings come from: implement this for a real sensor.
trait TemperatureSensor {
    /// One reading, in degrees Celsius.
    fn read_celsius(&mut self) -> io::Result<f64>;
}

/// A simulated sensor: a random walk between 15 and 30 °C.
struct SimulatedSensor {
    rng: common::Rng,
    celsius: f64,
}

impl TemperatureSensor for SimulatedSensor {
    fn read_celsius(&mut self) -> io::Result<f64> {
        self.celsius = (self.celsius + self.rng.range(-0.5, 0.5)).clamp(15.0, 30.0);
        Ok(self.celsius)
    }
}

/// A sensor whose kernel driver shows the temperature in a file.
struct FileSensor {
    path: PathBuf,
}

impl TemperatureSensor for FileSensor {
    fn read_celsius(&mut self) -> io::Result<f64> {
        let text = std::fs::read_to_string(&self.path)?;
        parse_reading(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no temperature in {}: {text:?}", self.path.display()),
            )
        })
    }
}

/// Reads the forms Linux drivers use: `w1_slave`'s `... t=21437` (millidegrees, after a
/// `YES` CRC check), a bare integer in millidegrees (`21437`), or degrees with a decimal
/// point (`21.4`).
fn parse_reading(text: &str) -> Option<f64> {
    if let Some((_, milli)) = text.rsplit_once("t=") {
        if text.contains("NO") {
            return None; // The 1-Wire CRC check failed: the reading is garbage.
        }
        return milli.trim().parse::<i64>().ok().map(|m| m as f64 / 1000.0);
    }
    let text = text.trim();
    if text.contains('.') {
        text.parse().ok()
    } else {
        text.parse::<i64>().ok().map(|m| m as f64 / 1000.0)
    }
}

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    broker: common::Broker,
    /// The topic to publish readings on.
    #[arg(short, long, default_value = "building1/room2/temperature3")]
    topic: String,
    /// Seconds between readings (the sampling period).
    #[arg(short, long, default_value = "5", value_parser = common::seconds)]
    interval: Duration,
    /// Read a real sensor from this file instead of simulating one.
    #[arg(long)]
    sensor_file: Option<PathBuf>,
    /// The simulation's seed (repeatable readings).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// QoS of the readings (0, 1 or 2).
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Stop after this many readings (0: run until interrupted).
    #[arg(short, long, default_value_t = 0)]
    count: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut sensor: Box<dyn TemperatureSensor> = match &args.sensor_file {
        Some(path) => Box::new(FileSensor { path: path.clone() }),
        None => Box::new(SimulatedSensor {
            rng: common::Rng::new(args.seed),
            celsius: 21.0,
        }),
    };
    let qos = QoS::from_u8(args.qos).ok_or_else(|| anyhow::anyhow!("bad QoS {}", args.qos))?;
    let (client, events) = args.broker.connect(args.broker.options()).await?;
    let drained = common::drain(events);

    let mut ticker = tokio::time::interval(args.interval);
    let mut sent = 0;
    while args.count == 0 || sent < args.count {
        tokio::select! {
            _ = ticker.tick() => {}
            () = common::interrupted() => break,
        }
        match sensor.read_celsius() {
            Ok(celsius) => {
                let reading = format!("{celsius:.2}");
                client
                    .publish(&args.topic, reading.clone(), qos, false)
                    .await?;
                println!("Published {reading} to {}", args.topic);
                sent += 1;
            }
            // A sensor that fails once (a 1-Wire CRC error) may work at the next sample.
            Err(e) => eprintln!("Sensor read failed: {e}"),
        }
    }
    client.disconnect().await?;
    let _ = drained.await;
    Ok(())
}
