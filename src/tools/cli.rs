//! cli: what apoppasswd and deapop share at their edges.
//!
//! - [`finish`]: an error prints once, as `tool: {err:#}`, and becomes the exit status of the
//!   first library error in its chain.
//! - [`print`](fn@print): all standard output; a closed stdout (EPIPE) is not an error.
//! - [`Context`]: the configuration, the one account lookup and the caller (who runs the tool,
//!   from the real uid), loaded once per run.
//! - [`read_line_secret`]: a password from the first line of stdin (never from argv).
//! - [`utc`]: Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`, without a time-zone database.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::error::{exit_code, Error, Result};
use crate::store::{Secret, MAX_SECRET_LEN};
use crate::system::accounts::Accounts;
use crate::system::privilege;

/// What every tool does first, before it reads anything: no core dumps (see
/// [`crate::system::process::forbid_core_dumps`]); if that fails, nothing else runs.
pub fn start(tool: &str, run: impl FnOnce() -> anyhow::Result<ExitCode>) -> ExitCode {
    if let Err(e) = crate::system::process::forbid_core_dumps() {
        eprintln!("{tool}: cannot forbid core dumps: {e}");
        return ExitCode::from(crate::error::exit::SYSTEM);
    }
    finish(tool, run())
}

/// Turns a tool's result into its exit status, printing an error once on stderr.
pub fn finish(tool: &str, result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{tool}: {}", message(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

/// The one-line text of an error chain, as `{err:#}`.
pub fn message(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// Writes `bytes` to stdout. A reader that went away (EPIPE) is not an error: the output is
/// dropped and the tool goes on to its own exit status.
pub fn print(bytes: impl AsRef<[u8]>) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes.as_ref()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::io("standard output", e)),
        _ => Ok(()),
    }
}

/// Writes `bytes` to standard output and flushes it; unlike [`print`], a reader that has gone
/// is an error too (for output that must have been seen, such as a generated password).
pub fn print_all(bytes: impl AsRef<[u8]>) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes.as_ref())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("standard output", e))
}

/// Who runs the tool.
#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    /// The account name of the uid (`root` for uid 0 even when a `passwd_file` lacks it).
    pub name: String,
}

/// Everything a run needs before it looks at its arguments' accounts.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub accounts: Accounts,
    pub caller: Caller,
}

impl Context {
    /// Loads the configuration (`--config`, or the default file), opens the accounts once and
    /// identifies the caller by the real uid.
    pub fn load(config: Option<&Path>) -> Result<Context> {
        let config = Config::load(config)?;
        let accounts = Accounts::open(config.passwd_file.as_deref())?;
        let uid = nix::unistd::getuid().as_raw();
        let name = match accounts.by_uid(uid) {
            Ok(account) => account.name,
            Err(Error::UnknownUser(_)) if uid == 0 => "root".to_string(),
            Err(Error::UnknownUser(_)) => {
                return Err(Error::UnknownUser(format!(
                    "uid {uid} (you are not in the accounts)"
                )))
            }
            Err(e) => return Err(e),
        };
        Ok(Context {
            config,
            accounts,
            caller: Caller { uid, name },
        })
    }

    /// Refuses anyone but root, saying what only root may do.
    pub fn require_root(&self, what: &str) -> Result<()> {
        if privilege::is_root() {
            Ok(())
        } else {
            Err(Error::NotPermitted(format!("only root may {what}")))
        }
    }
}

/// The first line of stdin, without its `\n` and one `\r` before it. At most
/// [`MAX_SECRET_LEN`] + 2 bytes are read, so a huge stdin cannot exhaust memory.
pub fn read_line_secret() -> Result<Secret> {
    let too_long = || {
        Error::Policy(format!(
            "the password is longer than {MAX_SECRET_LEN} bytes"
        ))
    };
    let mut line = match crate::system::wipe::read_stdin(MAX_SECRET_LEN + 2, true) {
        Ok(line) => line,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(too_long()),
        Err(e) => return Err(Error::io("standard input", e)),
    };
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_SECRET_LEN {
        crate::system::wipe::wipe(&mut line);
        return Err(too_long());
    }
    Ok(Secret::new(line))
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `--config FILE`, the option every program shares.
pub fn config_arg() -> clap::Arg {
    clap::Arg::new("config")
        .long("config")
        .value_name("FILE")
        .value_parser(clap::value_parser!(std::path::PathBuf))
        .action(clap::ArgAction::Set)
        .help("Configuration file [default: /etc/apoptools.conf]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_136_073_599), "2005-12-31 23:59:59 UTC");
        assert_eq!(utc(4_107_542_400), "2100-03-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
