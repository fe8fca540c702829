//! The one place that reads the clock. Everything else takes `now` as an argument, so tests
//! choose their instants.

use std::time::{Instant, SystemTime};

/// The current monotonic instant.
#[allow(clippy::disallowed_methods)] // this module is the clock
pub fn now() -> Instant {
    Instant::now()
}

/// The current wall-clock time (for log timestamps and `$SYS`).
#[allow(clippy::disallowed_methods)] // this module is the clock
pub fn wall() -> SystemTime {
    SystemTime::now()
}
