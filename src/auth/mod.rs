//! auth: how a client proves it knows an address's secret.
//!
//! - [`apop`]: the APOP digest (RFC 1939 §7) and the constant-time comparisons that USER/PASS
//!   uses too. No I/O: the secret comes from [`crate::store`], the timestamp from the server.
//! - [`sasl`]: the server side of AUTH's SASL mechanisms (PLAIN, LOGIN, CRAM-MD5,
//!   SCRAM-SHA-256 and -PLUS) as pure state machines: fed decoded messages, they yield steps.
//! - [`checkpassword`]: the fd-3 request of the checkpassword interface, for checkapop(8).
//! - [`login_password`]: the gate that keeps a new mail password from being the login password.

pub mod apop;
pub mod checkpassword;
pub mod login_password;
pub mod sasl;
