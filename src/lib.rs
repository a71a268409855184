//! apoptools: a mail-only POP password for a Unix mail host.
//!
//! Three programs share this library: `apoppasswd` (a user sets the password, root provisions
//! it), `deapop` (root disables, enables and purges) and `ipop3d` (a POP3 server, one process per
//! connection, that checks APOP and USER/PASS against the same store and serves the Maildir).
//!
//! The library exports only the three entry points; everything else is `pub(crate)`. The
//! layers, bottom up:
//! - `error`: the typed failures callers branch on, and their exit statuses.
//! - `config`: the one optional `key = value` file all three tools read.
//! - `system`: accounts, privilege, and every `unsafe` call into the operating system.
//! - `store`: the secrets in `~/.apop` / `~/.apop-EXT`, the disable list, and the one
//!   lock-and-replace routine both use.
//! - `auth`: the APOP digest and constant-time comparison.
//! - `maildir`: one session's view of a Maildir (the maildrop).
//! - `pop3`: the wire format and the session state machine.
//! - `server`: ipop3d, the server process around the session.
//! - `tools`: apoppasswd and deapop, and what they share at their edges.
//!
//! With the `testing` feature, the `testing` module re-exports what the integration tests, benches and
//! fuzz targets need; the shipped library has none of it.

#![deny(unsafe_code)]

pub(crate) mod config;
pub(crate) mod error;

// The one place `unsafe` is allowed; every block there has a `// SAFETY:` comment.
#[allow(unsafe_code)]
pub(crate) mod system;

pub(crate) mod auth;
pub(crate) mod store;

pub(crate) mod maildir;
pub(crate) mod pop3;

pub(crate) mod server;
pub(crate) mod tools;

#[cfg(feature = "testing")]
pub mod testing;

/// `apoppasswd(1)`: set, generate, check, show or delete a mail-only POP password.
pub mod apoppasswd {
    pub use crate::tools::apoppasswd::main;
}

/// `apoppassd(8)`: one poppassd session on stdin/stdout, for webmail's password plugins.
pub mod apoppassd {
    pub use crate::server::poppassd::main;
}

/// `checkapop(8)`: the checkpassword interface over the store, for qmail-popup and Dovecot.
pub mod checkapop {
    pub use crate::tools::checkapop::main;
}

/// `deapop(8)`: disable, enable, purge and list POP password logins.
pub mod deapop {
    pub use crate::tools::deapop::main;
}

/// `ipop3d(8)`: one POP3 session on stdin/stdout.
pub mod ipop3d {
    pub use crate::server::ipop3d::main;
}
