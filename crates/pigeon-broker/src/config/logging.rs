//! The logging settings: which message types (`log_type`) go to which destinations
//! (`log_dest`).

use std::fmt;
use std::path::PathBuf;

/// A set of log message types, as chosen by `log_type` lines.
///
/// The default is [`LogTypes::DEFAULT`]: error, warning, notice and information.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogTypes(u16);

impl LogTypes {
    /// No message types (`log_type none`).
    pub const NONE: LogTypes = LogTypes(0);
    /// Decoded network packets, and other debugging detail (`debug`).
    pub const DEBUG: LogTypes = LogTypes(1 << 0);
    /// Errors (`error`).
    pub const ERROR: LogTypes = LogTypes(1 << 1);
    /// Warnings (`warning`).
    pub const WARNING: LogTypes = LogTypes(1 << 2);
    /// Notices (`notice`).
    pub const NOTICE: LogTypes = LogTypes(1 << 3);
    /// Informational messages, such as client connections (`information`).
    pub const INFORMATION: LogTypes = LogTypes(1 << 4);
    /// Client subscriptions (`subscribe`).
    pub const SUBSCRIBE: LogTypes = LogTypes(1 << 5);
    /// Client unsubscriptions (`unsubscribe`).
    pub const UNSUBSCRIBE: LogTypes = LogTypes(1 << 6);
    /// WebSockets library messages (`websockets`).
    pub const WEBSOCKETS: LogTypes = LogTypes(1 << 7);
    /// Broker-internal messages (`internal`, accepted by Mosquitto 2.0 though not in its
    /// manual).
    pub const INTERNAL: LogTypes = LogTypes(1 << 8);
    /// Every type (`log_type all`).
    pub const ALL: LogTypes = LogTypes((1 << 9) - 1);
    /// What Mosquitto logs when no `log_type` is given: error, warning, notice, information.
    pub const DEFAULT: LogTypes =
        LogTypes(Self::ERROR.0 | Self::WARNING.0 | Self::NOTICE.0 | Self::INFORMATION.0);

    const NAMES: [(LogTypes, &'static str); 9] = [
        (Self::DEBUG, "debug"),
        (Self::ERROR, "error"),
        (Self::WARNING, "warning"),
        (Self::NOTICE, "notice"),
        (Self::INFORMATION, "information"),
        (Self::SUBSCRIBE, "subscribe"),
        (Self::UNSUBSCRIBE, "unsubscribe"),
        (Self::WEBSOCKETS, "websockets"),
        (Self::INTERNAL, "internal"),
    ];

    /// Whether every type in `other` is in `self`.
    pub const fn contains(self, other: LogTypes) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The types in `self` or in `other`.
    #[must_use]
    pub const fn union(self, other: LogTypes) -> LogTypes {
        LogTypes(self.0 | other.0)
    }

    /// The set as bits, for an atomic copy of it.
    pub(crate) const fn bits(self) -> u16 {
        self.0
    }

    /// The type a `log_type` value names, or `None` if it names none; `all` and `none` are
    /// sets too.
    pub(crate) fn from_name(name: &str) -> Option<LogTypes> {
        match name {
            "none" => Some(Self::NONE),
            "all" => Some(Self::ALL),
            _ => Self::NAMES
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(t, _)| *t),
        }
    }
}

impl Default for LogTypes {
    fn default() -> Self {
        LogTypes::DEFAULT
    }
}

impl fmt::Debug for LogTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        for (t, name) in Self::NAMES {
            if self.contains(t) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

/// Where log messages go, as chosen by `log_dest` lines.
///
/// The default is standard error only. The first `log_dest` line replaces the default; the
/// following ones add destinations, and `log_dest none` removes every destination chosen so
/// far.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LogDest {
    /// Standard output (`stdout`). Default: `false`.
    pub stdout: bool,
    /// Standard error (`stderr`). Default: `true`.
    pub stderr: bool,
    /// The system log (`syslog`), with the facility `log_facility` chooses. Default: `false`.
    pub syslog: bool,
    /// The `$SYS/broker/log/<severity>` topics (`topic`); debug messages never go there.
    /// Default: `false`.
    pub topic: bool,
    /// A file (`file PATH`), reopened on SIGHUP. Mosquitto allows only one. Default: none.
    pub file: Option<PathBuf>,
}

impl LogDest {
    /// No destination at all (`log_dest none`).
    pub const fn none() -> LogDest {
        LogDest {
            stdout: false,
            stderr: false,
            syslog: false,
            topic: false,
            file: None,
        }
    }

    /// Whether messages go nowhere.
    pub fn is_none(&self) -> bool {
        *self == LogDest::none()
    }
}

impl Default for LogDest {
    fn default() -> Self {
        LogDest {
            stderr: true,
            ..LogDest::none()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_types_are_the_four_severities() {
        let d = LogTypes::default();
        for t in [
            LogTypes::ERROR,
            LogTypes::WARNING,
            LogTypes::NOTICE,
            LogTypes::INFORMATION,
        ] {
            assert!(d.contains(t));
        }
        assert!(!d.contains(LogTypes::DEBUG));
        assert!(!d.contains(LogTypes::SUBSCRIBE));
        assert_eq!(format!("{d:?}"), "{error, warning, notice, information}");
    }

    #[test]
    fn names() {
        assert_eq!(LogTypes::from_name("all"), Some(LogTypes::ALL));
        assert_eq!(LogTypes::from_name("none"), Some(LogTypes::NONE));
        assert_eq!(LogTypes::from_name("subscribe"), Some(LogTypes::SUBSCRIBE));
        assert_eq!(LogTypes::from_name("info"), None);
        assert_eq!(LogTypes::from_name("Debug"), None);
        for (t, name) in LogTypes::NAMES {
            assert!(LogTypes::ALL.contains(t));
            assert_eq!(LogTypes::from_name(name), Some(t));
        }
        assert!(LogTypes::NONE.is_empty());
        assert_eq!(
            LogTypes::DEBUG.union(LogTypes::ERROR),
            LogTypes::from_name("debug").unwrap().union(LogTypes::ERROR)
        );
    }

    #[test]
    fn default_dest_is_stderr() {
        let d = LogDest::default();
        assert!(d.stderr && !d.stdout && !d.syslog && !d.topic && d.file.is_none());
        assert!(LogDest::none().is_none());
        assert!(!d.is_none());
    }
}
