//! checkapop: the checkpassword interface (cr.yp.to/checkpwd/interface.html) over the apoptools
//! store, so qmail-popup and Dovecot check the same mail password as ipop3d.
//!
//! Guarantees:
//! - The request on fd 3 (`login\0password\0timestamp\0`, at most 512 bytes) is checked with
//!   ipop3d's own rules ([`crate::server::ipop3d`]'s lookup): unknown names, uid or gid 0,
//!   disabled addresses and unusable store files never log in; comparisons are constant-time;
//!   a password with a timestamp is taken as the hex APOP digest over it. The `plaintext`
//!   rule applies to plaintext passwords as in ipop3d (`never` refuses them; `intranet` wants
//!   INTRANET set, or the caller to be Dovecot, which enforces its own TLS rule).
//! - Exit 1 for a bad login (after `auth_delay`), 2 for misuse (no fd 3, a malformed request,
//!   no program), 111 for a temporary failure (an account source or the disable list
//!   unreadable). On failure the program is never run.
//! - qmail mode (the default): on success the process drops to the account for good (the
//!   same drop as ipop3d, a failure is fatal), sets USER, HOME and SHELL, changes to HOME and
//!   execs the program.
//! - Dovecot mode (`--dovecot`, for `passdb { driver = checkpassword }`): no drop, since
//!   Dovecot becomes the account itself; the program (Dovecot's `checkpassword-reply`) is
//!   given USER, HOME and `userdb_uid`/`userdb_gid` through EXTRA, and for an extension
//!   address `U-EXT` `userdb_mail=maildir:PATH`, the Maildir its `.qmail-EXT` names (found
//!   as the account, by ipop3d's rules). Dovecot's lookups
//!   (`AUTHORIZED` set) check no password; a credentials lookup (`CREDENTIALS_LOOKUP`) gets
//!   `password={PLAIN}...` so Dovecot's APOP and CRAM-MD5 work against the store; a lookup of
//!   a name that cannot log in exits 3, as checkpassword-reply's protocol wants; `AUTHORIZED`
//!   becomes 2 only when Dovecot set it.
//! - Log lines go to standard error and never hold a secret.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Arg, ArgAction};

use crate::auth::apop;
use crate::auth::checkpassword::{self, Request, MAX_REQUEST};
use crate::config::{Config, Plaintext};
use crate::maildir;
use crate::pop3::session::{sanitize, Denied};
use crate::server::ipop3d::lookup_login;
use crate::system::accounts::Accounts;
use crate::system::privilege;

/// A bad login.
pub const EXIT_BAD_LOGIN: u8 = 1;
/// Misuse: no fd 3, a malformed request, no program to run.
pub const EXIT_MISUSE: u8 = 2;
/// A lookup (Dovecot's AUTHORIZED) of a name that cannot log in.
pub const EXIT_NO_USER: u8 = 3;
/// A temporary failure.
pub const EXIT_TEMPORARY: u8 = 111;

/// Exit statuses, as checkapop(8) lists them.
pub const EXIT_STATUSES: &[(u8, &str)] = &[
    (
        0,
        "never seen: on success checkapop becomes the program it runs",
    ),
    (
        EXIT_BAD_LOGIN,
        "a bad login (after auth_delay); the program was not run",
    ),
    (
        EXIT_MISUSE,
        "misuse: no fd 3, a malformed request, no program, a bad command line",
    ),
    (
        EXIT_NO_USER,
        "(--dovecot lookups only) the name cannot log in: unknown, uid 0, disabled, no secret",
    ),
    (
        EXIT_TEMPORARY,
        "a temporary failure: not run as root, the configuration, account source or disable \
         list unreadable, a failed drop",
    ),
];

