//! Configuration errors and warnings, each naming the file, line and directive they are about.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A place in a configuration file: the file and a line number counted from 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The configuration file, as it was named (the main file or one found by `include_dir`).
    pub file: PathBuf,
    /// The line number, counted from 1.
    pub line: usize,
}

impl Location {
    pub(crate) fn new(file: &Path, line: usize) -> Location {
        Location {
            file: file.to_path_buf(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Why a configuration was refused. Displayed in the form
/// `Error: /etc/pigeon/pigeon.conf:12: max_inflight_messages: expected a number, got "ten"`.
///
/// [`kind`](ConfigError::kind) says what went wrong; [`file`](ConfigError::file),
/// [`line`](ConfigError::line) and [`directive`](ConfigError::directive) say where. An error
/// about the command line (`-p 0`) has no file, and an I/O error has no line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("Error: {context}{kind}")]
pub struct ConfigError {
    context: Context,
    kind: ConfigErrorKind,
}

impl ConfigError {
    /// An error at `line` of `file`, about `directive`.
    pub(crate) fn at(file: &Path, line: usize, directive: &str, kind: ConfigErrorKind) -> Self {
        ConfigError {
            context: Context {
                file: Some(file.to_path_buf()),
                line: Some(line),
                directive: Some(directive.to_owned()),
            },
            kind,
        }
    }

    /// An I/O error about the main configuration file, which no line refers to.
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        ConfigError {
            context: Context {
                file: None,
                line: None,
                directive: None,
            },
            kind: ConfigErrorKind::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }

    /// An error about a command line option.
    pub(crate) fn command_line(option: &str, kind: ConfigErrorKind) -> Self {
        ConfigError {
            context: Context {
                file: None,
                line: None,
                directive: Some(option.to_owned()),
            },
            kind,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }

    /// The configuration file holding the faulty line; `None` for errors about the command
    /// line and for a main configuration file that cannot be read (the path is then in
    /// [`ConfigErrorKind::Io`]).
    pub fn file(&self) -> Option<&Path> {
        self.context.file.as_deref()
    }

    /// The line number in [`file`](ConfigError::file), counted from 1.
    pub fn line(&self) -> Option<usize> {
        self.context.line
    }

    /// The directive (or command line option) at fault, as written.
    pub fn directive(&self) -> Option<&str> {
        self.context.directive.as_deref()
    }
}

/// Where an error happened, displayed as the `file:line: directive: ` prefix of its message.
#[derive(Debug)]
struct Context {
    file: Option<PathBuf>,
    line: Option<usize>,
    directive: Option<String>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
        }
        if let Some(directive) = &self.directive {
            write!(f, "{directive}: ")?;
        }
        Ok(())
    }
}

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// Not a directive Mosquitto knows.
    #[error("unknown configuration directive")]
    UnknownDirective,
    /// A Mosquitto directive Pigeon does not implement yet; the text says which later work
    /// brings it, if any is planned.
    #[error("not supported yet ({0})")]
    NotSupportedYet(&'static str),
    /// A Mosquitto feature Pigeon cannot offer because its TLS library, rustls, does not have
    /// it; the text says why.
    #[error("not supported by Pigeon (rustls): {0}")]
    RefusedByRustls(&'static str),
    /// A Mosquitto feature Pigeon will not offer; the text says why.
    #[error("not supported by Pigeon: {0}")]
    Unsupported(&'static str),
    /// The value is not one the directive accepts; the text says what was expected.
    #[error("{0}")]
    BadValue(String),
    /// The directive needs a value and has none; the text names what is expected.
    #[error("missing argument: expected {0}")]
    MissingArgument(&'static str),
    /// The directive was given more values than it takes; this is the first extra one.
    #[error("too many arguments: unexpected {0:?}")]
    TooManyArguments(String),
    /// Mosquitto accepts this directive once (per listener, for listener settings).
    #[error("duplicate value: already set at {0}")]
    Duplicate(Location),
    /// A listener setting Mosquitto accepts only inside a `listener` block.
    #[error("only allowed after a listener directive")]
    OutsideListener,
    /// The directive is not allowed where it is; the text says why.
    #[error("{0}")]
    Misplaced(&'static str),
    /// A file or directory could not be read: the main configuration file (the error then
    /// has no file or line), or one named by `include_dir` (the error is then about the
    /// `include_dir` line).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
}

/// Something legal but worth logging: a deprecated directive, or one Mosquitto ignores.
/// Displayed as `Warning: file:line: directive: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigWarning {
    /// Where the directive is.
    pub location: Location,
    /// The directive, as written.
    pub directive: String,
    /// What is worth knowing about it.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Warning: {}: {}: {}",
            self.location, self.directive, self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_line_directive_and_message() {
        let e = ConfigError::at(
            Path::new("/etc/pigeon/pigeon.conf"),
            12,
            "max_inflight_messages",
            ConfigErrorKind::BadValue("expected a number, got \"ten\"".into()),
        );
        assert_eq!(
            e.to_string(),
            "Error: /etc/pigeon/pigeon.conf:12: max_inflight_messages: expected a number, got \"ten\""
        );
        assert_eq!(e.file(), Some(Path::new("/etc/pigeon/pigeon.conf")));
        assert_eq!(e.line(), Some(12));
        assert_eq!(e.directive(), Some("max_inflight_messages"));
    }

    #[test]
    fn display_of_each_kind() {
        let f = Path::new("a.conf");
        let cases: Vec<(ConfigErrorKind, &str)> = vec![
            (
                ConfigErrorKind::UnknownDirective,
                "Error: a.conf:1: d: unknown configuration directive",
            ),
            (
                ConfigErrorKind::NotSupportedYet("WebSockets arrive with issue 7"),
                "Error: a.conf:1: d: not supported yet (WebSockets arrive with issue 7)",
            ),
            (
                ConfigErrorKind::RefusedByRustls("no TLS-PSK"),
                "Error: a.conf:1: d: not supported by Pigeon (rustls): no TLS-PSK",
            ),
            (
                ConfigErrorKind::Unsupported("no plugins"),
                "Error: a.conf:1: d: not supported by Pigeon: no plugins",
            ),
            (
                ConfigErrorKind::MissingArgument("true or false"),
                "Error: a.conf:1: d: missing argument: expected true or false",
            ),
            (
                ConfigErrorKind::TooManyArguments("x".into()),
                "Error: a.conf:1: d: too many arguments: unexpected \"x\"",
            ),
            (
                ConfigErrorKind::Duplicate(Location::new(Path::new("b.conf"), 7)),
                "Error: a.conf:1: d: duplicate value: already set at b.conf:7",
            ),
            (
                ConfigErrorKind::OutsideListener,
                "Error: a.conf:1: d: only allowed after a listener directive",
            ),
        ];
        for (kind, text) in cases {
            assert_eq!(ConfigError::at(f, 1, "d", kind).to_string(), text);
        }
    }

    #[test]
    fn io_and_command_line_errors_have_less_context() {
        let e = ConfigError::io(
            Path::new("/nope.conf"),
            io::Error::new(io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(e.to_string(), "Error: cannot read /nope.conf: gone");
        assert_eq!(e.line(), None);
        assert_eq!(e.file(), None);
        assert!(
            matches!(e.kind(), ConfigErrorKind::Io { path, .. } if path == Path::new("/nope.conf"))
        );
        assert!(std::error::Error::source(e.kind()).is_some());

        let e = ConfigError::command_line("-p", ConfigErrorKind::BadValue("bad port 0".into()));
        assert_eq!(e.to_string(), "Error: -p: bad port 0");
        assert_eq!(e.file(), None);
    }

    #[test]
    fn errors_and_configs_cross_threads() {
        fn send_sync_static<T: Send + Sync + 'static>() {}
        send_sync_static::<ConfigError>();
        send_sync_static::<ConfigWarning>();
        send_sync_static::<super::super::Config>();
    }

    #[test]
    fn warning_display() {
        let w = ConfigWarning {
            location: Location::new(Path::new("m.conf"), 3),
            directive: "port".into(),
            message: "deprecated".into(),
        };
        assert_eq!(w.to_string(), "Warning: m.conf:3: port: deprecated");
    }
}
