//! error: the typed failures callers branch on, and the exit code each one maps to.
//!
//! The library returns [`Error`]; the tools add context with anyhow at their edges and turn the
//! first `Error` in the chain into a documented exit status with [`exit_code`]. The `Display`
//! text of an error never contains a secret; ipop3d never sends any of it to a client.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Exit statuses shared by apoppasswd and deapop (documented in their man pages).
pub mod exit {
    pub const OK: u8 = 0;
    /// `--check`: the password does not match (or there is none).
    pub const MISMATCH: u8 = 1;
    /// Bad command line.
    pub const USAGE: u8 = 2;
    /// Not permitted: not root, or the account is disabled.
    pub const DENIED: u8 = 3;
    /// Unknown account or bad account/extension name.
    pub const NO_USER: u8 = 4;
    /// A store file, lock file or disable list that is unsafe to use.
    pub const UNSAFE: u8 = 5;
    /// The lock is held by another writer for longer than the wait.
    pub const BUSY: u8 = 6;
    /// The new password breaks the policy, or batch input is malformed.
    pub const POLICY: u8 = 7;
    /// The configuration file is missing or wrong.
    pub const CONFIG: u8 = 8;
    /// No secret is stored (`--status`, `--delete`).
    pub const NO_SECRET: u8 = 9;
    /// Any other system error (I/O, disk full, ...).
    pub const SYSTEM: u8 = 10;
    /// The new password could not be compared with the login password (`login_password_check`).
    pub const NO_LOGIN_CHECK: u8 = 11;
}

/// Every exit status with its meaning, for --help and the man pages.
pub const EXIT_STATUSES: &[(u8, &str)] = &[
    (exit::OK, "success"),
    (
        exit::MISMATCH,
        "--check: the password does not match, or none is set",
    ),
    (exit::USAGE, "bad command line"),
    (
        exit::DENIED,
        "not permitted: not root, another user's account, or the account is disabled",
    ),
    (
        exit::NO_USER,
        "unknown account, or a name that cannot be an account or extension",
    ),
    (
        exit::UNSAFE,
        "a store file, lock file or disable list is unsafe to use (the message says why)",
    ),
    (
        exit::BUSY,
        "another writer held the lock for longer than lock_wait",
    ),
    (
        exit::POLICY,
        "the new password breaks the policy (too short, a NUL, CR or newline, or the account's login password), or --batch input is malformed",
    ),
    (exit::CONFIG, "the configuration file is missing or wrong"),
    (
        exit::NO_SECRET,
        "no password is stored (--status, --delete)",
    ),
    (exit::SYSTEM, "any other system error (I/O, disk full, ...)"),
    (
        exit::NO_LOGIN_CHECK,
        "the new password could not be compared with the login password (login_password_check: PAM failed, or its service is missing); nothing was written",
    ),
];

/// The rows of [`EXIT_STATUSES`] for the statuses in `codes`.
pub fn exit_statuses(codes: &[u8]) -> Vec<(u8, &'static str)> {
    EXIT_STATUSES
        .iter()
        .filter(|(c, _)| codes.contains(c))
        .copied()
        .collect()
}

/// The "Exit status:" block of a tool's --help; the man pages render the same rows.
pub fn exit_status_help(rows: &[(u8, &str)]) -> String {
    let mut out = String::from("Exit status:");
    for (code, meaning) in rows {
        out.push_str(&format!("\n  {code:<3} {meaning}"));
    }
    out
}

/// Why a store file, lock file or list was refused. Shown to admins, never to POP clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsafe {
    Symlink,
    NotRegular(&'static str),
    Owner {
        found: u32,
        expected: u32,
    },
    Mode(u32),
    /// An administrator's file (configuration, account file, disable list) that group or others
    /// may write.
    Writable(u32),
    Links(u64),
    TooLarge(u64),
    Malformed(&'static str),
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsafe::Symlink => write!(f, "it is a symbolic link"),
            Unsafe::NotRegular(kind) => write!(f, "it is a {kind}, not a regular file"),
            Unsafe::Owner { found, expected } => {
                write!(f, "it is owned by uid {found}, not uid {expected}")
            }
            Unsafe::Mode(mode) => write!(f, "its mode is {mode:04o}, not 0600"),
            Unsafe::Writable(mode) => {
                write!(f, "it is writable by group or others (mode {mode:04o})")
            }
            Unsafe::Links(n) => write!(f, "it has {n} hard links, not 1"),
            Unsafe::TooLarge(n) => write!(f, "it is {n} bytes long, too large"),
            Unsafe::Malformed(why) => write!(f, "it is malformed: {why}"),
        }
    }
}

/// The library's error: one variant per case a caller treats differently.
#[derive(Debug)]
pub enum Error {
    /// No such account (or an account a tool must never touch, such as uid 0 for ipop3d).
    UnknownUser(String),
    /// A name that can never be an account or extension (`/`, `..`, NUL, too long, ...).
    BadName(String),
    /// The caller may not do this (not root, another user's account).
    NotPermitted(String),
    /// The account is on the disable list.
    Disabled(String),
    /// The account has no stored secret.
    NoSecret(PathBuf),
    /// A file was refused, with the reason.
    Unsafe { path: PathBuf, why: Unsafe },
    /// Another writer holds the lock.
    Busy(PathBuf),
    /// A new password breaks the policy (the text says which rule; it never quotes the password).
    Policy(String),
    /// A configuration error, naming file and line.
    Config(String),
    /// A new password could not be compared with the account's login password (PAM failed or
    /// its service is missing): the write is refused, never let through as "different".
    LoginCheck(String),
    /// Any other system error on a path.
    Io { path: PathBuf, source: io::Error },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The exit status a tool reports for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::UnknownUser(_) | Error::BadName(_) => exit::NO_USER,
            Error::NotPermitted(_) | Error::Disabled(_) => exit::DENIED,
            Error::NoSecret(_) => exit::NO_SECRET,
            Error::Unsafe { .. } => exit::UNSAFE,
            Error::Busy(_) => exit::BUSY,
            Error::Policy(_) => exit::POLICY,
            Error::Config(_) => exit::CONFIG,
            Error::LoginCheck(_) => exit::NO_LOGIN_CHECK,
            Error::Io { .. } => exit::SYSTEM,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownUser(u) => write!(f, "unknown user {u:?}"),
            Error::BadName(why) => write!(f, "bad name: {why}"),
            Error::NotPermitted(why) => write!(f, "not permitted: {why}"),
            Error::Disabled(u) => {
                write!(f, "POP access for {u:?} is disabled by the administrator")
            }
            Error::NoSecret(p) => write!(
                f,
                "no APOP password is set ({} does not exist)",
                p.display()
            ),
            Error::Unsafe { path, why } => {
                write!(f, "refusing to use {}: {why}", path.display())
            }
            Error::Busy(p) => write!(f, "{} is locked by another writer; try again", p.display()),
            Error::Policy(why) => write!(f, "password rejected: {why}"),
            Error::Config(why) => write!(f, "{why}"),
            Error::LoginCheck(why) => write!(
                f,
                "cannot tell whether the new password is the login password: {why}"
            ),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

/// `Display` already shows an I/O error's cause, so `source()` does not repeat it in a chain.
impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The exit status for an anyhow error chain: the first library [`Error`] in it decides.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Error>())
        .map_or(exit::SYSTEM, Error::exit_code)
}
