//! `pigeon-cli`: the command-line programs (`pigeon`, `pigeon-pub`, `pigeon-sub`, `pigeon-rr`,
//! `pigeon-passwd`, `pigeon-bench`).
//!
//! Empty for now: the binaries arrive with issues 3 (broker), 5 (client tools) and 9 (bench).

#![forbid(unsafe_code)]

pub mod tools;
