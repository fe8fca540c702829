//! Publishers and subscribers, and the end-to-end flows built from them: `pub`, `sub`,
//! `fanin`, `fanout`, `pairs` and `latency` are all a set of publishers, a set of subscribers
//! and a rule saying which subscriber should see which publisher's messages.
//!
//! Counting: a publisher counts what it wrote (and at QoS 1 what the broker acknowledged); a
//! subscriber reads the stamp at the start of each payload (publisher id, sequence number,
//! send time), so it knows per publisher which messages it got, which it missed (a gap in the
//! sequence) and which it saw twice. At the end, every subscriber's expected count is known
//! from the publishers' totals, and "lost" is what never arrived.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use pigeon_proto::QoS;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::Target;
use crate::report::{CpuMeter, Report, now_ns};
use crate::wire::{self, Conn, Frame, Stamp, put_puback, put_publish};

/// Messages a publisher encodes into one write when it may send that many.
const BATCH: u64 = 64;
/// How often the coordinator looks at the counters (progress bar, end of drain).
const TICK: Duration = Duration::from_millis(100);
/// Ticks without any delivery after which what is in transit counts as dropped.
const WRITE_OFF_TICKS: u32 = 5;
/// Connections opened at once while setting a flow up.
const CONNECT_CONCURRENCY: usize = 64;

/// Counters the tasks of a flow share with its coordinator.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Publishers stop sending.
    stop: AtomicBool,
    /// Subscribers stop reading.
    finish: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    /// Deliveries each message published should cause (1 in fan-in and pairs, the number of
    /// subscribers in fan-out).
    factor: u64,
    /// Deliveries in transit (published, not yet received) allowed at once; 0 for no limit.
    backlog: u64,
    /// The same per subscriber.
    backlog_each: u64,
    /// Deliveries given up on (dropped by the broker), so that they stop counting as in
    /// transit.
    written_off: AtomicU64,
    /// Subscribers received something.
    progress: Notify,
    /// When every publisher has exactly one subscriber (pairs): how many of each publisher's
    /// messages its subscriber has, so that the backlog applies to each pair.
    delivered: Vec<AtomicU64>,
}

impl Shared {
    /// Deliveries in transit.
    fn in_transit(&self) -> u64 {
        (self.sent.load(Ordering::Relaxed) * self.factor)
            .saturating_sub(self.received.load(Ordering::Relaxed))
            .saturating_sub(self.written_off.load(Ordering::Relaxed))
    }
}

/// One publisher.
#[derive(Debug, Clone)]
pub(crate) struct PubSpec {
    /// Dense publisher id, written into every payload.
    pub(crate) id: u32,
    pub(crate) topic: Vec<u8>,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) payload: usize,
    /// Messages per second; 0 sends as fast as the socket takes them.
    pub(crate) rate: f64,
    /// Messages to send; 0 for no limit (until the flow's duration ends).
    pub(crate) limit: u64,
    /// QoS 1 messages sent but not yet acknowledged, at most.
    pub(crate) window: u64,
}

/// What a publisher did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PubStats {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
}

/// One subscriber.
#[derive(Debug, Clone)]
pub(crate) struct SubSpec {
    pub(crate) filters: Vec<String>,
    pub(crate) qos: QoS,
    /// The publishers (by id) whose messages this subscriber should receive.
    pub(crate) sources: Vec<u32>,
    /// Record end-to-end latencies.
    pub(crate) latency: bool,
}

/// What a subscriber saw.
#[derive(Debug)]
pub(crate) struct SubStats {
    /// PUBLISH packets received.
    pub(crate) received: u64,
    /// Distinct (publisher, sequence) pairs among them.
    pub(crate) unique: u64,
    /// Messages seen again or out of order.
    pub(crate) duplicates: u64,
    /// Messages skipped over: a later one of the same publisher came first.
    pub(crate) gaps: u64,
    /// Messages whose stamp names no publisher of this run (not from this bench).
    pub(crate) foreign: u64,
    pub(crate) latency: Option<Histogram<u64>>,
    pub(crate) last_ns: u64,
}

