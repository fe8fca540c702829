//! The broker's log, as Mosquitto writes it.
//!
//! Every line has a type ([`LogTypes`]: debug for per-packet lines, notice for connections,
//! subscribe and unsubscribe for those requests, error, warning, information). `log_type`
//! chooses the types written; `log_dest` the destinations, any number of them at once:
//!
//! - `stdout`, `stderr`: one line per message.
//! - `file PATH`: appended to, created with mode 0600; [`Log::reopen`] closes and reopens it
//!   (for SIGHUP, so that log rotation works).
//! - `syslog`: RFC 3164 datagrams to `/dev/log`, facility `daemon` (or `local0`..`local7` with
//!   `log_facility`), ident `pigeon`, severity by type as Mosquitto maps them. Nothing is sent,
//!   and nothing is said, when there is no `/dev/log`.
//! - `topic`: each line published (QoS 2, not retained) to `$SYS/broker/log/E`, `W`, `N`, `I`,
//!   `M/subscribe`, `M/unsubscribe`, through a hook the server sets once the broker exists
//!   ([`Log::set_topic_hook`]). Debug lines never go there.
//!
//! A line is `SECONDS: message` (Mosquitto's `log_timestamp true`, the default), or with
//! `log_timestamp_format` the local time in that `strftime` format ([`strftime`] implements
//! glibc's conversions), or the bare message with `log_timestamp false`. Like Mosquitto, a line
//! is cut at 999 bytes.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike as _, Local, Offset as _, TimeZone, Timelike as _, Utc};

use crate::clock;
use crate::config::{LogDest, LogTypes};

/// The longest line written, in bytes: Mosquitto formats into a 1000-byte buffer.
const MAX_LINE: usize = 999;

/// Where the system logger listens.
const SYSLOG_PATH: &str = "/dev/log";

/// The syslog facility `daemon`.
const FACILITY_DAEMON: u8 = 3;

/// The syslog facility `local0`; `local7` is 23.
const FACILITY_LOCAL0: u8 = 16;

/// What to log and where: Mosquitto's logging directives, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `log_type`: the types written (`-v` sets every type).
    pub types: LogTypes,
    /// `log_dest`: the destinations.
    pub dest: LogDest,
    /// `log_timestamp`: whether lines start with a timestamp.
    pub timestamp: bool,
    /// `log_timestamp_format`: a `strftime` format for the timestamp, in local time; `None`
    /// for seconds since the Unix epoch.
    pub timestamp_format: Option<String>,
    /// `log_facility`: syslog facility `localN` instead of `daemon`.
    pub facility: Option<u8>,
    /// `connection_messages`: whether connections and disconnections are logged.
    pub connection_messages: bool,
}

impl Default for LogSettings {
    /// Mosquitto's defaults: error, warning, notice and information to standard error, with
    /// Unix timestamps and connection messages.
    fn default() -> Self {
        LogSettings {
            types: LogTypes::DEFAULT,
            dest: LogDest::default(),
            timestamp: true,
            timestamp_format: None,
            facility: None,
            connection_messages: true,
        }
    }
}

/// Publishes a log line: `(topic, line)`. Set with [`Log::set_topic_hook`].
pub type TopicHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// The `$SYS` topic for a line of type `kind`; `None` for the types never published there
/// (debug, internal).
pub fn topic_for(kind: LogTypes) -> Option<&'static str> {
    Some(match kind {
        LogTypes::DEBUG | LogTypes::INTERNAL => return None,
        LogTypes::WARNING => "$SYS/broker/log/W",
        LogTypes::NOTICE => "$SYS/broker/log/N",
        LogTypes::INFORMATION => "$SYS/broker/log/I",
        LogTypes::SUBSCRIBE => "$SYS/broker/log/M/subscribe",
        LogTypes::UNSUBSCRIBE => "$SYS/broker/log/M/unsubscribe",
        LogTypes::WEBSOCKETS => "$SYS/broker/log/WS",
        // Errors, and anything unexpected, as Mosquitto does.
        _ => "$SYS/broker/log/E",
    })
}

/// The syslog severity (RFC 5424 numbering) of a line of type `kind`.
pub fn syslog_severity(kind: LogTypes) -> u8 {
    const ERR: u8 = 3;
    const WARNING: u8 = 4;
    const NOTICE: u8 = 5;
    const INFO: u8 = 6;
    const DEBUG: u8 = 7;
    match kind {
        LogTypes::DEBUG | LogTypes::WEBSOCKETS => DEBUG,
        LogTypes::WARNING => WARNING,
        LogTypes::NOTICE | LogTypes::SUBSCRIBE | LogTypes::UNSUBSCRIBE => NOTICE,
        LogTypes::INFORMATION => INFO,
        _ => ERR,
    }
}

