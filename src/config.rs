//! config: the one optional configuration file shared by all three tools.
//!
//! `key = value` lines, `#` comments, blank lines ignored. Unknown keys, repeated keys and bad
//! values are errors that name the file and line. The default file (`/etc/apoptools.conf`) may
//! be missing (built-in defaults apply); a file named with `--config` must exist.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/etc/apoptools.conf";

/// The largest configuration file read.
const MAX_LEN: u64 = 1 << 20;

/// When ipop3d accepts USER/PASS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plaintext {
    /// When the environment has a non-empty `INTRANET` (imapext's RESTRICT_POP), or over TLS.
    Intranet,
    /// Only over TLS.
    Tls,
    Always,
    Never,
}

impl Plaintext {
    /// Whether a plaintext password (USER/PASS, AUTH PLAIN or LOGIN, a checkpassword caller's)
    /// is accepted, `intranet` saying whether INTRANET is set and `tls` whether the connection
    /// is under TLS (or the caller, Dovecot, enforces its own TLS rule).
    pub fn allows(self, intranet: bool, tls: bool) -> bool {
        match self {
            Plaintext::Always => true,
            Plaintext::Never => false,
            Plaintext::Intranet => intranet || tls,
            Plaintext::Tls => tls,
        }
    }

    /// Whether the environment has a non-empty INTRANET (tcprules sets it).
    pub fn intranet() -> bool {
        std::env::var_os("INTRANET").is_some_and(|v| !v.is_empty())
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub passwd_file: Option<PathBuf>,
    pub disabled_file: PathBuf,
    pub maildir: PathBuf,
    pub plaintext: Plaintext,
    pub min_length: usize,
    pub ext_delimiter: char,
    pub dotqmail: String,
    pub hostname: Option<String>,
    pub timeout: Duration,
    /// How long a writer waits for the store lock before reporting "busy".
    pub lock_wait: Duration,
    /// The pause before every failed-login reply in ipop3d.
    pub auth_delay: Duration,
    /// Failed logins after which ipop3d closes the connection.
    pub max_auth_failures: u32,
    /// Commands ipop3d answers before login; the next one ends the connection.
    pub max_login_commands: u32,
    /// The longest time ipop3d spends in AUTHORIZATION, however busy the client keeps it.
    pub login_timeout: Duration,
    /// The balancers whose connections start with a PROXY protocol header.
    pub proxy_from: Vec<crate::server::proxy::Network>,
    /// The account the pre-login front of ipop3d runs as.
    pub login_user: String,
    /// The empty, root-owned directory the front is chrooted into.
    pub login_chroot: PathBuf,
    /// The server's certificate chain (PEM, leaf first); with `tls_key`, TLS is on.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM), owned by root and unreadable by others.
    pub tls_key: Option<PathBuf>,
    /// The key of the SCRAM salts shown for absent accounts and older records.
    pub scram_salt_key: PathBuf,
    /// How a new mail password is kept from being the account's login password.
    pub login_password_check: crate::auth::login_password::LoginPasswordCheck,
    /// Whose UIDLs (and order) messages new to ipop3d get: another POP3 server's, when a
    /// Maildir moves from it.
    pub uidl_compat: crate::maildir::import::UidlCompat,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            passwd_file: None,
            disabled_file: PathBuf::from("/etc/apoptools/disabled"),
            maildir: PathBuf::from("Maildir"),
            plaintext: Plaintext::Intranet,
            min_length: 8,
            ext_delimiter: '-',
            dotqmail: ".qmail".to_string(),
            hostname: None,
            timeout: Duration::from_secs(600),
            lock_wait: Duration::from_secs(10),
            auth_delay: Duration::from_millis(2000),
            max_auth_failures: 3,
            max_login_commands: 30,
            login_timeout: Duration::from_secs(300),
            proxy_from: Vec::new(),
            login_user: "nobody".to_string(),
            login_chroot: PathBuf::from("/var/lib/apoptools/empty"),
            tls_cert: None,
            tls_key: None,
            scram_salt_key: PathBuf::from("/etc/apoptools/scram-salt-key"),
            login_password_check: Default::default(),
            uidl_compat: crate::maildir::import::UidlCompat::None,
        }
    }
}

