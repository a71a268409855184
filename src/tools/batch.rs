//! batch: `apoppasswd --batch`, root provisioning many addresses from `user:password` lines.
//!
//! Guarantees:
//! - Every line is validated (address, policy, a safe existing store file, and not the
//!   account's login password: [`crate::auth::login_password`]) before anything is written:
//!   one bad line and nothing changes. Errors name the line, never the password.
//! - The login-password checks (one PAM authentication per line of a system account, a
//!   password hash each) are shared among forked processes as the writes are; a checker that
//!   dies leaves its lines unchecked, and then nothing is written.
//! - The input is wiped from memory once used.
//! - Writes are shared among forked writer processes (each as the account, through
//!   [`crate::store::write`]); every failure is reported by line, and a writer that dies is
//!   reported too.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use crate::auth::login_password;
use crate::error::{exit, exit_code, Error, Result};
use crate::store;
use crate::system::accounts::Login;
use crate::system::process;
use crate::system::wipe::wipe;
use crate::tools::apoppasswd::TOOL;
use crate::tools::cli::{self, Context};

/// The largest `--batch` input (about a million accounts).
const MAX_BATCH_LEN: usize = 256 << 20;

/// One valid line of `--batch` input.
struct BatchEntry<'a> {
    line: usize,
    login: Login,
    secret: &'a [u8],
}

pub fn batch(ctx: &Context) -> anyhow::Result<ExitCode> {
    ctx.require_root("set passwords with --batch")?;
    let mut input = match crate::system::wipe::read_stdin(MAX_BATCH_LEN, false) {
        Ok(input) => input,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(Error::Policy(format!(
                "the --batch input is larger than {MAX_BATCH_LEN} bytes"
            ))
            .into())
        }
        Err(e) => return Err(Error::io("standard input", e).into()),
    };
    let result = batch_input(ctx, &input);
    wipe(&mut input);
    result
}

