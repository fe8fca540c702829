//! `pigeon-bench`: a load generator for MQTT brokers on this machine.
//!
//! Commands that generate load (`conn`, `pub`, `sub`) and scenarios that measure end to end
//! (`fanin`, `fanout`, `pairs`, `latency`, `retained`, `conns`). Each prints a summary table
//! (or, with `--json`, one JSON object) and shows progress bars on a terminal. With `--pid`
//! it also reads the broker's CPU time and memory from `/proc`.
//!
//! The bench has to cost the machine much less than the broker it measures, so it talks MQTT
//! 3.1.1 over plain tokio TCP with `pigeon-proto`'s codec, writes messages in batches, and
//! parses received packets in place (see `wire`). It reports its own CPU use, and warns when it
//! may itself have been the bottleneck.
//!
//! Only loopback brokers are accepted: this is a tool for measuring a broker on the same
//! machine, not for loading someone else's.

// A load generator measures time: it reads the clock directly (the broker's rule that only a
// clock module may read it is about keeping its state machine testable).
#![allow(clippy::disallowed_methods)]
// Figures are counts and times far below 2^52, so float conversions lose nothing that matters.
#![allow(clippy::cast_precision_loss)]

mod flow;
mod report;
mod scenarios;
mod wire;

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pigeon_proto::QoS;

use crate::flow::{Flow, PubSpec, SubSpec};
use crate::report::Report;
use crate::scenarios::{ConnsSpec, RetainedSpec};

#[derive(Debug, Parser)]
#[command(
    name = "pigeon-bench",
    version,
    about = "Load generator for MQTT brokers on loopback"
)]
struct Cli {
    /// Broker host (a loopback name or address).
    #[arg(short = 'H', long, global = true, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(short, long, global = true, default_value_t = 1883)]
    port: u16,
    /// The broker's process id: adds its CPU time and memory (from /proc) to the results.
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// Print the results as one JSON object instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Worker threads of the bench (default: the CPUs this process may run on).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Spread client source addresses over 127.0.0.1 to 127.0.0.N (IPv4 targets).
    #[arg(long, global = true, default_value_t = 4)]
    sources: u8,
    /// No progress bars, even on a terminal.
    #[arg(long, global = true)]
    no_progress: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open N connections at a rate and hold them.
    Conn(ConnArgs),
    /// N publishers, at a rate or flat out.
    Pub(PubArgs),
    /// N subscribers; counts what they receive.
    Sub(SubArgs),
    /// N publishers to one subscriber (topic per publisher, subscriber on a wildcard).
    Fanin(FaninArgs),
    /// One publisher to N subscribers of the same topic.
    Fanout(FanoutArgs),
    /// N publisher/subscriber pairs, each on its own topic.
    Pairs(PairsArgs),
    /// One publisher at a fixed rate, one subscriber: end-to-end latency percentiles.
    Latency(LatencyArgs),
    /// Store R retained messages, then time a wildcard subscriber receiving all of them.
    Retained(RetainedArgs),
    /// Open N idle connections: connects per second, broker CPU per connect and memory per
    /// connection (with --pid).
    Conns(ConnArgs),
}

#[derive(Debug, Args)]
struct ConnArgs {
    /// Connections to open.
    #[arg(short, long, default_value_t = 1000)]
    count: usize,
    /// New connections per second (0: as fast as --concurrency allows).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Handshakes in progress at once. The default stays below the listen backlog of 100
    /// that Mosquitto and Pigeon use, so that no SYN is dropped and retried a second later.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to wait after the last connect before reading the broker's memory.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Seconds to hold the connections after that.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Keep Alive the connections ask for, in seconds (0: none). The broker then watches a
    /// deadline for each; they send no PINGREQ, so keep it longer than the measurement.
    #[arg(long, default_value_t = 0)]
    keep_alive: u16,
}

/// Options of every publishing command.
#[derive(Debug, Args, Clone)]
struct FlowArgs {
    /// QoS of publishes and subscriptions (0 or 1).
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// Payload bytes (at least 16: publisher id, sequence number and send time).
    #[arg(short, long, default_value_t = 16)]
    size: usize,
    /// Seconds of publishing.
    #[arg(short, long, default_value_t = 5.0)]
    duration: f64,
    /// Messages per second for each publisher (0: flat out).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// QoS 1 messages a publisher may have unacknowledged.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65535))]
    window: u64,
    /// Seconds without a message after publishing ends before the rest counts as lost.
    #[arg(long, default_value_t = 3.0)]
    drain: f64,
    /// Closed loop: messages in transit (published, not yet received) per subscriber at most,
    /// so the broker is measured at the rate it delivers rather than at the rate it drops.
    /// 0: open loop, publishers send as fast as the broker reads.
    #[arg(long, default_value_t = 500)]
    backlog: u64,
}

