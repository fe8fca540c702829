//! Mosquitto password files, as `password_file` names them and `mosquitto_passwd` writes them.
//!
//! # The format
//!
//! One entry per line, `username:password`, where the password field is a hash in one of the
//! two forms Mosquitto 2.0 reads (the salt and hash are standard base64 with padding):
//!
//! - `$6$<salt>$<hash>`: SHA-512 over the password followed by the salt (what Mosquitto 1.6
//!   and earlier wrote, and what `mosquitto_passwd -H sha512` still writes).
//! - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 with a 64-byte output (what
//!   `mosquitto_passwd` 2.0 writes by default: 101 iterations, a 12-byte salt).
//!
//! The hash is always 64 bytes. As in Mosquitto, surrounding white space on a line is
//! ignored, blank lines and lines starting with `#` are skipped, and when a username appears
//! more than once the last entry counts. Plain-text passwords (a password field that is not a
//! hash) are kept by [`PasswordFile`] so that they can be converted
//! ([`PasswordFile::hash_all`], `pigeon-passwd -U`), but they never authenticate anyone.
//!
//! # What is here
//!
//! - [`PasswordHash`]: one hash, parsed, written, generated with a fresh salt
//!   ([`PasswordHash::generate`]) and verified in constant time ([`PasswordHash::verify`]).
//! - [`HashParams`]: how to hash: [`HashParams::MOSQUITTO_2_0`] (the default) or
//!   [`HashParams::MOSQUITTO_2_1`] (1000 iterations and a 64-byte salt, which Mosquitto 2.0's
//!   broker cannot read).
//! - [`PasswordFile`]: a whole file, edited without disturbing the lines it does not touch
//!   (comments, blank lines and untouched entries are written back byte for byte).
//! - [`Credentials`]: the usernames and hashes a broker checks CONNECT packets against.
//!
//! ```
//! use pigeon_broker::auth::passwd::{HashParams, PasswordFile};
//!
//! let mut file = PasswordFile::parse("# users\nalice:plain\n")?;
//! file.set_password("bob", b"secret", &HashParams::default())?;
//! let (credentials, errors) = file.credentials();
//! assert_eq!(errors.len(), 1); // alice's password is not hashed
//! assert!(credentials.verify("bob", b"secret"));
//! assert!(!credentials.verify("bob", b"wrong"));
//! assert!(file.to_string().starts_with("# users\nalice:plain\nbob:$7$101$"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq as _;

/// The length in bytes of every hash in a password file (a SHA-512 output).
pub const HASH_LEN: usize = 64;

/// The longest username or password MQTT can carry, in bytes; `mosquitto_passwd` refuses
/// longer ones.
pub const MAX_LEN: usize = 65_535;

/// A hashing algorithm, as `mosquitto_passwd -H` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `sha512`: SHA-512 over the password then the salt, written `$6$`.
    Sha512,
    /// `sha512-pbkdf2`: PBKDF2-HMAC-SHA512, written `$7$`.
    Sha512Pbkdf2,
}

impl Algorithm {
    /// The algorithm `-H NAME` selects: `sha512` or `sha512-pbkdf2`.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha512" => Some(Algorithm::Sha512),
            "sha512-pbkdf2" => Some(Algorithm::Sha512Pbkdf2),
            _ => None,
        }
    }

    /// The name `-H` takes for this algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha512 => "sha512",
            Algorithm::Sha512Pbkdf2 => "sha512-pbkdf2",
        }
    }
}

/// How [`PasswordHash::generate`] hashes a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashParams {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// PBKDF2 iterations (ignored by [`Algorithm::Sha512`]).
    pub iterations: NonZeroU32,
    /// The length of the random salt, in bytes (at least 1).
    pub salt_len: usize,
}

impl HashParams {
    /// What `mosquitto_passwd` 2.0 writes: `$7$`, 101 iterations, a 12-byte salt.
    pub const MOSQUITTO_2_0: HashParams = HashParams {
        algorithm: Algorithm::Sha512Pbkdf2,
        iterations: NonZeroU32::new(101).expect("101 is not zero"),
        salt_len: 12,
    };

    /// Mosquitto 2.1's `sha512-pbkdf2` form: `$7$`, 1000 iterations, a 64-byte salt (as long
    /// as the hash). Mosquitto 2.0's broker rejects salts this long ("Unable to decode
    /// password salt"), so this is for files read by Mosquitto 2.1 and Pigeon only.
    pub const MOSQUITTO_2_1: HashParams = HashParams {
        algorithm: Algorithm::Sha512Pbkdf2,
        iterations: NonZeroU32::new(1000).expect("1000 is not zero"),
        salt_len: 64,
    };
}

impl Default for HashParams {
    /// [`HashParams::MOSQUITTO_2_0`].
    fn default() -> HashParams {
        HashParams::MOSQUITTO_2_0
    }
}

