//! apoppasswd: set, generate, check, show or delete a mail-only POP password.
//!
//! One invocation targets one address (an account, or `user-EXT` with `--ext`), chosen and
//! authorised in one place, `Target::resolve`: no USER means the caller's own account; another
//! account needs root. A user on the disable list may not set a password (root may). Passwords
//! never come from argv: from the terminal (`/dev/tty`, no echo), or the first line of stdin.
//! `--batch` (root, [`super::batch`]) validates every line before it writes anything; the
//! terminal prompt is [`super::prompt`]. All file work is done by
//! [`crate::store`], as the account.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{value_parser, Arg, ArgAction, ArgGroup, ArgMatches, Command};

use crate::auth::apop::constant_time_eq;
use crate::auth::login_password;
use crate::error::{exit, Error, Result};
use crate::store::disable::DisableList;
use crate::store::{self, Secret, MAX_SECRET_LEN};
use crate::system::accounts::{validate_ext, Account, Login};
use crate::system::privilege;
use crate::system::wipe::wipe;
use crate::tools::cli::{self, Context};
use crate::tools::{batch, prompt};

pub(super) const TOOL: &str = "apoppasswd";
/// The exit statuses this tool can return (--help and the man page list these).
pub const EXIT_CODES: &[u8] = &[
    exit::OK,
    exit::MISMATCH,
    exit::USAGE,
    exit::DENIED,
    exit::NO_USER,
    exit::UNSAFE,
    exit::BUSY,
    exit::POLICY,
    exit::CONFIG,
    exit::NO_SECRET,
    exit::SYSTEM,
    exit::NO_LOGIN_CHECK,
];
/// The seed's success line.
const UPDATED: &str = "Updated APOP password successfully.";
/// Letters and digits a reader cannot confuse (no 0/O, 1/l/I).
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
const DEFAULT_LENGTH: u16 = 16;

/// The command line (it also feeds the man page and the shell completions).
pub fn command() -> Command {
    Command::new(TOOL)
        .version(env!("CARGO_PKG_VERSION"))
        .about("Set the mail-only APOP/POP3 password of an account")
        .long_about(
            "Set, generate, check, show or delete the mail-only password that ipop3d accepts \
             for APOP, SASL (SCRAM-SHA-256, CRAM-MD5, PLAIN, LOGIN) and USER/PASS logins. It is \
             not the login password, and may not be: a new password that PAM accepts as the \
             account's login password is refused (login_password_check in apoptools.conf(5)). \
             Every write stores the password and SCRAM-SHA-256 keys \
             derived from it (a random 16-byte salt, 4096 iterations).\n\n\
             Without an option apoppasswd asks twice on the terminal (\"Enter APOP Password:\", \
             \"Again APOP Password:\") without echo, and stores the password in ~/.apop (or \
             ~/.apop-EXT for the extension address USER-EXT). Passwords are never taken from \
             the command line: use --stdin in scripts.\n\n\
             USER defaults to the caller's own account; naming another account needs root. \
             USER may also be written USER-EXT (with the configured ext_delimiter). An account \
             disabled with deapop(8) cannot set a new password unless root does it.\n\n\
             --batch (root) reads \"user:password\" lines from standard input: the first colon \
             ends the user (the password may contain colons), user may be USER-EXT, a CR before \
             the newline is dropped and blank lines are skipped. Every line is checked first \
             (the account exists, the extension is valid, the password meets the policy, no \
             address appears twice, an existing store file is safe to replace); if any line is \
             bad, each bad line is reported by number, never with its password, and nothing is \
             written.",
        )
        .after_help(crate::error::exit_status_help(
            &crate::error::exit_statuses(EXIT_CODES),
        ))
        .arg(crate::tools::cli::config_arg())
        .arg(
            Arg::new("ext")
                .long("ext")
                .value_name("EXT")
                .help("Act on the extension address USER-EXT (file ~/.apop-EXT)"),
        )
        .arg(
            Arg::new("stdin")
                .long("stdin")
                .action(ArgAction::SetTrue)
                .help("Read the password from the first line of standard input, no prompt"),
        )
        .arg(
            Arg::new("batch")
                .long("batch")
                .action(ArgAction::SetTrue)
                .conflicts_with_all(["user", "ext", "stdin", "length"])
                .help(
                    "Root: read \"user:password\" lines (user may be user-EXT) from standard \
                     input; nothing is written unless every line is valid",
                ),
        )
        .arg(
            Arg::new("generate")
                .long("generate")
                .action(ArgAction::SetTrue)
                .conflicts_with("stdin")
                .help("Store a random password and print it once on standard output"),
        )
        .arg(
            Arg::new("length")
                .long("length")
                .value_name("N")
                .requires("generate")
                .value_parser(value_parser!(u16).range(1..=MAX_SECRET_LEN as i64))
                .help(format!(
                    "Length of the --generate password [default: {DEFAULT_LENGTH}]"
                )),
        )
        .arg(
            Arg::new("check")
                .long("check")
                .action(ArgAction::SetTrue)
                .help("Exit 0 if the typed (or --stdin) password matches the stored one, 1 if not"),
        )
        .arg(
            Arg::new("status")
                .long("status")
                .action(ArgAction::SetTrue)
                .conflicts_with("stdin")
                .help("Show whether a password is set, when and by whom it was changed, and whether the account is disabled"),
        )
        .arg(
            Arg::new("delete")
                .long("delete")
                .action(ArgAction::SetTrue)
                .conflicts_with("stdin")
                .help("Remove the stored password"),
        )
        .group(
            ArgGroup::new("mode")
                .args(["batch", "generate", "check", "status", "delete"])
                .multiple(false),
        )
        .arg(
            Arg::new("user")
                .value_name("USER")
                .help("The account (or USER-EXT address) to act on [default: your own]"),
        )
}