fn batch_input(ctx: &Context, input: &[u8]) -> anyhow::Result<ExitCode> {
    // A missing PAM service would fail every line alike: say it once.
    login_password::preflight(&ctx.config.login_password_check, &ctx.accounts)?;
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<(String, Option<String>), usize> = HashMap::new();
    for (index, raw) in input.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        match batch_line(ctx, raw) {
            Ok((login, secret)) => {
                let key = (login.account.name.clone(), login.ext.clone());
                if let Some(first) = seen.insert(key, line) {
                    let address = login.address(ctx.config.ext_delimiter);
                    errors.push(Failure::of(
                        line,
                        Error::Policy(format!("{address} is also on line {first}")),
                    ));
                } else {
                    entries.push(BatchEntry {
                        line,
                        login,
                        secret,
                    });
                }
            }
            Err(e) => errors.push(Failure::of(line, e)),
        }
    }
    // Every line that is otherwise good is checked, so that one run reports every bad line.
    errors.extend(check_entries(ctx, &entries));
    errors.sort_by_key(|f| f.line);
    if let Some(first) = errors.first() {
        for e in &errors {
            eprintln!("{TOOL}: {}", e.message);
        }
        eprintln!("{TOOL}: {} bad line(s); nothing was written", errors.len());
        return Ok(ExitCode::from(first.code));
    }
    let mut failed = write_entries(ctx, &entries);
    failed.sort_by_key(|f| f.line);
    for f in &failed {
        eprintln!("{TOOL}: {}", f.message);
    }
    let written = entries.len() - failed.iter().filter(|f| f.line > 0).count();
    cli::print(format!("Updated {written} APOP password(s).\n"))?;
    match failed.first() {
        Some(first) => {
            eprintln!("{TOOL}: {} line(s) failed", failed.len());
            Ok(ExitCode::from(first.code))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// A batch line that was refused or whose write failed. `line` 0: a worker process that
/// died (its lines are unknown).
struct Failure {
    line: usize,
    code: u8,
    /// The full text, `line N: ...`; never a secret.
    message: String,
}

impl Failure {
    fn of(line: usize, e: Error) -> Failure {
        let e = line_error(line, e);
        Failure {
            line,
            code: exit_code(&e),
            message: cli::message(&e),
        }
    }
}

/// Most processes that write one batch at once.
const BATCH_WRITERS: usize = 8;
/// Fewer entries than this per writer are not worth another process.
const ENTRIES_PER_WRITER: usize = 64;

/// Fewer login-password checks than this per process are not worth another one.
const CHECKS_PER_CHECKER: usize = 4;

/// Compares every entry's password with its account's login password (PAM: one password
/// hash each, CPU-bound), sharing them among as many forked processes as there are CPUs;
/// the refused lines. Nothing to do for virtual accounts or with the check off.
fn check_entries(ctx: &Context, entries: &[BatchEntry]) -> Vec<Failure> {
    if !login_password::applies(&ctx.config.login_password_check, &ctx.accounts) {
        return Vec::new();
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let check = |entry: &BatchEntry| {
        login_password::check(
            &ctx.config.login_password_check,
            &ctx.accounts,
            &entry.login.account,
            entry.secret,
        )
        .err()
        .map(|e| Failure::of(entry.line, e))
    };
    let what = ("checker", "its lines are unchecked");
    share_out(entries, CHECKS_PER_CHECKER, cpus, what, check)
}

/// Writes every entry, sharing them among up to [`BATCH_WRITERS`] forked processes. A write is
/// bound by its two fsyncs, which the file system commits together when they come at once;
/// threads cannot share the work, because the effective uid that [`store::write`] switches
/// (as the account) belongs to the whole process.
fn write_entries(ctx: &Context, entries: &[BatchEntry]) -> Vec<Failure> {
    let write = |entry: &BatchEntry| {
        store::write(
            &entry.login.account,
            entry.login.ext.as_deref(),
            entry.secret,
            &ctx.caller.name,
            ctx.config.lock_wait,
        )
        .err()
        .map(|e| Failure::of(entry.line, e))
    };
    let what = ("writer", "some of its lines may be unwritten");
    share_out(entries, ENTRIES_PER_WRITER, BATCH_WRITERS, what, write)
}

/// Runs `work` on every entry, sharing them among up to `most` forked processes of at least
/// `per_process` entries each (one process: here); the failures, with one for each process
/// that did not finish (`what` names such a process, `undone` what that leaves).
fn share_out(
    entries: &[BatchEntry],
    per_process: usize,
    most: usize,
    (what, undone): (&str, &str),
    work: impl Fn(&BatchEntry) -> Option<Failure> + Copy,
) -> Vec<Failure> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::pipe;
    let writers = entries.len().div_ceil(per_process).clamp(1, most.max(1));
    if writers == 1 {
        return run_share(entries, 0, 1, work);
    }
    let mut failures = Vec::new();
    let mut children = Vec::new();
    for share in 0..writers {
        let forked = pipe().and_then(|(read, write)| {
            let (child, read) = process::fork_worker(read, || {
                let mut report = std::fs::File::from(write);
                run_share(entries, share, writers, work).iter().all(|f| {
                    let text = f.message.replace('\n', " ");
                    writeln!(report, "{} {} {text}", f.line, f.code).is_ok()
                })
            })?;
            Ok((child, std::fs::File::from(read)))
        });
        match forked {
            Ok(child) => children.push(child),
            // No process for this share: do it here.
            Err(_) => failures.extend(run_share(entries, share, writers, work)),
        }
    }
    let readers: Vec<_> = children
        .into_iter()
        .map(|(pid, mut report)| {
            let reader = std::thread::spawn(move || {
                let mut text = String::new();
                let _ = report.read_to_string(&mut text);
                text
            });
            (pid, reader)
        })
        .collect();
    for (pid, reader) in readers {
        let text = reader.join().unwrap_or_default();
        for row in text.lines() {
            let mut fields = row.splitn(3, ' ');
            let line = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
            let code = fields
                .next()
                .and_then(|f| f.parse().ok())
                .unwrap_or(exit::SYSTEM);
            let message = fields.next().unwrap_or_default().to_string();
            failures.push(Failure {
                line,
                code,
                message,
            });
        }
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => {}
            other => failures.push(Failure {
                line: 0,
                code: exit::SYSTEM,
                message: format!("{what} process {pid} failed ({other:?}); {undone}"),
            }),
        }
    }
    failures
}

/// Runs `work` on entries `share`, `share + shares`, ... and returns the failures.
fn run_share(
    entries: &[BatchEntry],
    share: usize,
    shares: usize,
    work: impl Fn(&BatchEntry) -> Option<Failure>,
) -> Vec<Failure> {
    entries
        .iter()
        .skip(share)
        .step_by(shares)
        .filter_map(work)
        .collect()
}

fn line_error(line: usize, e: Error) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("line {line}"))
}

/// Validates one `user:password` line: the address exists, the password meets the policy and
/// an existing store file is safe to replace. Errors never quote the password.
fn batch_line<'a>(ctx: &Context, raw: &'a [u8]) -> Result<(Login, &'a [u8])> {
    let colon = raw
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| Error::Policy("expected user:password".into()))?;
    let user = std::str::from_utf8(&raw[..colon])
        .map_err(|_| Error::BadName("the user name is not ASCII".into()))?;
    let secret = &raw[colon + 1..];
    let login = ctx.accounts.resolve_login(user, ctx.config.ext_delimiter)?;
    store::check_policy(secret, ctx.config.min_length)?;
    match store::read(&login.account, login.ext.as_deref()) {
        Ok(_) | Err(Error::NoSecret(_)) => {}
        // A malformed but otherwise safe file is simply replaced.
        Err(Error::Unsafe {
            why: crate::error::Unsafe::Malformed(_),
            ..
        }) => {}
        Err(e) => return Err(e),
    }
    Ok((login, secret))
}