thread_local! {
    /// Set while this thread runs the topic hook, so that a line logged from inside it is not
    /// published again.
    static IN_TOPIC_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// The log every part of the broker writes to.
///
/// Its settings can change while it runs ([`Log::reconfigure`], on SIGHUP). The check made
/// before every line, [`Log::enabled`], reads one atomic; the rest of the settings are read
/// only for lines that are written.
pub struct Log {
    /// The types written, or none when there is no destination: the hot check.
    mask: AtomicU16,
    /// `connection_messages`.
    connection_messages: AtomicBool,
    settings: RwLock<Arc<LogSettings>>,
    file: Mutex<Option<File>>,
    /// The system logger, connected on first use while `log_dest syslog` is in force.
    syslog: Mutex<Syslog>,
    topic: RwLock<Option<TopicHook>>,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("settings", &self.settings())
            .finish_non_exhaustive()
    }
}

impl Default for Log {
    /// Mosquitto's default log: to standard error.
    fn default() -> Self {
        Log::open(LogSettings::default())
    }
}

/// The types `settings` writes somewhere: none without a destination.
fn mask_of(settings: &LogSettings) -> u16 {
    if settings.dest.is_none() {
        0
    } else {
        settings.types.bits()
    }
}

/// The syslog facility `settings` asks for.
fn facility_of(settings: &LogSettings) -> u8 {
    settings
        .facility
        .map_or(FACILITY_DAEMON, |n| FACILITY_LOCAL0 + n.min(7))
}

impl Log {
    /// Opens the destinations `settings` names. A log file that cannot be opened is reported on
    /// standard error, as Mosquitto does, and the other destinations are kept.
    pub fn open(settings: LogSettings) -> Log {
        Log::open_with_syslog(settings, Path::new(SYSLOG_PATH))
    }