pub fn main() -> ExitCode {
    cli::start(TOOL, run)
}

fn run() -> anyhow::Result<ExitCode> {
    let m = command().get_matches();
    let ctx = Context::load(m.get_one::<PathBuf>("config").map(PathBuf::as_path))?;
    if m.get_flag("batch") {
        return batch::batch(&ctx);
    }
    let target = Target::resolve(
        &ctx,
        m.get_one::<String>("user").map(String::as_str),
        m.get_one::<String>("ext").map(String::as_str),
    )?;
    let from_stdin = m.get_flag("stdin");
    if m.get_flag("check") {
        check(&target, from_stdin)
    } else if m.get_flag("status") {
        status(&ctx, &target)
    } else if m.get_flag("delete") {
        delete(&ctx, &target)
    } else if m.get_flag("generate") {
        generate(&ctx, &target, &m)
    } else {
        set(&ctx, &target, from_stdin)
    }
}

/// The address an invocation acts on, once the caller has been allowed to touch it.
struct Target {
    account: Account,
    ext: Option<String>,
    address: String,
}

impl Target {
    /// Which account and extension this invocation targets, and whether the caller may touch
    /// it: their own account always, another one only as root.
    fn resolve(ctx: &Context, user: Option<&str>, ext: Option<&str>) -> Result<Target> {
        let delimiter = ctx.config.ext_delimiter;
        let login = match user {
            Some(user) => ctx.accounts.resolve_login(user, delimiter)?,
            None => Login {
                account: ctx.accounts.by_uid(ctx.caller.uid)?,
                ext: None,
            },
        };
        let ext = match (login.ext, ext) {
            (Some(_), Some(_)) => {
                return Err(Error::BadName(
                    "give the extension either in USER-EXT or with --ext, not both".into(),
                ))
            }
            (from_user, from_flag) => from_user.or(from_flag.map(str::to_string)),
        };
        if let Some(ext) = &ext {
            validate_ext(ext)?;
        }
        let login = Login {
            account: login.account,
            ext,
        };
        let address = login.address(delimiter);
        if login.account.uid != ctx.caller.uid && !privilege::is_root() {
            return Err(Error::NotPermitted(format!(
                "only root may act on the APOP password of {address} (you are {})",
                ctx.caller.name
            )));
        }
        Ok(Target {
            account: login.account,
            ext: login.ext,
            address,
        })
    }

