//! What every example shares: the broker flags (`--host`, `--port`, `--id`), connecting, and
//! draining the event stream of a client that only publishes.
//!
//! Each example file includes this module with `mod common;`; not every example uses every
//! item, hence the `dead_code` allowance.

#![allow(dead_code, unreachable_pub)] // pub for the examples, each using a subset

use std::time::Duration;

use pigeon_client::{Client, ConnectOptions, Event, Events, Protocol};

/// Where the broker is. `-h` stays the help flag, as in most Rust tools; `--host` is long only.
#[derive(Debug, Clone, clap::Args)]
pub struct Broker {
    /// The broker's host name or address.
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// The broker's port.
    #[arg(short, long, default_value_t = 1883)]
    pub port: u16,
    /// The client identifier (empty: the broker assigns one).
    #[arg(long, default_value = "")]
    pub id: String,
}

impl Broker {
    /// Connect options for MQTT 3.1.1 (what the labs' paho clients speak by default).
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(self.host.clone(), self.port)
            .client_id(self.id.clone())
            .keep_alive(60)
    }

    /// Connect options for MQTT 5.0.
    pub fn options_v5(&self) -> ConnectOptions {
        self.options().protocol(Protocol::V5)
    }

    /// Connects with `options`, naming the broker in the error.
    pub async fn connect(&self, options: ConnectOptions) -> anyhow::Result<(Client, Events)> {
        Client::connect(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {}:{}: {e}", self.host, self.port))
    }
}

/// A period in seconds, fractions allowed (`--interval 0.2` in the tests).
pub fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is not a valid duration"))
}

/// Reads and drops the events of a client that only publishes (a client's event stream must be
/// read, or the client stops once it is full), and reports a lost connection.
pub fn drain(mut events: Events) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Disconnected(d) = event
                && d.reconnect_in.is_none()
            {
                eprintln!("Disconnected: {:?}", d.reason);
            }
        }
    })
}

/// A small deterministic pseudo-random generator (xorshift64*), enough to simulate sensors
/// without another dependency; `--seed` makes runs repeatable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A uniform value in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform value in [low, high).
    pub fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
pub async fn interrupted() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Waits for the publishes still in flight in `tasks` (reading `events` meanwhile, as the
/// acknowledgements come through them), then disconnects.
pub async fn finish(
    client: &Client,
    events: &mut Events,
    mut tasks: tokio::task::JoinSet<()>,
) -> anyhow::Result<()> {
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            event = events.recv() => if event.is_none() { break },
        }
    }
    client.disconnect().await?;
    Ok(())
}