impl Config {
    /// Loads `path` (an explicit `--config`, which must exist) or the default file (which may
    /// be missing).
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        // Root acts on what the file says (which account file, which disable list), so it must
        // be a file only root could have written.
        use crate::store::atomic::{read_admin_file, Symlinks};
        match read_admin_file(path, MAX_LEN, Symlinks::Follow) {
            Ok(Some(bytes)) => Config::parse(&bytes, path),
            Ok(None) if !explicit => Ok(Config::default()),
            Ok(None) => Err(Error::Config(format!(
                "{}: No such file or directory",
                path.display()
            ))),
            Err(Error::Io { source, .. }) => {
                Err(Error::Config(format!("{}: {source}", path.display())))
            }
            Err(e) => Err(e),
        }
    }

    /// Parses the text of a configuration file; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Config> {
        let mut cfg = Config::default();
        let mut seen: Vec<&str> = Vec::new();
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let lineno = index + 1;
            let fail = |why: String| Error::Config(format!("{}:{lineno}: {why}", origin.display()));
            let line = std::str::from_utf8(raw).map_err(|_| fail("not valid UTF-8".into()))?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| fail(format!("expected `key = value`, found {line:?}")))?;
            let (key, value) = (key.trim(), value.trim());
            let key_static = KEYS
                .iter()
                .map(|k| k.name)
                .find(|k| *k == key)
                .ok_or_else(|| fail(format!("unknown key {key:?}")))?;
            if seen.contains(&key_static) {
                return Err(fail(format!("{key} is set twice")));
            }
            seen.push(key_static);
            cfg.set(key, value).map_err(fail)?;
        }
        if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
            return Err(Error::Config(format!(
                "{}: tls_cert and tls_key must be set together",
                origin.display()
            )));
        }
        Ok(cfg)
    }

    fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        let nonempty = || {
            if value.is_empty() {
                Err(format!("{key} needs a value"))
            } else {
                Ok(value)
            }
        };
        match key {
            "passwd_file" => self.passwd_file = Some(absolute(key, nonempty()?)?),
            "disabled_file" => self.disabled_file = absolute(key, nonempty()?)?,
            "maildir" => {
                let v = nonempty()?;
                if v.starts_with('/') {
                    // Every account would share one folder.
                    return Err(format!(
                        "{key} must be a path relative to the home, not {v:?}"
                    ));
                }
                if v.split('/').any(|c| c == "..") {
                    return Err(format!("{key} must not contain `..`"));
                }
                self.maildir = PathBuf::from(v);
            }
            "uidl_compat" => {
                self.uidl_compat =
                    crate::maildir::import::UidlCompat::parse(value).ok_or_else(|| {
                        format!(
                            "uidl_compat must be none, dovecot, courier or qmail, not {value:?}"
                        )
                    })?;
            }
            "plaintext" => {
                self.plaintext = match value {
                    "intranet" => Plaintext::Intranet,
                    "tls" => Plaintext::Tls,
                    "always" => Plaintext::Always,
                    "never" => Plaintext::Never,
                    _ => {
                        return Err(format!(
                            "plaintext must be intranet, tls, always or never, not {value:?}"
                        ))
                    }
                }
            }
            "tls_cert" => self.tls_cert = Some(absolute(key, value)?),
            "scram_salt_key" => self.scram_salt_key = absolute(key, nonempty()?)?,
            "tls_key" => self.tls_key = Some(absolute(key, value)?),
            "min_length" => self.min_length = number(key, value, 1, 1024)? as usize,
            "login_password_check" => {
                self.login_password_check =
                    crate::auth::login_password::LoginPasswordCheck::parse(value)?
            }
            "ext_delimiter" => {
                let mut chars = value.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_punctuation() && c != '/' && c != '.' => {
                        self.ext_delimiter = c
                    }
                    _ => {
                        return Err(format!(
                            "{key} must be one punctuation character such as - or +"
                        ))
                    }
                }
            }
            "dotqmail" => {
                let v = nonempty()?;
                if v.contains('/') || !v.starts_with('.') {
                    return Err(format!(
                        "{key} must be a file name prefix starting with `.`"
                    ));
                }
                self.dotqmail = v.to_string();
            }
            "hostname" => {
                let v = nonempty()?;
                if !is_host_name(v) {
                    return Err(format!("{key} must be a host name, not {v:?}"));
                }
                self.hostname = Some(v.to_string());
            }
            "timeout" => self.timeout = Duration::from_secs(number(key, value, 1, 86_400)?),
            "lock_wait" => self.lock_wait = Duration::from_millis(number(key, value, 0, 600_000)?),
            "auth_delay" => self.auth_delay = Duration::from_millis(number(key, value, 0, 60_000)?),
            "max_auth_failures" => self.max_auth_failures = number(key, value, 1, 100)? as u32,
            "max_login_commands" => self.max_login_commands = number(key, value, 1, 10_000)? as u32,
            "login_user" => {
                let v = nonempty()?;
                crate::system::accounts::validate_user(v)
                    .map_err(|_| format!("{key} must be an account name, not {v:?}"))?;
                self.login_user = v.to_string();
            }
            "login_chroot" => self.login_chroot = absolute(key, nonempty()?)?,
            "proxy_from" => {
                self.proxy_from = value
                    .split([' ', ',', '\t'])
                    .filter(|t| !t.is_empty())
                    .map(|t| {
                        crate::server::proxy::Network::parse(t).ok_or_else(|| {
                            format!(
                                "{key} must list IP addresses or networks (a.b.c.d/n), not {t:?}"
                            )
                        })
                    })
                    .collect::<std::result::Result<_, _>>()?
            }
            "login_timeout" => {
                self.login_timeout = Duration::from_secs(number(key, value, 1, 86_400)?)
            }
            _ => unreachable!("key list and setter agree"),
        }
        Ok(())
    }
}

