//! prompt: a password read on the terminal without echo.
//!
//! Guarantee: whatever happens at the prompt (Ctrl-C included), the terminal's echo is restored
//! before apoppasswd goes on or dies, and an interrupted prompt changes nothing.

use anyhow::Context as _;

use crate::error::Error;
use crate::store::Secret;
use crate::system::process;

/// Reads a password on the terminal (`/dev/tty`) without echo.
///
/// rpassword answers Ctrl-C by raising SIGINT while the terminal is still without echo, which
/// would leave the user's terminal that way. With SIGINT ignored for the read it returns
/// instead and restores the terminal; then the process dies of SIGINT as the user asked.
pub fn prompt(text: &str) -> anyhow::Result<Secret> {
    use nix::sys::signal::{raise, Signal};
    let typed = process::with_sigint_ignored(|| rpassword::prompt_password(text))
        .map_err(|e| Error::io("SIGINT", e.into()))?;
    let typed = match typed {
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            let _ = raise(Signal::SIGINT);
            // Still here: SIGINT was ignored by whoever started us.
            return Err(anyhow::Error::new(Error::io("/dev/tty", e))
                .context("interrupted; nothing was changed"));
        }
        other => other
            .map_err(|e| Error::io("/dev/tty", e))
            .context("cannot read a password from the terminal (use --stdin without one)")?,
    };
    Ok(Secret::new(typed.into_bytes()))
}
