//! Network drivers: listeners and the per-connection task around the sans-I/O
//! [`Connection`](crate::session::Connection).

mod conn;
mod listener;

pub use self::conn::serve_connection;
pub use self::listener::{Listener, bind};
