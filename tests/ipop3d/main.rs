//! ipop3d integration tests: the real binary on real 127.0.0.1 sockets (one process per
//! connection, as tcpserver runs it; the harness's spawner or, in `tcpserver`, real tcpserver),
//! with real Maildirs and real clients (curl, fetchmail, Python's poplib).
//!
//! Each test builds its own [`harness::World`]. Tests that need root carry `_root` in their
//! names and print `SKIPPED (needs root): <test>` otherwise; tests of an outside program that
//! is missing print `SKIPPED (needs <program>): <test>`. CI runs as root with every program
//! installed and `APOPTOOLS_REQUIRE_ALL=1`, under which a skip fails.

#[path = "../common/bins.rs"]
mod bins;
mod client;
#[allow(dead_code)]
#[path = "../common/skip.rs"]
mod skip;
#[allow(dead_code)]
#[path = "../common/system_account.rs"]
mod system_account;
#[macro_use]
mod harness;

mod apoppassd;
mod apoppassd_split;
mod auth;
mod bad_input;
mod checkapop;
mod clients;
mod dovecot;
mod dovecot_checkpassword;
mod dovecot_imap;
mod fail2ban;
mod fail_closed;
mod maildrop;
mod privilege;
mod proxy;
mod sasl;
mod sasl_clients;
mod session;
mod split;
mod tcpserver;
mod tls;
mod tls_clients;
mod uidl_migration;
mod webmail_drivers;
