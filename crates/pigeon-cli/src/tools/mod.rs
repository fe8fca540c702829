//! `pigeon-pub`, `pigeon-sub` and `pigeon-rr`: drop-in replacements for `mosquitto_pub`,
//! `mosquitto_sub` and `mosquitto_rr`, sharing their command line, `-d` output and exit codes.

pub mod debug;
pub mod format;
pub mod json;
pub mod options;
pub mod session;
pub mod usage;