/// One configuration key: its name, default and meaning (apoptools.conf(5) is generated from
/// this table, so the manual cannot drift from the parser).
#[derive(Debug, Clone, Copy)]
// `default` and `doc` are read only by the man page generator, which is built with `testing`.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every key the file may set, in the order apoptools.conf(5) documents them.
pub const KEYS: &[Key] = &[
    Key {
        name: "passwd_file",
        default: "(system accounts through NSS)",
        doc: "A passwd(5)-format file of accounts used instead of the system's (virtual mail users). Absolute path. Like this file itself, it is used only if it is a regular file owned by root (or by the user running the tool) and not writable by group or others. Its accounts get exactly their primary group when ipop3d becomes them, never the supplementary groups of a system user of the same name.",
    },
    Key {
        name: "disabled_file",
        default: "/etc/apoptools/disabled",
        doc: "The administrator's disable list, edited by deapop(8). It is used only if it is a regular file owned by root and not writable by group or others. Absolute path.",
    },
    Key {
        name: "maildir",
        default: "Maildir",
        doc: "The Maildir, relative to the account's home directory (an absolute path would make every account share one). Must not contain `..`.",
    },
    Key {
        name: "plaintext",
        default: "intranet",
        doc: "When ipop3d accepts USER/PASS and the SASL mechanisms PLAIN and LOGIN: `intranet` when the environment variable INTRANET is non-empty (as imapext's RESTRICT_POP) or the connection is under TLS, `tls` only under TLS (STLS or --implicit-tls), `always`, or `never`. CAPA lists USER, and PLAIN and LOGIN in its SASL line, only where they are accepted. APOP, CRAM-MD5 and SCRAM-SHA-256 are always accepted.",
    },
    Key {
        name: "uidl_compat",
        default: "none",
        doc: "Which POP3 server's UIDLs a Maildir keeps when it moves to ipop3d, so that clients leaving mail on the server do not fetch it all again: `none` (ipop3d's own: the unique part of the file name), `dovecot` (Dovecot's dovecot-uidlist in the Maildir, versions 1 and 3: a message's P field, else Dovecot's default pop3_uidl_format %08Xu%08Xv, and Dovecot's POP3 order), `courier` (Courier's courierpop3dsizelist, and its order) or `qmail` (qmail-pop3d's: the whole file name before the colon). Only messages new to ipop3d take the other server's UIDL; every UIDL ipop3d presented that is not the name's own is recorded in the Maildir's apoptools-sizes, so a Maildir it served keeps its UIDLs whatever this key says later. Messages the other server never listed get ipop3d's own. The other server's files are read as the account, never written; if one is there but unusable (not the account's own regular file, too large, an unknown format), the login is refused with [SYS/TEMP] rather than present made-up UIDLs. See ipop3d --uidl-report and the migration steps in ipop3d(8).",
    },
    Key {
        name: "min_length",
        default: "8",
        doc: "Minimum length of a new password, in characters (1 to 1024).",
    },
    Key {
        name: "login_password_check",
        default: "pam:common-auth",
        doc: "How a new mail password is kept from being the account's login password (APOP and CRAM-MD5 keep the mail password plaintext-equivalent on the server, so it must not open the shell too): `pam:SERVICE` asks that PAM service whether the new password would log the account in (pam_authenticate only: no account management, session or credentials, no message shown, the delay PAM asks after a failure not slept), and every write it would is refused (apoppasswd exit status 7; apoppassd `500`); `off` compares nothing. The default, Debian's common-auth, is the auth stack every Debian service includes (pam_unix, and the modules pam-auth-update adds for LDAP, sssd or Kerberos), without login's extras (pam_nologin would refuse every check while /run/nologin exists); where it does not exist, name your system's (`pam:system-auth` on Fedora). Never `pam:su` (pam_rootok lets root in without a password) nor `pam:passwd` on systems whose passwd service has no auth lines and whose `other` denies everything. A service without a file in /etc/pam.d, or a stack that answers anything but success or a wrong password (a missing module, PAM_ABORT, an unknown user, a prompt other than the password), refuses the write with exit status 11, never lets it through. As a user, PAM's unix_chkpwd helper checks the caller's own account; as root, pam_unix reads /etc/shadow. Each check that finds the password different is a failed authentication to PAM: pam_unix logs it to the auth log, and a stack with pam_faillock counts it, so give such sites a service of their own (for instance /etc/pam.d/apoptools holding `auth required pam_unix.so`). Accounts of a passwd_file are virtual and have no login password: their passwords are not checked.",
    },
    Key {
        name: "ext_delimiter",
        default: "-",
        doc: "The character separating an account from its extension in addresses such as user-ext (`+` for Postfix).",
    },
    Key {
        name: "dotqmail",
        default: ".qmail",
        doc: "File name prefix naming an extension's delivery: ipop3d reads the first maildir line (`./path/` or `/path/`) of ~user/.qmail-ext (`.forward` for Postfix).",
    },
    Key {
        name: "hostname",
        default: "(env TCPLOCALHOST, else the host name)",
        doc: "The name in ipop3d's greeting and APOP timestamp.",
    },
    Key {
        name: "timeout",
        default: "600",
        doc: "Idle seconds after which ipop3d logs the client out (RFC 1939 asks for at least 600). Nothing is deleted on a timeout.",
    },
    Key {
        name: "lock_wait",
        default: "10000",
        doc: "Milliseconds a writer waits for a store or disable-list lock before failing with \"busy\" (exit status 6).",
    },
    Key {
        name: "auth_delay",
        default: "2000",
        doc: "Milliseconds ipop3d waits before every failed-login reply, the same whatever the reason.",
    },
    Key {
        name: "max_auth_failures",
        default: "3",
        doc: "Failed logins after which ipop3d closes the connection. Outages (an account source or disable list that cannot be read) are answered [SYS/TEMP] and do not count.",
    },
    Key {
        name: "max_login_commands",
        default: "30",
        doc: "Commands ipop3d answers before a login succeeds (1 to 10000); the next one gets a goodbye and the connection closes. A command refused because plaintext logins are off (USER, PASS, AUTH PLAIN or LOGIN) counts as a failed login too, with its delay. The lines of a SASL exchange after its AUTH command are not counted here (each mechanism has a bounded number).",
    },
    Key {
        name: "login_timeout",
        default: "300",
        doc: "Seconds a connection may spend before login in all, however often the client sends something (the idle timeout alone would let one byte every few minutes hold it for ever).",
    },
    Key {
        name: "login_user",
        default: "nobody",
        doc: "The account ipop3d's pre-login process runs as when ipop3d starts as root: it reads every client byte before the login, with no groups, no new privileges, no core dumps, no files and no children (a dedicated account, such as `ipop3d-login`, is better than nobody). Never root.",
    },
    Key {
        name: "login_chroot",
        default: "/var/lib/apoptools/empty",
        doc: "The directory that pre-login process is chrooted into: it must exist, be empty, be owned by root and be writable by no one else (`install -d -m 0755 -o root -g root /var/lib/apoptools/empty`), else ipop3d refuses every connection with a log line and no greeting.",
    },
    Key {
        name: "tls_cert",
        default: "(none: no TLS)",
        doc: "The server's certificate chain for TLS (PEM, the server's certificate first, then its intermediates). Absolute path. With tls_key set too, ipop3d offers STLS (RFC 2595) and accepts --implicit-tls (port 995, RFC 8314), TLS 1.2 and 1.3 only. Both files are read for every connection, by the pre-login process before it is confined, so a renewed certificate is served without a restart. TLS needs ipop3d started as root (the pre-login process holds the key; no process running as a mail account ever does).",
    },
    Key {
        name: "tls_key",
        default: "(none: no TLS)",
        doc: "The private key of tls_cert (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC). Absolute path. It must be a regular file owned by root, not writable by its group and with no permission for others (0600 or 0640, e.g. `root:ssl-cert`); otherwise ipop3d refuses the connection with a log line and no greeting.",
    },
    Key {
        name: "scram_salt_key",
        default: "/etc/apoptools/scram-salt-key",
        doc: "A root-only file of 32 random bytes, made by ipop3d (mode 0600) the first time it is needed. SCRAM-SHA-256 shows a name that is no account (or a disabled one) a salt made from this key and the name, stable across tries and indistinguishable from a real account's; an account whose record predates SCRAM keys gets its salt the same way. Without a usable file, ipop3d does not offer SCRAM. Absolute path.",
    },
    Key {
        name: "proxy_from",
        default: "(none)",
        doc: "The TCP balancers (HAProxy, ...) in front of ipop3d: IP addresses or networks such as 10.0.0.0/8, separated by spaces or commas. A connection from one of them must start with a PROXY protocol header (version 1 or 2), whose client address ipop3d then logs; without one, or with a malformed one, the connection ends before the greeting. From any other address no header is read: a forged one is just a bad command. tcprules still sees the balancer's address, so INTRANET cannot be set per client behind a balancer.",
    },
];