/// The command line (also the source of the man page).
pub fn command() -> clap::Command {
    clap::Command::new("checkapop")
        .version(env!("CARGO_PKG_VERSION"))
        .about("checkpassword for the apoptools store: qmail-popup and Dovecot check the mail password")
        .long_about(
            "checkapop reads a checkpassword request from fd 3 (login, NUL, password, NUL, \
             timestamp, NUL; at most 512 bytes) and checks it against the mail-only password \
             apoppasswd(1) set, with ipop3d(8)'s rules: extension addresses, disabled accounts \
             and uid 0 as there. With a timestamp (qmail-popup with APOP) the password is the hex \
             APOP digest over it. On success it runs PROG with ARGS: as the account, in its \
             home, with USER, HOME and SHELL set (qmail); or, with --dovecot, as Dovecot's \
             checkpassword-reply, which hands Dovecot the account's uid, gid and home.",
        )
        .after_help(format!(
            "{}\n\n\
             Examples:\n  \
             qmail:   qmail-popup mail.example.org checkapop qmail-pop3d Maildir\n  \
             Dovecot: passdb {{ driver = checkpassword  args = /usr/local/sbin/checkapop --dovecot }}\n           \
             userdb {{ driver = prefetch }}\n           \
             service auth {{ user = root }}",
            crate::error::exit_status_help(EXIT_STATUSES)
        ))
        .arg(crate::tools::cli::config_arg())
        .arg(
            Arg::new("dovecot")
                .long("dovecot")
                .action(ArgAction::SetTrue)
                .help("Answer Dovecot's checkpassword passdb (PROG is its checkpassword-reply)"),
        )
        .arg(
            Arg::new("prog")
                .value_name("PROG")
                .required(true)
                .num_args(1..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .value_parser(clap::value_parser!(std::ffi::OsString))
                .help("The program to run after a good login, and its arguments"),
        )
}

/// Logs one line to standard error.
fn log(event: &str, fields: &str) {
    eprintln!("checkapop: {event} {fields}");
}

/// The entry point of the `checkapop` binary.
pub fn main() -> ExitCode {
    if crate::system::process::forbid_core_dumps().is_err() {
        log("fatal", "reason=\"cannot forbid core dumps\"");
        return ExitCode::from(EXIT_TEMPORARY);
    }
    let matches = match command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_MISUSE } else { 0 });
        }
    };
    let started = Instant::now();
    // Reading each account's store as the account, and the drop, take root: anything else
    // is a setup error (exit 111), never a bad login.
    if !nix::unistd::geteuid().is_root() {
        log(
            "fatal",
            "reason=\"checkapop must run as root (under Dovecot: service auth { user = root })\"",
        );
        return ExitCode::from(EXIT_TEMPORARY);
    }
    let request = match read_request() {
        Ok(r) => r,
        Err(why) => {
            log("misuse", &format!("reason={why:?}"));
            return ExitCode::from(EXIT_MISUSE);
        }
    };
    let prog: Vec<std::ffi::OsString> = matches
        .get_many::<std::ffi::OsString>("prog")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let config = match Config::load(matches.get_one::<PathBuf>("config").map(|p| p.as_path())) {
        Ok(c) => c,
        Err(e) => {
            log("error", &format!("reason={:?}", e.to_string()));
            return ExitCode::from(EXIT_TEMPORARY);
        }
    };
    let caller = if matches.get_flag("dovecot") {
        Caller::Dovecot
    } else {
        Caller::Qmail
    };
    ExitCode::from(check(&config, caller, &request, &prog, started))
}

/// Who runs checkapop, and so what success means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Qmail,
    Dovecot,
}

/// Reads and parses fd 3, then closes it.
fn read_request() -> Result<Request, String> {
    let Some(fd) = crate::system::process::take_fd3() else {
        return Err("fd 3 is not open (run checkapop as a checkpassword program)".into());
    };
    // The file closes fd 3 once the request is read.
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::with_capacity(MAX_REQUEST + 1);
    let read = (&mut file)
        .take(MAX_REQUEST as u64 + 1)
        .read_to_end(&mut bytes);
    drop(file);
    let parsed = match read {
        Ok(_) => checkpassword::parse(&bytes).map_err(|e| e.to_string()),
        Err(e) => Err(format!("reading fd 3: {e}")),
    };
    crate::system::wipe::wipe(&mut bytes);
    parsed
}