    fn open_with_syslog(settings: LogSettings, syslog_path: &Path) -> Log {
        let log = Log {
            mask: AtomicU16::new(mask_of(&settings)),
            connection_messages: AtomicBool::new(settings.connection_messages),
            syslog: Mutex::new(Syslog::new(syslog_path.to_owned(), facility_of(&settings))),
            settings: RwLock::new(Arc::new(settings)),
            file: Mutex::new(None),
            topic: RwLock::new(None),
        };
        if let Err(path) = log.open_file() {
            log.unopened(&path);
        }
        log
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<LogSettings> {
        Arc::clone(&self.settings.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes new settings (a configuration reload), as Mosquitto closes and opens its log
    /// again: the log file is closed and opened afresh (another one if `log_dest file` names
    /// another), the system logger is reconnected with the new facility, and every later line
    /// follows the new types, destinations and timestamp format.
    pub fn reconfigure(&self, settings: LogSettings) {
        let facility = facility_of(&settings);
        let mask = mask_of(&settings);
        let connection_messages = settings.connection_messages;
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
        self.mask.store(mask, Ordering::Relaxed);
        self.connection_messages
            .store(connection_messages, Ordering::Relaxed);
        lock(&self.syslog).reconfigure(facility);
        if let Err(path) = self.open_file() {
            self.unopened(&path);
        }
    }

    /// Whether lines of type `kind` are written anywhere (to skip formatting costly ones).
    pub fn enabled(&self, kind: LogTypes) -> bool {
        let bits = kind.bits();
        bits != 0 && self.mask.load(Ordering::Relaxed) & bits == bits
    }

    /// Whether connections and disconnections are logged (`connection_messages`).
    pub fn connection_messages(&self) -> bool {
        self.connection_messages.load(Ordering::Relaxed)
    }

    /// Sets where `topic` lines go: the server publishes them on the broker.
    pub fn set_topic_hook(&self, hook: TopicHook) {
        *self.topic.write().unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }

    /// Closes and reopens the log file (on SIGHUP), and reconnects to the system logger.
    ///
    /// # Errors
    /// When the file cannot be opened again; that is logged too, and the other destinations
    /// carry on.
    pub fn reopen(&self) -> io::Result<()> {
        lock(&self.syslog).disconnect();
        match self.open_file() {
            Ok(()) => Ok(()),
            Err(path) => {
                self.unopened(&path);
                Err(io::Error::other(format!(
                    "unable to open log file {} for writing",
                    path.display()
                )))
            }
        }
    }

    /// Writes `message` as a line of type `kind`, if that type is logged.
    pub fn log(&self, kind: LogTypes, message: impl fmt::Display) {
        if self.enabled(kind) {
            self.write(kind, clock::wall(), &message);
        }
    }

    /// Like [`log`](Self::log), but only with `connection_messages true`: the lines about
    /// clients connecting and disconnecting.
    pub fn connection(&self, kind: LogTypes, message: impl fmt::Display) {
        if self.connection_messages() {
            self.log(kind, message);
        }
    }

    /// A debug line (per-packet detail).
    pub fn debug(&self, message: impl fmt::Display) {
        self.log(LogTypes::DEBUG, message);
    }

    /// An error line.
    pub fn error(&self, message: impl fmt::Display) {
        self.log(LogTypes::ERROR, message);
    }

    /// A warning line.
    pub fn warning(&self, message: impl fmt::Display) {
        self.log(LogTypes::WARNING, message);
    }

    /// A notice line.
    pub fn notice(&self, message: impl fmt::Display) {
        self.log(LogTypes::NOTICE, message);
    }

    /// An information line.
    pub fn info(&self, message: impl fmt::Display) {
        self.log(LogTypes::INFORMATION, message);
    }

    /// A subscription line (`CLIENT QOS FILTER`).
    pub fn subscribe(&self, message: impl fmt::Display) {
        self.log(LogTypes::SUBSCRIBE, message);
    }

    /// An unsubscription line (`CLIENT FILTER`).
    pub fn unsubscribe(&self, message: impl fmt::Display) {
        self.log(LogTypes::UNSUBSCRIBE, message);
    }

    fn write(&self, kind: LogTypes, now: SystemTime, message: &dyn fmt::Display) {
        let settings = self.settings();
        let mut text = format_line(&settings, now, message);
        text.push('\n');
        let dest = &settings.dest;
        // A log that cannot be written has nowhere to say so: write errors are ignored.
        if dest.stdout {
            let _ = io::stdout().lock().write_all(text.as_bytes());
        }
        if dest.stderr {
            let _ = io::stderr().lock().write_all(text.as_bytes());
        }
        if dest.file.is_some()
            && let Some(file) = lock(&self.file).as_mut()
        {
            let _ = file.write_all(text.as_bytes());
        }
        let line = &text[..text.len() - 1];
        if dest.syslog {
            lock(&self.syslog).send(syslog_severity(kind), now, line);
        }
        if dest.topic
            && let Some(topic) = topic_for(kind)
        {
            self.publish(topic, line);
        }
    }

    fn publish(&self, topic: &str, line: &str) {
        if IN_TOPIC_HOOK.get() {
            return;
        }
        let hook = self
            .topic
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            IN_TOPIC_HOOK.set(true);
            hook(topic, line);
            IN_TOPIC_HOOK.set(false);
        }
    }

    /// (Re)opens the log file the settings name, closing the one open; on failure, the path.
    fn open_file(&self) -> Result<(), PathBuf> {
        let settings = self.settings();
        let mut slot = lock(&self.file);
        // Close first, so that a rotated file is let go even when the new one cannot be made.
        *slot = None;
        let Some(path) = &settings.dest.file else {
            return Ok(());
        };
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|_| path.clone())?;
        *slot = Some(file);
        Ok(())
    }

    /// Reports a log file that cannot be opened, on standard error and the other destinations.
    fn unopened(&self, path: &Path) {
        let message = format!(
            "Error: Unable to open log file {} for writing.",
            path.display()
        );
        let settings = self.settings();
        if !settings.dest.stderr {
            let line = format_line(&settings, clock::wall(), &message);
            let _ = writeln!(io::stderr().lock(), "{line}");
        }
        self.error(message);
    }
}

/// An I/O error as C's `strerror` words it ("Address already in use"), without Rust's
/// " (os error N)": for the lines Mosquitto words that way.
pub fn strerror(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(end) if error.raw_os_error().is_some() => text[..end].to_owned(),
        _ => text,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One log line, without its newline: the timestamp as `settings` asks, then `message`, cut at
/// 999 bytes (`MAX_LINE`).
pub fn format_line(settings: &LogSettings, now: SystemTime, message: &dyn fmt::Display) -> String {
    let mut line = String::with_capacity(80);
    if settings.timestamp {
        line = timestamp(now, settings.timestamp_format.as_deref());
        if line.len() < MAX_LINE - 2 {
            line.push_str(": ");
        }
    }
    let _ = write!(line, "{message}");
    if line.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// The timestamp of a line: seconds since the Unix epoch, or the local time in `format`.
/// Like Mosquitto, "Time error" when the format gives nothing or too much.
pub fn timestamp(now: SystemTime, format: Option<&str>) -> String {
    match format {
        None => unix_seconds(now).to_string(),
        Some(format) => {
            let text = strftime(format, &BrokenDownTime::local(now));
            if text.is_empty() || text.len() > MAX_LINE {
                "Time error".to_owned()
            } else {
                text
            }
        }
    }
}

fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A calendar time, as C's `struct tm` holds it, for [`strftime`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenDownTime {
    /// The year (2026).
    pub year: i32,
    /// The month, 1 to 12.
    pub month: u32,
    /// The day of the month, 1 to 31.
    pub day: u32,
    /// The hour, 0 to 23.
    pub hour: u32,
    /// The minute, 0 to 59.
    pub minute: u32,
    /// The second, 0 to 60.
    pub second: u32,
    /// The day of the week, 0 (Sunday) to 6.
    pub weekday: u32,
    /// The day of the year, 0 to 365.
    pub yday: u32,
    /// The offset from UTC in seconds (east positive).
    pub utc_offset: i32,
    /// The zone's abbreviation.
    pub zone: String,
    /// Seconds since the Unix epoch.
    pub epoch: i64,
}

impl BrokenDownTime {
    /// `now` in the local time zone (`TZ`, else `/etc/localtime`).
    pub fn local(now: SystemTime) -> Self {
        Self::from_chrono(&DateTime::<Local>::from(now))
    }

    /// `now` in UTC.
    pub fn utc(now: SystemTime) -> Self {
        Self::from_chrono(&DateTime::<Utc>::from(now))
    }

    fn from_chrono<Tz: TimeZone>(t: &DateTime<Tz>) -> Self {
        let utc_offset = t.offset().fix().local_minus_utc();
        BrokenDownTime {
            year: t.year(),
            month: t.month(),
            day: t.day(),
            hour: t.hour(),
            minute: t.minute(),
            // A leap second shows as 60, as in C.
            second: t.second() + u32::from(t.nanosecond() >= 1_000_000_000),
            weekday: t.weekday().num_days_from_sunday(),
            yday: t.ordinal0(),
            utc_offset,
            // chrono knows the offset, not the zone's name.
            zone: if utc_offset == 0 {
                "UTC".to_owned()
            } else {
                offset_name(utc_offset)
            },
            epoch: t.timestamp(),
        }
    }

    /// The ISO 8601 week-based year and week number (`%G`, `%V`).
    fn iso_week(&self) -> (i32, u32) {
        let year = self.year;
        let wday = i64::from(self.weekday);
        let yday = i64::from(self.yday);
        // Days from the Monday of week 1 (the week with the year's first Thursday) to `yday`;
        // 378, a multiple of 7, keeps the remainder's operand positive.
        let since_week1 = |yday: i64| yday - (yday - wday + 4 + 378) % 7 + 3;
        let week = |days: i64| u32::try_from(days / 7 + 1).unwrap_or(0);
        let days = since_week1(yday);
        if days < 0 {
            // Still in the last week of the previous year.
            let previous_len = if is_leap(year - 1) { 366 } else { 365 };
            return (year - 1, week(since_week1(yday + previous_len)));
        }
        let year_len = if is_leap(year) { 366 } else { 365 };
        let next = since_week1(yday - year_len);
        if next >= 0 {
            // Already in week 1 of the next year.
            return (year + 1, week(next));
        }
        (year, week(days))
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// A zone without a known abbreviation, as tzdata names them: `+01`, `-0330`.
fn offset_name(offset: i32) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let minutes = offset.unsigned_abs() / 60;
    if minutes.is_multiple_of(60) {
        format!("{sign}{:02}", minutes / 60)
    } else {
        format!("{sign}{:02}{:02}", minutes / 60, minutes % 60)
    }
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Formats `t` as C's `strftime(3)` does with glibc in the C locale: the POSIX conversions
/// with glibc's extensions (`%k`, `%l`, `%P`, `%s`, ...), the flags `_`, `-`, `0`, `^` and `#`,
/// a field width, and the `E` and `O` modifiers (which change nothing in the C locale). An
/// unknown conversion is copied as it stands.
pub fn strftime(format: &str, t: &BrokenDownTime) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut rest = format;
    while let Some(percent) = rest.find('%') {
        out.push_str(&rest[..percent]);
        let spec = &rest[percent..];
        let consumed = conversion(spec, t, &mut out);
        rest = &spec[consumed..];
    }
    out.push_str(rest);
    out
}

/// Padding a conversion asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pad {
    Default,
    None,
    Space,
    Zero,
}

/// Formats the conversion at the start of `spec` (which starts with `%`) into `out`; returns
/// how many bytes of `spec` it took.
fn conversion(spec: &str, t: &BrokenDownTime, out: &mut String) -> usize {
    let bytes = spec.as_bytes();
    let mut i = 1;
    let mut pad = Pad::Default;
    let mut upper = false;
    let mut swap_case = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'_' => pad = Pad::Space,
            b'-' => pad = Pad::None,
            b'0' => pad = Pad::Zero,
            b'^' => upper = true,
            b'#' => swap_case = true,
            _ => break,
        }
        i += 1;
    }
    let mut width: Option<usize> = None;
    while let Some(&b) = bytes.get(i)
        && b.is_ascii_digit()
    {
        width = Some(width.unwrap_or(0) * 10 + usize::from(b - b'0'));
        i += 1;
    }
    if matches!(bytes.get(i), Some(b'E' | b'O')) {
        i += 1;
    }
    let Some(c) = spec[i..].chars().next() else {
        // A lone `%` at the end is written as it stands.
        out.push_str(spec);
        return spec.len();
    };
    let taken = i + c.len_utf8();
    let number = |out: &mut String, value: i64, default_width: usize, space: bool| {
        let fill = match pad {
            Pad::Default if space => Some(' '),
            Pad::Default | Pad::Zero => Some('0'),
            Pad::Space => Some(' '),
            Pad::None => None,
        };
        let width = match (fill, width) {
            (None, _) => 0,
            (Some(_), Some(w)) => w,
            (Some(_), None) => default_width,
        };
        push_number(out, value, width, fill.unwrap_or('0'));
    };
    let text = |out: &mut String, s: &str, swap_to_lower: bool| {
        let s = if upper || (swap_case && !swap_to_lower) {
            s.to_ascii_uppercase()
        } else if swap_case {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        };
        let fill = if pad == Pad::Zero { '0' } else { ' ' };
        for _ in s.len()..width.unwrap_or(0) {
            out.push(fill);
        }
        out.push_str(&s);
    };
    let composite = |out: &mut String, format: &str| {
        let s = strftime(format, t);
        text(out, &s, false);
    };
    let hour12 = i64::from((t.hour + 11) % 12 + 1);
    let weekday = WEEKDAYS[t.weekday as usize % 7];
    let month = MONTHS[(t.month as usize + 11) % 12];
    match c {
        'a' => text(out, &weekday[..3], false),
        'A' => text(out, weekday, false),
        'b' | 'h' => text(out, &month[..3], false),
        'B' => text(out, month, false),
        'c' => composite(out, "%a %b %e %H:%M:%S %Y"),
        'C' => number(out, i64::from(t.year).div_euclid(100), 2, false),
        'd' => number(out, i64::from(t.day), 2, false),
        'D' | 'x' => composite(out, "%m/%d/%y"),
        'e' => number(out, i64::from(t.day), 2, true),
        'F' => composite(out, "%Y-%m-%d"),
        'g' => number(out, i64::from(t.iso_week().0).rem_euclid(100), 2, false),
        'G' => number(out, i64::from(t.iso_week().0), 1, false),
        'H' => number(out, i64::from(t.hour), 2, false),
        'I' => number(out, hour12, 2, false),
        'j' => number(out, i64::from(t.yday) + 1, 3, false),
        'k' => number(out, i64::from(t.hour), 2, true),
        'l' => number(out, hour12, 2, true),
        'm' => number(out, i64::from(t.month), 2, false),
        'M' => number(out, i64::from(t.minute), 2, false),
        'n' => out.push('\n'),
        'p' => text(out, if t.hour < 12 { "AM" } else { "PM" }, true),
        'P' => text(out, if t.hour < 12 { "am" } else { "pm" }, false),
        'r' => composite(out, "%I:%M:%S %p"),
        'R' => composite(out, "%H:%M"),
        's' => number(out, t.epoch, 1, false),
        'S' => number(out, i64::from(t.second), 2, false),
        't' => out.push('\t'),
        'T' | 'X' => composite(out, "%H:%M:%S"),
        'u' => number(out, i64::from((t.weekday + 6) % 7 + 1), 1, false),
        'U' => number(out, i64::from((t.yday + 7 - t.weekday) / 7), 2, false),
        'V' => number(out, i64::from(t.iso_week().1), 2, false),
        'w' => number(out, i64::from(t.weekday), 1, false),
        'W' => number(
            out,
            i64::from((t.yday + 7 - (t.weekday + 6) % 7) / 7),
            2,
            false,
        ),
        'y' => number(out, i64::from(t.year).rem_euclid(100), 2, false),
        'Y' => number(out, i64::from(t.year), 1, false),
        'z' => {
            let minutes = t.utc_offset.unsigned_abs() / 60;
            out.push(if t.utc_offset < 0 { '-' } else { '+' });
            let _ = write!(out, "{:02}{:02}", minutes / 60, minutes % 60);
        }
        'Z' => text(out, &t.zone, true),
        '%' => out.push('%'),
        // Unknown: copied as it stands, as glibc does.
        _ => out.push_str(&spec[..taken]),
    }
    taken
}

