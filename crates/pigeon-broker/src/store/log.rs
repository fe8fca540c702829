//! The files: a snapshot (`persistence_file`) and numbered log segments beside it, in one
//! directory guarded by a lock file. Blocking I/O through [`Fs`]; no threads, no clock.
//!
//! - Opening recovers: the snapshot is read (every record must be sound), then each segment
//!   from the snapshot's base on. A bad record in the last segment with nothing valid after
//!   it is a write a crash cut short: the segment is truncated there, and a note says so. A
//!   bad record anywhere else is an error naming the file and offset.
//! - Appending writes a batch and syncs it once (group commit happens above, in the writer).
//! - Compaction replays the snapshot and the sealed segments into a new snapshot, written to a
//!   temporary file, synced, renamed over the old one, then the sealed segments are removed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::StoreError;
use super::frame::{self, End};
use super::fs::{FileOps, Fs};
use super::record::{FORMAT, Record};
use super::state::StoredState;

/// A segment is sealed and a new one started past this size.
pub const SEGMENT_SIZE: u64 = 64 << 20;
/// The lock file's name.
pub const LOCK_FILE: &str = "pigeon.lock";

/// Where the files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The directory.
    pub dir: PathBuf,
    /// The snapshot's file name (`persistence_file`).
    pub snapshot: String,
}

impl Layout {
    /// The snapshot's path.
    pub fn snapshot_path(&self) -> PathBuf {
        self.dir.join(&self.snapshot)
    }
    fn temp_path(&self) -> PathBuf {
        self.dir.join(format!("{}.new", self.snapshot))
    }
    /// The path of segment `n`.
    pub fn segment_path(&self, n: u64) -> PathBuf {
        self.dir.join(segment_name(&self.snapshot, n))
    }
    fn segments(&self, fs: &dyn Fs) -> io::Result<Vec<u64>> {
        let prefix = format!("{}.", self.snapshot);
        let mut found: Vec<u64> = fs
            .list(&self.dir)?
            .iter()
            .filter_map(|name| {
                let rest = name.strip_prefix(&prefix)?.strip_suffix(".log")?;
                (rest.len() == 10).then(|| rest.parse().ok()).flatten()
            })
            .collect();
        found.sort_unstable();
        Ok(found)
    }
}

fn segment_name(snapshot: &str, n: u64) -> String {
    format!("{snapshot}.{n:010}.log")
}

/// What recovery found besides the state: lines for the log.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Notes for the log (torn tails truncated, leftovers removed).
    pub notes: Vec<String>,
    /// Bytes read.
    pub bytes: u64,
}

/// The open log: the segment being appended to.
pub struct Log {
    fs: Arc<dyn Fs>,
    layout: Layout,
    _lock: Box<dyn std::any::Any + Send + Sync>,
    segment: u64,
    file: Box<dyn FileOps>,
    len: u64,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.layout.dir)
            .field("segment", &self.segment)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Locks the directory, recovers the state, and opens the last segment for appending.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another broker uses the directory, [`StoreError::Corrupt`]
    /// for a bad record that is not a torn tail, [`StoreError::Io`] otherwise.
    pub fn open(
        fs: Arc<dyn Fs>,
        layout: Layout,
    ) -> Result<(Log, StoredState, Recovery), StoreError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |e| StoreError::Io(path, e)
        };
        fs.create_dir_all(&layout.dir)
            .map_err(io_err(&layout.dir))?;
        let lock_path = layout.dir.join(LOCK_FILE);
        let lock = match fs.lock(&lock_path) {
            Ok(lock) => lock,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(StoreError::Locked(layout.dir.clone()));
            }
            Err(e) => return Err(StoreError::Io(lock_path, e)),
        };
        let mut recovery = Recovery::default();
        let (state, base, segments) = load(&*fs, &layout, u64::MAX, Some(&mut recovery))?;
        // Segments older than the snapshot's base: a compaction ended before removing them.
        for n in layout.segments(&*fs).map_err(io_err(&layout.dir))? {
            if n < base {
                let path = layout.segment_path(n);
                fs.remove(&path).map_err(io_err(&path))?;
                recovery.notes.push(format!(
                    "Removed {}, already in the snapshot.",
                    path.display()
                ));
            }
        }
        let segment = segments.last().copied().unwrap_or(base).max(base);
        let path = layout.segment_path(segment);
        let file = fs.append(&path).map_err(io_err(&path))?;
        let len = fs.read(&path).map(|d| d.len() as u64).unwrap_or(0);
        let log = Log {
            fs,
            layout,
            _lock: lock,
            segment,
            file,
            len,
        };
        Ok((log, state, recovery))
    }

    /// Writes `batch` (framed records) at the end of the current segment and syncs it. On
    /// failure the segment is cut back to where it was, so a later append starts clean.
    ///
    /// # Errors
    /// The file system's error; nothing of `batch` is durable then.
    pub fn append(&mut self, batch: &[u8]) -> io::Result<()> {
        if self.len > 0 && self.len + batch.len() as u64 > SEGMENT_SIZE {
            self.roll()?;
        }
        let result = self.file.write_all(batch).and_then(|()| self.file.sync());
        match result {
            Ok(()) => {
                self.len += batch.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Best effort: a failed fsync may have left anything on disk; recovery
                // treats a partial record at the end as torn.
                let _ = self.file.set_len(self.len);
                let _ = self.file.sync();
                Err(e)
            }
        }
    }

    /// Starts a new segment; returns its number (every segment before it is sealed).
    ///
    /// # Errors
    /// The file system's error.
    pub fn roll(&mut self) -> io::Result<u64> {
        let next = self.segment + 1;
        let path = self.layout.segment_path(next);
        self.file = self.fs.create(&path)?;
        self.fs.sync_dir(&self.layout.dir)?;
        self.segment = next;
        self.len = 0;
        Ok(next)
    }

    /// The segment being written.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// The file system.
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    /// The files' layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

