//! `pigeon-cli`: the command-line programs (`pigeon`, `pigeon-pub`, `pigeon-sub`, `pigeon-rr`,
//! `pigeon-passwd`, `pigeon-bench`).
//!
//! The library part: the client tools' shared code (`tools`) and systemd's readiness
//! protocol (`systemd`).

#![forbid(unsafe_code)]

pub mod systemd;
pub mod tools;
