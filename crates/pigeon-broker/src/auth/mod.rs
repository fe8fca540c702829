//! Client authentication and topic access control.
//!
//! - [`passwd`]: Mosquitto password files (`password_file`), read, verified and edited.
//! - [`acl`]: Mosquitto access control lists (`acl_file`).
//! - [`load_password_file`], [`load_acl_file`]: reading both as the broker does at start and
//!   on reload, with Mosquitto's messages.
//! - [`ClientAccess`]: one connected client's view of the ACL.

pub mod acl;
pub mod passwd;
pub mod scram;

use std::path::Path;
use std::sync::Arc;

use self::acl::{Access, Acl, Verdict};
use self::passwd::{Credentials, HashError, LineErrorKind, PasswordFile};
use crate::config::LogTypes;

/// Log lines about a file that was read all the same, each with its type.
pub type Notes = Vec<(LogTypes, String)>;

/// Reads a password file: the credentials, and Mosquitto's log lines for the entries left out
/// (lines that are not `username:password`, hashes that cannot be used).
///
/// # Errors
/// When the file cannot be read: `Error: Unable to open pwfile "PATH": REASON.`
pub fn load_password_file(path: &Path) -> Result<(Credentials, Notes), String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "Error: Unable to open pwfile \"{}\": {}.",
            path.display(),
            crate::log::strerror(&e)
        )
    })?;
    let (file, line_errors) = PasswordFile::parse_lenient(&bytes);
    let (credentials, hash_errors) = file.credentials();
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let mut notes = Vec::new();
    for error in line_errors.iter().chain(&hash_errors) {
        let note = match &error.kind {
            LineErrorKind::Hash { username, error } => {
                let what = match error {
                    HashError::NotHashed | HashError::UnknownType(_) => {
                        "Invalid password hash type"
                    }
                    HashError::FieldCount { .. }
                    | HashError::SaltEncoding
                    | HashError::EmptySalt => "Unable to decode password salt",
                    _ => "Unable to decode password",
                };
                (
                    LogTypes::ERROR,
                    format!("Error: {what} for user {username}, removing entry."),
                )
            }
            _ => {
                let raw = lines.get(error.line - 1).copied().unwrap_or_default();
                let raw = String::from_utf8_lossy(raw);
                (
                    LogTypes::WARNING,
                    format!(
                        "Warning: Invalid line in password file '{}': {}",
                        path.display(),
                        raw.trim_end()
                    ),
                )
            }
        };
        notes.push(note);
    }
    Ok((credentials, notes))
}

/// Reads an ACL file: the rules, and Mosquitto's warnings about them.
///
/// # Errors
/// When the file cannot be read (`Error: Unable to open acl_file "PATH": REASON.`), or has a
/// line Mosquitto refuses (`Error: WHAT in acl_file "PATH" (line N).`).
pub fn load_acl_file(path: &Path) -> Result<(Acl, Notes), String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "Error: Unable to open acl_file \"{}\": {}.",
            path.display(),
            crate::log::strerror(&e)
        )
    })?;
    let acl = Acl::parse_bytes(&bytes).map_err(|e| {
        format!(
            "Error: {} in acl_file \"{}\" (line {}).",
            e.kind,
            path.display(),
            e.line
        )
    })?;
    let notes = acl
        .warnings()
        .iter()
        .map(|w| (LogTypes::WARNING, w.clone()))
        .collect();
    Ok((acl, notes))
}

/// One client's access: the ACL in force on its listener, with its username (the client
/// identifier is the session's, given to each check). Kept in its session, so that messages
/// queued while it is away are checked too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAccess {
    acl: Option<Arc<Acl>>,
    /// (A `Box<str>`: one of these is in every connected client's state.)
    username: Option<Box<str>>,
}

impl ClientAccess {
    /// The access of a client; `acl` is `None` when the listener has no `acl_file` (every
    /// topic is then readable and writable, but for [`acl::reserved_for_writing`]).
    pub fn new(acl: Option<Arc<Acl>>, username: Option<String>) -> Self {
        ClientAccess {
            acl,
            username: username.map(String::into_boxed_str),
        }
    }

