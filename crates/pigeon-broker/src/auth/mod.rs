//! Client authentication.
//!
//! - [`passwd`]: Mosquitto password files (`password_file`), read, verified and edited.

pub mod passwd;