/// Why a password field is not a hash Pigeon (and Mosquitto 2.0) can check passwords against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The field does not start with `$`: a plain-text password, or nothing.
    #[error("the password is not hashed (a hash starts with $6$ or $7$)")]
    NotHashed,
    /// `$N$` with an N other than 6 or 7.
    #[error("unknown password hash type (${0}$; Pigeon reads $6$ and $7$)")]
    UnknownType(String),
    /// Too many or too few `$`-separated fields for the type.
    #[error("a ${kind}$ hash has {expected} fields separated by '$', this one has {found}")]
    FieldCount {
        /// The hash type, `6` or `7`.
        kind: char,
        /// How many fields that type has.
        expected: usize,
        /// How many the field has.
        found: usize,
    },
    /// The iteration count of a `$7$` hash is not a whole number from 1 to 4294967295.
    #[error("invalid iteration count {0:?} (a whole number from 1 to 4294967295)")]
    Iterations(String),
    /// The salt is not valid base64.
    #[error("the salt is not valid base64")]
    SaltEncoding,
    /// The salt is empty.
    #[error("the salt is empty")]
    EmptySalt,
    /// The hash is not valid base64.
    #[error("the hash is not valid base64")]
    HashEncoding,
    /// The hash does not decode to [`HASH_LEN`] bytes.
    #[error("the hash is {0} bytes long instead of 64")]
    HashLength(usize),
}

/// Why [`PasswordHash::generate`] could not make a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// [`HashParams::salt_len`] is zero.
    #[error("the salt length must be at least 1 byte")]
    EmptySalt,
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes for the salt: {0}")]
    Random(String),
}

/// One password hash: `$6$salt$hash` or `$7$iterations$salt$hash`.
///
/// [`FromStr`] parses it, [`Display`](fmt::Display) writes it back in the same form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PasswordHash {
    algorithm: Algorithm,
    /// 1 for [`Algorithm::Sha512`].
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: [u8; HASH_LEN],
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    ///
    /// # Errors
    /// When `params.salt_len` is zero or the system's random number generator fails.
    pub fn generate(password: &[u8], params: &HashParams) -> Result<PasswordHash, GenerateError> {
        if params.salt_len == 0 {
            return Err(GenerateError::EmptySalt);
        }
        let mut salt = vec![0; params.salt_len];
        getrandom::fill(&mut salt).map_err(|e| GenerateError::Random(e.to_string()))?;
        Ok(PasswordHash::with_salt(
            password,
            params.algorithm,
            params.iterations,
            salt,
        ))
    }

    /// Hashes `password` with the given salt (for tests and known-answer checks; use
    /// [`generate`](Self::generate) to store a password). `iterations` is ignored by
    /// [`Algorithm::Sha512`].
    ///
    /// # Panics
    /// When `salt` is empty.
    pub fn with_salt(
        password: &[u8],
        algorithm: Algorithm,
        iterations: NonZeroU32,
        salt: Vec<u8>,
    ) -> PasswordHash {
        assert!(!salt.is_empty(), "a password hash needs a salt");
        let iterations = match algorithm {
            Algorithm::Sha512 => NonZeroU32::MIN,
            Algorithm::Sha512Pbkdf2 => iterations,
        };
        let hash = compute(algorithm, iterations, password, &salt);
        PasswordHash {
            algorithm,
            iterations,
            salt,
            hash,
        }
    }

    /// Whether `password` is the one this hash was made from. The hashes are compared in
    /// constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let candidate = compute(self.algorithm, self.iterations, password, &self.salt);
        bool::from(candidate.ct_eq(&self.hash))
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The PBKDF2 iteration count (1 for [`Algorithm::Sha512`]).
    pub fn iterations(&self) -> NonZeroU32 {
        self.iterations
    }

    /// The salt.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// For a `$7$` (PBKDF2-HMAC-SHA512) hash, the hash itself: SCRAM-SHA-512's
    /// SaltedPassword for this salt and iteration count (`auth::scram`). `None` for `$6$`.
    pub fn salted_password(&self) -> Option<&[u8; HASH_LEN]> {
        (self.algorithm == Algorithm::Sha512Pbkdf2).then_some(&self.hash)
    }
}

/// The 64-byte hash of `password` with `salt`.
fn compute(
    algorithm: Algorithm,
    iterations: NonZeroU32,
    password: &[u8],
    salt: &[u8],
) -> [u8; HASH_LEN] {
    let mut out = [0; HASH_LEN];
    match algorithm {
        Algorithm::Sha512 => {
            let digest = Sha512::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize();
            out.copy_from_slice(&digest);
        }
        Algorithm::Sha512Pbkdf2 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations.get(), &mut out);
        }
    }
    out
}

impl FromStr for PasswordHash {
    type Err = HashError;

