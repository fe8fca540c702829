//! The file operations the log needs, behind a trait: the real file system, and (for tests) an
//! in-memory one that injects faults (failed fsync, full disk, crashes that lose or tear
//! unsynced bytes).

use std::any::Any;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::Path;

/// One open file, written at its end.
pub trait FileOps: Send {
    /// Appends all of `data`.
    ///
    /// # Errors
    /// The file system's error (a full disk is `StorageFull`).
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes what was written durable (`fdatasync`).
    ///
    /// # Errors
    /// The file system's error: what was written since the last sync may be lost.
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (undoing a failed append).
    ///
    /// # Errors
    /// The file system's error.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The directory operations the log needs.
pub trait Fs: Send + Sync + 'static {
    /// Creates `dir` and its parents if missing.
    ///
    /// # Errors
    /// The file system's error.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir`.
    ///
    /// # Errors
    /// The file system's error.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole content of a file.
    ///
    /// # Errors
    /// The file system's error (`NotFound` when missing).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens a file to append to, creating it empty if missing.
    ///
    /// # Errors
    /// The file system's error.
    fn append(&self, path: &Path) -> io::Result<Box<dyn FileOps>>;
    /// Creates a file, empty (replacing any).
    ///
    /// # Errors
    /// The file system's error.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FileOps>>;
    /// Renames `from` to `to`, replacing it.
    ///
    /// # Errors
    /// The file system's error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    ///
    /// # Errors
    /// The file system's error.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes renames and removals in `dir` durable.
    ///
    /// # Errors
    /// The file system's error.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` for as long as the returned guard lives.
    ///
    /// # Errors
    /// `WouldBlock` when another process (or guard) holds it; otherwise the file system's.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

struct RealFile(File);

impl FileOps for RealFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Fs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }
    fn append(&self, path: &Path) -> io::Result<Box<dyn FileOps>> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Box::new(RealFile(file)))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FileOps>> {
        Ok(Box::new(RealFile(File::create(path)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(file)),
            Err(TryLockError::WouldBlock) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// An in-memory file system for tests, with faults on demand.
#[cfg(test)]
pub mod fault {
    use std::collections::{BTreeMap, HashSet};
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex, MutexGuard};

    use super::*;

    #[derive(Debug, Default, Clone)]
    struct MemFile {
        data: Vec<u8>,
        synced: usize,
    }

    #[derive(Debug, Default)]
    struct State {
        files: BTreeMap<PathBuf, MemFile>,
        locks: HashSet<PathBuf>,
        fail_syncs: usize,
        /// Bytes that may still be written before the disk is full.
        space: Option<usize>,
        syncs: usize,
    }

    /// The in-memory file system; clones share it.
    #[derive(Debug, Default, Clone)]
    pub struct FaultFs(Arc<Mutex<State>>);

    impl FaultFs {
        fn state(&self) -> MutexGuard<'_, State> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
        /// The next `n` syncs fail with an I/O error (and lose what they were to sync).
        pub fn fail_syncs(&self, n: usize) {
            self.state().fail_syncs = n;
        }
        /// Only `bytes` more may be written (then `StorageFull`); `None`: no limit.
        pub fn set_space(&self, bytes: Option<usize>) {
            self.state().space = bytes;
        }
        /// Syncs done so far.
        pub fn syncs(&self) -> usize {
            self.state().syncs
        }
        /// A crash: every file keeps what was synced, plus the first `keep` unsynced bytes
        /// (a torn write); locks are released.
        pub fn crash(&self, keep: usize) {
            let mut s = self.state();
            for f in s.files.values_mut() {
                let len = (f.synced + keep).min(f.data.len());
                f.data.truncate(len);
                f.synced = len;
            }
            s.locks.clear();
        }
        /// The content of a file.
        pub fn content(&self, path: &Path) -> Option<Vec<u8>> {
            self.state().files.get(path).map(|f| f.data.clone())
        }
        /// Replaces the content of a file (synced).
        pub fn set_content(&self, path: &Path, data: Vec<u8>) {
            let synced = data.len();
            self.state()
                .files
                .insert(path.to_path_buf(), MemFile { data, synced });
        }
        /// Files and their lengths.
        pub fn files(&self) -> Vec<(PathBuf, usize)> {
            self.state()
                .files
                .iter()
                .map(|(p, f)| (p.clone(), f.data.len()))
                .collect()
        }
    }

    struct Handle {
        fs: FaultFs,
        path: PathBuf,
    }

    impl FileOps for Handle {
        fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
            let mut s = self.fs.state();
            let room = s.space.unwrap_or(usize::MAX);
            let n = data.len().min(room);
            if let Some(space) = &mut s.space {
                *space -= n;
            }
            let f = s.files.entry(self.path.clone()).or_default();
            f.data.extend_from_slice(&data[..n]);
            if n < data.len() {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            let mut s = self.fs.state();
            s.syncs += 1;
            if s.fail_syncs > 0 {
                s.fail_syncs -= 1;
                // As Linux may: the dirty pages are dropped, the error reported once.
                let f = s.files.entry(self.path.clone()).or_default();
                let synced = f.synced;
                f.data.truncate(synced);
                return Err(io::Error::other("injected fsync failure"));
            }
            let f = s.files.entry(self.path.clone()).or_default();
            f.synced = f.data.len();
            Ok(())
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            let mut s = self.fs.state();
            let f = s.files.entry(self.path.clone()).or_default();
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            f.data.resize(len, 0);
            f.synced = f.synced.min(len);
            Ok(())
        }
    }

    impl Fs for FaultFs {
        fn create_dir_all(&self, _: &Path) -> io::Result<()> {
            Ok(())
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            Ok(self
                .state()
                .files
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
                .collect())
        }
        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            self.content(path)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn append(&self, path: &Path) -> io::Result<Box<dyn FileOps>> {
            self.state().files.entry(path.to_path_buf()).or_default();
            Ok(Box::new(Handle {
                fs: self.clone(),
                path: path.to_path_buf(),
            }))
        }
        fn create(&self, path: &Path) -> io::Result<Box<dyn FileOps>> {
            self.state()
                .files
                .insert(path.to_path_buf(), MemFile::default());
            self.append(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            let mut s = self.state();
            let f = s
                .files
                .remove(from)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            s.files.insert(to.to_path_buf(), f);
            Ok(())
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            self.state().files.remove(path);
            Ok(())
        }
        fn sync_dir(&self, _: &Path) -> io::Result<()> {
            Ok(())
        }
        fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
            if !self.state().locks.insert(path.to_path_buf()) {
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            Ok(Box::new(LockGuard {
                fs: self.clone(),
                path: path.to_path_buf(),
            }))
        }
    }

    struct LockGuard {
        fs: FaultFs,
        path: PathBuf,
    }

    impl Drop for LockGuard {
        fn drop(&mut self) {
            self.fs.state().locks.remove(&self.path);
        }
    }
}