    /// The login this target is, for the disable list.
    fn login(&self) -> Login {
        Login {
            account: self.account.clone(),
            ext: self.ext.clone(),
        }
    }

    /// A disabled address (or its account, or an alias of it) may not get a new password,
    /// unless root gives it one.
    fn check_may_set(&self, ctx: &Context) -> Result<()> {
        if privilege::is_root() {
            return Ok(());
        }
        let list = DisableList::load(&ctx.config.disabled_file)?;
        if let Some((name, _)) =
            list.mark_for(&ctx.accounts, &self.login(), ctx.config.ext_delimiter)?
        {
            return Err(Error::Disabled(name.to_string()));
        }
        Ok(())
    }

    /// The gate a new password passes before anything is written or shown: the store's
    /// policy, then the login password (asked once per run: one PAM attempt).
    fn admit(&self, ctx: &Context, secret: &Secret) -> Result<()> {
        store::check_policy(secret.as_bytes(), ctx.config.min_length)?;
        login_password::check(
            &ctx.config.login_password_check,
            &ctx.accounts,
            &self.account,
            secret.as_bytes(),
        )?;
        Ok(())
    }

    /// Writes a password [`Target::admit`] let through.
    fn store(&self, ctx: &Context, secret: &Secret) -> Result<()> {
        store::write(
            &self.account,
            self.ext.as_deref(),
            secret.as_bytes(),
            &ctx.caller.name,
            ctx.config.lock_wait,
        )
    }
}

fn set(ctx: &Context, target: &Target, from_stdin: bool) -> anyhow::Result<ExitCode> {
    target.check_may_set(ctx)?;
    let secret = if from_stdin {
        cli::read_line_secret()?
    } else {
        let first = prompt::prompt("Enter APOP Password: ")?;
        store::check_policy(first.as_bytes(), ctx.config.min_length)?;
        let again = prompt::prompt("Again APOP Password: ")?;
        if !constant_time_eq(first.as_bytes(), again.as_bytes()) {
            return Err(
                Error::Policy("the two passwords differ; nothing was changed".into()).into(),
            );
        }
        first
    };
    target
        .admit(ctx, &secret)
        .and_then(|()| target.store(ctx, &secret))
        .with_context(|| format!("cannot set the APOP password of {}", target.address))?;
    cli::print(format!("{UPDATED}\n"))?;
    Ok(ExitCode::SUCCESS)
}

fn generate(ctx: &Context, target: &Target, m: &ArgMatches) -> anyhow::Result<ExitCode> {
    target.check_may_set(ctx)?;
    let length = m
        .get_one::<u16>("length")
        .copied()
        .map_or(usize::from(DEFAULT_LENGTH), usize::from);
    let secret = random_password(length)?;
    target
        .admit(ctx, &secret)
        .with_context(|| format!("cannot set the APOP password of {}", target.address))?;
    // Shown before it is stored: a password nobody saw (stdout full, or its reader gone) must
    // not replace the old one.
    let line = Secret::new([secret.as_bytes(), b"\n"].concat());
    cli::print_all(line.as_bytes())
        .context("cannot show the generated password; nothing was changed")?;
    target
        .store(ctx, &secret)
        .with_context(|| format!("cannot set the APOP password of {}", target.address))?;
    Ok(ExitCode::SUCCESS)
}