    fn from_str(s: &str) -> Result<PasswordHash, HashError> {
        let Some(rest) = s.strip_prefix('$') else {
            return Err(HashError::NotHashed);
        };
        let fields: Vec<&str> = rest.split('$').collect();
        let (algorithm, kind, expected) = match fields[0] {
            "6" => (Algorithm::Sha512, '6', 3),
            "7" => (Algorithm::Sha512Pbkdf2, '7', 4),
            other => return Err(HashError::UnknownType(other.to_owned())),
        };
        if fields.len() != expected {
            return Err(HashError::FieldCount {
                kind,
                expected: expected + 1,
                found: fields.len() + 1,
            });
        }
        let (iterations, salt, hash) = match algorithm {
            Algorithm::Sha512 => (NonZeroU32::MIN, fields[1], fields[2]),
            Algorithm::Sha512Pbkdf2 => {
                let text = fields[1];
                let iterations = Some(text)
                    .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|t| t.parse::<NonZeroU32>().ok())
                    .ok_or_else(|| HashError::Iterations(text.to_owned()))?;
                (iterations, fields[2], fields[3])
            }
        };
        let salt = BASE64.decode(salt).map_err(|_| HashError::SaltEncoding)?;
        if salt.is_empty() {
            return Err(HashError::EmptySalt);
        }
        let hash = BASE64.decode(hash).map_err(|_| HashError::HashEncoding)?;
        let hash: [u8; HASH_LEN] = hash
            .as_slice()
            .try_into()
            .map_err(|_| HashError::HashLength(hash.len()))?;
        Ok(PasswordHash {
            algorithm,
            iterations,
            salt,
            hash,
        })
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let salt = BASE64.encode(&self.salt);
        let hash = BASE64.encode(self.hash);
        match self.algorithm {
            Algorithm::Sha512 => write!(f, "$6${salt}${hash}"),
            Algorithm::Sha512Pbkdf2 => write!(f, "$7${}${salt}${hash}", self.iterations),
        }
    }
}

/// Why a username cannot be stored in a password file (see [`check_username`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsernameError {
    /// The username is empty (Mosquitto's broker skips such an entry as an invalid line).
    #[error("the username is empty")]
    Empty,
    /// The username contains `:`, which ends the username in the file.
    #[error("the username contains ':'")]
    Colon,
    /// The username contains a control character (a line break would split the entry).
    #[error("the username contains a control character")]
    ControlCharacter,
    /// The username starts with white space (which the broker strips) or `#` (which makes the
    /// line a comment).
    #[error("the username starts with white space or '#'")]
    BadStart,
    /// The username is longer than [`MAX_LEN`] bytes.
    #[error("the username is longer than 65535 bytes")]
    TooLong,
}

/// Checks that `username` can be written to a password file and read back as the same
/// username.
///
/// # Errors
/// The first problem found.
pub fn check_username(username: &str) -> Result<(), UsernameError> {
    if username.is_empty() {
        Err(UsernameError::Empty)
    } else if username.contains(':') {
        Err(UsernameError::Colon)
    } else if username.chars().any(char::is_control) {
        Err(UsernameError::ControlCharacter)
    } else if username.starts_with('#') || username.starts_with(|c: char| c.is_whitespace()) {
        Err(UsernameError::BadStart)
    } else if username.len() > MAX_LEN {
        Err(UsernameError::TooLong)
    } else {
        Ok(())
    }
}

/// What is wrong with one line of a password file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineErrorKind {
    /// The line is not valid UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
    /// Neither blank, a comment, nor `username:password`.
    #[error("no ':' between username and password")]
    NoColon,
    /// `:password` with nothing before the colon.
    #[error("empty username")]
    EmptyUsername,
    /// The password field is not a usable hash (from [`PasswordFile::credentials`]).
    #[error("user {username}: {error}")]
    Hash {
        /// The entry's username.
        username: String,
        /// What is wrong with its hash.
        error: HashError,
    },
}

/// An error on one line of a password file: line `line` (counted from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct LineError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub kind: LineErrorKind,
}

/// One `username:password` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    username: String,
    password: String,
    /// The line as read, written back unchanged while the entry is.
    raw: Option<String>,
}

impl Entry {
    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password field as written: a hash, or a plain-text password.
    pub fn password_field(&self) -> &str {
        &self.password
    }

    /// The password field parsed as a hash.
    ///
    /// # Errors
    /// When it is not one (a plain-text password, or a malformed hash).
    pub fn hash(&self) -> Result<PasswordHash, HashError> {
        self.password.parse()
    }

    fn set(&mut self, password: String) {
        self.password = password;
        self.raw = None;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A blank line or a comment.
    Other(String),
    /// A line [`PasswordFile::parse_lenient`] could not read, kept as it was.
    Invalid(String),
    Entry(Entry),
}

/// A password file: its entries, and its comments and blank lines in place.
///
/// Writing it ([`Display`](fmt::Display)) gives back every line it did not change as it was
/// read (line endings included), then the entries added, each line ending with `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasswordFile {
    lines: Vec<Line>,
}

impl PasswordFile {
    /// An empty file.
    pub fn new() -> PasswordFile {
        PasswordFile::default()
    }

    /// Reads a password file's text.
    ///
    /// # Errors
    /// On the first line that is neither blank, a comment nor `username:password`.
    pub fn parse(text: &str) -> Result<PasswordFile, LineError> {
        PasswordFile::parse_bytes(text.as_bytes())
    }