/// How many messages each subscriber should see, set once the publishers are done.
type Expected = Arc<AtomicU64>;

/// Waits about `wait` (then the caller looks at the time again), to within tens of
/// microseconds where it matters. tokio's timer counts whole milliseconds: a publisher at
/// 1,000 msg/s sleeping on it wakes every 2 to 4 ms and sends what fell due meanwhile as one
/// burst, which is not the fixed rate asked for. Waits shorter than that are slept on a
/// blocking thread, whose sleep the kernel's high-resolution timer ends.
async fn pace(wait: Duration) {
    const COARSE: Duration = Duration::from_millis(2);
    if wait > COARSE {
        tokio::time::sleep(wait - COARSE).await;
    } else if !wait.is_zero() {
        // A failed join (the runtime shutting down) leaves only the wait unfinished.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(wait)).await;
    }
}

async fn publisher(
    conn: Conn,
    spec: PubSpec,
    deadline: Option<Instant>,
    shared: Arc<Shared>,
    drain: Duration,
) -> Result<PubStats> {
    let Conn { rd, mut wr, frames } = conn;
    let acked = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());
    let reader = {
        let (acked, notify) = (Arc::clone(&acked), Arc::clone(&notify));
        tokio::spawn(async move {
            let (mut rd, mut frames) = (rd, frames);
            loop {
                match frames.fill(&mut rd).await {
                    Ok(true) => {}
                    Ok(false) | Err(_) => return,
                }
                let mut n = 0;
                let ok = frames.drain(|f| {
                    if let Frame::PubAck = f {
                        n += 1;
                    }
                    Ok(())
                });
                if n > 0 {
                    acked.fetch_add(n, Ordering::Release);
                    notify.notify_one();
                }
                if ok.is_err() {
                    return;
                }
            }
        })
    };
    let qos1 = spec.qos != QoS::AtMostOnce;
    let started = now_ns();
    let mut sent = 0u64;
    let mut pid = 0u16;
    let mut buf = BytesMut::with_capacity(BATCH as usize * (spec.payload + spec.topic.len() + 9));
    loop {
        if shared.stop.load(Ordering::Relaxed)
            || (spec.limit > 0 && sent >= spec.limit)
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        let mut n = BATCH;
        if spec.limit > 0 {
            n = n.min(spec.limit - sent);
        }
        if spec.rate > 0.0 {
            let elapsed = (now_ns() - started) as f64 / 1e9;
            // Messages due by now; the first goes out at once.
            let due = (elapsed * spec.rate) as u64 + 1;
            if due <= sent {
                let wait = (sent as f64 / spec.rate - elapsed).max(0.0);
                pace(Duration::from_secs_f64(wait)).await;
                continue;
            }
            n = n.min(due - sent);
        }
        if shared.backlog > 0 {
            let progress = shared.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let mut room =
                shared.backlog.saturating_sub(shared.in_transit()) / shared.factor.max(1);
            if let Some(d) = shared.delivered.get(spec.id as usize) {
                let own = sent.saturating_sub(d.load(Ordering::Relaxed));
                room = room.min(shared.backlog_each.saturating_sub(own));
            }
            if room == 0 {
                let _ = tokio::time::timeout(TICK, progress).await;
                continue;
            }
            n = n.min(room);
        }
        if qos1 {
            let inflight = sent - acked.load(Ordering::Acquire);
            if inflight >= spec.window {
                let _ = tokio::time::timeout(TICK, notify.notified()).await;
                continue;
            }
            n = n.min(spec.window - inflight);
        }
        let now = now_ns();
        for _ in 0..n {
            pid = pid.checked_add(1).unwrap_or(1);
            let stamp = Stamp {
                publisher: spec.id,
                // Sequence numbers wrap after 4 billion messages from one publisher.
                seq: sent as u32,
                sent_ns: now,
            };
            put_publish(
                &mut buf,
                &spec.topic,
                spec.qos,
                spec.retain,
                pid,
                stamp,
                spec.payload,
            );
            sent += 1;
        }
        wr.write_all(&buf).await.context("publish")?;
        buf.clear();
        shared.sent.fetch_add(n, Ordering::Relaxed);
    }
    if qos1 {
        let until = Instant::now() + drain;
        while acked.load(Ordering::Acquire) < sent && Instant::now() < until {
            let _ = tokio::time::timeout(TICK, notify.notified()).await;
        }
    }
    let stats = PubStats {
        sent,
        acked: if qos1 {
            acked.load(Ordering::Acquire)
        } else {
            0
        },
    };
    let _ = wr.write_all(&[0xE0, 0x00]).await;
    let _ = wr.shutdown().await;
    reader.abort();
    Ok(stats)
}