fn push_number(out: &mut String, value: i64, width: usize, fill: char) {
    let digits = value.unsigned_abs().to_string();
    let sign = usize::from(value < 0);
    if value < 0 && fill == '0' {
        out.push('-');
    }
    for _ in (digits.len() + sign)..width {
        out.push(fill);
    }
    if value < 0 && fill != '0' {
        out.push('-');
    }
    out.push_str(&digits);
}

/// The connection to the system logger.
struct Syslog {
    path: PathBuf,
    facility: u8,
    socket: Option<SyslogSocket>,
    /// Whether connecting failed since the last [`Log::reopen`]: not tried again until then.
    unavailable: bool,
}

enum SyslogSocket {
    Datagram(UnixDatagram),
    Stream(UnixStream),
}

impl Syslog {
    fn new(path: PathBuf, facility: u8) -> Self {
        Syslog {
            path,
            facility,
            socket: None,
            unavailable: false,
        }
    }

    fn disconnect(&mut self) {
        self.socket = None;
        self.unavailable = false;
    }

    /// Reconnects on next use, with `facility`.
    fn reconfigure(&mut self, facility: u8) {
        self.facility = facility;
        self.disconnect();
    }

    fn connect(&mut self) -> bool {
        if self.socket.is_some() {
            return true;
        }
        if self.unavailable {
            return false;
        }
        let datagram = UnixDatagram::unbound().and_then(|s| s.connect(&self.path).map(|()| s));
        self.socket = match datagram {
            Ok(socket) => Some(SyslogSocket::Datagram(socket)),
            // A stream socket (some syslog daemons listen that way): glibc falls back too.
            Err(_) => UnixStream::connect(&self.path)
                .ok()
                .map(SyslogSocket::Stream),
        };
        self.unavailable = self.socket.is_none();
        !self.unavailable
    }

