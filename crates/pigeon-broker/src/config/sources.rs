//! Where configuration text comes from: the file system, or memory in tests.
//!
//! The parser never touches the file system itself. It asks a [`Sources`] for the bytes of a
//! file and for the names in a directory; choosing and ordering the `include_dir` files is
//! done by the parser, so it behaves the same whatever the source.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Reads configuration files and lists directories for [`Config::load_with`].
///
/// [`Config::load_with`]: super::Config::load_with
pub trait Sources {
    /// The content of the file at `path`.
    ///
    /// # Errors
    /// Any I/O error, reported against `path`.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// The names (not paths) of the entries of directory `dir`, in any order.
    ///
    /// # Errors
    /// Any I/O error, reported against `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsSources;

impl Sources for FsSources {
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }
}

/// Files held in memory, for tests: a file's directory is its parent path.
#[derive(Debug, Clone, Default)]
pub struct MemorySources {
    files: BTreeMap<PathBuf, Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
}

impl MemorySources {
    /// No files and no directories.
    pub fn new() -> MemorySources {
        MemorySources::default()
    }

    /// Adds (or replaces) the file at `path`; its parent becomes a directory.
    pub fn add_file(&mut self, path: impl Into<PathBuf>, text: impl Into<Vec<u8>>) -> &mut Self {
        let path = path.into();
        if let Some(parent) = path.parent() {
            self.dirs.insert(parent.to_path_buf());
        }
        self.files.insert(path, text.into());
        self
    }

    /// Adds an empty directory at `path`.
    pub fn add_dir(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.dirs.insert(path.into());
        self
    }
}

impl Sources for MemorySources {
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        if !self.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(self
            .files
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name().map(OsStr::to_os_string))
            .collect())
    }
}

/// Sources with nothing in them: what [`Config::parse`](super::Config::parse) uses, so that an
/// `include_dir` there is an error rather than a silent omission.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoSources;

impl Sources for NoSources {
    fn read_file(&self, _path: &Path) -> io::Result<Vec<u8>> {
        Err(no_file_access())
    }

    fn list_dir(&self, _dir: &Path) -> io::Result<Vec<OsString>> {
        Err(no_file_access())
    }
}

fn no_file_access() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "Config::parse reads no files; use Config::load",
    )
}

/// The names Mosquitto loads from an `include_dir` directory, in its order: names longer than
/// `.conf` that end in `.conf`, sorted letter by letter ignoring case, an upper case letter
/// before the same letter in lower case (`00.conf 01.conf A.conf a.conf B.conf b.conf`).
pub(crate) fn include_order(mut names: Vec<OsString>) -> Vec<OsString> {
    names.retain(|name| {
        let bytes = name.as_encoded_bytes();
        bytes.len() > ".conf".len() && bytes.ends_with(b".conf")
    });
    names.sort_by(|a, b| mosquitto_name_order(a.as_encoded_bytes(), b.as_encoded_bytes()));
    names
}

/// Byte by byte: first by the upper-cased byte, then by the byte itself; a name that is a
/// prefix of another comes first.
fn mosquitto_name_order(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: &u8| (c.to_ascii_uppercase(), *c);
    a.iter().map(key).cmp(b.iter().map(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn include_order_matches_the_mosquitto_manual_example() {
        let sorted = include_order(names(&[
            "b.conf", "A.conf", "01.conf", "a.conf", "B.conf", "00.conf",
        ]));
        assert_eq!(
            sorted,
            names(&["00.conf", "01.conf", "A.conf", "a.conf", "B.conf", "b.conf"])
        );
    }

    #[test]
    fn include_order_keeps_only_conf_files() {
        let sorted = include_order(names(&[
            ".conf",
            "x.conf.bak",
            "README",
            "y.CONF",
            "z.conf",
            "a.conf~",
        ]));
        assert_eq!(sorted, names(&["z.conf"]));
    }

    #[test]
    fn include_order_compares_letter_by_letter() {
        // The first position where the names differ decides: `Ab` and `aA` differ in case
        // at the first letter already, so `Ab` comes first.
        let sorted = include_order(names(&["aA.conf", "Ab.conf", "a_.conf", "aB.conf"]));
        assert_eq!(sorted, names(&["Ab.conf", "aA.conf", "aB.conf", "a_.conf"]));
    }

    #[test]
    fn memory_sources_list_and_read() {
        let mut m = MemorySources::new();
        m.add_file("/d/x.conf", "a")
            .add_file("/d/y.conf", "b")
            .add_file("/d/sub/z.conf", "c")
            .add_dir("/empty");
        let mut listed = m.list_dir(Path::new("/d")).unwrap();
        listed.sort();
        assert_eq!(listed, names(&["x.conf", "y.conf"]));
        assert!(m.list_dir(Path::new("/empty")).unwrap().is_empty());
        assert_eq!(
            m.list_dir(Path::new("/none")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(m.read_file(Path::new("/d/y.conf")).unwrap(), b"b");
        assert!(m.read_file(Path::new("/d/w.conf")).is_err());
    }

    #[test]
    fn no_sources_refuses() {
        assert_eq!(
            NoSources.list_dir(Path::new("/")).unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
    }

    #[test]
    fn fs_sources_read_a_real_directory() {
        let dir = std::env::temp_dir().join(format!("pigeon-config-fs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.conf"), "x").unwrap();
        let listed = FsSources.list_dir(&dir).unwrap();
        assert!(listed.contains(&OsString::from("a.conf")));
        assert_eq!(FsSources.read_file(&dir.join("a.conf")).unwrap(), b"x");
        fs::remove_dir_all(&dir).unwrap();
    }
}