async fn subscriber(
    mut conn: Conn,
    spec: SubSpec,
    publishers: usize,
    expected: Expected,
    shared: Arc<Shared>,
) -> Result<SubStats> {
    let mut next = vec![0u32; publishers];
    let mut wanted = vec![false; publishers];
    for &s in &spec.sources {
        if let Some(w) = wanted.get_mut(s as usize) {
            *w = true;
        }
    }
    let count_all = spec.sources.is_empty();
    let mut stats = SubStats {
        received: 0,
        unique: 0,
        duplicates: 0,
        gaps: 0,
        foreign: 0,
        latency: spec
            .latency
            .then(|| Histogram::new_with_bounds(1, 60_000_000_000, 3))
            .transpose()?,
        last_ns: 0,
    };
    let mut acks = BytesMut::with_capacity(4096);
    loop {
        let counted = if count_all {
            stats.received
        } else {
            stats.unique
        };
        if shared.finish.load(Ordering::Relaxed) || counted >= expected.load(Ordering::Relaxed) {
            break;
        }
        match tokio::time::timeout(TICK, conn.frames.fill(&mut conn.rd)).await {
            Err(_) => continue,
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => bail!("the broker closed a subscriber's connection"),
            Ok(Err(e)) => return Err(e),
        }
        let now = now_ns();
        let before = stats.received;
        conn.frames.drain(|f| {
            if let Frame::Publish {
                qos, pid, payload, ..
            } = f
            {
                stats.received += 1;
                if qos > 0 {
                    put_puback(&mut acks, pid);
                }
                match Stamp::read(payload) {
                    Some(s) if wanted.get(s.publisher as usize) == Some(&true) => {
                        let n = &mut next[s.publisher as usize];
                        if s.seq >= *n {
                            stats.gaps += u64::from(s.seq - *n);
                            *n = s.seq.wrapping_add(1);
                            stats.unique += 1;
                        } else {
                            stats.duplicates += 1;
                        }
                        if let Some(h) = &mut stats.latency {
                            h.saturating_record(now.saturating_sub(s.sent_ns).max(1));
                        }
                    }
                    _ => stats.foreign += 1,
                }
            }
            Ok(())
        })?;
        if !acks.is_empty() {
            conn.wr.write_all(&acks).await.context("PUBACK")?;
            acks.clear();
        }
        if stats.received > before {
            shared
                .received
                .fetch_add(stats.received - before, Ordering::Relaxed);
            if let [only] = spec.sources[..]
                && let (Some(d), Some(n)) =
                    (shared.delivered.get(only as usize), next.get(only as usize))
            {
                d.store(u64::from(*n), Ordering::Relaxed);
            }
            shared.progress.notify_waiters();
            stats.last_ns = now;
        }
    }
    conn.disconnect().await;
    Ok(stats)
}

