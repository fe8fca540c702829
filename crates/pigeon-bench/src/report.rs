//! Measurements of processes (`/proc`), the clock, and the summary a run prints.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Map, Value};

/// Linux reports CPU times in `/proc/*/stat` in clock ticks of USER_HZ, which the kernel's
/// ABI fixes at 100 per second on every architecture it exposes them on.
const TICKS_PER_SECOND: f64 = 100.0;

static START: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call: the time base of payload stamps (publishers and
/// subscribers are in the same process, so one monotonic clock serves both ends).
pub(crate) fn now_ns() -> u64 {
    let start = START.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years.
    start.elapsed().as_nanos() as u64
}

/// CPU seconds (user + system) used so far by process `pid` (`None`: this process).
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Result<f64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / TICKS_PER_SECOND)
}

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc status")?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

/// CPU use of this process and, when known, of the broker over one measured interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMeter {
    started: Instant,
    own: f64,
    broker: Option<(u32, f64)>,
}

impl CpuMeter {
    pub(crate) fn start(broker: Option<u32>) -> CpuMeter {
        CpuMeter {
            started: Instant::now(),
            own: cpu_seconds(None).unwrap_or(0.0),
            broker: broker.and_then(|p| cpu_seconds(Some(p)).ok().map(|c| (p, c))),
        }
    }

    /// Wall time since start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Adds `bench_cpu_percent` (and `broker_cpu_s`, `broker_cpu_percent` when the broker's PID
    /// is known) to `report`; returns the broker's CPU seconds.
    pub(crate) fn finish(&self, report: &mut Report) -> Option<f64> {
        let wall = self.elapsed().as_secs_f64().max(1e-9);
        let own = cpu_seconds(None).unwrap_or(self.own) - self.own;
        report.num("bench_cpu_percent", 100.0 * own / wall, "%");
        let threads = report.threads.max(1) as f64;
        if own / wall > 0.9 * threads {
            report.warn(format!(
                "pigeon-bench used {:.0}% CPU on {threads} threads: the result may be bounded by \
                 the load generator, not the broker",
                100.0 * own / wall
            ));
        }
        let (pid, before) = self.broker?;
        let used = cpu_seconds(Some(pid)).ok()? - before;
        report.num("broker_cpu_s", used, "s");
        report.num("broker_cpu_percent", 100.0 * used / wall, "%");
        Some(used)
    }
}

/// What a run found: named figures in order, printed as a table or as JSON.
#[derive(Debug)]
pub(crate) struct Report {
    scenario: String,
    /// Worker threads of the bench's runtime (to judge its own CPU use).
    pub(crate) threads: usize,
    rows: Vec<(String, Value, &'static str)>,
    warnings: Vec<String>,
}

impl Report {
    pub(crate) fn new(scenario: &str, threads: usize) -> Report {
        Report {
            scenario: scenario.to_owned(),
            threads,
            rows: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// An integer figure.
    pub(crate) fn int(&mut self, key: &str, value: u64, unit: &'static str) {
        self.rows.push((key.to_owned(), Value::from(value), unit));
    }

    /// A real figure (NaN and infinities become null in JSON).
    pub(crate) fn num(&mut self, key: &str, value: f64, unit: &'static str) {
        let v = serde_json::Number::from_f64((value * 1000.0).round() / 1000.0)
            .map_or(Value::Null, Value::Number);
        self.rows.push((key.to_owned(), v, unit));
    }

    /// A text figure (parameters such as the QoS or the target).
    pub(crate) fn text(&mut self, key: &str, value: impl Into<String>) {
        self.rows
            .push((key.to_owned(), Value::String(value.into()), ""));
    }

    /// Appends the figures and warnings of `other`.
    pub(crate) fn extend(&mut self, other: Report) {
        self.rows.extend(other.rows);
        self.warnings.extend(other.warnings);
    }

    pub(crate) fn warn(&mut self, warning: String) {
        self.warnings.push(warning);
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut results = Map::new();
        for (k, v, _) in &self.rows {
            results.insert(k.clone(), v.clone());
        }
        let mut top = Map::new();
        top.insert("scenario".to_owned(), Value::String(self.scenario.clone()));
        top.insert("results".to_owned(), Value::Object(results));
        top.insert(
            "warnings".to_owned(),
            Value::Array(self.warnings.iter().cloned().map(Value::String).collect()),
        );
        Value::Object(top)
    }

    pub(crate) fn to_table(&self) -> String {
        let width = self.rows.iter().map(|(k, ..)| k.len()).max().unwrap_or(0);
        let mut out = format!("pigeon-bench {}\n", self.scenario);
        for (k, v, unit) in &self.rows {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => match n.as_u64() {
                    Some(i) => group_thousands(i),
                    None => format!("{:.3}", n.as_f64().unwrap_or(f64::NAN)),
                },
                other => other.to_string(),
            };
            let _ = writeln!(out, "  {k:<width$}  {value:>16} {unit}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_memory() {
        assert!(cpu_seconds(None).unwrap() >= 0.0);
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn table_and_json_hold_the_same_figures() {
        let mut r = Report::new("fanin", 1);
        r.int("received", 1_234_567, "msgs");
        r.num("rate", 12.3456, "msg/s");
        r.text("qos", "1");
        let t = r.to_table();
        assert!(t.contains("1,234,567 msgs"), "{t}");
        assert!(t.contains("12.346 msg/s"), "{t}");
        let j = r.to_json();
        assert_eq!(j["results"]["received"], 1_234_567);
        assert_eq!(j["results"]["qos"], "1");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
    }
}