/// Replays the snapshot and the segments numbered below `upto` into a state. With
/// `recovery` (at startup) a torn tail of the last segment is truncated; without (when
/// compacting sealed segments) any bad record is an error. Returns the state, the
/// snapshot's base and the segments read.
fn load(
    fs: &dyn Fs,
    layout: &Layout,
    upto: u64,
    mut recovery: Option<&mut Recovery>,
) -> Result<(StoredState, u64, Vec<u64>), StoreError> {
    let mut state = StoredState::default();
    let snapshot = layout.snapshot_path();
    let mut base = 0;
    match fs.read(&snapshot) {
        Ok(data) => {
            if let Some(r) = recovery.as_deref_mut() {
                r.bytes += data.len() as u64;
            }
            let mut bad = None;
            let mut first = true;
            let end = frame::scan(&data, |offset, payload| {
                if bad.is_some() {
                    return;
                }
                match Record::decode(payload) {
                    Ok(Record::Header { format, base: b }) if first && format == FORMAT => {
                        base = b;
                    }
                    Ok(_) if first => bad = Some(offset),
                    Ok(record) => state.apply(record),
                    Err(_) => bad = Some(offset),
                }
                first = false;
            });
            if first && !data.is_empty() || bad == Some(0) {
                return Err(StoreError::NotOurs(snapshot));
            }
            let bad = match end {
                _ if bad.is_some() => bad,
                End::Clean => None,
                End::Torn(o) | End::Corrupt(o) => Some(o),
            };
            if let Some(offset) = bad {
                return Err(StoreError::Corrupt(snapshot, offset));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::Io(snapshot, e)),
    }
    let segments: Vec<u64> = layout
        .segments(fs)
        .map_err(|e| StoreError::Io(layout.dir.clone(), e))?
        .into_iter()
        .filter(|&n| n >= base && n < upto)
        .collect();
    for (i, &n) in segments.iter().enumerate() {
        let path = layout.segment_path(n);
        let data = fs
            .read(&path)
            .map_err(|e| StoreError::Io(path.clone(), e))?;
        if let Some(r) = recovery.as_deref_mut() {
            r.bytes += data.len() as u64;
        }
        let mut bad = None;
        let end = frame::scan(&data, |offset, payload| {
            if bad.is_some() {
                return;
            }
            match Record::decode(payload) {
                Ok(record) => state.apply(record),
                Err(_) => bad = Some(offset),
            }
        });
        if let Some(offset) = bad {
            return Err(StoreError::Corrupt(path, offset));
        }
        let last = i + 1 == segments.len();
        match (end, recovery.as_deref_mut()) {
            (End::Clean, _) => {}
            (End::Torn(offset), Some(r)) if last => {
                let mut file = fs
                    .append(&path)
                    .map_err(|e| StoreError::Io(path.clone(), e))?;
                file.set_len(offset)
                    .and_then(|()| file.sync())
                    .map_err(|e| StoreError::Io(path.clone(), e))?;
                r.notes.push(format!(
                    "Truncated {} at offset {offset} ({} bytes of an incomplete last record, \
                     left by a crash).",
                    path.display(),
                    data.len() as u64 - offset
                ));
            }
            (End::Torn(offset) | End::Corrupt(offset), _) => {
                return Err(StoreError::Corrupt(path, offset));
            }
        }
    }
    Ok((state, base, segments))
}

/// Writes a new snapshot from the snapshot and the segments before `upto` (all sealed), then
/// removes those segments. Runs beside the writer, which appends to segment `upto` or later.
/// Returns the state written.
///
/// # Errors
/// As recovery, and the file system's errors; the old snapshot and segments stay then.
pub fn compact(fs: &dyn Fs, layout: &Layout, upto: u64) -> Result<StoredState, StoreError> {
    let (state, _, segments) = load(fs, layout, upto, None)?;
    let temp = layout.temp_path();
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e| StoreError::Io(path, e)
    };
    let mut file = fs.create(&temp).map_err(io_err(&temp))?;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut payload = Vec::new();
    let mut failed = None;
    state.snapshot(upto, |record| {
        if failed.is_some() {
            return;
        }
        payload.clear();
        record.encode(&mut payload);
        frame::encode(&payload, &mut buf);
        if buf.len() >= 1 << 20 {
            if let Err(e) = file.write_all(&buf) {
                failed = Some(e);
            }
            buf.clear();
        }
    });
    if let Some(e) = failed {
        return Err(StoreError::Io(temp, e));
    }
    file.write_all(&buf)
        .and_then(|()| file.sync())
        .map_err(io_err(&temp))?;
    drop(file);
    let snapshot = layout.snapshot_path();
    fs.rename(&temp, &snapshot).map_err(io_err(&snapshot))?;
    fs.sync_dir(&layout.dir).map_err(io_err(&layout.dir))?;
    for n in segments {
        let path = layout.segment_path(n);
        fs.remove(&path).map_err(io_err(&path))?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::fs::fault::FaultFs;
    use crate::store::record::StoredMessage;

    fn layout() -> Layout {
        Layout {
            dir: PathBuf::from("/db"),
            snapshot: "mosquitto.db".into(),
        }
    }

    fn retain(n: u32) -> Record {
        Record::Retain {
            topic: format!("t/{n}"),
            message: Some(StoredMessage {
                publish: Bytes::from(format!("payload {n}")),
                expires_ms: None,
                origin: None,
            }),
        }
    }

    fn batch(records: impl IntoIterator<Item = Record>) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            let mut p = Vec::new();
            r.encode(&mut p);
            frame::encode(&p, &mut out);
        }
        out
    }

    fn open(fs: &FaultFs) -> Result<(Log, StoredState, Recovery), StoreError> {
        Log::open(Arc::new(fs.clone()), layout())
    }

    /// Three records in segment 0; returns the offsets where each starts, and the file.
    fn three(fs: &FaultFs) -> (Vec<usize>, Vec<u8>) {
        let (mut log, _, _) = open(fs).expect("opens");
        let mut starts = Vec::new();
        let mut at = 0;
        for n in 0..3 {
            starts.push(at);
            let b = batch([retain(n)]);
            at += b.len();
            log.append(&b).expect("appends");
        }
        drop(log);
        fs.crash(0);
        let data = fs.content(&layout().segment_path(0)).expect("segment");
        (starts, data)
    }

    #[test]
    fn recovery_truncates_the_last_record_cut_at_any_byte() {
        let fs = FaultFs::default();
        let (starts, data) = three(&fs);
        for cut in starts[2]..data.len() {
            let fs = FaultFs::default();
            fs.set_content(&layout().segment_path(0), data[..cut].to_vec());
            let (mut log, state, recovery) = open(&fs).expect("a torn tail is not an error");
            assert_eq!(state.retained.len(), 2, "cut at {cut}");
            assert_eq!(
                recovery.notes.len(),
                usize::from(cut > starts[2]),
                "cut at {cut}"
            );
            assert_eq!(
                fs.content(&layout().segment_path(0)).map(|d| d.len()),
                Some(starts[2])
            );
            // And the log goes on from there.
            log.append(&batch([retain(9)])).expect("appends");
            drop(log);
            let (_, state, _) = open(&fs).expect("opens again");
            assert_eq!(state.retained.len(), 3);
        }
    }

    #[test]
    fn a_bit_flip_in_the_middle_stops_recovery_naming_file_and_offset() {
        let fs = FaultFs::default();
        let (starts, mut data) = three(&fs);
        // A payload byte of the second record.
        data[starts[1] + frame::HEADER + 2] ^= 0x10;
        fs.set_content(&layout().segment_path(0), data.clone());
        let err = open(&fs).expect_err("damage is not a torn tail");
        assert!(
            matches!(&err, StoreError::Corrupt(p, o) if *p == layout().segment_path(0) && *o == starts[1] as u64),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("mosquitto.db.0000000000.log")
                && text.contains(&format!("offset {}", starts[1])),
            "{text}"
        );
        // A flip in the last record: a torn tail.
        let fs = FaultFs::default();
        let (starts, mut data) = three(&fs);
        data[starts[2] + frame::HEADER + 1] ^= 1;
        fs.set_content(&layout().segment_path(0), data);
        let (_, state, recovery) = open(&fs).expect("truncated");
        assert_eq!(state.retained.len(), 2);
        assert_eq!(recovery.notes.len(), 1, "{:?}", recovery.notes);
    }

    #[test]
    fn torn_writes_of_a_batch_lose_only_the_unsynced_batch() {
        for keep in 0..60 {
            let fs = FaultFs::default();
            let (mut log, _, _) = open(&fs).expect("opens");
            log.append(&batch([retain(0), retain(1)])).expect("appends");
            // A batch written but not synced when the power goes: any prefix of it survives.
            let pending = batch([retain(2), retain(3)]);
            drop(log);
            let mut file = fs.append(&layout().segment_path(0)).expect("file");
            file.write_all(&pending).expect("written");
            fs.crash(keep);
            let (_, state, _) = open(&fs).expect("recovers");
            let n = state.retained.len();
            assert!((2..=4).contains(&n), "keep {keep}: {n}");
        }
    }

    #[test]
    fn a_failed_fsync_or_a_full_disk_leaves_the_log_as_it_was() {
        let fs = FaultFs::default();
        let (mut log, _, _) = open(&fs).expect("opens");
        log.append(&batch([retain(0)])).expect("appends");
        fs.fail_syncs(1);
        assert!(log.append(&batch([retain(1)])).is_err());
        fs.set_space(Some(5));
        let err = log.append(&batch([retain(2)])).expect_err("no room");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        fs.set_space(None);
        log.append(&batch([retain(3)])).expect("room again");
        drop(log);
        fs.crash(0);
        let (_, state, recovery) = open(&fs).expect("recovers cleanly");
        assert!(recovery.notes.is_empty(), "{:?}", recovery.notes);
        let topics: Vec<&str> = state.retained.keys().map(String::as_str).collect();
        assert_eq!(topics, ["t/0", "t/3"]);
    }

    #[test]
    fn a_second_opener_is_refused() {
        let fs = FaultFs::default();
        let (log, _, _) = open(&fs).expect("opens");
        let err = open(&fs).expect_err("locked");
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
        assert!(err.to_string().contains("in use by another broker"));
        drop(log);
        open(&fs).expect("free again");
    }

    #[test]
    fn compaction_replaces_segments_by_a_snapshot() {
        let fs = FaultFs::default();
        let (mut log, _, _) = open(&fs).expect("opens");
        log.append(&batch((0..5).map(retain))).expect("appends");
        let upto = log.roll().expect("rolls");
        log.append(&batch([
            retain(5),
            Record::Retain {
                topic: "t/0".into(),
                message: None,
            },
        ]))
        .expect("appends");
        let state = compact(&*Arc::clone(log.fs()), &layout(), upto).expect("compacts");
        assert_eq!(state.retained.len(), 5);
        let names: Vec<PathBuf> = fs.files().into_iter().map(|(p, _)| p).collect();
        assert!(!names.contains(&layout().segment_path(0)), "{names:?}");
        assert!(names.contains(&layout().snapshot_path()));
        drop(log);
        let (_, state, _) = open(&fs).expect("opens");
        assert_eq!(state.retained.len(), 5, "t/0 cleared, t/5 added");
        assert!(!state.retained.contains_key("t/0"));
    }

    #[test]
    fn a_mosquitto_database_is_recognised() {
        let fs = FaultFs::default();
        let mut data = vec![
            0x00, 0xB5, 0x00, b'm', b'o', b's', b'q', b'u', b'i', b't', b't', b'o',
        ];
        data.extend_from_slice(&[7; 40]);
        fs.set_content(&layout().snapshot_path(), data);
        let err = open(&fs).expect_err("not ours");
        assert!(matches!(err, StoreError::NotOurs(_)), "{err}");
    }
}

#[cfg(test)]
mod real_fs_tests {
    use super::*;
    use crate::store::fs::RealFs;

    #[test]
    fn segments_roll_on_the_real_file_system() {
        let dir = std::env::temp_dir().join(format!("pigeon-roll-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = Layout {
            dir: dir.clone(),
            snapshot: "mosquitto.db".into(),
        };
        let (mut log, _, _) = Log::open(Arc::new(RealFs), layout.clone()).expect("opens");
        let mut payload = Vec::new();
        Record::WillGone {
            client: "x".repeat(1 << 20),
        }
        .encode(&mut payload);
        let mut batch = Vec::new();
        frame::encode(&payload, &mut batch);
        for _ in 0..70 {
            log.append(&batch).expect("appends across a roll");
        }
        assert_eq!(log.segment(), 1);
        let upto = log.roll().expect("rolls");
        compact(&RealFs, &layout, upto).expect("compacts");
        drop(log);
        let (_, state, _) = Log::open(Arc::new(RealFs), layout).expect("reopens");
        assert_eq!(state.records, 0, "nothing live after WillGone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
