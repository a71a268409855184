//! tools: the administrator's and the user's command-line tools.
//!
//! - [`apoppasswd`]: set, generate, check, show or delete a mail-only POP password; its
//!   [`batch`] mode and its terminal [`prompt`].
//! - [`deapop`]: disable, enable, purge and list POP password logins (root only).
//! - [`cli`]: what the tools share at their edges (errors to exit codes, the caller, stdin).
//! - `manual` (with the `testing` feature): the man pages and completions of all three tools.

pub mod apoppasswd;
pub mod batch;
pub mod checkapop;
pub mod cli;
pub mod deapop;
#[cfg(feature = "testing")]
pub mod manual;
pub mod prompt;