    /// Sends `line` with `severity`, as glibc's `syslog(3)` formats it: `<PRI>Mmm dd
    /// hh:mm:ss pigeon[PID]: line`.
    fn send(&mut self, severity: u8, now: SystemTime, line: &str) {
        let message = syslog_message(self.facility, severity, now, line);
        for _ in 0..2 {
            if !self.connect() {
                return;
            }
            let sent = match &mut self.socket {
                Some(SyslogSocket::Datagram(s)) => s.send(message.as_bytes()).map(drop),
                Some(SyslogSocket::Stream(s)) => s
                    .write_all(message.as_bytes())
                    .and_then(|()| s.write_all(b"\0")),
                None => return,
            };
            if sent.is_ok() {
                return;
            }
            // The logger restarted, perhaps: connect again, once.
            self.socket = None;
        }
    }
}

/// An RFC 3164 message as glibc's `syslog(3)` writes it to `/dev/log`.
fn syslog_message(facility: u8, severity: u8, now: SystemTime, line: &str) -> String {
    let priority = u16::from(facility) * 8 + u16::from(severity);
    let stamp = strftime("%b %e %H:%M:%S", &BrokenDownTime::local(now));
    format!("<{priority}>{stamp} pigeon[{}]: {line}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// 2026-12-02 19:19:15 UTC, a Wednesday (the 336th day).
    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_239_155)
    }

    fn tm(secs: i64) -> BrokenDownTime {
        let at = if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        };
        BrokenDownTime::utc(at)
    }

    /// A directory of its own under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "pigeon-log-{name}-{}-{}",
                std::process::id(),
                COUNT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn settings(types: LogTypes, dest: LogDest) -> LogSettings {
        LogSettings {
            types,
            dest,
            ..LogSettings::default()
        }
    }

    #[test]
    fn lines_start_with_unix_seconds() {
        let s = LogSettings::default();
        assert_eq!(
            format_line(&s, t0(), &"New connection from 127.0.0.1:1 on port 1883."),
            "1796239155: New connection from 127.0.0.1:1 on port 1883."
        );
        let bare = LogSettings {
            timestamp: false,
            ..LogSettings::default()
        };
        assert_eq!(format_line(&bare, t0(), &"x"), "x");
    }

    #[test]
    fn lines_are_cut_at_999_bytes() {
        let s = LogSettings::default();
        let long = "é".repeat(1000);
        let line = format_line(&s, t0(), &long);
        assert!(line.len() <= 999 && line.len() >= 998, "{}", line.len());
        assert!(line.starts_with("1796239155: é"));
    }

    #[test]
    fn timestamp_formats_like_glibc() {
        // Reference output of glibc 2.36 for the same instant in UTC (from mosquitto 2.0.11
        // with this log_timestamp_format).
        let t = BrokenDownTime::utc(t0());
        let format = "%Y-%m-%dT%H:%M:%S %z %Z|%e|%j|%s|%Q|%-d|%_H|%c|%D|%r|%p|%I|%u|%w|%U|\
                      %W|%V|%G|%g|%C|%h|%B|%A|%k|%l|%P|%x|%X|%R|%T|%n|%t|%%|%^a|%#b|%10Y|%Ey|\
                      %Od|%+|%";
        assert_eq!(
            strftime(format, &t),
            "2026-12-02T19:19:15 +0000 UTC| 2|336|1796239155|%Q|2|19|Wed Dec  2 19:19:15 2026|\
             12/02/26|07:19:15 PM|PM|07|3|3|48|48|49|2026|26|20|Dec|December|Wednesday|19| 7|pm|\
             12/02/26|19:19:15|19:19|19:19:15|\n|\t|%|WED|DEC|0000002026|26|02|%+|%"
        );
    }

    #[test]
    fn timestamp_conversions_at_edges() {
        // 1970-01-01 00:00:00, a Thursday.
        let epoch = tm(0);
        assert_eq!(
            strftime("%F %T %a %j %U %W %V %G %I %l %p %y %C", &epoch),
            "1970-01-01 00:00:00 Thu 001 00 00 01 1970 12 12 AM 70 19"
        );
        // 2021-01-03, a Sunday: ISO week 53 of 2020.
        let t = tm(1_609_632_000);
        assert_eq!(
            strftime("%F %a %V %G %g %U %W", &t),
            "2021-01-03 Sun 53 2020 20 01 00"
        );
        // 2024-12-30, a Monday: ISO week 1 of 2025.
        let t = tm(1_735_516_800);
        assert_eq!(strftime("%F %a %V %G %u", &t), "2024-12-30 Mon 01 2025 1");
        // 2024-02-29 13:05:09, leap day.
        let t = tm(1_709_211_909);
        assert_eq!(
            strftime("%d/%m %H:%M:%S %j %-j %_m %3e %P %#Z %-I", &t),
            "29/02 13:05:09 060 60  2  29 pm utc 1"
        );
        // Before the epoch.
        assert_eq!(strftime("%s %Y", &tm(-1)), "-1 1969");
    }

    #[test]
    fn offsets_and_zones() {
        let mut t = tm(0);
        t.utc_offset = -(3 * 3600 + 30 * 60);
        t.zone = offset_name(t.utc_offset);
        assert_eq!(strftime("%z %Z", &t), "-0330 -0330");
        t.utc_offset = 3600;
        t.zone = offset_name(t.utc_offset);
        assert_eq!(strftime("%z %Z", &t), "+0100 +01");
    }

    #[test]
    fn timestamp_errors_as_mosquitto() {
        assert_eq!(timestamp(t0(), None), "1796239155");
        assert_eq!(timestamp(t0(), Some("")), "Time error");
        assert_eq!(timestamp(t0(), Some(&"%Y".repeat(300))), "Time error");
        let s = LogSettings {
            timestamp_format: Some("%Y".to_owned()),
            ..LogSettings::default()
        };
        // Local time: the year is 2026 in every time zone at that instant.
        assert_eq!(format_line(&s, t0(), &"m"), "2026: m");
    }

    #[test]
    fn types_filter_lines() {
        let dir = TempDir::new("filter");
        let path = dir.0.join("pigeon.log");
        let dest = LogDest {
            file: Some(path.clone()),
            ..LogDest::none()
        };
        let log = Log::open(settings(
            LogTypes::NOTICE.union(LogTypes::SUBSCRIBE),
            dest.clone(),
        ));
        assert!(log.enabled(LogTypes::NOTICE) && !log.enabled(LogTypes::DEBUG));
        log.debug("hidden debug");
        log.notice("shown notice");
        log.info("hidden info");
        log.subscribe("c 1 a/#");
        log.unsubscribe("hidden unsubscribe");
        let text = std::fs::read_to_string(&path).unwrap();
        let messages: Vec<&str> = text
            .lines()
            .map(|l| l.split_once(": ").unwrap().1)
            .collect();
        assert_eq!(messages, ["shown notice", "c 1 a/#"]);

        let nothing = Log::open(settings(LogTypes::ALL, LogDest::none()));
        assert!(!nothing.enabled(LogTypes::ERROR));
        let none = Log::open(settings(LogTypes::NONE, dest));
        assert!(!none.enabled(LogTypes::ERROR));
    }

    #[test]
    fn connection_messages_can_be_silenced() {
        let dir = TempDir::new("connection");
        let path = dir.0.join("pigeon.log");
        let log = Log::open(LogSettings {
            types: LogTypes::ALL,
            dest: LogDest {
                file: Some(path.clone()),
                ..LogDest::none()
            },
            timestamp: false,
            connection_messages: false,
            ..LogSettings::default()
        });
        assert!(!log.connection_messages());
        log.connection(LogTypes::NOTICE, "Client a disconnected.");
        log.notice("Bad client a sending multiple CONNECT messages.");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "Bad client a sending multiple CONNECT messages.\n"
        );
    }

    #[test]
    fn file_is_appended_and_reopened() {
        let dir = TempDir::new("file");
        let path = dir.0.join("pigeon.log");
        std::fs::write(&path, "old\n").unwrap();
        let log = Log::open(LogSettings {
            dest: LogDest {
                file: Some(path.clone()),
                ..LogDest::none()
            },
            timestamp: false,
            ..LogSettings::default()
        });
        log.info(format_args!("one {}", 1));
        // Rotation: the file is moved away, and SIGHUP reopens a new one.
        let rotated = dir.0.join("pigeon.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.info("two");
        log.reopen().unwrap();
        log.info("three");
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "old\none 1\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn reconfigure_takes_new_types_destinations_and_format() {
        let dir = TempDir::new("reconfigure");
        let (a, b) = (dir.0.join("a.log"), dir.0.join("b.log"));
        let to = |path: &PathBuf| LogDest {
            file: Some(path.clone()),
            ..LogDest::none()
        };
        let log = Log::open(LogSettings {
            types: LogTypes::NOTICE,
            dest: to(&a),
            timestamp: false,
            ..LogSettings::default()
        });
        log.notice("one");
        log.info("hidden info");
        assert!(!log.enabled(LogTypes::INFORMATION) && log.connection_messages());
        let new = LogSettings {
            types: LogTypes::INFORMATION,
            dest: to(&b),
            timestamp: true,
            timestamp_format: Some("stamp".to_owned()),
            connection_messages: false,
            ..LogSettings::default()
        };
        log.reconfigure(new.clone());
        assert_eq!(*log.settings(), new);
        assert!(log.enabled(LogTypes::INFORMATION) && !log.enabled(LogTypes::NOTICE));
        assert!(!log.connection_messages());
        log.notice("hidden notice");
        log.connection(LogTypes::INFORMATION, "hidden connection");
        log.info("two");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "stamp: two\n");
        // No destination: nothing is enabled, and the file is let go.
        log.reconfigure(LogSettings {
            dest: LogDest::none(),
            ..LogSettings::default()
        });
        assert!(!log.enabled(LogTypes::ERROR));
        assert!(lock(&log.file).is_none());
    }

    #[test]
    fn unopenable_file_is_reported_not_fatal() {
        let dir = TempDir::new("unopenable");
        let path = dir.0.join("missing").join("pigeon.log");
        let log = Log::open(LogSettings {
            dest: LogDest {
                file: Some(path),
                ..LogDest::none()
            },
            ..LogSettings::default()
        });
        log.error("still running");
        assert!(log.reopen().is_err());
    }

    #[test]
    fn topic_lines_go_to_their_severity_topic() {
        let published = Arc::new(Mutex::new(Vec::new()));
        let log = Log::open(LogSettings {
            types: LogTypes::ALL,
            dest: LogDest {
                topic: true,
                ..LogDest::none()
            },
            timestamp: false,
            ..LogSettings::default()
        });
        log.error("before the hook");
        let sink = Arc::clone(&published);
        log.set_topic_hook(Arc::new(move |topic: &str, line: &str| {
            lock(&sink).push(format!("{topic} {line}"));
        }));
        log.debug("never published");
        log.log(LogTypes::INTERNAL, "never published either");
        log.error("e");
        log.warning("w");
        log.notice("n");
        log.info("i");
        log.subscribe("c 0 t");
        log.unsubscribe("c t");
        assert_eq!(
            *lock(&published),
            [
                "$SYS/broker/log/E e",
                "$SYS/broker/log/W w",
                "$SYS/broker/log/N n",
                "$SYS/broker/log/I i",
                "$SYS/broker/log/M/subscribe c 0 t",
                "$SYS/broker/log/M/unsubscribe c t",
            ]
        );
    }

    #[test]
    fn a_line_logged_by_the_topic_hook_is_not_published_again() {
        let log = Arc::new(Log::open(LogSettings {
            dest: LogDest {
                topic: true,
                ..LogDest::none()
            },
            ..LogSettings::default()
        }));
        let count = Arc::new(AtomicUsize::new(0));
        let (inner, counter) = (Arc::downgrade(&log), Arc::clone(&count));
        log.set_topic_hook(Arc::new(move |_: &str, _: &str| {
            counter.fetch_add(1, Ordering::Relaxed);
            if let Some(log) = inner.upgrade() {
                log.error("from inside the hook");
            }
        }));
        log.error("outside");
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn errors_read_as_strerror() {
        let e = io::Error::from_raw_os_error(98);
        assert_eq!(strerror(&e), "Address already in use");
        assert_eq!(strerror(&io::Error::other("custom")), "custom");
    }

    #[test]
    fn severities_and_facilities() {
        assert_eq!(syslog_severity(LogTypes::ERROR), 3);
        assert_eq!(syslog_severity(LogTypes::WARNING), 4);
        assert_eq!(syslog_severity(LogTypes::NOTICE), 5);
        assert_eq!(syslog_severity(LogTypes::SUBSCRIBE), 5);
        assert_eq!(syslog_severity(LogTypes::UNSUBSCRIBE), 5);
        assert_eq!(syslog_severity(LogTypes::INFORMATION), 6);
        assert_eq!(syslog_severity(LogTypes::DEBUG), 7);
        let m = syslog_message(FACILITY_DAEMON, 5, t0(), "1796239155: hello");
        let header = format!(
            "<29>{} pigeon[",
            strftime("%b %e %H:%M:%S", &BrokenDownTime::local(t0()))
        );
        assert!(m.starts_with(&header), "{m}");
        assert!(
            m.ends_with(&format!("[{}]: 1796239155: hello", std::process::id())),
            "{m}"
        );
    }

    #[test]
    fn syslog_datagrams_reach_the_socket() {
        let dir = TempDir::new("syslog");
        let socket_path = dir.0.join("log");
        let server = UnixDatagram::bind(&socket_path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let log = Log::open_with_syslog(
            LogSettings {
                dest: LogDest {
                    syslog: true,
                    ..LogDest::none()
                },
                facility: Some(5),
                timestamp: false,
                ..LogSettings::default()
            },
            &socket_path,
        );
        log.warning("Warning: careful");
        let mut buf = [0u8; 1024];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        // local5 (21) * 8 + warning (4).
        assert!(got.starts_with("<172>"), "{got}");
        assert!(got.ends_with("]: Warning: careful"), "{got}");
    }

    #[test]
    fn syslog_without_a_logger_is_silent() {
        let dir = TempDir::new("nosyslog");
        let log = Log::open_with_syslog(
            LogSettings {
                dest: LogDest {
                    syslog: true,
                    ..LogDest::none()
                },
                ..LogSettings::default()
            },
            &dir.0.join("absent"),
        );
        log.error("nobody listens");
        log.reopen().unwrap();
        log.error("still nobody");
    }
}