fn absolute(key: &str, value: &str) -> std::result::Result<PathBuf, String> {
    if value.starts_with('/') {
        Ok(PathBuf::from(value))
    } else {
        Err(format!("{key} must be an absolute path, not {value:?}"))
    }
}

fn number(key: &str, value: &str, min: u64, max: u64) -> std::result::Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{key} must be a whole number from {min} to {max}, not {value:?}"
        )),
    }
}

/// Whether `name` may stand in the greeting as the host name (config `hostname`, or
/// `TCPLOCALHOST` and the system's name in ipop3d): 1-253 bytes of letters, digits, `-`, `.`
/// and `_`, so nothing odd can reach the APOP timestamp.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text.as_bytes(), Path::new("/x/apoptools.conf"))
    }

    #[test]
    fn defaults_when_empty() {
        let c = parse("# nothing\n\n").unwrap();
        assert_eq!(c.plaintext, Plaintext::Intranet);
        assert_eq!(c.maildir, PathBuf::from("Maildir"));
        assert_eq!(c.timeout, Duration::from_secs(600));
        assert_eq!(c.ext_delimiter, '-');
    }

    #[test]
    fn every_key_parses() {
        let c = parse(
            "passwd_file = /etc/vpasswd\ndisabled_file=/d\nmaildir = Mail/box\nplaintext = never\n\
             min_length = 12\next_delimiter = +\ndotqmail = .forward\nhostname = mx.example.org\n\
             timeout = 900\nlock_wait = 50\nauth_delay = 0\nmax_auth_failures = 5\n\
             tls_cert = /etc/ssl/pop.pem\ntls_key = /etc/ssl/private/pop.key\n",
        )
        .unwrap();
        assert_eq!(c.tls_cert, Some(PathBuf::from("/etc/ssl/pop.pem")));
        assert_eq!(c.tls_key, Some(PathBuf::from("/etc/ssl/private/pop.key")));
        assert_eq!(parse("plaintext = tls").unwrap().plaintext, Plaintext::Tls);
        assert_eq!(c.passwd_file, Some(PathBuf::from("/etc/vpasswd")));
        assert_eq!(c.disabled_file, PathBuf::from("/d"));
        assert_eq!(c.maildir, PathBuf::from("Mail/box"));
        assert_eq!(c.plaintext, Plaintext::Never);
        assert_eq!(c.min_length, 12);
        assert_eq!(c.ext_delimiter, '+');
        assert_eq!(c.dotqmail, ".forward");
        assert_eq!(c.hostname.as_deref(), Some("mx.example.org"));
        assert_eq!(c.timeout, Duration::from_secs(900));
        assert_eq!(c.lock_wait, Duration::from_millis(50));
        assert_eq!(c.auth_delay, Duration::ZERO);
        assert_eq!(c.max_auth_failures, 5);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            (
                "\nbogus = 1\n",
                "/x/apoptools.conf:2: unknown key \"bogus\"",
            ),
            (
                "plaintext = sometimes",
                "/x/apoptools.conf:1: plaintext must be",
            ),
            (
                "timeout = 0",
                "/x/apoptools.conf:1: timeout must be a whole number",
            ),
            (
                "no equals sign",
                "/x/apoptools.conf:1: expected `key = value`",
            ),
            (
                "maildir = ../x",
                "/x/apoptools.conf:1: maildir must not contain",
            ),
            (
                "passwd_file = rel",
                "/x/apoptools.conf:1: passwd_file must be an absolute",
            ),
            (
                "a=1\n#\nmin_length=3\nmin_length=4",
                "/x/apoptools.conf:1: unknown key",
            ),
            (
                "min_length=3\nmin_length=4",
                "/x/apoptools.conf:2: min_length is set twice",
            ),
            (
                "ext_delimiter = ab",
                "/x/apoptools.conf:1: ext_delimiter must be",
            ),
            (
                "tls_cert = /c.pem",
                "/x/apoptools.conf: tls_cert and tls_key must be set together",
            ),
            (
                "tls_key = key.pem",
                "/x/apoptools.conf:1: tls_key must be an absolute",
            ),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err().to_string();
            assert!(
                got.starts_with(want),
                "{text:?}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn missing_default_is_fine_missing_explicit_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.conf");
        let err = Config::load(Some(&missing)).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
}
