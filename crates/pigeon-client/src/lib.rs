//! `pigeon-client`: an MQTT 3.1, 3.1.1 and 5.0 client, built on `pigeon-proto`.
//!
//! Two layers:
//!
//! - [`state`]: the protocol state machine, sans I/O. It takes decoded packets, commands and
//!   `now`, and gives packets to write, [`state::Event`]s and its next deadline. QoS 0, 1 and
//!   2 both ways, Packet Identifier allocation, the in-flight window and a bounded queue
//!   behind it, keep alive, session resumption with redelivery, MQTT 5.0 server limits and
//!   incoming Topic Aliases all live there, tested with chosen instants.
//! - [`Client`]: the async API on tokio. [`Client::connect`] starts one background task that
//!   owns the transport and the state machine, and returns a cheap, cloneable handle and the
//!   [`Events`] stream (messages, connections, and optionally every packet sent and
//!   received). Requests resolve when the server has answered: [`Client::publish`] on PUBACK
//!   or PUBCOMP, [`Client::subscribe`] on SUBACK. Automatic reconnection with exponential
//!   backoff is opt-in ([`ConnectOptions::reconnect`]).
//!
//! Transports ([`Transport`]): TCP, TLS ([`TlsOptions`]: rustls with the `ring` provider; CA
//! file or directory or the system's trust store, client certificates, `insecure`, version
//! bounds, ALPN), WebSocket and secure WebSocket ([`WebSocketOptions`]: subprotocol `mqtt`,
//! path `/mqtt` by default). [`ConnectOptions::from_url`] reads `mqtt://`, `mqtts://`, `ws://`
//! and `wss://` URLs.
//!
//! [`clock`] is the only module that reads the time.
//!
//! ```no_run
//! use pigeon_client::{Client, ConnectOptions, Event, QoS};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), pigeon_client::Error> {
//!     let options = ConnectOptions::new("localhost", 1883)
//!         .client_id("pigeon-example")
//!         .keep_alive(30);
//!     let (client, mut events) = Client::connect(options).await?;
//!
//!     let suback = client.subscribe("sensors/#", QoS::AtLeastOnce).await?;
//!     println!("granted: {:?}", suback.reasons);
//!
//!     let outcome = client
//!         .publish("sensors/kitchen", "21.5", QoS::ExactlyOnce, false)
//!         .await?;
//!     assert!(outcome.is_success());
//!
//!     while let Some(event) = events.recv().await {
//!         if let Event::Message(message) = event {
//!             println!("{}: {:?}", message.topic, message.payload);
//!             break;
//!         }
//!     }
//!     client.disconnect().await
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blocking;
mod client;
pub mod clock;
mod error;
mod options;
pub mod state;
mod tls;
mod transport;
mod url;
mod websocket;

pub use crate::client::{Client, Disconnected, Event, Events, Receipt};
pub use crate::error::Error;
pub use crate::options::{Backoff, ConnectOptions, LocalEnd};
pub use crate::state::{DisconnectReason, PublishOutcome, RequestError};
pub use crate::tls::{TlsError, TlsOptions, TlsVersion};
pub use crate::transport::Transport;
pub use crate::url::{Scheme, ServerUrl};
pub use crate::websocket::WebSocketOptions;
/// The codec this client speaks: packets, properties, topics.
pub use pigeon_proto as proto;
pub use pigeon_proto::{
    Packet, Protocol, Publish, QoS, ReasonCode, SubAck, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck,
};
