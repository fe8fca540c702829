//! The one place that reads the clock. Everything else takes `now` as an argument, so tests
//! choose their instants.

use std::time::Instant;

/// The current monotonic instant: what the async client passes to the
/// [`ClientState`](crate::state::ClientState) as `now`.
#[allow(clippy::disallowed_methods)] // this module is the clock
pub fn now() -> Instant {
    Instant::now()
}
