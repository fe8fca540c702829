//! The scenarios that are not a publish/subscribe flow: `retained` (how long a wildcard
//! subscriber takes to receive every retained message) and `conn`/`conns` (opening and holding
//! many idle connections, with the broker's cost per connection).

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::BytesMut;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use pigeon_proto::{PacketType, QoS};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinSet;

use crate::Target;
use crate::report::{CpuMeter, Report, now_ns, rss_bytes};
use crate::wire::{self, Frame, Stamp, put_puback, put_publish};

/// Bytes of PUBLISH packets gathered before one write while storing retained messages.
const WRITE_CHUNK: usize = 64 * 1024;

/// Parameters of the `retained` scenario.
#[derive(Debug)]
pub(crate) struct RetainedSpec {
    pub(crate) topics: u64,
    pub(crate) payload: usize,
    /// Topic prefix of the retained messages: `PREFIX/0` to `PREFIX/(topics-1)`.
    pub(crate) prefix: String,
    /// What the measuring subscriber subscribes to.
    pub(crate) filter: String,
    pub(crate) qos: QoS,
    /// How long the subscriber may go without a message before the rest counts as missing.
    pub(crate) patience: Duration,
}

/// Stores `spec.topics` retained messages, then measures how long a new subscriber to
/// `spec.filter` takes to receive all of them.
pub(crate) async fn retained(
    target: &Target,
    spec: &RetainedSpec,
    report: &mut Report,
) -> Result<()> {
    let progress = target.progress_bar("storing retained messages", Some(spec.topics));
    let id = format!("bench-retain-pub-{}", std::process::id());
    let mut publisher = wire::connect(target.addr, None, &id, 0).await?;
    let stored_from = now_ns();
    let mut buf = BytesMut::with_capacity(WRITE_CHUNK + 1024);
    for i in 0..spec.topics {
        let topic = format!("{}/{i}", spec.prefix);
        let stamp = Stamp {
            publisher: 0,
            seq: i as u32,
            sent_ns: 0,
        };
        put_publish(
            &mut buf,
            topic.as_bytes(),
            QoS::AtMostOnce,
            true,
            0,
            stamp,
            spec.payload,
        );
        if buf.len() >= WRITE_CHUNK {
            publisher.wr.write_all(&buf).await?;
            buf.clear();
            progress.set_position(i + 1);
        }
    }
    // A PINGREQ after the last PUBLISH: its PINGRESP means the broker has handled them all.
    buf.extend_from_slice(&[0xC0, 0x00]);
    publisher.wr.write_all(&buf).await?;
    publisher.expect(PacketType::PingResp).await?;
    let store_s = (now_ns() - stored_from) as f64 / 1e9;
    publisher.disconnect().await;

    progress.set_message("receiving retained messages");
    progress.set_position(0);
    let id = format!("bench-retain-sub-{}", std::process::id());
    let mut sub = wire::connect(target.addr, None, &id, 0).await?;
    let meter = CpuMeter::start(target.pid);
    let t0 = now_ns();
    sub.subscribe(std::slice::from_ref(&spec.filter), spec.qos)
        .await?;
    let prefix = format!("{}/", spec.prefix);
    let (mut got, mut other, mut last) = (0u64, 0u64, t0);
    let mut acks = BytesMut::new();
    let mut cpu_report = Report::new("", target.threads);
    let mut broker_cpu = None;
    while got < spec.topics {
        sub.frames.drain(|f| {
            if let Frame::Publish {
                qos,
                retain,
                pid,
                topic,
                ..
            } = f
            {
                if qos > 0 {
                    put_puback(&mut acks, pid);
                }
                if retain && topic.starts_with(prefix.as_bytes()) {
                    got += 1;
                } else {
                    other += 1;
                }
            }
            Ok(())
        })?;
        last = now_ns();
        if !acks.is_empty() {
            sub.wr.write_all(&acks).await?;
            acks.clear();
        }
        progress.set_position(got);
        if got >= spec.topics {
            break;
        }
        cpu_report = Report::new("", target.threads);
        broker_cpu = meter.finish(&mut cpu_report);
        match tokio::time::timeout(spec.patience, sub.frames.fill(&mut sub.rd)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => anyhow::bail!("the broker closed the subscriber's connection"),
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
    }
    if got >= spec.topics {
        cpu_report = Report::new("", target.threads);
        broker_cpu = meter.finish(&mut cpu_report);
    }
    progress.finish_and_clear();
    sub.disconnect().await;
    let secs = (last - t0) as f64 / 1e9;
    report.int("topics", spec.topics, "");
    report.num("store_s", store_s, "s");
    report.int("received", got, "msgs");
    report.int("missing", spec.topics.saturating_sub(got), "msgs");
    if other > 0 {
        report.int("other", other, "msgs");
    }
    report.num("receive_all_ms", secs * 1e3, "ms");
    report.num("throughput", got as f64 / secs.max(1e-9), "msg/s");
    report.extend(cpu_report);
    if let Some(cpu) = broker_cpu
        && got > 0
    {
        report.num("broker_cpu_us_per_msg", cpu * 1e6 / got as f64, "us");
    }
    Ok(())
}

/// Parameters of `conn` and `conns`.
#[derive(Debug)]
pub(crate) struct ConnsSpec {
    pub(crate) count: usize,
    /// New connections per second; 0 for as fast as `concurrency` allows.
    pub(crate) rate: f64,
    /// Handshakes in progress at once.
    pub(crate) concurrency: usize,
    /// Wait after the last connection before the broker's memory is read.
    pub(crate) settle: Duration,
    /// How long to hold the connections after measuring.
    pub(crate) hold: Duration,
    /// The Keep Alive they ask for, in seconds.
    pub(crate) keep_alive: u16,
}

/// Opens `spec.count` idle connections (client addresses spread over 127.0.0.1 to
/// 127.0.0.`sources`), measures connects per second, the broker's CPU per connect and memory
/// per connection, holds them, and closes them.
pub(crate) async fn conns(target: &Target, spec: &ConnsSpec, report: &mut Report) -> Result<()> {
    raise_open_files_limit();
    let baseline = target.pid.map(rss_bytes).transpose()?;
    let progress = target.progress_bar("connecting", Some(spec.count as u64));
    let meter = CpuMeter::start(target.pid);
    let t0 = now_ns();
    let mut held: Vec<(OwnedReadHalf, OwnedWriteHalf)> = Vec::with_capacity(spec.count);
    let mut failed = 0u64;
    let mut first_error = None;
    let mut set = JoinSet::new();
    let mut next = 0usize;
    let pid = std::process::id();
    while next < spec.count || !set.is_empty() {
        while next < spec.count && set.len() < spec.concurrency.max(1) {
            if spec.rate > 0.0 {
                let due = t0 + (next as f64 / spec.rate * 1e9) as u64;
                let now = now_ns();
                if due > now {
                    if set.is_empty() {
                        tokio::time::sleep(Duration::from_nanos(due - now)).await;
                    } else {
                        break;
                    }
                }
            }
            let addr = target.addr;
            let source = wire::source_addr(addr, next, target.sources);
            let id = format!("bench-conn-{next}-{pid}");
            let keep_alive = spec.keep_alive;
            set.spawn(async move { wire::connect(addr, source, &id, keep_alive).await });
            next += 1;
        }
        let done = if spec.rate > 0.0 && next < spec.count {
            // Wake up for the next scheduled connect even when none completes.
            match tokio::time::timeout(Duration::from_millis(1), set.join_next()).await {
                Ok(d) => d,
                Err(_) => continue,
            }
        } else {
            set.join_next().await
        };
        match done.context("connection task")? {
            Ok(Ok(conn)) => {
                // Keep only the socket: the read buffer would cost the bench 64 KiB each.
                held.push((conn.rd, conn.wr));
                progress.inc(1);
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let connect_s = (now_ns() - t0) as f64 / 1e9;
    let mut cpu = Report::new("", target.threads);
    let broker_cpu = meter.finish(&mut cpu);
    progress.set_message("idle");
    tokio::time::sleep(spec.settle).await;
    let after = target.pid.map(rss_bytes).transpose()?;
    let n = held.len() as u64;
    report.int("requested", spec.count as u64, "conns");
    report.int("connected", n, "conns");
    report.int("failed", failed, "conns");
    if let Some(e) = first_error {
        report.text("first_error", e);
    }
    report.num("connect_s", connect_s, "s");
    report.num("connects_per_s", n as f64 / connect_s.max(1e-9), "conn/s");
    report.extend(cpu);
    if let Some(cpu) = broker_cpu
        && n > 0
    {
        report.num("broker_cpu_us_per_connect", cpu * 1e6 / n as f64, "us");
    }
    if let (Some(before), Some(after)) = (baseline, after) {
        report.int("broker_rss_before", before, "bytes");
        report.int("broker_rss_after", after, "bytes");
        if n > 0 {
            report.num(
                "broker_rss_per_conn",
                (after as f64 - before as f64) / n as f64,
                "bytes",
            );
        }
    }
    if !spec.hold.is_zero() {
        progress.set_message(format!("holding {n} connections"));
        tokio::time::sleep(spec.hold).await;
    }
    progress.finish_and_clear();
    // Closed with a reset (SO_LINGER 0) rather than a FIN: otherwise each run leaves its
    // connections in TIME_WAIT on the bench's side for a minute, and the next run's bind to
    // 127.0.0.N with port 0 searches the ephemeral range past them (seen: 400 connects/s and
    // the bench at 100% CPU in a run started right after another).
    for (_, wr) in &held {
        let _ = socket2::SockRef::from(wr.as_ref()).set_linger(Some(Duration::ZERO));
    }
    drop(held);
    Ok(())
}

/// Raises this process's open-files limit to its hard limit (each connection is a file).
fn raise_open_files_limit() {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
