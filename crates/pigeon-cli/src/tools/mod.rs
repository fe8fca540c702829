//! `pigeon-pub` and `pigeon-sub`: drop-in replacements for `mosquitto_pub` and
//! `mosquitto_sub`, sharing their command line, `-d` output and exit codes.

pub mod debug;
pub mod format;
pub mod json;
pub mod options;
pub mod session;
pub mod usage;