/// Checks the request and, on success, becomes the program; the exit status otherwise.
fn check(
    config: &Config,
    caller: Caller,
    request: &Request,
    prog: &[std::ffi::OsString],
    started: Instant,
) -> u8 {
    let who = sanitize(&request.login);
    let lookup = caller == Caller::Dovecot && std::env::var_os("AUTHORIZED").is_some();
    let accounts = match Accounts::open(config.passwd_file.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            log(
                "login",
                &format!("user={who} result=unavailable reason={:?}", e.to_string()),
            );
            return EXIT_TEMPORARY;
        }
    };
    let fail = |reason: &str| {
        log(
            "login",
            &format!("user={who} result=fail reason={reason:?}"),
        );
        std::thread::sleep(config.auth_delay.saturating_sub(started.elapsed()));
        if lookup {
            EXIT_NO_USER
        } else {
            EXIT_BAD_LOGIN
        }
    };
    let (login, record) = match lookup_login(config, &accounts, &request.login) {
        Ok(found) => found,
        Err(Denied::Wrong(reason)) => return fail(&reason),
        Err(Denied::Outage(reason) | Denied::Fatal(reason)) => {
            log(
                "login",
                &format!("user={who} result=unavailable reason={reason:?}"),
            );
            return EXIT_TEMPORARY;
        }
    };
    let secret = record.secret.as_bytes();
    if !lookup {
        let given = request.password.as_bytes();
        let ok = if request.timestamp.is_empty() {
            // Dovecot enforces its own TLS rule (disable_plaintext_auth), so under it the
            // rule is read as under TLS; qmail-popup has no TLS.
            let dovecot = caller == Caller::Dovecot;
            let allowed = config.plaintext.allows(Plaintext::intranet(), dovecot);
            if !allowed {
                return fail("plaintext not allowed");
            }
            apop::constant_time_eq(secret, given)
        } else {
            apop::verify(request.timestamp.as_bytes(), secret, given)
        };
        if !ok {
            return fail("wrong password");
        }
    }
    let Some((program, args)) = prog.split_first() else {
        log("misuse", "reason=\"no program to run\"");
        return EXIT_MISUSE;
    };
    let account = &login.account;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env("USER", &request.login)
        .env("HOME", &account.home);
    match caller {
        Caller::Qmail => {
            if let Err(e) = privilege::drop_permanently(account, accounts.groups()) {
                log("fatal", &format!("user={who} reason={:?}", e.to_string()));
                return EXIT_TEMPORARY;
            }
            // A system account's shell from NSS, by name; a passwd_file account (a virtual
            // user, whose uid may be some system user's) gets /bin/sh.
            let system = config.passwd_file.is_none();
            let shell = system
                .then(|| nix::unistd::User::from_name(&account.name).ok().flatten())
                .flatten()
                .filter(|u| u.uid.as_raw() == account.uid)
                .map(|u| u.shell)
                .unwrap_or_else(|| PathBuf::from("/bin/sh"));
            cmd.env("SHELL", shell).current_dir(&account.home);
        }
        Caller::Dovecot => {
            let mut extra = vec!["userdb_uid", "userdb_gid"];
            cmd.env("userdb_uid", account.uid.to_string())
                .env("userdb_gid", account.gid.to_string());
            // An extension address reads the Maildir its `.qmail-EXT` delivers to, as in
            // ipop3d: Dovecot is told through the userdb's `mail` field (its mail_location
            // still names the account's own Maildir). Found as the account, as ipop3d does.
            if login.ext.is_some() {
                let located = privilege::AsAccount::enter(account)
                    .and_then(|_as| maildir::locate(account, login.ext.as_deref(), config));
                match located {
                    Ok(path) => {
                        let Some(path) = path.to_str().filter(|p| !p.contains(['\t', ':'])) else {
                            log(
                                "login",
                                &format!("user={who} result=unavailable reason=\"the Maildir's path cannot be given to Dovecot\""),
                            );
                            return EXIT_TEMPORARY;
                        };
                        cmd.env("userdb_mail", format!("maildir:{path}"));
                        extra.push("userdb_mail");
                    }
                    Err(e) => {
                        log(
                            "login",
                            &format!(
                                "user={who} result=unavailable reason={:?}",
                                format!("no Maildir: {e}")
                            ),
                        );
                        return EXIT_TEMPORARY;
                    }
                }
            }
            if lookup && std::env::var_os("CREDENTIALS_LOOKUP").is_some() {
                // Dovecot derives what its mechanism needs (APOP, CRAM-MD5) from the
                // plaintext-equivalent secret; it reaches checkpassword-reply in its
                // environment, which only root can read.
                let Ok(text) = std::str::from_utf8(secret) else {
                    return fail("the secret is not UTF-8");
                };
                if text.contains('\t') {
                    return fail("the secret holds a TAB");
                }
                cmd.env("PASSWORD", format!("{{PLAIN}}{text}"));
                extra.push("PASSWORD");
            }
            cmd.env("EXTRA", extra.join(" "));
            if lookup {
                cmd.env("AUTHORIZED", "2");
            }
        }
    }
    // Dovecot logs a checkpassword program's standard error as errors: under it, only
    // failures are written there.
    if caller == Caller::Qmail {
        log("login", &format!("user={who} result=ok"));
    }
    let err = cmd.exec();
    log(
        "error",
        &format!(
            "user={who} reason={:?}",
            format!("cannot run {program:?}: {err}")
        ),
    );
    EXIT_TEMPORARY
}
