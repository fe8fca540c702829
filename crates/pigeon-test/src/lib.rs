//! `pigeon-test`: fixtures for integration tests (a broker on `127.0.0.1:0`, real clients).
//!
//! Empty for now: fixtures arrive with the broker (issue 3).