/// `length` characters of [`ALPHABET`] from the kernel's random source, without modulo bias.
fn random_password(length: usize) -> Result<Secret> {
    const URANDOM: &str = "/dev/urandom";
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut random = std::fs::File::open(URANDOM).map_err(|e| Error::io(URANDOM, e))?;
    let mut out = Vec::with_capacity(length);
    let mut buf = [0u8; 64];
    while out.len() < length {
        random
            .read_exact(&mut buf)
            .map_err(|e| Error::io(URANDOM, e))?;
        out.extend(
            buf.iter()
                .filter(|&&b| b < limit)
                .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()])
                .take(length - out.len()),
        );
    }
    wipe(&mut buf);
    Ok(Secret::new(out))
}

fn check(target: &Target, from_stdin: bool) -> anyhow::Result<ExitCode> {
    let record = match store::read(&target.account, target.ext.as_deref()) {
        Ok(record) => record,
        Err(Error::NoSecret(_)) => {
            eprintln!("{TOOL}: no APOP password is set for {}", target.address);
            return Ok(ExitCode::from(exit::MISMATCH));
        }
        Err(e) => return Err(e.into()),
    };
    let typed = if from_stdin {
        cli::read_line_secret()?
    } else {
        prompt::prompt("APOP Password: ")?
    };
    if constant_time_eq(typed.as_bytes(), record.secret.as_bytes()) {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{TOOL}: the password does not match");
        Ok(ExitCode::from(exit::MISMATCH))
    }
}

fn status(ctx: &Context, target: &Target) -> anyhow::Result<ExitCode> {
    let record = match store::read(&target.account, target.ext.as_deref()) {
        Ok(record) => Some(record),
        Err(Error::NoSecret(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let disabled = DisableList::load(&ctx.config.disabled_file)?;
    let extensions: Vec<String> = store::list(&target.account)?
        .into_iter()
        .flatten()
        .collect();
    let mut out = String::new();
    out.push_str(&format!("address:    {}\n", target.address));
    out.push_str(&format!(
        "account:    {} (uid {})\n",
        target.account.name, target.account.uid
    ));
    match &record {
        Some(r) => {
            out.push_str("password:   set\n");
            let when = r.changed.map_or("unknown time".to_string(), cli::utc);
            let by = r.by.as_deref().unwrap_or("unknown");
            out.push_str(&format!("changed:    {when} by {by}\n"));
        }
        None => out.push_str("password:   not set\n"),
    }
    out.push_str(&format!(
        "login pass: {}\n",
        login_password::describe(&ctx.config.login_password_check, &ctx.accounts)
    ));
    match disabled.mark_for(&ctx.accounts, &target.login(), ctx.config.ext_delimiter)? {
        Some((name, mark)) if name == target.address => out.push_str(&format!(
            "disabled:   yes, since {} by {}\n",
            cli::utc(mark.since),
            mark.by
        )),
        Some((name, mark)) => out.push_str(&format!(
            "disabled:   yes, as {name} since {} by {}\n",
            cli::utc(mark.since),
            mark.by
        )),
        None => out.push_str("disabled:   no\n"),
    }
    let shown = if extensions.is_empty() {
        "none".to_string()
    } else {
        extensions.join(" ")
    };
    out.push_str(&format!("extensions: {shown}\n"));
    cli::print(out)?;
    Ok(match record {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::from(exit::NO_SECRET),
    })
}

fn delete(ctx: &Context, target: &Target) -> anyhow::Result<ExitCode> {
    let path = store::path(&target.account, target.ext.as_deref());
    if !store::delete(&target.account, target.ext.as_deref(), ctx.config.lock_wait)? {
        return Err(Error::NoSecret(path).into());
    }
    cli::print(format!(
        "Deleted the APOP password of {}.
",
        target.address
    ))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn generated_passwords_use_the_alphabet() {
        let p = random_password(200).unwrap();
        assert_eq!(p.as_bytes().len(), 200);
        assert!(p.as_bytes().iter().all(|b| ALPHABET.contains(b)));
        assert_ne!(p.as_bytes(), random_password(200).unwrap().as_bytes());
    }
}
