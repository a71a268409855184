//! login_password: the seed's rule, enforced — a mail-only password is never the account's
//! login password ("メイル専用パスワードはログインパスワードとは違うものにする").
//!
//! APOP and CRAM-MD5 make the server keep the mail password plaintext-equivalent, so it must
//! not also open the account's shell. Every password write (apoppasswd's prompt, `--stdin`,
//! `--generate` and `--batch`, apoppassd's `newpass`) calls [`check`] next to the store's
//! policy, before anything is written, once per new password. Guarantees:
//! - `login_password_check = pam:SERVICE` asks that PAM service through
//!   [`crate::system::pam`] (authentication only); `off` asks nobody. The default,
//!   `pam:common-auth`, is Debian's shared auth stack itself (see [`DEFAULT_SERVICE`]).
//! - The login password's own answer refuses the write as a policy error; a stack that cannot
//!   answer refuses it too ([`Error::LoginCheck`]): never "different" by default.
//! - Accounts of a `passwd_file` are virtual mail users with no login password: not checked.
//! - A user may only ask about their own account (PAM's helper answers for nobody else); the
//!   check as such adds no oracle a user lacks, since that helper answers them without delay.
//!   apoppassd, reached from the network, pads its answers (see `server::poppassd`).
//! - Neither password is logged, printed or copied here; the candidate stays borrowed.

use std::fmt;

use crate::error::{Error, Result};
use crate::system::accounts::{Account, Accounts};
use crate::system::pam::{self, Verdict};

/// The default service: Debian's `/etc/pam.d/common-auth`, the auth rules every Debian
/// service includes (pam_unix, and whatever pam-auth-update adds: sss, ldap, krb5), without
/// `login`'s extras (pam_nologin answers with a message while `/run/nologin` exists, which
/// would stop every write then) and never through `other`, as `passwd` (which has no auth
/// lines) would. Where it does not exist (Fedora: `system-auth`) the check fails closed and
/// names the file, rather than run a stack that may deny everything.
pub const DEFAULT_SERVICE: &str = "common-auth";

/// How new mail passwords are compared with the login password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginPasswordCheck {
    /// No comparison.
    Off,
    /// `pam_authenticate` of this PAM service.
    Pam(String),
}

impl Default for LoginPasswordCheck {
    fn default() -> Self {
        LoginPasswordCheck::Pam(DEFAULT_SERVICE.to_string())
    }
}

impl LoginPasswordCheck {
    /// Parses the configuration value: `off` or `pam:SERVICE`.
    pub fn parse(value: &str) -> std::result::Result<Self, String> {
        if value == "off" {
            return Ok(LoginPasswordCheck::Off);
        }
        match value.strip_prefix("pam:") {
            Some(service) if pam::valid_service(service) => {
                Ok(LoginPasswordCheck::Pam(service.to_string()))
            }
            _ => Err(format!(
                "login_password_check must be `off` or `pam:SERVICE` (a PAM service name of \
                 letters, digits, `.`, `_` and `-`), not {value:?}"
            )),
        }
    }
}

impl fmt::Display for LoginPasswordCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginPasswordCheck::Off => f.write_str("off"),
            LoginPasswordCheck::Pam(service) => write!(f, "pam:{service}"),
        }
    }
}

/// What the gate did with a new password it let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// PAM says it is not the login password.
    Different,
    /// Nothing was asked: the check is off, or the account is virtual.
    Skipped,
}

/// The PAM service new passwords of these accounts are checked with: none with the check off,
/// nor for a passwd_file's virtual accounts (they have no login password).
fn service<'s>(setting: &'s LoginPasswordCheck, accounts: &Accounts) -> Option<&'s str> {
    match (setting, accounts) {
        (LoginPasswordCheck::Pam(service), Accounts::System) => Some(service),
        _ => None,
    }
}

