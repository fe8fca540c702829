//! Persistence: what a broker must not forget across a restart or a crash.
//!
//! The broker keeps its live state in memory; the store keeps a durable account of it as an
//! append-only log of [`Record`]s (retained messages set and cleared, persistent sessions
//! and their subscriptions, messages held for them and their acknowledgement states, wills
//! waiting for their delay). Recovery replays it; compaction writes what is live as a
//! snapshot and drops the log before it.
//!
//! - [`Store`]: what the broker calls. [`MemoryStore`] (`persistence false`) records
//!   nothing; the broker does not even build records for it. [`LogStore`] is the log.
//! - [`frame`], [`record`], [`state`]: the format and the replay, pure functions.
//! - [`log`]: the files (snapshot, segments, lock), through the [`fs::Fs`] trait so that
//!   tests inject faults.
//! - The writer: one thread that takes everything appended while it was busy, writes it as
//!   one batch and syncs once (group commit), then publishes how far the log is durable.
//!   A publisher's PUBACK or PUBREC waits for that (see `net/conn.rs`) unless
//!   `persistence_sync_acks false` says not to.

pub mod crc;
pub mod frame;
pub mod fs;
pub mod log;
pub mod record;
pub mod restore;
pub mod state;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use self::log::Layout;
pub use self::record::Record;
pub use self::state::StoredState;

/// A position in the log: the number of records appended before and including one.
pub type Lsn = u64;

/// Why the store cannot open or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another broker holds the directory's lock.
    #[error(
        "Error: the persistence directory {0} is in use by another broker (its pigeon.lock is \
         held); refusing to start."
    )]
    Locked(PathBuf),
    /// A record that is not a torn tail fails its check.
    #[error(
        "Error: persistence file {0} is damaged at offset {1}: the record there fails its \
         check and more data follows. To start with what comes before it, truncate the file \
         there (truncate -s {1} {0}); what follows is lost."
    )]
    Corrupt(PathBuf, u64),
    /// The snapshot file is not one of Pigeon's (a Mosquitto database, say).
    #[error(
        "Error: {0} is not a Pigeon persistence file (a Mosquitto database?). Move it away or \
         set persistence_file to another name."
    )]
    NotOurs(PathBuf),
    /// The file system failed.
    #[error("Error: persistence: {0}: {1}.")]
    Io(PathBuf, io::Error),
}

/// How far the log is durable, as the writer publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Durable {
    /// Every record up to here is synced.
    pub synced: Lsn,
    /// The last batch that failed to be written: records `failed.0..=failed.1` were not
    /// durable when their acknowledgements were due (`(0, 0)`: none failed).
    pub failed: (Lsn, Lsn),
}

impl Durable {
    /// Whether the record at `lsn` is durable (`Some(true)`), failed to be (`Some(false)`,
    /// its acknowledgement is refused), or not yet known.
    pub fn status(&self, lsn: Lsn) -> Option<bool> {
        if self.failed.0 != 0 && (self.failed.0..=self.failed.1).contains(&lsn) {
            Some(false)
        } else if lsn <= self.synced {
            Some(true)
        } else {
            None
        }
    }
}

/// The broker's view of its store.
pub trait Store: Send + Sync + fmt::Debug {
    /// Whether records are kept at all; when not, the broker builds none.
    fn is_durable(&self) -> bool;
    /// Appends `record`; returns its position.
    fn append(&self, record: &Record) -> Lsn;
    /// The position of the last record appended.
    fn last_appended(&self) -> Lsn;
    /// How far the log is durable, updated after every batch.
    fn durable(&self) -> watch::Receiver<Durable>;
    /// Whether acknowledgements wait for durability (`persistence_sync_acks`).
    fn sync_acks(&self) -> bool;
    /// Whether the last write failed (a full disk): new QoS > 0 messages are refused.
    fn refusing(&self) -> bool;
    /// Asks for a snapshot soon.
    fn request_snapshot(&self);
    /// Writes what is pending, a final snapshot, and stops.
    fn close(&self);
    /// Batches written (each one fsync) so far.
    fn syncs(&self) -> u64;
    /// Time spent writing and syncing those batches, in microseconds (the persistence
    /// latency a publisher's acknowledgement waits for, summed).
    fn sync_micros(&self) -> u64;
}

/// The store of `persistence false`: nothing is kept.
#[derive(Debug)]
pub struct MemoryStore {
    durable: watch::Sender<Durable>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        let (durable, _) = watch::channel(Durable {
            synced: Lsn::MAX,
            failed: (0, 0),
        });
        MemoryStore { durable }
    }
}