#[derive(Debug, Args)]
struct PubArgs {
    /// Publishers.
    #[arg(short, long, default_value_t = 1)]
    count: usize,
    /// Topic; `%i` becomes the publisher's number.
    #[arg(short, long, default_value = "bench/%i")]
    topic: String,
    /// Messages per publisher (0: until --duration ends).
    #[arg(long, default_value_t = 0)]
    limit: u64,
    /// Publish with the retain flag.
    #[arg(long)]
    retain: bool,
    #[command(flatten)]
    flow: FlowArgs,
}

#[derive(Debug, Args)]
struct SubArgs {
    /// Subscribers.
    #[arg(short, long, default_value_t = 1)]
    count: usize,
    /// Topic filter (repeatable); `%i` becomes the subscriber's number.
    #[arg(short, long, default_value = "bench/#")]
    topic: Vec<String>,
    /// QoS of the subscriptions (0 or 1).
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// Seconds to listen.
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Stop a subscriber after this many messages.
    #[arg(long)]
    limit: Option<u64>,
}

#[derive(Debug, Args)]
struct FaninArgs {
    /// Publishers.
    #[arg(long, default_value_t = 16)]
    publishers: usize,
    #[command(flatten)]
    flow: FlowArgs,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    /// Subscribers.
    #[arg(long, default_value_t = 50)]
    subscribers: usize,
    #[command(flatten)]
    flow: FlowArgs,
}

#[derive(Debug, Args)]
struct PairsArgs {
    /// Publisher/subscriber pairs.
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    #[command(flatten)]
    flow: FlowArgs,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    #[command(flatten)]
    flow: FlowArgs,
}

#[derive(Debug, Args)]
struct RetainedArgs {
    /// Retained topics.
    #[arg(long, default_value_t = 100_000)]
    topics: u64,
    /// Payload bytes.
    #[arg(short, long, default_value_t = 16)]
    size: usize,
    /// Topic prefix: PREFIX/0 to PREFIX/(topics-1).
    #[arg(long, default_value = "bench/retained")]
    prefix: String,
    /// The measuring subscriber's filter.
    #[arg(long, default_value = "#")]
    filter: String,
    /// QoS of the subscription (0 or 1).
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// Seconds without a message before the rest counts as missing.
    #[arg(long, default_value_t = 10.0)]
    patience: f64,
}

/// The broker under test and how to talk to it.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) sources: u8,
    pub(crate) pid: Option<u32>,
    pub(crate) threads: usize,
    progress: bool,
}

