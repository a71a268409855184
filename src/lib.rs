//! apoptools: a mail-only POP password for a Unix mail host.
//!
//! Three programs share this library: `apoppasswd` (a user sets the password, root provisions
//! it), `deapop` (root disables, enables and purges) and `ipop3d` (a POP3 server, one process per
//! connection, that checks APOP and USER/PASS against the same store and serves the Maildir).
//!
//! The layers, bottom up:
//! - [`config`]: the one optional `key = value` file all three tools read.
//! - [`accounts`]: one account lookup (NSS or a passwd(5)-format file) and name validation.
//! - [`privilege`]: acting as an account (an RAII effective-id guard) and the permanent drop.
//! - [`atomic`]: the one lock-and-replace routine every writer uses.
//! - [`store`]: the secret of an account in `~/.apop` / `~/.apop-EXT`, checked on the handle.
//! - [`disable`]: the root-owned disable list.
//! - [`apop`]: the APOP digest and constant-time comparison.
//! - [`pop3`], [`maildir`], [`session`]: the POP3 server.
//! - [`cli`]: what the tools share at their edges (errors to exit codes, the caller, stdin).
//! - [`apoppasswd`], [`deapop`], [`ipop3d`]: the tools' command lines and entry points.

pub mod accounts;
pub mod apop;
pub mod atomic;
pub mod config;
pub mod disable;
pub mod error;
pub mod fuzzing;
pub mod privilege;
pub mod store;

pub mod maildir;
pub mod pop3;
pub mod session;

pub mod cli;

pub mod apoppasswd;
pub mod deapop;
pub mod ipop3d;
