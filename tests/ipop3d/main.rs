//! ipop3d integration tests: the real binary behind real `tcpserver`, over real sockets, with
//! real Maildirs and real clients (curl, fetchmail, Python's poplib).
//!
//! Each test builds its own [`harness::World`]. Tests that need root say so in their names and
//! print `SKIPPED (needs root): <test>` otherwise; tests that need a missing tool print
//! `SKIPPED (needs <tool>): <test>`. CI runs as root with every tool installed.

mod client;
#[macro_use]
mod harness;

mod auth;
mod bad_input;
mod clients;
mod maildrop;
mod privilege;
mod session;