    /// [`parse`](Self::parse) for a file's bytes: a line that is not UTF-8 is an error.
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub fn parse_bytes(bytes: &[u8]) -> Result<PasswordFile, LineError> {
        let (file, mut errors) = PasswordFile::parse_lenient(bytes);
        match errors.is_empty() {
            true => Ok(file),
            false => Err(errors.swap_remove(0)),
        }
    }

    /// Reads a password file the way Mosquitto's broker does: lines it cannot read are
    /// reported and otherwise ignored (they are kept, unchanged, if the file is written back).
    pub fn parse_lenient(bytes: &[u8]) -> (PasswordFile, Vec<LineError>) {
        let mut lines = Vec::new();
        let mut errors = Vec::new();
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if bytes.is_empty() {
            return (PasswordFile { lines }, errors);
        }
        for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let Ok(raw) = std::str::from_utf8(raw) else {
                let kept = String::from_utf8_lossy(raw).into_owned();
                lines.push(Line::Invalid(kept));
                errors.push(LineError {
                    line,
                    kind: LineErrorKind::NotUtf8,
                });
                continue;
            };
            let text = raw.trim_ascii();
            if text.is_empty() || text.starts_with('#') {
                lines.push(Line::Other(raw.to_owned()));
                continue;
            }
            let kind = match text.split_once(':') {
                None => LineErrorKind::NoColon,
                Some(("", _)) => LineErrorKind::EmptyUsername,
                Some((username, password)) => {
                    lines.push(Line::Entry(Entry {
                        username: username.to_owned(),
                        password: password.to_owned(),
                        raw: Some(raw.to_owned()),
                    }));
                    continue;
                }
            };
            lines.push(Line::Invalid(raw.to_owned()));
            errors.push(LineError { line, kind });
        }
        (PasswordFile { lines }, errors)
    }

    /// The entries, in file order, each with its line number (from 1) as last read or
    /// written.
    pub fn entries(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| match line {
                Line::Entry(entry) => Some((i + 1, entry)),
                _ => None,
            })
    }

    /// The entry that counts for `username`: the last one, as in Mosquitto.
    pub fn get(&self, username: &str) -> Option<&Entry> {
        self.entries()
            .map(|(_, e)| e)
            .filter(|e| e.username == username)
            .last()
    }

    /// Sets `username`'s password field to a fresh hash of `password`: every entry for
    /// `username` is replaced (each with its own salt), or, if there is none, one is added at
    /// the end. Returns whether an entry was replaced.
    ///
    /// The username is not checked: see [`check_username`].
    ///
    /// # Errors
    /// When no hash can be made ([`PasswordHash::generate`]).
    pub fn set_password(
        &mut self,
        username: &str,
        password: &[u8],
        params: &HashParams,
    ) -> Result<bool, GenerateError> {
        let mut replaced = false;
        for line in &mut self.lines {
            if let Line::Entry(entry) = line
                && entry.username == username
            {
                entry.set(PasswordHash::generate(password, params)?.to_string());
                replaced = true;
            }
        }
        if !replaced {
            self.push(username, &PasswordHash::generate(password, params)?);
        }
        Ok(replaced)
    }

    /// Adds an entry at the end, whether or not `username` already has one.
    pub fn push(&mut self, username: &str, hash: &PasswordHash) {
        self.lines.push(Line::Entry(Entry {
            username: username.to_owned(),
            password: hash.to_string(),
            raw: None,
        }));
    }

    /// Removes every entry for `username`; returns how many there were.
    pub fn remove(&mut self, username: &str) -> usize {
        let before = self.lines.len();
        self.lines
            .retain(|line| !matches!(line, Line::Entry(e) if e.username == username));
        before - self.lines.len()
    }

    /// Replaces every entry's password field with a hash of it: converts a file of plain-text
    /// passwords (`pigeon-passwd -U`). A field that already is a hash is hashed too, as
    /// `mosquitto_passwd -U` does, which makes that entry unusable. Returns how many entries
    /// were hashed.
    ///
    /// # Errors
    /// When no hash can be made ([`PasswordHash::generate`]); the file is then partly
    /// converted.
    pub fn hash_all(&mut self, params: &HashParams) -> Result<usize, GenerateError> {
        let mut count = 0;
        for line in &mut self.lines {
            if let Line::Entry(entry) = line {
                let hash = PasswordHash::generate(entry.password.as_bytes(), params)?;
                entry.set(hash.to_string());
                count += 1;
            }
        }
        Ok(count)
    }

    /// The usernames and hashes to check passwords against, and an error for each entry
    /// whose password field is not a usable hash (such entries are left out, as Mosquitto's
    /// broker leaves them out).
    pub fn credentials(&self) -> (Credentials, Vec<LineError>) {
        let mut users = HashMap::new();
        let mut errors = Vec::new();
        for (line, entry) in self.entries() {
            match entry.hash() {
                Ok(hash) => {
                    users.insert(entry.username.clone(), hash);
                }
                Err(error) => errors.push(LineError {
                    line,
                    kind: LineErrorKind::Hash {
                        username: entry.username.clone(),
                        error,
                    },
                }),
            }
        }
        (Credentials { users }, errors)
    }
}