/// Opens `count` connections named `prefix-N` (N from 0), `CONNECT_CONCURRENCY` at a time.
pub(crate) async fn connect_many(target: &Target, prefix: &str, count: usize) -> Result<Vec<Conn>> {
    let mut out: Vec<Option<Conn>> = (0..count).map(|_| None).collect();
    let mut set = JoinSet::new();
    let mut next = 0;
    while next < count || !set.is_empty() {
        while next < count && set.len() < CONNECT_CONCURRENCY {
            let addr = target.addr;
            let source = wire::source_addr(addr, next, target.sources);
            let id = format!("{prefix}-{next}-{}", std::process::id());
            let n = next;
            set.spawn(async move { (n, wire::connect(addr, source, &id, 0).await) });
            next += 1;
        }
        if let Some(done) = set.join_next().await {
            let (n, conn) = done?;
            out[n] = Some(conn.with_context(|| format!("{prefix} connection {n}"))?);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// A flow: who publishes, who subscribes, for how long.
#[derive(Debug)]
pub(crate) struct Flow {
    pub(crate) publishers: Vec<PubSpec>,
    pub(crate) subscribers: Vec<SubSpec>,
    /// How long publishers send (unless each has a limit and reaches it first).
    pub(crate) duration: Option<Duration>,
    /// After the publishers stop: how long subscribers may go without a message before the
    /// rest counts as lost.
    pub(crate) drain: Duration,
    /// Deliveries in transit allowed per subscriber (closed loop); 0 publishes open loop,
    /// whatever the broker can take (and drop).
    pub(crate) backlog: u64,
}

/// The outcome of a flow, merged over publishers and subscribers.
#[derive(Debug)]
pub(crate) struct FlowResult {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) unique: u64,
    pub(crate) duplicates: u64,
    pub(crate) gaps: u64,
    pub(crate) foreign: u64,
    /// Seconds from the first publish to the last message received.
    pub(crate) elapsed: f64,
    /// Seconds the publishers were sending.
    pub(crate) publish_time: f64,
    pub(crate) latency: Option<Histogram<u64>>,
    pub(crate) broker_cpu: Option<f64>,
}

/// Runs `flow` against `target` and adds what it measured to `report`.
pub(crate) async fn run(target: &Target, flow: Flow, report: &mut Report) -> Result<FlowResult> {
    let npubs = flow.publishers.len();
    let progress = target.progress_bar("connecting", None);
    let sub_conns = connect_many(target, "bench-sub", flow.subscribers.len()).await?;
    let pub_conns = connect_many(target, "bench-pub", npubs).await?;
    let nsubs = flow.subscribers.len() as u64;
    let routes: usize = flow.subscribers.iter().map(|s| s.sources.len()).sum();
    let factor = routes.checked_div(npubs).unwrap_or(1).max(1) as u64;
    // Pairs: each publisher has one subscriber, and each subscriber one publisher.
    let paired = npubs > 0
        && flow.subscribers.len() == npubs
        && flow.subscribers.iter().all(|s| s.sources.len() == 1);
    let shared = Arc::new(Shared {
        factor,
        backlog: if nsubs == 0 { 0 } else { flow.backlog * nsubs },
        backlog_each: flow.backlog,
        delivered: if paired {
            (0..npubs).map(|_| AtomicU64::new(0)).collect()
        } else {
            Vec::new()
        },
        ..Shared::default()
    });
    let mut subs = JoinSet::new();
    let mut sub_expected: Vec<(Expected, Vec<u32>)> = Vec::new();
    for (mut conn, spec) in sub_conns.into_iter().zip(flow.subscribers) {
        conn.subscribe(&spec.filters, spec.qos).await?;
        let expected = Arc::new(AtomicU64::new(u64::MAX));
        sub_expected.push((Arc::clone(&expected), spec.sources.clone()));
        let shared = Arc::clone(&shared);
        subs.spawn(subscriber(conn, spec, npubs, expected, shared));
    }
    progress.set_message("publishing");
    let meter = CpuMeter::start(target.pid);
    let start_ns = now_ns();
    let deadline = flow.duration.map(|d| Instant::now() + d);
    let mut pubs = JoinSet::new();
    for (conn, spec) in pub_conns.into_iter().zip(flow.publishers) {
        let shared = Arc::clone(&shared);
        let id = spec.id;
        pubs.spawn(async move {
            (
                id,
                publisher(conn, spec, deadline, shared, flow.drain).await,
            )
        });
    }
    let mut per_pub = vec![PubStats::default(); npubs];
    let mut tick = tokio::time::interval(TICK);
    let (mut seen, mut quiet_ticks) = (0, 0);
    loop {
        tokio::select! {
            done = pubs.join_next() => match done {
                None => break,
                Some(r) => {
                    let (id, stats) = r?;
                    per_pub[id as usize] = stats?;
                }
            },
            _ = tick.tick() => {
                let received = shared.received.load(Ordering::Relaxed);
                progress.set_message(format!(
                    "sent {} received {received}",
                    shared.sent.load(Ordering::Relaxed),
                ));
                // Nothing arrived for a while with deliveries in transit: the broker dropped
                // them, so they no longer hold the publishers back.
                quiet_ticks = if received == seen { quiet_ticks + 1 } else { 0 };
                if quiet_ticks >= WRITE_OFF_TICKS && shared.backlog > 0 {
                    shared.written_off.fetch_add(shared.in_transit(), Ordering::Relaxed);
                    quiet_ticks = 0;
                }
                seen = received;
            }
        }
    }
    let publish_time = (now_ns() - start_ns) as f64 / 1e9;
    let mut expected_total = 0;
    for (expected, sources) in &sub_expected {
        let n: u64 = sources.iter().map(|&s| per_pub[s as usize].sent).sum();
        expected_total += n;
        expected.store(n, Ordering::Relaxed);
    }
    // Wait for the subscribers; the moment they stop making progress (or have everything)
    // is where the CPU figures are taken, so an idle drain does not dilute them.
    progress.set_message("draining");
    let mut last = shared.received.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    let mut cpu_report = Report::new("", target.threads);
    let mut broker_cpu = meter.finish(&mut cpu_report);
    let mut results = Vec::new();
    loop {
        tokio::select! {
            done = subs.join_next() => match done {
                None => break,
                Some(r) => results.push(r??),
            },
            _ = tick.tick() => {
                let now = shared.received.load(Ordering::Relaxed);
                progress.set_message(format!("draining: received {now} of {expected_total}"));
                if now != last {
                    last = now;
                    quiet_since = Instant::now();
                    cpu_report = Report::new("", target.threads);
                    broker_cpu = meter.finish(&mut cpu_report);
                } else if quiet_since.elapsed() >= flow.drain {
                    shared.finish.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    if !shared.finish.load(Ordering::Relaxed) {
        // Every subscriber finished on its count: this is the end of the measurement.
        cpu_report = Report::new("", target.threads);
        broker_cpu = meter.finish(&mut cpu_report);
    }
    shared.stop.store(true, Ordering::Relaxed);
    progress.finish_and_clear();

    let mut latency: Option<Histogram<u64>> = None;
    let mut r = FlowResult {
        sent: per_pub.iter().map(|p| p.sent).sum(),
        acked: per_pub.iter().map(|p| p.acked).sum(),
        expected: expected_total,
        received: 0,
        unique: 0,
        duplicates: 0,
        gaps: 0,
        foreign: 0,
        elapsed: 0.0,
        publish_time,
        latency: None,
        broker_cpu,
    };
    let mut last_ns = start_ns;
    for s in results {
        r.received += s.received;
        r.unique += s.unique;
        r.duplicates += s.duplicates;
        r.gaps += s.gaps;
        r.foreign += s.foreign;
        last_ns = last_ns.max(s.last_ns);
        if let Some(h) = s.latency {
            match &mut latency {
                Some(all) => all.add(&h)?,
                None => latency = Some(h),
            }
        }
    }
    r.latency = latency;
    r.elapsed = (last_ns - start_ns) as f64 / 1e9;

    report.int("sent", r.sent, "msgs");
    if r.acked > 0 || r.sent == 0 || per_pub.is_empty() {
        report.int("acked", r.acked, "msgs");
    }
    report.int("expected", r.expected, "msgs");
    report.int("received", r.received, "msgs");
    report.int("lost", r.expected.saturating_sub(r.unique), "msgs");
    report.int("lost_in_gaps", r.gaps, "msgs");
    let lost = r.expected.saturating_sub(r.unique);
    if lost > 0 && per_pub.iter().any(|p| p.acked > 0) {
        report.warn(format!(
            "{lost} QoS 1 messages acknowledged to their publisher never reached a subscriber"
        ));
    }
    report.int("duplicates", r.duplicates, "msgs");
    if r.foreign > 0 {
        report.int("foreign", r.foreign, "msgs");
    }
    report.num("publish_s", r.publish_time, "s");
    report.num("elapsed_s", r.elapsed, "s");
    report.num(
        "publish_rate",
        r.sent as f64 / r.publish_time.max(1e-9),
        "msg/s",
    );
    report.num(
        "throughput",
        r.received as f64 / r.elapsed.max(1e-9),
        "msg/s",
    );
    if let Some(h) = &r.latency {
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        report.num("latency_p50_us", us(0.5), "us");
        report.num("latency_p99_us", us(0.99), "us");
        report.num("latency_p999_us", us(0.999), "us");
        report.num("latency_max_us", h.max() as f64 / 1000.0, "us");
    }
    report.extend(cpu_report);
    if let Some(cpu) = r.broker_cpu
        && r.received > 0
    {
        report.num("broker_cpu_us_per_msg", cpu * 1e6 / r.received as f64, "us");
    }
    Ok(r)
}

/// The `sub` command: `subscribers` listen for `duration` (or until each has `limit` messages)
/// to whatever is published; every message counts.
pub(crate) async fn listen(
    target: &Target,
    subscribers: Vec<SubSpec>,
    duration: Duration,
    limit: Option<u64>,
    report: &mut Report,
) -> Result<()> {
    let progress = target.progress_bar("connecting", None);
    let conns = connect_many(target, "bench-sub", subscribers.len()).await?;
    let shared = Arc::new(Shared::default());
    let mut subs = JoinSet::new();
    for (mut conn, mut spec) in conns.into_iter().zip(subscribers) {
        conn.subscribe(&spec.filters, spec.qos).await?;
        spec.sources.clear();
        let expected = Arc::new(AtomicU64::new(limit.unwrap_or(u64::MAX)));
        subs.spawn(subscriber(conn, spec, 0, expected, Arc::clone(&shared)));
    }
    let meter = CpuMeter::start(target.pid);
    let start_ns = now_ns();
    let deadline = tokio::time::Instant::now() + duration;
    let mut tick = tokio::time::interval(TICK);
    let mut results = Vec::new();
    loop {
        tokio::select! {
            done = subs.join_next() => match done {
                None => break,
                Some(r) => results.push(r??),
            },
            _ = tick.tick() => {
                progress.set_message(format!(
                    "received {}",
                    shared.received.load(Ordering::Relaxed)
                ));
                if tokio::time::Instant::now() >= deadline {
                    shared.finish.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    progress.finish_and_clear();
    let elapsed = (now_ns() - start_ns) as f64 / 1e9;
    let received: u64 = results.iter().map(|s| s.received).sum();
    report.int("received", received, "msgs");
    report.num("elapsed_s", elapsed, "s");
    report.num("throughput", received as f64 / elapsed.max(1e-9), "msg/s");
    if let Some(cpu) = meter.finish(report)
        && received > 0
    {
        report.num("broker_cpu_us_per_msg", cpu * 1e6 / received as f64, "us");
    }
    Ok(())
}