impl Store for MemoryStore {
    fn is_durable(&self) -> bool {
        false
    }
    fn append(&self, _: &Record) -> Lsn {
        0
    }
    fn last_appended(&self) -> Lsn {
        0
    }
    fn durable(&self) -> watch::Receiver<Durable> {
        self.durable.subscribe()
    }
    fn sync_acks(&self) -> bool {
        false
    }
    fn refusing(&self) -> bool {
        false
    }
    fn request_snapshot(&self) {}
    fn close(&self) {}
    fn syncs(&self) -> u64 {
        0
    }
    fn sync_micros(&self) -> u64 {
        0
    }
}

/// How the log store is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Where its files are.
    pub layout: Layout,
    /// Whether acknowledgements wait for the fsync (`persistence_sync_acks`, default true).
    pub sync_acks: bool,
    /// Snapshot after this long (`autosave_interval` seconds); `None`: only at exit.
    pub snapshot_every: Option<Duration>,
    /// Snapshot after this many records (`autosave_on_changes`); `None`: by time.
    pub snapshot_after: Option<u64>,
}

/// Receives the store's log lines.
pub type Notify = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// How serious a line from the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Information.
    Notice,
    /// A problem.
    Error,
}

struct Pending {
    buf: Vec<u8>,
    /// Position of the last record in `buf` (or appended before, when it is empty).
    last: Lsn,
    /// Position of the first record in `buf`.
    first: Lsn,
    stop: bool,
    snapshot: bool,
}

struct Inner {
    pending: Mutex<Pending>,
    wake: Condvar,
    durable: watch::Sender<Durable>,
    appended: AtomicU64,
    refusing: AtomicBool,
    syncs: AtomicU64,
    /// Microseconds spent in those writes and syncs.
    sync_micros: AtomicU64,
    changes: AtomicU64,
    settings: StoreSettings,
}

impl Inner {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The log store: segments, snapshots and the writer thread.
pub struct LogStore {
    inner: Arc<Inner>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.inner.settings.layout.dir)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (recovering) the store in `settings.layout` and starts its writer. Returns the
    /// store, the recovered state, and what recovery has to say.
    ///
    /// # Errors
    /// See [`log::Log::open`].
    pub fn open(
        fs: Arc<dyn fs::Fs>,
        settings: StoreSettings,
        notify: Notify,
    ) -> Result<(LogStore, StoredState, log::Recovery), StoreError> {
        let (log, state, recovery) = log::Log::open(fs, settings.layout.clone())?;
        let (durable, _) = watch::channel(Durable::default());
        let inner = Arc::new(Inner {
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                last: 0,
                first: 1,
                stop: false,
                snapshot: false,
            }),
            wake: Condvar::new(),
            durable,
            appended: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            sync_micros: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            settings,
        });
        let writer_inner = Arc::clone(&inner);
        let writer = std::thread::Builder::new()
            .name("pigeon-store".into())
            .spawn(move || writer(&writer_inner, log, &notify))
            .map_err(|e| StoreError::Io(inner.settings.layout.dir.clone(), e))?;
        Ok((
            LogStore {
                inner,
                writer: Mutex::new(Some(writer)),
            },
            state,
            recovery,
        ))
    }
}

impl Store for LogStore {
    fn is_durable(&self) -> bool {
        true
    }

    fn append(&self, record: &Record) -> Lsn {
        let mut payload = Vec::with_capacity(64);
        record.encode(&mut payload);
        let mut framed = Vec::with_capacity(payload.len() + frame::HEADER);
        frame::encode(&payload, &mut framed);
        let lsn = {
            let mut p = self.inner.pending();
            if p.buf.is_empty() {
                p.first = p.last + 1;
            }
            p.buf.extend_from_slice(&framed);
            p.last += 1;
            self.inner.appended.store(p.last, Ordering::Release);
            p.last
        };
        self.inner.wake.notify_one();
        if let Some(after) = self.inner.settings.snapshot_after {
            let n = self.inner.changes.fetch_add(1, Ordering::Relaxed) + 1;
            if after > 0 && n.is_multiple_of(after) {
                self.request_snapshot();
            }
        }
        lsn
    }

    fn last_appended(&self) -> Lsn {
        self.inner.appended.load(Ordering::Acquire)
    }

    fn durable(&self) -> watch::Receiver<Durable> {
        self.inner.durable.subscribe()
    }