impl Target {
    /// A progress bar on standard error (hidden unless it is a terminal and bars are wanted);
    /// a spinner when `len` is unknown.
    pub(crate) fn progress_bar(&self, message: &str, len: Option<u64>) -> ProgressBar {
        if !self.progress || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = match len {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pigeon-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let addr = (cli.host.as_str(), cli.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", cli.host))?
        .next()
        .with_context(|| format!("{} has no address", cli.host))?;
    if !addr.ip().is_loopback() {
        bail!(
            "{addr} is not a loopback address: pigeon-bench only measures brokers on this machine"
        );
    }
    let threads = match cli.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let target = Target {
        addr,
        sources: cli.sources,
        pid: cli.pid,
        threads,
        progress: !cli.no_progress,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let report = runtime.block_on(command(&target, cli.command))?;
    if cli.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

fn secs(s: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{what}: not a duration in seconds"))
}

fn qos(q: u8) -> QoS {
    QoS::from_u8(q).unwrap_or(QoS::AtMostOnce)
}

/// `template` with `%i` replaced by `i`.
fn expand(template: &str, i: usize) -> String {
    template.replace("%i", &i.to_string())
}

fn publisher(f: &FlowArgs, id: usize, topic: String) -> Result<PubSpec> {
    if topic.is_empty() || topic.len() > usize::from(u16::MAX) || topic.contains(['+', '#']) {
        bail!("{topic:?} is not a topic name to publish to");
    }
    Ok(PubSpec {
        id: u32::try_from(id)?,
        topic: topic.into_bytes(),
        qos: qos(f.qos),
        retain: false,
        payload: f.size,
        rate: f.rate,
        limit: 0,
        window: f.window,
    })
}

fn subscriber(f: &FlowArgs, filter: String, sources: Vec<u32>, latency: bool) -> SubSpec {
    SubSpec {
        filters: vec![filter],
        qos: qos(f.qos),
        sources,
        latency,
    }
}

fn flow_report(name: &str, target: &Target, f: &FlowArgs) -> Result<Report> {
    if f.size < wire::STAMP_LEN {
        bail!(
            "--size must be at least {} bytes (the payload carries a sequence number and a timestamp)",
            wire::STAMP_LEN
        );
    }
    let mut r = Report::new(name, target.threads);
    r.text("target", target.addr.to_string());
    r.int("qos", u64::from(f.qos), "");
    r.int("payload", f.size as u64, "bytes");
    r.int("backlog", f.backlog, "msgs");
    Ok(r)
}

fn flow(f: &FlowArgs, publishers: Vec<PubSpec>, subscribers: Vec<SubSpec>) -> Result<Flow> {
    Ok(Flow {
        publishers,
        subscribers,
        duration: Some(secs(f.duration, "--duration")?),
        drain: secs(f.drain, "--drain")?,
        backlog: f.backlog,
    })
}

async fn command(target: &Target, command: Command) -> Result<Report> {
    match command {
        Command::Conn(a) | Command::Conns(a) => {
            let mut r = Report::new("conns", target.threads);
            r.text("target", target.addr.to_string());
            let spec = ConnsSpec {
                count: a.count,
                rate: a.rate,
                concurrency: a.concurrency,
                settle: secs(a.settle, "--settle")?,
                hold: secs(a.hold, "--hold")?,
                keep_alive: a.keep_alive,
            };
            scenarios::conns(target, &spec, &mut r).await?;
            Ok(r)
        }
        Command::Pub(a) => {
            let mut r = Report::new("pub", target.threads);
            r.text("target", target.addr.to_string());
            r.int("publishers", a.count as u64, "");
            let mut pubs = Vec::new();
            for i in 0..a.count {
                let mut p = publisher(&a.flow, i, expand(&a.topic, i))?;
                p.limit = a.limit;
                p.retain = a.retain;
                pubs.push(p);
            }
            let mut fl = flow(&a.flow, pubs, Vec::new())?;
            if a.limit > 0 {
                fl.duration = None;
            }
            flow::run(target, fl, &mut r).await?;
            Ok(r)
        }
        Command::Sub(a) => {
            let mut r = Report::new("sub", target.threads);
            r.text("target", target.addr.to_string());
            r.int("subscribers", a.count as u64, "");
            let subs = (0..a.count)
                .map(|i| SubSpec {
                    filters: a.topic.iter().map(|t| expand(t, i)).collect(),
                    qos: qos(a.qos),
                    sources: Vec::new(),
                    latency: false,
                })
                .collect();
            let d = secs(a.duration, "--duration")?;
            flow::listen(target, subs, d, a.limit, &mut r).await?;
            Ok(r)
        }
        Command::Fanin(a) => {
            let mut r = flow_report("fanin", target, &a.flow)?;
            r.int("publishers", a.publishers as u64, "");
            let pubs = (0..a.publishers)
                .map(|i| publisher(&a.flow, i, format!("bench/in/{i}")))
                .collect::<Result<_>>()?;
            let sources = (0..a.publishers)
                .map(u32::try_from)
                .collect::<Result<_, _>>()?;
            let subs = vec![subscriber(&a.flow, "bench/in/+".to_owned(), sources, false)];
            flow::run(target, flow(&a.flow, pubs, subs)?, &mut r).await?;
            Ok(r)
        }
        Command::Fanout(a) => {
            let mut r = flow_report("fanout", target, &a.flow)?;
            r.int("subscribers", a.subscribers as u64, "");
            let pubs = vec![publisher(&a.flow, 0, "bench/out".to_owned())?];
            let subs = (0..a.subscribers)
                .map(|_| subscriber(&a.flow, "bench/out".to_owned(), vec![0], false))
                .collect();
            flow::run(target, flow(&a.flow, pubs, subs)?, &mut r).await?;
            Ok(r)
        }
        Command::Pairs(a) => {
            let mut r = flow_report("pairs", target, &a.flow)?;
            r.int("pairs", a.pairs as u64, "");
            let pubs = (0..a.pairs)
                .map(|i| publisher(&a.flow, i, format!("bench/pair/{i}")))
                .collect::<Result<_>>()?;
            let subs = (0..a.pairs)
                .map(|i| {
                    Ok(subscriber(
                        &a.flow,
                        format!("bench/pair/{i}"),
                        vec![u32::try_from(i)?],
                        false,
                    ))
                })
                .collect::<Result<_>>()?;
            flow::run(target, flow(&a.flow, pubs, subs)?, &mut r).await?;
            Ok(r)
        }
        Command::Latency(mut a) => {
            if a.flow.rate <= 0.0 {
                a.flow.rate = 1000.0;
            }
            let mut r = flow_report("latency", target, &a.flow)?;
            r.num("rate", a.flow.rate, "msg/s");
            let pubs = vec![publisher(&a.flow, 0, "bench/latency".to_owned())?];
            let subs = vec![subscriber(
                &a.flow,
                "bench/latency".to_owned(),
                vec![0],
                true,
            )];
            flow::run(target, flow(&a.flow, pubs, subs)?, &mut r).await?;
            Ok(r)
        }
        Command::Retained(a) => {
            let mut r = Report::new("retained", target.threads);
            r.text("target", target.addr.to_string());
            r.text("filter", a.filter.clone());
            let spec = RetainedSpec {
                topics: a.topics,
                payload: a.size,
                prefix: a.prefix,
                filter: a.filter,
                qos: qos(a.qos),
                patience: secs(a.patience, "--patience")?,
            };
            scenarios::retained(target, &spec, &mut r).await?;
            Ok(r)
        }
    }
}