impl fmt::Display for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            match line {
                Line::Other(raw) | Line::Invalid(raw) => writeln!(f, "{raw}")?,
                Line::Entry(Entry { raw: Some(raw), .. }) => writeln!(f, "{raw}")?,
                Line::Entry(Entry {
                    username, password, ..
                }) => writeln!(f, "{username}:{password}")?,
            }
        }
        Ok(())
    }
}

/// Usernames and their password hashes, read from a password file
/// ([`PasswordFile::credentials`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    users: HashMap<String, PasswordHash>,
}

impl Credentials {
    /// Whether `username` may log in with `password`. An unknown username costs a hash
    /// computation too, so that timing does not tell which usernames exist.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(hash) => hash.verify(password),
            None => {
                let _ = decoy().verify(password);
                false
            }
        }
    }

    /// The hash of `username`'s password, if it has an entry.
    pub fn get(&self, username: &str) -> Option<&PasswordHash> {
        self.users.get(username)
    }

    /// Whether `username` has an entry.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// How many usernames there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// A hash with the default parameters, checked for unknown usernames.
fn decoy() -> &'static PasswordHash {
    static DECOY: OnceLock<PasswordHash> = OnceLock::new();
    DECOY.get_or_init(|| {
        let params = HashParams::MOSQUITTO_2_0;
        PasswordHash::with_salt(
            b"",
            params.algorithm,
            params.iterations,
            vec![0; params.salt_len],
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Debian 12's `mosquitto_passwd` 2.0.11 (`-b FILE USER PASSWORD`, with `-H
    /// sha512` for the `$6$` ones and `-I N` for other iteration counts): (password, line).
    const MOSQUITTO_VECTORS: &[(&str, &str)] = &[
        (
            "pass",
            "alice:$7$101$PsBqCc4qD7wmXxs8$GcWpiC21Qya/NLq5Cm+iURxXwttyu5ftqpHd52ZMMIHaxrDFO7TIfAbZw8YZdJ5fJ73c6HkLb7GDQEH9k99CYQ==",
        ),
        (
            "",
            "empty:$7$101$DG7AhFE6bSDc3h1T$kG9tBSqH6M5UVjt4wtMkY/L3v31U1U/MvElcT3UcQX0M92lUXbb2JK0MtmduLOdCqhZHGeE+VxIKXs73R/Curg==",
        ),
        (
            "pässwörd ✓",
            "unicode:$7$101$0GV600jSIepbaukS$sRAkyx87cL9rg9YtajoOVRBlwdh6lTkbIJHq2EgFKJ5UKIGVHlbkQ00kby7/Q7zL10V3yrFNWEnAXVpF4TmiFw==",
        ),
        (
            "a:b$c d#e",
            "punct:$7$101$8Bo8belOdA4Hh67x$yJiyEvHZoY6YrU1CDKqQFtwJmTQTzNi26QBebifRlNmPa7L9KAfmEpzvLHIGB7KBVtx/SLCPEDOws+3EA3ysfA==",
        ),
        (
            "legacy",
            "old6:$6$xoW5ohPgeNzoy+Ah$JyPYLmyY7UcYi+wcAFsvZBIwdHubyHeSkj0c/3M8ZCFF9vGNKx9vewhmb4kMBkAnrgQ0qJN6+SSsBfc7Fqkebg==",
        ),
        (
            "",
            "old6empty:$6$6rckQAP2LKCneXbo$TZTVo+dhxNBItCfAR0a1UUMorMxeJZ86NMV1mBK7g1/aNn4uJJ3UzQlGBM2DZ3CgSeulO1iw0VN7Fll14GuX/Q==",
        ),
        (
            "thousand",
            "iter1000:$7$1000$GGQUAUvNcpg8py1F$cdJ5ci5SQuHf2AV+gLifOgABo7Fcp3eQjcHOpUGC+i07a2ENUMMFF8oHL2H3JTZImSyA2oz3Yr2FYIBBbaCjbg==",
        ),
        (
            "one",
            "iter1:$7$1$M6PJcJNWv4VcT4dc$xB06Z6MpCJDcAltpNVbxOr17XY1TA0r6qcPBs1PfbWGDGRnDeW5L2hfklWaV5MdWmR60IZFxkDqw0M4S6SvzXg==",
        ),
        (
            LONG,
            "long:$7$101$w+4Q1QUqGkr5OVg6$WB/qH6lxd7Fu7rhPy/GblFVFStDP+npZZTPSGZJjy4e4SA/7pHI98uV428PC1xQxfEtmwkkXQrZlv6XTiCDvmg==",
        ),
    ];

    /// 200 times "x".
    const LONG: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\
                        xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\
                        xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\
                        xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

    fn iterations(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn verifies_hashes_written_by_mosquitto_passwd() {
        for (password, line) in MOSQUITTO_VECTORS {
            let (_, field) = line.split_once(':').unwrap();
            let hash: PasswordHash = field.parse().unwrap();
            assert!(hash.verify(password.as_bytes()), "{line}");
            assert!(!hash.verify(b"wrong"), "{line}");
            assert!(!hash.verify(format!("{password}x").as_bytes()), "{line}");
            // Written back exactly as read.
            assert_eq!(hash.to_string(), *field);
        }
    }

    #[test]
    fn reads_a_file_written_by_mosquitto_passwd() {
        let text: String = MOSQUITTO_VECTORS
            .iter()
            .map(|(_, line)| format!("{line}\n"))
            .collect();
        let file = PasswordFile::parse(&text).unwrap();
        assert_eq!(file.to_string(), text);
        let (credentials, errors) = file.credentials();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(credentials.len(), MOSQUITTO_VECTORS.len());
        for (password, line) in MOSQUITTO_VECTORS {
            let (username, _) = line.split_once(':').unwrap();
            assert!(credentials.verify(username, password.as_bytes()), "{line}");
            assert!(!credentials.verify(username, b"nope"), "{line}");
        }
        assert!(!credentials.verify("nobody", b"pass"));
    }

    #[test]
    fn sha512_is_the_password_followed_by_the_salt() {
        let salt = b"0123456789ab".to_vec();
        let hash = PasswordHash::with_salt(b"pw", Algorithm::Sha512, iterations(999), salt);
        let mut expected = Sha512::new();
        expected.update(b"pw0123456789ab");
        assert_eq!(hash.hash[..], expected.finalize()[..]);
        assert_eq!(hash.iterations().get(), 1, "$6$ has no iteration count");
        assert!(hash.to_string().starts_with("$6$MDEyMzQ1Njc4OWFi$"));
    }

    #[test]
    fn pbkdf2_matches_the_rfc_6070_style_vector_for_sha512() {
        // PBKDF2-HMAC-SHA512("password", "salt", 1 iteration), 64 bytes: the widely published
        // known answer.
        let hash = PasswordHash::with_salt(
            b"password",
            Algorithm::Sha512Pbkdf2,
            iterations(1),
            b"salt".to_vec(),
        );
        let expected = "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252\
                        c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce";
        let hex: String = hash.hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn generated_hashes_round_trip() {
        for params in [
            HashParams::MOSQUITTO_2_0,
            HashParams::MOSQUITTO_2_1,
            HashParams {
                algorithm: Algorithm::Sha512,
                ..HashParams::MOSQUITTO_2_0
            },
            HashParams {
                iterations: iterations(7),
                salt_len: 1,
                ..HashParams::MOSQUITTO_2_0
            },
        ] {
            let hash = PasswordHash::generate(b"s3cret", &params).unwrap();
            assert_eq!(hash.algorithm(), params.algorithm);
            assert_eq!(hash.salt().len(), params.salt_len);
            let text = hash.to_string();
            let back: PasswordHash = text.parse().unwrap();
            assert_eq!(back, hash);
            assert!(back.verify(b"s3cret"));
            assert!(!back.verify(b"s3cre"));
        }
    }

    #[test]
    fn default_and_2_1_forms_look_like_mosquittos() {
        let hash = PasswordHash::generate(b"x", &HashParams::default()).unwrap();
        let text = hash.to_string();
        let fields: Vec<&str> = text.split('$').collect();
        assert_eq!(fields[..3], ["", "7", "101"]);
        assert_eq!(
            fields[3].len(),
            16,
            "12 bytes of salt are 16 base64 characters"
        );
        assert_eq!(
            fields[4].len(),
            88,
            "64 bytes of hash are 88 base64 characters"
        );

        let text = PasswordHash::generate(b"x", &HashParams::MOSQUITTO_2_1)
            .unwrap()
            .to_string();
        let fields: Vec<&str> = text.split('$').collect();
        assert_eq!(fields[..3], ["", "7", "1000"]);
        assert_eq!(fields[3].len(), 88);
    }

    #[test]
    fn salts_are_fresh() {
        let a = PasswordHash::generate(b"x", &HashParams::default()).unwrap();
        let b = PasswordHash::generate(b"x", &HashParams::default()).unwrap();
        assert_ne!(a.salt(), b.salt());
    }

    #[test]
    fn zero_salt_length_is_refused() {
        let params = HashParams {
            salt_len: 0,
            ..HashParams::default()
        };
        assert_eq!(
            PasswordHash::generate(b"x", &params),
            Err(GenerateError::EmptySalt)
        );
    }

    #[test]
    fn malformed_hashes_are_errors() {
        let salt = "PsBqCc4qD7wmXxs8";
        let hash = "GcWpiC21Qya/NLq5Cm+iURxXwttyu5ftqpHd52ZMMIHaxrDFO7TIfAbZw8YZdJ5fJ73c6HkLb7GDQEH9k99CYQ==";
        let cases: Vec<(String, HashError)> = vec![
            ("plain".into(), HashError::NotHashed),
            (String::new(), HashError::NotHashed),
            (
                format!("$5${salt}${hash}"),
                HashError::UnknownType("5".into()),
            ),
            ("$".into(), HashError::UnknownType(String::new())),
            (
                format!("$6$101${salt}${hash}"),
                HashError::FieldCount {
                    kind: '6',
                    expected: 4,
                    found: 5,
                },
            ),
            (
                format!("$7${salt}${hash}"),
                HashError::FieldCount {
                    kind: '7',
                    expected: 5,
                    found: 4,
                },
            ),
            (
                format!("$7$0${salt}${hash}"),
                HashError::Iterations("0".into()),
            ),
            (
                format!("$7$+5${salt}${hash}"),
                HashError::Iterations("+5".into()),
            ),
            (
                format!("$7$${salt}${hash}"),
                HashError::Iterations(String::new()),
            ),
            (
                format!("$7$4294967296${salt}${hash}"),
                HashError::Iterations("4294967296".into()),
            ),
            (format!("$7$101$!!${hash}"), HashError::SaltEncoding),
            (format!("$7$101$${hash}"), HashError::EmptySalt),
            (format!("$7$101${salt}$abc"), HashError::HashEncoding),
            (
                format!("$7$101${salt}${}", hash.trim_end_matches('=')),
                HashError::HashEncoding,
            ),
            (format!("$7$101${salt}$AAAA"), HashError::HashLength(3)),
            (format!("$6${salt}$"), HashError::HashLength(0)),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<PasswordHash>(), Err(error), "{text:?}");
        }
    }

    const VALID: &str = "$7$101$PsBqCc4qD7wmXxs8$GcWpiC21Qya/NLq5Cm+iURxXwttyu5ftqpHd52ZMMIHaxrDFO7TIfAbZw8YZdJ5fJ73c6HkLb7GDQEH9k99CYQ==";

    #[test]
    fn comments_blank_lines_and_odd_spacing_survive_editing() {
        let text = format!(
            "# users\n\n   \nalice:{VALID}\r\n  # indented comment\n bob:plain  \ncarol:{VALID}\n"
        );
        let mut file = PasswordFile::parse(&text).unwrap();
        assert_eq!(
            file.to_string(),
            text,
            "unchanged file written back as read"
        );
        let users: Vec<(usize, &str, &str)> = file
            .entries()
            .map(|(n, e)| (n, e.username(), e.password_field()))
            .collect();
        assert_eq!(
            users,
            [
                (4, "alice", VALID),
                (6, "bob", "plain"),
                (7, "carol", VALID)
            ]
        );

        assert!(
            file.set_password("bob", b"pw", &HashParams::default())
                .unwrap()
        );
        assert!(
            !file
                .set_password("dave", b"pw2", &HashParams::default())
                .unwrap()
        );
        assert_eq!(file.remove("carol"), 1);
        let out = file.to_string();
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(
            lines[..5],
            [
                "# users",
                "",
                "   ",
                &format!("alice:{VALID}\r"),
                "  # indented comment"
            ]
        );
        assert!(lines[5].starts_with("bob:$7$101$"), "{out}");
        assert!(lines[6].starts_with("dave:$7$101$"), "{out}");
        assert_eq!(lines[7], "");
        assert_eq!(lines.len(), 8);

        let reread = PasswordFile::parse(&out).unwrap();
        let (credentials, errors) = reread.credentials();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(credentials.verify("alice", b"pass"));
        assert!(credentials.verify("bob", b"pw"));
        assert!(credentials.verify("dave", b"pw2"));
        assert!(!credentials.contains("carol"));
    }

    #[test]
    fn a_missing_final_newline_is_added() {
        let mut file = PasswordFile::parse("a:1\nb:2").unwrap();
        assert_eq!(file.to_string(), "a:1\nb:2\n");
        file.push(
            "c",
            &PasswordHash::generate(b"x", &HashParams::default()).unwrap(),
        );
        assert!(file.to_string().starts_with("a:1\nb:2\nc:$7$"));
        assert_eq!(PasswordFile::parse("").unwrap(), PasswordFile::new());
        assert_eq!(PasswordFile::parse("").unwrap().to_string(), "");
        assert_eq!(PasswordFile::parse("\n").unwrap().to_string(), "\n");
    }

    #[test]
    fn duplicates_all_change_and_the_last_counts() {
        let mut file = PasswordFile::parse("a:1\nb:2\na:3\n").unwrap();
        assert_eq!(file.get("a").unwrap().password_field(), "3");
        file.set_password("a", b"new", &HashParams::default())
            .unwrap();
        let hashes: Vec<PasswordHash> = file
            .entries()
            .filter(|(_, e)| e.username() == "a")
            .map(|(_, e)| e.hash().unwrap())
            .collect();
        assert_eq!(hashes.len(), 2);
        assert!(hashes.iter().all(|h| h.verify(b"new")));
        assert_eq!(file.remove("a"), 2);
        assert_eq!(file.to_string(), "b:2\n");
        assert_eq!(file.remove("a"), 0);

        let text = format!(
            "dup:{VALID}\ndup:{}\n",
            PasswordHash::generate(b"two", &HashParams::default()).unwrap()
        );
        let (credentials, _) = PasswordFile::parse(&text).unwrap().credentials();
        assert!(credentials.verify("dup", b"two"));
        assert!(!credentials.verify("dup", b"pass"));
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        let cases: [(&[u8], usize, LineErrorKind); 4] = [
            (b"a:1\nnocolon\nb:2\n", 2, LineErrorKind::NoColon),
            (b"# c\n\n:hash\n", 3, LineErrorKind::EmptyUsername),
            (b"a:1\nb:\xff\n", 2, LineErrorKind::NotUtf8),
            (b"  \t \n   :x", 2, LineErrorKind::EmptyUsername),
        ];
        for (text, line, kind) in cases {
            let error = PasswordFile::parse_bytes(text).unwrap_err();
            assert_eq!(error, LineError { line, kind }, "{text:?}");
            assert!(error.to_string().starts_with(&format!("line {line}: ")));
        }
        assert_eq!(
            PasswordFile::parse("a:1\nbad\n").unwrap_err().to_string(),
            "line 2: no ':' between username and password"
        );
    }

    #[test]
    fn lenient_parsing_reports_and_keeps_bad_lines() {
        let text = b"a:1\nbad\n:x\nb:\xfe\nc:2\n";
        let (file, errors) = PasswordFile::parse_lenient(text);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4]);
        let users: Vec<&str> = file.entries().map(|(_, e)| e.username()).collect();
        assert_eq!(users, ["a", "c"]);
        assert_eq!(file.to_string(), "a:1\nbad\n:x\nb:\u{fffd}\nc:2\n");
    }

    #[test]
    fn credentials_report_unusable_hashes_by_line() {
        let text = format!("# x\ngood:{VALID}\nplain:secret\nempty:\nbroken:$7$101$!!$AA==\n");
        let (credentials, errors) = PasswordFile::parse(&text).unwrap().credentials();
        assert_eq!(credentials.len(), 1);
        assert!(credentials.verify("good", b"pass"));
        assert!(
            !credentials.verify("plain", b"secret"),
            "plain text never authenticates"
        );
        let found: Vec<(usize, String)> = errors.iter().map(|e| (e.line, e.to_string())).collect();
        assert_eq!(
            found,
            [
                (
                    3,
                    "line 3: user plain: the password is not hashed (a hash starts with $6$ or $7$)"
                        .to_owned()
                ),
                (
                    4,
                    "line 4: user empty: the password is not hashed (a hash starts with $6$ or $7$)"
                        .to_owned()
                ),
                (5, "line 5: user broken: the salt is not valid base64".to_owned()),
            ]
        );
    }

    #[test]
    fn hash_all_converts_plain_text_passwords() {
        let mut file = PasswordFile::parse("# plain\nalice:one\nbob:two:with:colons\n").unwrap();
        assert_eq!(file.hash_all(&HashParams::default()).unwrap(), 2);
        let out = file.to_string();
        assert!(out.starts_with("# plain\nalice:$7$101$"), "{out}");
        let (credentials, errors) = PasswordFile::parse(&out).unwrap().credentials();
        assert!(errors.is_empty());
        assert!(credentials.verify("alice", b"one"));
        assert!(credentials.verify("bob", b"two:with:colons"));
    }

    #[test]
    fn usernames_are_checked() {
        assert_eq!(check_username("alice"), Ok(()));
        assert_eq!(check_username("ü ser"), Ok(()));
        assert_eq!(check_username("a#b"), Ok(()));
        assert_eq!(check_username(""), Err(UsernameError::Empty));
        assert_eq!(check_username("a:b"), Err(UsernameError::Colon));
        assert_eq!(check_username("a\nb"), Err(UsernameError::ControlCharacter));
        assert_eq!(check_username("a\tb"), Err(UsernameError::ControlCharacter));
        assert_eq!(check_username("#a"), Err(UsernameError::BadStart));
        assert_eq!(check_username(" a"), Err(UsernameError::BadStart));
        assert_eq!(check_username(&"a".repeat(MAX_LEN)), Ok(()));
        assert_eq!(
            check_username(&"a".repeat(MAX_LEN + 1)),
            Err(UsernameError::TooLong)
        );
    }

    #[test]
    fn algorithm_names_are_mosquitto_passwds() {
        assert_eq!(Algorithm::from_name("sha512"), Some(Algorithm::Sha512));
        assert_eq!(
            Algorithm::from_name("sha512-pbkdf2"),
            Some(Algorithm::Sha512Pbkdf2)
        );
        assert_eq!(Algorithm::from_name("md5"), None);
        for a in [Algorithm::Sha512, Algorithm::Sha512Pbkdf2] {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
    }
}
