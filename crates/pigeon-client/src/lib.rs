//! `pigeon-client`: an async MQTT 3.1 / 3.1.1 / 5.0 client.
//!
//! Empty for now: the client arrives with issue 5, built on `pigeon-proto`.

#![forbid(unsafe_code)]
