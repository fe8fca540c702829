//! Network drivers: listeners and the per-connection task around the sans-I/O
//! [`Connection`](crate::session::Connection).

mod conn;
mod http;
mod http_api;
mod listener;
mod park;
mod ws;

pub use self::conn::serve_connection;
pub use self::http_api::{HttpSettings, run_http};
pub use self::listener::{Listener, bind};
pub use self::park::Parker;
pub use self::ws::{DEFAULT_HEADERS_SIZE, WebSocketSettings};
