//! `pigeon-broker`: the Pigeon MQTT broker as a library.
//!
//! Empty for now: the broker arrives with issue 3 (MQTT 3.1 and 3.1.1 on TCP). It will hold
//! the per-client session state machine, the subscription router, persistence, authentication,
//! configuration and the network drivers, as `ARCHITECTURE.md` describes.

pub mod router;