    fn sync_acks(&self) -> bool {
        self.inner.settings.sync_acks
    }

    fn refusing(&self) -> bool {
        self.inner.refusing.load(Ordering::Relaxed)
    }

    fn request_snapshot(&self) {
        self.inner.pending().snapshot = true;
        self.inner.wake.notify_one();
    }

    fn close(&self) {
        self.inner.pending().stop = true;
        self.inner.wake.notify_one();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    fn syncs(&self) -> u64 {
        self.inner.syncs.load(Ordering::Relaxed)
    }

    fn sync_micros(&self) -> u64 {
        self.inner.sync_micros.load(Ordering::Relaxed)
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Log segments (of [`log::SEGMENT_SIZE`]) written before a snapshot is taken regardless of
/// `autosave_interval`.
const ROLLS_PER_SNAPSHOT: u64 = 4;

/// The writer thread: group commit, snapshots, and a final snapshot at close.
fn writer(inner: &Inner, mut log: log::Log, notify: &Notify) {
    let every = inner.settings.snapshot_every;
    let mut last_snapshot = crate::clock::now();
    let mut compaction: Option<JoinHandle<()>> = None;
    let mut retry_at: Option<Instant> = None;
    // Segments started since the last snapshot: past ROLLS_PER_SNAPSHOT the log is compacted
    // whatever autosave_interval says, so that disk use stays bounded under load.
    let mut since_snapshot = log.segment();
    loop {
        let (batch, first, last, stop, mut snapshot) = {
            let mut p = inner.pending();
            loop {
                let now = crate::clock::now();
                let due = every.is_some_and(|e| now.duration_since(last_snapshot) >= e);
                let retry_due = retry_at.is_none_or(|at| now >= at);
                if p.stop || p.snapshot || due || (!p.buf.is_empty() && retry_due) {
                    p.snapshot |= due;
                    break;
                }
                let wait = match (retry_at, every) {
                    (Some(at), _) => at.saturating_duration_since(now),
                    (None, Some(e)) => e.saturating_sub(now.duration_since(last_snapshot)),
                    (None, None) => Duration::from_secs(3600),
                };
                p = inner
                    .wake
                    .wait_timeout(p, wait.max(Duration::from_millis(1)))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let retry_due = retry_at.is_none_or(|at| crate::clock::now() >= at);
            let batch = if retry_due || p.stop {
                std::mem::take(&mut p.buf)
            } else {
                Vec::new()
            };
            let snapshot = std::mem::take(&mut p.snapshot);
            (batch, p.first, p.last, p.stop, snapshot)
        };
        if !batch.is_empty() {
            let started = crate::clock::now();
            match log.append(&batch) {
                Ok(()) => {
                    let took = crate::clock::now().saturating_duration_since(started);
                    inner.sync_micros.fetch_add(
                        u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                    inner.syncs.fetch_add(1, Ordering::Relaxed);
                    if inner.refusing.swap(false, Ordering::Relaxed) {
                        notify(Level::Notice, "Persistence: writing again.");
                    }
                    retry_at = None;
                    inner.durable.send_modify(|d| d.synced = last);
                    if log.segment() >= since_snapshot + ROLLS_PER_SNAPSHOT {
                        snapshot = true;
                    }
                }
                Err(e) => {
                    if !inner.refusing.swap(true, Ordering::Relaxed) {
                        notify(
                            Level::Error,
                            &format!(
                                "Error: persistence: cannot write to {}: {e}; refusing new QoS 1 \
                                 and 2 messages until it can.",
                                log.layout().dir.display()
                            ),
                        );
                    }
                    inner.durable.send_modify(|d| d.failed = (first, last));
                    // Keep the records, ahead of any appended since, and try again in a
                    // second (as the disk may have room by then).
                    let mut p = inner.pending();
                    let mut again = batch;
                    again.extend_from_slice(&p.buf);
                    p.buf = again;
                    p.first = first;
                    retry_at = Some(crate::clock::now() + Duration::from_secs(1));
                    if stop {
                        return;
                    }
                    continue;
                }
            }
        }
        if stop {
            if let Some(c) = compaction.take() {
                let _ = c.join();
            }
            // The final snapshot: everything in one file, no segments to replay.
            match log.roll() {
                Ok(upto) => snapshot_now(&log, upto, notify),
                Err(e) => notify(Level::Error, &format!("Error: persistence: {e}.")),
            }
            return;
        }
        if snapshot && compaction.as_ref().is_none_or(JoinHandle::is_finished) {
            last_snapshot = crate::clock::now();
            since_snapshot = log.segment() + 1;
            if let Some(c) = compaction.take() {
                let _ = c.join();
            }
            match log.roll() {
                Ok(upto) => {
                    let layout = log.layout().clone();
                    let fs = Arc::clone(log.fs());
                    let notify = Arc::clone(notify);
                    compaction = std::thread::Builder::new()
                        .name("pigeon-snapshot".into())
                        .spawn(move || {
                            if let Err(e) = log::compact(&*fs, &layout, upto) {
                                notify(Level::Error, &e.to_string());
                            }
                        })
                        .ok();
                }
                Err(e) => notify(Level::Error, &format!("Error: persistence: {e}.")),
            }
        }
    }
}

fn snapshot_now(log: &log::Log, upto: u64, notify: &Notify) {
    if let Err(e) = log::compact(&**log.fs(), log.layout(), upto) {
        notify(Level::Error, &e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::fault::FaultFs;

    fn settings() -> StoreSettings {
        StoreSettings {
            layout: Layout {
                dir: PathBuf::from("/db"),
                snapshot: "mosquitto.db".into(),
            },
            sync_acks: true,
            snapshot_every: None,
            snapshot_after: None,
        }
    }

    fn gone(n: u32) -> Record {
        Record::WillGone {
            client: format!("c{n}"),
        }
    }

    fn wait_for(rx: &mut watch::Receiver<Durable>, lsn: Lsn) -> bool {
        loop {
            if let Some(ok) = rx.borrow_and_update().status(lsn) {
                return ok;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn appends_from_many_threads_are_synced_in_batches() {
        let fs = FaultFs::default();
        let quiet: Notify = Arc::new(|_, _| {});
        let (store, _, _) = LogStore::open(Arc::new(fs.clone()), settings(), quiet).expect("opens");
        let store = Arc::new(store);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut rx = store.durable();
                    for i in 0..250 {
                        let lsn = store.append(&gone(t * 1000 + i));
                        if i % 50 == 0 {
                            assert!(wait_for(&mut rx, lsn));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        let mut rx = store.durable();
        assert!(wait_for(&mut rx, 1000));
        assert!(
            store.syncs() < 1000,
            "group commit: {} syncs",
            store.syncs()
        );
        store.close();
        // The final snapshot holds everything (nothing: wills gone).
        let files = fs.files();
        assert!(
            files.iter().any(|(p, _)| p.ends_with("mosquitto.db")),
            "{files:?}"
        );
    }

    #[test]
    fn a_failed_fsync_refuses_the_batch_and_later_writes_go_on() {
        let fs = FaultFs::default();
        let notes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&notes);
        let notify: Notify =
            Arc::new(move |_, line| sink.lock().expect("lock").push(line.to_owned()));
        let (store, _, _) =
            LogStore::open(Arc::new(fs.clone()), settings(), notify).expect("opens");
        let mut rx = store.durable();
        assert!(wait_for(&mut rx, store.append(&gone(1))));
        fs.fail_syncs(1);
        let lsn = store.append(&gone(2));
        assert!(!wait_for(&mut rx, lsn), "not durable: its ack is refused");
        assert!(store.refusing());
        // A second later the records are written again, and new ones after them.
        let next = store.append(&gone(3));
        assert!(wait_for(&mut rx, next));
        assert!(!store.refusing());
        let lines = notes.lock().expect("lock").clone();
        assert!(
            lines.iter().any(|l| l.contains("refusing new QoS 1 and 2")),
            "{lines:?}"
        );
        store.close();
        let (_, state, _) =
            LogStore::open(Arc::new(fs.clone()), settings(), Arc::new(|_, _| {})).expect("reopens");
        assert_eq!(state.records, 0, "the final snapshot has nothing live");
    }

    #[test]
    fn a_full_disk_refuses_until_there_is_room() {
        let fs = FaultFs::default();
        let (store, _, _) =
            LogStore::open(Arc::new(fs.clone()), settings(), Arc::new(|_, _| {})).expect("opens");
        let mut rx = store.durable();
        fs.set_space(Some(10));
        let lsn = store.append(&gone(1));
        assert!(!wait_for(&mut rx, lsn));
        assert!(store.refusing());
        fs.set_space(None);
        let lsn = store.append(&gone(2));
        assert!(wait_for(&mut rx, lsn));
        assert!(!store.refusing());
    }
}