    /// The same client under another ACL (a reload).
    pub fn with_acl(&self, acl: Option<Arc<Acl>>) -> Self {
        ClientAccess {
            acl,
            ..self.clone()
        }
    }

    /// Whether the client `client_id` may publish to `topic`.
    pub fn check_write(&self, client_id: &str, topic: &str) -> Verdict {
        if acl::reserved_for_writing(topic) {
            return Verdict::Denied;
        }
        self.check(client_id, topic, Access::Write)
    }

    /// Whether the client `client_id` may receive a message published to `topic`.
    pub fn may_read(&self, client_id: &str, topic: &str) -> bool {
        self.check(client_id, topic, Access::Read).is_allowed()
    }

    fn check(&self, client_id: &str, topic: &str, access: Access) -> Verdict {
        match &self.acl {
            None => Verdict::Allowed,
            Some(acl) => acl.check(self.username.as_deref(), client_id, topic, access),
        }
    }

    /// Whether a subscription of the client `client_id` to `filter` may deliver anything
    /// ([`Acl::may_read_under`]).
    pub fn may_read_under(&self, client_id: &str, filter: &str) -> bool {
        match &self.acl {
            None => true,
            Some(acl) => acl.may_read_under(self.username.as_deref(), client_id, filter),
        }
    }

    /// Whether, under the ACL this client goes by, the client `username` / `client_id` may
    /// write to `topic` (`check_retain_source`: is a retained message's publisher still
    /// allowed to have published it?).
    pub fn permits_write_by(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        match &self.acl {
            None => true,
            Some(acl) => acl
                .check(username, client_id, topic, Access::Write)
                .is_allowed(),
        }
    }

    /// The username, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pigeon-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn password_files_load_with_mosquittos_notes() {
        let alice =
            passwd::PasswordHash::generate(b"apass", &passwd::HashParams::default()).unwrap();
        let text = format!("alice:{alice}\nbob:plain\nnopw\ncarol:$6$bad\n");
        let path = temp("pw", text.as_bytes());
        let (credentials, notes) = load_password_file(&path).unwrap();
        assert!(credentials.verify("alice", b"apass"));
        assert!(!credentials.verify("alice", b"wrong"));
        assert!(
            !credentials.verify("bob", b"plain"),
            "plain text never logs in"
        );
        assert!(!credentials.verify("zed", b"x"));
        let lines: Vec<&str> = notes.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            lines,
            [
                format!(
                    "Warning: Invalid line in password file '{}': nopw",
                    path.display()
                )
                .as_str(),
                "Error: Invalid password hash type for user bob, removing entry.",
                "Error: Unable to decode password salt for user carol, removing entry.",
            ]
        );
        let missing = path.with_file_name("missing");
        assert_eq!(
            load_password_file(&missing).unwrap_err(),
            format!(
                "Error: Unable to open pwfile \"{}\": No such file or directory.",
                missing.display()
            )
        );
    }

    #[test]
    fn acl_files_load_or_name_the_line() {
        let path = temp("acl", b"topic read a\npattern read b\n");
        let (acl, notes) = load_acl_file(&path).unwrap();
        assert!(acl.check(None, "c", "a", Access::Read).is_allowed());
        assert_eq!(notes.len(), 1);
        let bad = temp("bad-acl", b"# x\nuser\n");
        assert_eq!(
            load_acl_file(&bad).unwrap_err(),
            format!(
                "Error: Missing username in acl_file \"{}\" (line 2).",
                bad.display()
            )
        );
    }

    #[test]
    fn without_an_acl_everything_but_sys_is_allowed() {
        let access = ClientAccess::new(None, None);
        assert!(access.check_write("c", "a/b").is_allowed());
        assert!(!access.check_write("c", "$SYS/x").is_allowed());
        assert!(!access.check_write("c", "$share/g/x").is_allowed());
        assert!(access.may_read("c", "$SYS/broker/uptime"));
        assert!(access.may_read_under("c", "#"));
    }
}
