//! `pigeon-broker`: the Pigeon MQTT broker as a library.
//!
//! Being built for issue 3 (MQTT 3.1 and 3.1.1 on TCP). Present so far, each sans I/O and
//! tested on its own:
//! - [`router`]: the subscription trie.
//! - [`session`]: per-client delivery state (in-flight window, queues, QoS 2 exactly-once).
//! - [`message`]: messages as routed and delivered.
//! - [`config`]: the configuration: Mosquitto's `mosquitto.conf` read into a typed `Config`.
//! - [`sys`]: the `$SYS/broker/...` statistics topics, as Mosquitto publishes them.
//! - [`tls`]: TLS listeners with rustls, and client certificate names.
//! - [`store`]: persistence: the append-only log, snapshots and recovery behind the
//!   [`store::Store`] trait.
//!
//! Still to come: the session state machine around them, the network drivers and the
//! `pigeon` binary.

#![forbid(unsafe_code)]

pub mod auth;
pub mod broker;
pub mod clock;
pub mod config;
pub mod log;
pub mod message;
pub mod net;
pub mod reload;
pub mod router;
pub mod server;
pub mod session;
pub mod settings;
pub mod store;
pub mod sys;
pub mod tls;
