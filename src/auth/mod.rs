//! auth: how a client proves it knows an address's secret.
//!
//! - [`apop`]: the APOP digest (RFC 1939 §7) and the constant-time comparisons that USER/PASS
//!   uses too. No I/O: the secret comes from [`crate::store`], the timestamp from the server.

pub mod apop;