/// Whether new passwords of these accounts are compared with a login password at all.
pub fn applies(setting: &LoginPasswordCheck, accounts: &Accounts) -> bool {
    service(setting, accounts).is_some()
}

/// Whether new passwords of these accounts are compared with a login password, as `--status`
/// says it.
pub fn describe(setting: &LoginPasswordCheck, accounts: &Accounts) -> String {
    match (setting, accounts) {
        (_, Accounts::File { .. }) => {
            "not checked (a passwd_file account has no login password)".into()
        }
        (LoginPasswordCheck::Off, _) => "not checked (login_password_check = off)".into(),
        (LoginPasswordCheck::Pam(service), _) => {
            format!("new passwords must differ from it (PAM service {service})")
        }
    }
}

/// What can be known before any password is asked about: the service's file exists. For
/// `--batch`, which would otherwise report a missing service on every line.
pub fn preflight(setting: &LoginPasswordCheck, accounts: &Accounts) -> Result<()> {
    match service(setting, accounts) {
        Some(service) if pam::service_file(service).is_none() => Err(missing_service(service)),
        _ => Ok(()),
    }
}

fn missing_service(service: &str) -> Error {
    Error::LoginCheck(format!(
        "login_password_check names the PAM service {service:?}, which has no file in \
         /etc/pam.d (set it to an existing service, or `off`)"
    ))
}

/// The gate: refuses `candidate` as the new password of `account` if it is the account's
/// login password (`Error::Policy`), or if that cannot be told (`Error::LoginCheck`).
pub fn check(
    setting: &LoginPasswordCheck,
    accounts: &Accounts,
    account: &Account,
    candidate: &[u8],
) -> Result<Checked> {
    let Some(service) = service(setting, accounts) else {
        return Ok(Checked::Skipped);
    };
    preflight(setting, accounts)?;
    let uid = nix::unistd::getuid();
    if !uid.is_root() && uid.as_raw() != account.uid {
        return Err(Error::LoginCheck(format!(
            "only root can compare a password with the login password of {}",
            account.name
        )));
    }
    match pam::authenticate(service, &account.name, candidate) {
        Verdict::Different => Ok(Checked::Different),
        Verdict::Same => Err(Error::Policy(format!(
            "it is the login password of {}; a mail-only password must differ from it",
            account.name
        ))),
        Verdict::Unavailable(why) => Err(Error::LoginCheck(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_print_back() {
        for text in ["off", "pam:common-auth", "pam:passwd", "pam:apoptools"] {
            assert_eq!(LoginPasswordCheck::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(LoginPasswordCheck::default().to_string(), "pam:common-auth");
        for bad in [
            "",
            "on",
            "pam:",
            "pam:../shadow",
            "pam:a b",
            "PAM:login",
            "ldap:x",
        ] {
            let err = LoginPasswordCheck::parse(bad).unwrap_err();
            assert!(
                err.starts_with("login_password_check must be"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn virtual_accounts_and_off_ask_nobody() {
        let account = Account {
            name: "nobody-here".into(),
            uid: 4_000_000_000,
            gid: 4_000_000_000,
            home: "/nonexistent".into(),
        };
        let file = Accounts::File {
            by_name: Default::default(),
            order: Vec::new(),
        };
        let missing = LoginPasswordCheck::Pam("apoptools-no-such-service".into());
        // Not even the missing service is looked at: nothing is asked.
        assert_eq!(
            check(&missing, &file, &account, b"x").unwrap(),
            Checked::Skipped
        );
        let off = LoginPasswordCheck::Off;
        assert_eq!(
            check(&off, &Accounts::System, &account, b"x").unwrap(),
            Checked::Skipped
        );
        let err = check(&missing, &Accounts::System, &account, b"x").unwrap_err();
        assert!(matches!(err, Error::LoginCheck(_)), "{err}");
        assert!(preflight(&missing, &Accounts::System).is_err());
        assert!(preflight(&missing, &file).is_ok());
    }
}
