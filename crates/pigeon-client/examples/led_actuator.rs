//! An LED actuator: subscribes to a command topic and sets a two-colour LED to `GREEN`, `RED`
//! or `OFF`.
//!
//! ```text
//! cargo run -p pigeon-client --example led_actuator -- --topic home/led
//! pigeon-pub -t home/led -m GREEN
//! ```
//!
//! Prints `LED is GREEN` (or `RED`, `OFF`) for each command, `Ignoring unknown command '...'`
//! for anything else, and publishes the new state, retained, on `<topic>/state` so that a
//! dashboard sees the LED's state even when it subscribes later.
//!
//! Built with `--features gpio` it also drives the LED's two pins through Linux's sysfs GPIO
//! interface (`/sys/class/gpio`, a Raspberry Pi's BCM pin numbers): `--green-pin 17
//! --red-pin 27`. `--gpio-root` points at another directory with the same layout (the tests
//! use a temporary one; a machine without GPIO needs no hardware to build or run this).

mod common;

use clap::Parser;
use pigeon_client::{Event, QoS};

/// What the LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Led {
    Green,
    Red,
    Off,
}

impl Led {
    fn parse(command: &[u8]) -> Option<Led> {
        match command.trim_ascii() {
            b"GREEN" => Some(Led::Green),
            b"RED" => Some(Led::Red),
            b"OFF" => Some(Led::Off),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Led::Green => "GREEN",
            Led::Red => "RED",
            Led::Off => "OFF",
        }
    }
}

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    broker: common::Broker,
    /// The command topic.
    #[arg(short, long, default_value = "home/led")]
    topic: String,
    /// Exit after this many commands (0: run until interrupted).
    #[arg(short, long, default_value_t = 0)]
    count: u64,
    #[cfg(feature = "gpio")]
    #[command(flatten)]
    gpio: gpio::GpioArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    #[cfg(feature = "gpio")]
    let mut pins = gpio::Pins::open(&args.gpio)?;

    let (client, mut events) = args.broker.connect(args.broker.options()).await?;
    client.subscribe(&args.topic, QoS::AtLeastOnce).await?;
    println!("Waiting for GREEN, RED or OFF on '{}'", args.topic);
    let state_topic = format!("{}/state", args.topic);

    let mut tasks = tokio::task::JoinSet::new();
    let mut handled = 0;
    while args.count == 0 || handled < args.count {
        let event = tokio::select! {
            event = events.recv() => event,
            () = common::interrupted() => break,
        };
        let message = match event {
            Some(Event::Message(message)) => message,
            Some(_) => continue,
            None => anyhow::bail!("the connection to the broker ended"),
        };
        handled += 1;
        let Some(led) = Led::parse(&message.payload) else {
            println!(
                "Ignoring unknown command '{}'",
                String::from_utf8_lossy(&message.payload)
            );
            continue;
        };
        #[cfg(feature = "gpio")]
        pins.show(led)?;
        println!("LED is {}", led.name());
        // Not awaited here: the publish completes while the loop goes on reading events.
        let client = client.clone();
        let state_topic = state_topic.clone();
        while tasks.try_join_next().is_some() {} // forget finished ones
        tasks.spawn(async move {
            if let Err(e) = client
                .publish(&state_topic, led.name(), QoS::AtLeastOnce, true)
                .await
            {
                eprintln!("cannot publish the state: {e}");
            }
        });
    }
    common::finish(&client, &mut events, tasks).await
}

/// The sysfs GPIO back end: export each pin, make it an output, write 0 or 1 to its value.
#[cfg(feature = "gpio")]
mod gpio {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use anyhow::Context;

    use super::Led;

    #[derive(Debug, clap::Args)]
    pub(crate) struct GpioArgs {
        /// The GPIO number (BCM) of the LED's green leg (0: none).
        #[arg(long, default_value_t = 17)]
        green_pin: u32,
        /// The GPIO number (BCM) of the LED's red leg (0: none).
        #[arg(long, default_value_t = 27)]
        red_pin: u32,
        /// The sysfs GPIO directory.
        #[arg(long, default_value = "/sys/class/gpio")]
        gpio_root: PathBuf,
    }

    pub(crate) struct Pins {
        green: Option<PathBuf>,
        red: Option<PathBuf>,
    }

    impl Pins {
        pub(crate) fn open(args: &GpioArgs) -> anyhow::Result<Pins> {
            Ok(Pins {
                green: output_pin(&args.gpio_root, args.green_pin)?,
                red: output_pin(&args.gpio_root, args.red_pin)?,
            })
        }

        pub(crate) fn show(&mut self, led: Led) -> anyhow::Result<()> {
            set(self.green.as_deref(), led == Led::Green)?;
            set(self.red.as_deref(), led == Led::Red)
        }
    }

    /// Exports `pin` (unless it is already) and makes it an output; `None` for pin 0.
    fn output_pin(root: &Path, pin: u32) -> anyhow::Result<Option<PathBuf>> {
        if pin == 0 {
            return Ok(None);
        }
        let dir = root.join(format!("gpio{pin}"));
        if !dir.exists() {
            std::fs::write(root.join("export"), pin.to_string())
                .with_context(|| format!("cannot export GPIO {pin} in {}", root.display()))?;
        }
        // udev makes the new pin's files writable for the gpio group a moment after the
        // export: retry for up to a second.
        let direction = dir.join("direction");
        let mut result = std::fs::write(&direction, "out");
        for _ in 0..20 {
            if result.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            result = std::fs::write(&direction, "out");
        }
        result.with_context(|| format!("cannot write {}", direction.display()))?;
        Ok(Some(dir.join("value")))
    }

    fn set(value: Option<&Path>, on: bool) -> anyhow::Result<()> {
        if let Some(path) = value {
            std::fs::write(path, if on { "1" } else { "0" })
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}
