//! pop3: the POP3 protocol, without the server around it.
//!
//! - [`wire`]: the parser (bytes in, commands out, no I/O) and the responses as exact wire
//!   bytes.
//! - [`session`]: one session's state machine, AUTHORIZATION -> TRANSACTION -> UPDATE, generic
//!   over the byte streams so it runs in-process in tests and fuzz targets.

pub mod session;
pub mod wire;
