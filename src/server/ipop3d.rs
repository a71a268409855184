//! ipop3d: one POP3 session on stdin/stdout, started per connection by tcpserver, inetd or
//! systemd (`Accept=yes`), with an empty environment.
//!
//! Guarantees:
//! - Credentials are checked against the same store apoppasswd writes ([`store::read`], done as
//!   the account); uid 0 and disabled accounts never log in; every failure looks the same to
//!   the client (see [`crate::pop3::session`]).
//! - Before any mail is touched the process becomes the account for good
//!   ([`privilege::drop_permanently`]); started as non-root it serves only its own uid.
//! - The idle timeout (`timeout`) is enforced with poll(2) before every read; on expiry the
//!   client gets `-ERR [SYS/TEMP]` and nothing is deleted.
//! - Replies go out in one write per batch of pipelined commands, and TCP_NODELAY is set on a
//!   TCP socket, so small replies never wait on Nagle's algorithm. A client that stops reading
//!   is dropped after `timeout` too (SO_SNDTIMEO), deleting nothing.
//! - Log lines go to stderr, one per event: `ipop3d: <event> remote=<ip> key=value...`. They
//!   never hold a secret, a password or a digest; user names are escaped and capped.

use std::cell::Cell;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Arg, ArgAction};

use crate::auth::apop;
use crate::auth::sasl::{
    ChannelBinding, Context as SaslContext, Credential, Exchange, Mechanism, ScramKeys, Step,
    SCRAM_ITERATIONS,
};
use crate::config::{is_host_name, Config, Plaintext};
use crate::error::{exit, Error};
use crate::maildir;
use crate::pop3::session::{
    self, Authenticator, Credentials, Denied, Granted, SaslReply, Session, Settings,
};
use crate::pop3::wire::Response;
use crate::store;

use super::{connection, proxy};
use crate::store::disable::DisableList;
use crate::store::Secret;
use crate::system::accounts::{Accounts, Login};
use crate::system::privilege;

/// The session ended in an error (too many failed logins, mailbox unavailable, I/O).
pub const EXIT_SESSION_ERROR: u8 = 1;

/// ipop3d's exit statuses (--help and the man page list these).
pub const EXIT_STATUSES: &[(u8, &str)] = &[
    (
        exit::OK,
        "the session ended: QUIT, the client closed the connection, or the idle timeout",
    ),
    (
        EXIT_SESSION_ERROR,
        "the session ended on an error: too many failed logins, mailbox unavailable, I/O error, \
         a PROXY header refused, a TLS handshake failed, the TLS key or certificate refused, \
         the privilege split could not be set up, --implicit-tls without root or tls_cert",
    ),
    (exit::USAGE, "bad command line"),
    (exit::CONFIG, "the configuration file is missing or wrong"),
    (
        exit::SYSTEM,
        "any other system error before the session (account database unreadable)",
    ),
];

/// The command line (also the source of the man page).
pub fn command() -> clap::Command {
    clap::Command::new("ipop3d")
        .version(env!("CARGO_PKG_VERSION"))
        .about("POP3 server for one connection on stdin/stdout, with APOP and mail-only passwords")
        .long_about(
            "ipop3d serves one POP3 session (RFC 1939, with CAPA and response codes from RFC \
             2449 and RFC 3206, STLS from RFC 2595 and implicit TLS from RFC 8314) on standard \
             input and output, for tcpserver, inetd or systemd socket activation (Accept=yes). \
             It works with an empty environment.\n\n\
             Logins use APOP, SASL (AUTH, RFC 5034: SCRAM-SHA-256, SCRAM-SHA-256-PLUS under \
             TLS, CRAM-MD5, PLAIN, LOGIN) or USER/PASS, all checked against the mail-only \
             password set with apoppasswd(1) (~/.apop, or ~/.apop-EXT for an extension address \
             user-EXT); USER/PASS, PLAIN and LOGIN only where the configuration's `plaintext` \
             allows them. Accounts with uid 0 and accounts disabled with deapop(8) never log \
             in. Every failed login, whatever the mechanism, gets the same reply after the same \
             delay; after `max_auth_failures` failures the connection closes.\n\n\
             TLS (1.2 and 1.3, rustls): with `tls_cert` and `tls_key` set and ipop3d started as \
             root, STLS is offered (port 110) and --implicit-tls speaks TLS from the first byte \
             (port 995). Both files are read for every connection, so a renewed certificate \
             needs no restart; a key not owned by root, writable by its group or open to others \
             refuses the connection with a log line and no greeting. `plaintext = intranet` \
             allows USER/PASS, PLAIN and LOGIN with INTRANET set or under TLS, `plaintext = \
             tls` under TLS only. Started as a user, ipop3d never offers TLS.\n\n\
             Started as root, ipop3d serves each connection with two processes: a front, \
             chrooted into `login_chroot` as `login_user` under a seccomp filter, which holds \
             the TLS key and parses every byte before the login; and the back, root until the \
             login, which verifies it and then becomes the account (the TLS and PROCESS MODEL \
             sections of the manual say more).\n\n\
             After a login the process becomes the account for good, locks the Maildir for \
             the session (a second session gets [IN-USE]), moves new mail to cur/, and lists \
             messages in delivery order. DELE only marks; marked messages are removed at QUIT. \
             A dropped connection or the idle timeout deletes nothing.\n\n\
             Environment: INTRANET (non-empty: USER/PASS, PLAIN and LOGIN allowed when \
             plaintext = intranet), \
             TCPLOCALHOST (host name in the greeting unless `hostname` is set), TCPREMOTEIP or \
             REMOTE_ADDR (client address for the log). Log lines go to standard error, one \
             per event.",
        )
        .after_help(format!(
            "{}\n\n\
             Files:\n  \
             /etc/apoptools.conf       the configuration (apoptools.conf(5))\n  \
             ~/.apop, ~/.apop-EXT      the mail-only secrets and SCRAM keys (apoppasswd(1))\n  \
             /etc/apoptools/scram-salt-key   the key of SCRAM's salts (scram_salt_key)\n  \
             ~/.qmail-EXT              an extension's first maildir line names its Maildir\n  \
             Maildir/apoptools-pop3.lock   the session lock\n  \
             Maildir/apoptools-sizes   the sizes of the messages, measured once\n  \
             /var/lib/apoptools/empty  the pre-login process's chroot (login_chroot)\n\n\
             Log lines (standard error):\n  \
             ipop3d: login remote=IP user=NAME method=apop|user|plain|login|cram-md5|\
             scram-sha-256|scram-sha-256-plus result=ok|fail|unavailable reason=\"...\" \
             [tls=VERSION/SUITE]\n  \
             ipop3d: scram remote=IP result=unavailable reason=\"...\"\n  \
             ipop3d: tls remote=IP result=fail reason=\"...\"\n  \
             ipop3d: end remote=IP user=NAME result=quit|closed|timeout|... messages=N \
             retrieved=N deleted=N bytes=N duration=S\n\n\
             Examples (USER/PASS in the clear only where tcprules sets INTRANET; more in \
             ipop3d(8)):\n  \
             env - PATH=/usr/local/sbin:/usr/local/bin:/bin:/usr/bin \\\n    \
             tcpserver -vR -c40 -x /etc/tcp.pop3.cdb -p 0 pop3 ipop3d 2>&1 | splogger ipop3d\n  \
             env - PATH=/usr/local/sbin:/usr/local/bin:/bin:/usr/bin \\\n    \
             tcpserver -vR -c40 -x /etc/tcp.pop3.cdb -p 0 pop3s ipop3d --implicit-tls 2>&1 \
             | splogger ipop3d",
            crate::error::exit_status_help(EXIT_STATUSES)
        ))
        .arg(crate::tools::cli::config_arg())
        .arg(
            Arg::new("implicit-tls")
                .long("implicit-tls")
                .action(ArgAction::SetTrue)
                .help(
                    "TLS from the first byte (RFC 8314, port 995), with the configuration's \
                     tls_cert and tls_key; needs ipop3d started as root",
                ),
        )
        .arg(
            Arg::new("uidl-report")
                .long("uidl-report")
                .value_name("USER")
                .help(
                    "Print the UIDL list ipop3d will present to USER (an address, U-EXT \
                     included), one `N UIDL` line per message in session order, without \
                     taking the lock, moving, measuring or writing anything, and exit: diff it \
                     against the old server's UIDL listing before a switch (uidl_compat)",
                ),
        )
        .arg(
            Arg::new("fail2ban-filter")
                .long("fail2ban-filter")
                .action(ArgAction::SetTrue)
                .conflicts_with("config")
                .help("Print a fail2ban filter for ipop3d's log lines and exit"),
        )
}

/// The entry point of the `ipop3d` binary.
pub fn main() -> ExitCode {
    if let Err(e) = crate::system::process::forbid_core_dumps() {
        log_line(
            "fatal",
            "-",
            &format!("reason=\"cannot forbid core dumps: {e}\""),
        );
        return ExitCode::from(exit::SYSTEM);
    }
    let matches = match command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    if matches.get_flag("fail2ban-filter") {
        let _ = io::stdout().write_all(super::fail2ban::FILTER.as_bytes());
        return ExitCode::from(exit::OK);
    }
    let started = Instant::now();
    let remote = remote_address();
    let config_path = matches.get_one::<PathBuf>("config").cloned();
    if let Some(user) = matches.get_one::<String>("uidl-report") {
        return match uidl_report(config_path, user) {
            Ok(()) => ExitCode::from(exit::OK),
            Err(err) => {
                eprintln!("ipop3d: {err:#}");
                ExitCode::from(crate::error::exit_code(&err))
            }
        };
    }
    let implicit_tls = matches.get_flag("implicit-tls");
    match run(config_path, implicit_tls, &remote, started, None) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            log_line(
                "error",
                &remote,
                &format!("reason={:?}", format!("{err:#}")),
            );
            let _ = connection::Stdout.write_all(&Response::Unavailable.to_bytes());
            ExitCode::from(crate::error::exit_code(&err))
        }
    }
}

/// `--uidl-report USER`: the UIDLs a session of USER would present now, in its order, one
/// `N UIDL` line each on standard output. As root the process first becomes the account for
/// good (the Maildir is read as the account, as a session reads it); as a user, only that
/// user's own accounts. Uid 0 is refused as at login; a disabled account is reported.
fn uidl_report(config_path: Option<PathBuf>, user: &str) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref()).context("reading the configuration")?;
    let accounts =
        Accounts::open(config.passwd_file.as_deref()).context("opening the account database")?;
    let login = accounts
        .resolve_login(user, config.ext_delimiter)
        .with_context(|| format!("looking up {user:?}"))?;
    let account = &login.account;
    if account.uid == 0 || account.gid == 0 {
        return Err(
            Error::NotPermitted(format!("{user} has uid or gid 0 and never logs in")).into(),
        );
    }
    if nix::unistd::geteuid().is_root() {
        privilege::drop_permanently(account, accounts.groups())
            .with_context(|| format!("becoming {}", account.name))?;
    } else if nix::unistd::geteuid().as_raw() != account.uid {
        return Err(
            Error::NotPermitted(format!("only root may read {}'s Maildir", account.name)).into(),
        );
    }
    let path = maildir::locate(account, login.ext.as_deref(), &config)
        .with_context(|| format!("finding {user}'s Maildir"))?;
    let uidls = maildir::Maildrop::preview_uidls(&path, config.uidl_compat)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for (n, uidl) in uidls.iter().enumerate() {
        writeln!(out, "{} {uidl}", n + 1).context("writing the report")?;
    }
    out.flush().context("writing the report")?;
    Ok(())
}

/// Serves one connection as root does, but with `front` in place of the confined front: the
/// hostile tests' scripted fronts, which must find the back refusing every breach. The exit
/// status the binary would have.
#[cfg(feature = "testing")]
pub fn serve_with_fake_front(config_path: PathBuf, front: super::split::FakeFront) -> u8 {
    let remote = remote_address();
    match run(
        Some(config_path),
        false,
        &remote,
        Instant::now(),
        Some(front),
    ) {
        Ok(code) => code,
        Err(err) => {
            log_line(
                "error",
                &remote,
                &format!("reason={:?}", format!("{err:#}")),
            );
            crate::error::exit_code(&err)
        }
    }
}

fn run(
    config_path: Option<PathBuf>,
    implicit_tls: bool,
    remote: &str,
    started: Instant,
    fake_front: Option<super::split::FakeFront>,
) -> anyhow::Result<u8> {
    let config = Config::load(config_path.as_deref()).context("reading the configuration")?;
    // Behind a balancer listed in proxy_from, the client's address comes from its PROXY header.
    let remote = match client_behind_proxy(&config, remote) {
        Ok(remote) => remote,
        Err(reason) => {
            log_line("refused", remote, &format!("reason={reason:?}"));
            return Ok(EXIT_SESSION_ERROR);
        }
    };
    let remote = remote.as_str();
    let accounts =
        Accounts::open(config.passwd_file.as_deref()).context("opening the account database")?;
    let intranet = Plaintext::intranet();
    let plaintext = config.plaintext.allows(intranet, false);
    let plaintext_over_tls = config.plaintext.allows(intranet, true);
    let root = nix::unistd::geteuid().is_root();
    // TLS lives in the split's front: a non-root ipop3d (one process, the account itself)
    // never offers it.
    let tls = match (&config.tls_cert, &config.tls_key, root) {
        (Some(cert), Some(key), true) => Some(super::split::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            implicit: implicit_tls,
        }),
        _ if implicit_tls => {
            let why = if root {
                "--implicit-tls needs tls_cert and tls_key in the configuration"
            } else {
                "--implicit-tls needs ipop3d started as root (the split's front holds the key)"
            };
            log_line("fatal", remote, &format!("reason={why:?}"));
            return Ok(EXIT_SESSION_ERROR);
        }
        _ => None,
    };
    let host = hostname(&config);
    let logged_in = Rc::new(Cell::new(false));
    let auth = SystemAuth {
        config: &config,
        accounts,
        logged_in: Rc::clone(&logged_in),
        sasl: SaslSetup {
            host: host.clone(),
            salt_key: salt_key(&config, remote),
            tls: None,
        },
        exchange: None,
    };
    let login_deadline = started + config.login_timeout;
    let settings = Settings {
        plaintext,
        plaintext_over_tls,
        sasl: auth.mechanisms(),
        tls: match &tls {
            Some(_) => session::Tls::Offered,
            None => session::Tls::Off,
        },
        auth_delay: config.auth_delay,
        max_auth_failures: config.max_auth_failures,
        timestamp: timestamp(&host),
        max_login_commands: config.max_login_commands,
        login_deadline: Some(login_deadline),
        uidl_compat: config.uidl_compat,
    };
    connection::set_socket_options(config.timeout);
    if root {
        // Nothing privileged reads the client: a confined front does, until the login.
        let connection = super::split::Connection {
            tls_files: tls,
            remote,
            started,
            fake_front,
        };
        return Ok(super::split::serve(&config, settings, auth, connection));
    }
    let mut log = |event: &str, fields: &str| log_line(event, remote, fields);
    let input = connection::Stdin {
        login_deadline: Some(login_deadline),
        logged_in,
        ..connection::Stdin::idle(config.timeout)
    };
    let summary = Session::new(settings, auth, &mut log).run(input, connection::Stdout);
    Ok(log_end(remote, &summary, started))
}

/// Logs the end of a session; its exit status.
pub(super) fn log_end(remote: &str, summary: &session::Summary, started: Instant) -> u8 {
    log_line("end", remote, &end_fields(summary, started));
    exit_status(summary)
}

/// The fields of a session's `end` log line.
pub(super) fn end_fields(summary: &session::Summary, started: Instant) -> String {
    format!(
        "user={} result={} messages={} retrieved={} deleted={} bytes={} duration={:.3}s",
        summary.user.as_deref().unwrap_or("-"),
        summary.end.as_str(),
        summary.messages,
        summary.retrieved,
        summary.deleted,
        summary.bytes_sent,
        started.elapsed().as_secs_f64()
    )
}

/// The exit status for how a session ended.
pub(super) fn exit_status(summary: &session::Summary) -> u8 {
    match summary.end {
        session::End::Quit | session::End::Closed | session::End::Timeout => exit::OK,
        _ => EXIT_SESSION_ERROR,
    }
}

/// The key of SCRAM's absent-account salts: read from `scram_salt_key`, made there (32 random
/// bytes, mode 0600) if it does not exist yet. `None`, logged, when it cannot be had: SCRAM is
/// then not offered, rather than offered with salts that would tell absent accounts apart.
fn salt_key(config: &Config, remote: &str) -> Option<Secret> {
    use crate::store::atomic::{read_admin_file, Symlinks};
    let path = &config.scram_salt_key;
    let unusable = |why: String| {
        log_line(
            "scram",
            remote,
            &format!(
                "result=unavailable reason={:?}",
                format!("{}: {why}", path.display())
            ),
        );
        None
    };
    for _ in 0..2 {
        match read_admin_file(path, 1024, Symlinks::Refuse) {
            Ok(Some(bytes)) if bytes.len() >= 32 => return Some(Secret::new(bytes)),
            Ok(Some(_)) => return unusable("shorter than 32 bytes".into()),
            Ok(None) if nix::unistd::geteuid().is_root() => {
                if let Err(e) = make_salt_key(path) {
                    return unusable(e.to_string());
                }
            }
            Ok(None) => return None,
            Err(e) => return unusable(e.to_string()),
        }
    }
    unusable("it vanished after it was made".into())
}

/// Makes a salt key file: 32 random bytes, mode 0600, written and synced under a temporary
/// name and then linked into place, so no reader ever sees it short and a concurrent maker's
/// file, if it came first, wins.
fn make_salt_key(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // The bytes go into a Secret at once, so they are wiped however this ends.
    let mut key = Secret::new(vec![0u8; 32]);
    crate::system::random::fill(key.as_mut_bytes())?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(key.as_bytes())?;
            file.sync_all()
        });
    let linked = written.and_then(|()| match std::fs::hard_link(&temp, path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = std::fs::remove_file(&temp);
    linked
}

/// The real credential check: accounts, disable list, store, then the permanent drop.
pub(super) struct SystemAuth<'c> {
    config: &'c Config,
    accounts: Accounts,
    /// Set once the login succeeded: the input's login deadline no longer applies.
    logged_in: Rc<Cell<bool>>,
    /// What SASL needs beyond the store: the host for CRAM-MD5's challenge, the key of the
    /// salts shown for absent accounts, and the TLS channel bindings.
    pub(super) sasl: SaslSetup,
    /// The SASL exchange under way.
    exchange: Option<SaslRun>,
}

/// What SASL exchanges of one connection share.
#[derive(Default)]
pub(super) struct SaslSetup {
    pub host: String,
    /// The key of [`sasl::absent_salt`]; without one, SCRAM is not offered.
    pub salt_key: Option<Secret>,
    /// Set when TLS is up (by the back, from the front's report).
    pub tls: Option<ChannelBinding>,
}

/// One SASL exchange: the mechanism's state and what its lookup found.
struct SaslRun {
    exchange: Exchange,
    login: String,
    /// The account the exchange names, once looked up; or why it cannot log in.
    found: Option<Result<Login, String>>,
}

impl SystemAuth<'_> {
    /// The account a login names and its store record, or why it cannot log in.
    fn lookup(&self, login: &str) -> Result<(Login, crate::store::record::Record), Denied> {
        lookup_login(self.config, &self.accounts, login)
    }

    /// A proven login: the permanent drop to the account, then its Maildir.
    fn grant(&mut self, login: &Login) -> Result<Granted, Denied> {
        let account = &login.account;
        // A drop that fails half-way leaves the process in an identity nobody chose: it must
        // end here, never carry on as if the password had been wrong.
        privilege::drop_permanently(account, self.accounts.groups())
            .map_err(|e| Denied::Fatal(format!("cannot drop privileges: {e}")))?;
        self.logged_in.set(true);
        Ok(
            match maildir::locate(account, login.ext.as_deref(), self.config) {
                Ok(path) => Granted::Maildir(path),
                Err(e) => Granted::Unavailable(e.to_string()),
            },
        )
    }

    /// The salt stored for an account that exists but may not log in (disabled, say), so that
    /// SCRAM shows it the salt it showed before; `None` for a name that is no account, for
    /// uid or gid 0, and for a record without SCRAM keys.
    fn refused_salt(&self, login: &str) -> Option<Vec<u8>> {
        let login = self
            .accounts
            .resolve_login(login, self.config.ext_delimiter)
            .ok()?;
        if login.account.uid == 0 || login.account.gid == 0 {
            return None;
        }
        let record = store::read(&login.account, login.ext.as_deref()).ok()?;
        record.scram.map(|keys| keys.salt)
    }

    /// The mechanisms this connection can offer: all but SCRAM without a salt key.
    pub(super) fn mechanisms(&self) -> Vec<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .filter(|m| {
                self.sasl.salt_key.is_some()
                    || !matches!(m, Mechanism::ScramSha256 | Mechanism::ScramSha256Plus)
            })
            .collect()
    }

    /// Runs the exchange's steps until it needs the client again or is over.
    fn drive(&mut self, mut step: Step) -> SaslReply {
        loop {
            let Some(run) = self.exchange.as_mut() else {
                return SaslReply::failed("", "no SASL exchange under way");
            };
            step = match step {
                Step::Challenge(bytes) => return SaslReply::Challenge(bytes),
                Step::Lookup { login } => {
                    run.login = login.clone();
                    let found = match self.lookup(&login) {
                        Ok(found) => Ok(found),
                        Err(Denied::Wrong(reason)) => Err(reason),
                        Err(other) => {
                            self.exchange = None;
                            return SaslReply::Done {
                                login,
                                outcome: Err(other),
                            };
                        }
                    };
                    let Some(run) = self.exchange.as_mut() else {
                        return SaslReply::failed(&login, "no SASL exchange under way");
                    };
                    let real_salt = match (&found, run.exchange.mechanism()) {
                        (Err(_), Mechanism::ScramSha256 | Mechanism::ScramSha256Plus) => {
                            self.refused_salt(&login)
                        }
                        _ => None,
                    };
                    let Some(run) = self.exchange.as_mut() else {
                        return SaslReply::failed(&login, "no SASL exchange under way");
                    };
                    let salt_key = self.sasl.salt_key.as_ref();
                    let salt = real_salt.as_deref();
                    let step = provide(&mut run.exchange, &found, &login, salt_key, salt);
                    run.found = Some(found.map(|(login, _)| login));
                    step
                }
                Step::Success { login } => {
                    let run = self.exchange.take();
                    let Some(Some(Ok(found))) = run.map(|r| r.found) else {
                        return SaslReply::failed(&login, "a SASL success without a lookup");
                    };
                    return SaslReply::Done {
                        outcome: self.grant(&found),
                        login,
                    };
                }
                Step::Failure(reason) => {
                    let run = self.exchange.take();
                    let (login, reason) = match run {
                        // The account's own reason (unknown, disabled...) says more.
                        Some(SaslRun {
                            login,
                            found: Some(Err(why)),
                            ..
                        }) => (login, why),
                        Some(run) => (run.login, reason),
                        None => (String::new(), reason),
                    };
                    return SaslReply::failed(&login, &reason);
                }
            };
        }
    }
}

/// The SCRAM salt of a name without a usable account (or with a record older than SCRAM
/// keys): 16 bytes of HMAC-SHA-256 over the name with the salt key, so it is the same on every
/// try and looks like the random 16-byte salt of a real record.
fn absent_salt(key: &[u8], login: &str) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(b"apoptools scram salt\0");
    mac.update(login.as_bytes());
    mac.finalize().into_bytes()[..16].to_vec()
}

/// SCRAM's server nonce: 18 random bytes in base64 (24 characters, no `,`).
fn server_nonce() -> io::Result<String> {
    use base64::Engine;
    let mut bytes = [0u8; 18];
    crate::system::random::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Gives the exchange what the lookup found, in the form its mechanism needs.
fn provide(
    exchange: &mut Exchange,
    found: &Result<(Login, crate::store::record::Record), String>,
    login: &str,
    salt_key: Option<&Secret>,
    real_salt: Option<&[u8]>,
) -> Step {
    let scram = matches!(
        exchange.mechanism(),
        Mechanism::ScramSha256 | Mechanism::ScramSha256Plus
    );
    let absent_salt = salt_key.map(|key| absent_salt(key.as_bytes(), login));
    match found {
        Ok((_, record)) if scram => {
            let derived;
            let keys = match &record.scram {
                Some(keys) => keys,
                None => {
                    // An older record: the keys come from its secret, with the salt an absent
                    // account of this name would show, so the two look alike.
                    let Some(salt) = &absent_salt else {
                        return Step::Failure("no salt key".into());
                    };
                    derived = ScramKeys::derive(record.secret.as_bytes(), salt, SCRAM_ITERATIONS);
                    &derived
                }
            };
            exchange.provide(Credential::Scram(keys))
        }
        Ok((_, record)) => exchange.provide(Credential::Secret(record.secret.as_bytes())),
        Err(_) => match (real_salt, absent_salt.as_deref()) {
            // A refused account (disabled, say) with keys shows its own salt, so refusing it
            // does not change what a client sees.
            (Some(salt), _) | (None, Some(salt)) => exchange.provide(Credential::Absent {
                salt,
                iterations: SCRAM_ITERATIONS,
            }),
            (None, None) => exchange.provide(Credential::Absent {
                salt: b"",
                iterations: SCRAM_ITERATIONS,
            }),
        },
    }
}

impl Authenticator for SystemAuth<'_> {
    fn authenticate(&mut self, c: &Credentials) -> Result<Granted, Denied> {
        let (login, record) = self.lookup(c.login())?;
        let secret = record.secret.as_bytes();
        let ok = match c {
            Credentials::Apop {
                timestamp, digest, ..
            } => apop::verify(timestamp.as_bytes(), secret, digest),
            Credentials::Plain { password, .. } => apop::constant_time_eq(secret, password),
        };
        if !ok {
            return Err(Denied::Wrong(match c {
                Credentials::Apop { .. } => "wrong digest".into(),
                Credentials::Plain { .. } => "wrong password".into(),
            }));
        }
        self.grant(&login)
    }

    fn sasl_start(&mut self, mechanism: Mechanism, initial: Option<&[u8]>) -> SaslReply {
        if !self.mechanisms().contains(&mechanism) {
            return SaslReply::failed("", "mechanism not offered");
        }
        let Ok(server_nonce) = server_nonce() else {
            return SaslReply::Done {
                login: String::new(),
                outcome: Err(Denied::Outage("no random bytes for a nonce".into())),
            };
        };
        let context = SaslContext {
            cram_challenge: timestamp(&self.sasl.host),
            server_nonce,
            tls: self.sasl.tls.clone(),
        };
        self.exchange = Some(SaslRun {
            exchange: Exchange::new(mechanism, context),
            login: String::new(),
            found: None,
        });
        let step = match self.exchange.as_mut() {
            Some(run) => run.exchange.start(initial),
            None => Step::Failure("no SASL exchange under way".into()),
        };
        self.drive(step)
    }

    fn sasl_respond(&mut self, response: &[u8]) -> SaslReply {
        let step = match self.exchange.as_mut() {
            Some(run) => run.exchange.respond(response),
            None => Step::Failure("no SASL exchange under way".into()),
        };
        self.drive(step)
    }

    fn sasl_abort(&mut self, reason: &str) -> SaslReply {
        let login = self.exchange.take().map(|r| r.login).unwrap_or_default();
        SaslReply::failed(&login, reason)
    }
}

/// The account a login names and its store record, or why it cannot log in: unknown names,
/// uid or gid 0, disabled addresses and unusable store files are wrong logins; an account
/// source or disable list that cannot be read is an outage. ipop3d's and checkapop's one rule.
pub(crate) fn lookup_login(
    config: &Config,
    accounts: &Accounts,
    login: &str,
) -> Result<(Login, crate::store::record::Record), Denied> {
    let delimiter = config.ext_delimiter;
    let login = accounts
        .resolve_login(login, delimiter)
        .map_err(|e| refusal(&e))?;

    let account = &login.account;
    if account.uid == 0 {
        return Err(Denied::Wrong("uid 0 never logs in".into()));
    }
    if account.gid == 0 {
        return Err(Denied::Wrong("gid 0 never logs in".into()));
    }
    // The disable list, or an account lookup behind one of its marks, that cannot be read
    // is an outage: no login is let in, and none is counted as wrong.
    let disabled = DisableList::load(&config.disabled_file)
        .map_err(|e| Denied::Outage(format!("disable list unusable: {e}")))?;
    let mark = disabled
        .mark_for(accounts, &login, delimiter)
        .map_err(|e| Denied::Outage(format!("disable list unusable: {e}")))?;
    if let Some((name, _)) = mark {
        return Err(Denied::Wrong(format!("disabled ({name})")));
    }
    let record = store::read(account, login.ext.as_deref()).map_err(|e| Denied::Wrong(why(&e)))?;
    Ok((login, record))
}

/// A failed account lookup: a name that is no account is a wrong login; anything else (NSS or
/// LDAP down, an unreadable passwd_file) is an outage.
fn refusal(e: &Error) -> Denied {
    match e {
        Error::UnknownUser(_) | Error::BadName(_) => Denied::Wrong(why(e)),
        other => Denied::Outage(format!("account lookup failed: {other}")),
    }
}

/// The client's address for everything after this point: `direct` (the peer as tcpserver or
/// getpeername tells it), or, when that peer is a balancer listed in `proxy_from`, the address
/// its PROXY header gives. From a listed peer a missing or malformed header is an error (the
/// reason, for the log; the connection ends before the greeting).
fn client_behind_proxy(config: &Config, direct: &str) -> Result<String, String> {
    if config.proxy_from.is_empty() {
        return Ok(direct.to_string());
    }
    let peer = direct_peer().and_then(|p| p.parse::<std::net::IpAddr>().ok());
    let Some(peer) = peer.filter(|p| proxy::is_listed(*p, &config.proxy_from)) else {
        return Ok(direct.to_string());
    };
    let mut input = connection::Stdin::idle(config.login_timeout.min(config.timeout));
    match proxy::read_header(&mut input) {
        Ok(Ok(proxy::Header::Client(ip))) => Ok(session::sanitize(&ip.to_string())),
        Ok(Ok(proxy::Header::Local)) => Ok(direct.to_string()),
        Ok(Err(why)) => Err(format!("{why} from {peer}")),
        Err(e) => Err(format!("reading the PROXY header from {peer}: {e}")),
    }
}

/// A reason for the log (the error texts never hold a secret).
fn why(e: &Error) -> String {
    match e {
        Error::UnknownUser(_) => "unknown user".into(),
        Error::BadName(_) => "not a valid user name".into(),
        Error::NoSecret(_) => "no APOP password set".into(),
        other => other.to_string(),
    }
}

/// The name in the greeting: `hostname` from the configuration, else `TCPLOCALHOST`, else
/// the system's host name, else `localhost` (the last two only when they are host names).
fn hostname(config: &Config) -> String {
    let system = || {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
    };
    pick_hostname(
        config.hostname.as_deref(),
        std::env::var("TCPLOCALHOST").ok().as_deref(),
        system,
    )
}

/// [`hostname`]'s choice, given its sources (the config's value is checked when it is read).
fn pick_hostname(
    configured: Option<&str>,
    tcplocalhost: Option<&str>,
    system: impl FnOnce() -> Option<String>,
) -> String {
    if let Some(h) = configured {
        return h.to_string();
    }
    if let Some(h) = tcplocalhost.filter(|h| is_host_name(h)) {
        return h.to_string();
    }
    system()
        .filter(|h| is_host_name(h))
        .unwrap_or_else(|| "localhost".into())
}

/// `<pid.nanoseconds@host>`: unique per connection (one process per connection), and within
/// the process too: the nanoseconds never repeat, even on a coarse clock.
fn timestamp(host: &str) -> String {
    static LAST: std::sync::Mutex<u128> = std::sync::Mutex::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let nanos = {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        *last = now.max(*last + 1);
        *last
    };
    format!("<{}.{nanos}@{host}>", std::process::id())
}

/// The client's address, escaped for the log: as the super-server tells it (tcpserver's
/// `TCPREMOTEIP`, `REMOTE_ADDR`), else from getpeername(2) on standard input when that is a
/// socket (inetd, xinetd, `systemd-socket-activate --inetd` set no variable), else `-`.
pub(super) fn remote_address() -> String {
    direct_peer().map_or_else(|| "-".to_string(), |v| session::sanitize(&v))
}

/// The address of the connection's other end, unescaped (see [`remote_address`]).
fn direct_peer() -> Option<String> {
    ["TCPREMOTEIP", "REMOTE_ADDR"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(connection::peer_address)
}

pub(super) fn log_line(event: &str, remote: &str, fields: &str) {
    let line = format!("ipop3d: {event} remote={remote} {fields}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        command().debug_assert();
        let m = command()
            .try_get_matches_from(["ipop3d", "--config", "/x.conf"])
            .unwrap();
        assert_eq!(
            m.get_one::<PathBuf>("config"),
            Some(&PathBuf::from("/x.conf"))
        );
        assert!(command().try_get_matches_from(["ipop3d", "extra"]).is_err());
    }

    #[test]
    fn timestamps_are_unique_and_well_formed() {
        let stamps: Vec<String> = (0..1000).map(|_| timestamp("mx.example.org")).collect();
        let distinct: std::collections::BTreeSet<&String> = stamps.iter().collect();
        assert_eq!(distinct.len(), stamps.len(), "a timestamp repeated");
        let pid = std::process::id().to_string();
        for ts in &stamps {
            let inner = ts
                .strip_prefix('<')
                .and_then(|t| t.strip_suffix("@mx.example.org>"))
                .unwrap_or_else(|| panic!("{ts}"));
            let (p, nanos) = inner.split_once('.').unwrap();
            assert_eq!(p, pid, "{ts}");
            assert!(
                !nanos.is_empty() && nanos.bytes().all(|b| b.is_ascii_digit()),
                "{ts}"
            );
        }
    }

    /// The credential check's every reason. As root the store is read through seteuid, which
    /// switches every thread of the process, and a granted login drops privileges for good: so
    /// as root the check runs in a process of its own (this test binary again, running only
    /// [`system_auth_reasons_in_its_own_process`]), with the accounts on a virtual uid.
    #[test]
    fn system_auth_reasons() {
        // The directory outlives the check, whose process may end as the account.
        let dir = tempfile::tempdir().unwrap();
        if !nix::unistd::geteuid().is_root() {
            return check_system_auth_reasons(dir.path());
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "server::ipop3d::tests::system_auth_reasons_in_its_own_process",
                "--test-threads=1",
            ])
            .env(OWN_PROCESS, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    const OWN_PROCESS: &str = "APOPTOOLS_AUTH_TEST_PROCESS";

    #[test]
    fn system_auth_reasons_in_its_own_process() {
        if let Some(dir) = std::env::var_os(OWN_PROCESS) {
            check_system_auth_reasons(std::path::Path::new(&dir));
        }
    }

    fn check_system_auth_reasons(dir: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.join("home");
        std::fs::create_dir(&home).unwrap();
        let (me, gid) = if nix::unistd::geteuid().is_root() {
            (61_999, 61_999)
        } else {
            (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )
        };
        std::os::unix::fs::chown(&home, Some(me), Some(gid)).unwrap();
        let passwd = dir.join("passwd");
        let h = home.display();
        std::fs::write(
            &passwd,
            format!(
                "alice:x:{me}:{gid}::{h}:/bin/false\nbob:x:{me}:{gid}::{h}/bob:/bin/false\n\
                 toor:x:0:0::/:/bin/false\n"
            ),
        )
        .unwrap();
        let disabled = dir.join("disabled");
        std::fs::write(&disabled, "bob 0 root\n").unwrap();
        std::fs::set_permissions(&disabled, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = Config {
            passwd_file: Some(passwd.clone()),
            disabled_file: disabled,
            ..Config::default()
        };
        let mut auth = SystemAuth {
            config: &config,
            accounts: Accounts::open(Some(&passwd)).unwrap(),
            logged_in: Rc::new(Cell::new(false)),
            sasl: SaslSetup::default(),
            exchange: None,
        };
        let mut plain = |login: &str, password: &str| {
            auth.authenticate(&Credentials::Plain {
                login,
                password: password.as_bytes(),
            })
        };
        let denied = |r: &str| Err(Denied::Wrong(r.into()));
        assert_eq!(plain("nosuch", "x"), denied("unknown user"));
        assert_eq!(plain("../etc", "x"), denied("not a valid user name"));
        assert_eq!(plain("toor", "x"), denied("uid 0 never logs in"));
        assert_eq!(plain("bob", "x"), denied("disabled (bob)"));
        assert_eq!(plain("alice", "x"), denied("no APOP password set"));
        let store = home.join(".apop");
        std::fs::write(&store, "apoptools-secret 1\nsecret right one\n").unwrap();
        std::os::unix::fs::chown(&store, Some(me), Some(gid)).unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
        let Err(Denied::Wrong(why)) = plain("alice", "right one") else {
            panic!("a mode 0644 store was used");
        };
        assert!(why.contains("mode is 0644"), "{why}");
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(plain("alice", "wrong"), denied("wrong password"));
        assert_eq!(
            plain("alice", "right one"),
            Ok(Granted::Maildir(home.join("Maildir")))
        );
        let ts = "<1.2@h>";
        let digest = apop::digest(ts.as_bytes(), b"right one");
        let apop = |auth: &mut SystemAuth, d: &[u8]| {
            auth.authenticate(&Credentials::Apop {
                login: "alice",
                timestamp: ts,
                digest: d,
            })
        };
        assert_eq!(apop(&mut auth, b"0123"), denied("wrong digest"));
        assert_eq!(
            apop(&mut auth, &digest),
            Ok(Granted::Maildir(home.join("Maildir")))
        );
    }

    #[test]
    fn hostname_prefers_config_then_tcplocalhost_then_the_system() {
        fn system() -> Option<String> {
            Some("sys.example.org".to_string())
        }
        fn no_system() -> Option<String> {
            None
        }
        assert_eq!(
            pick_hostname(Some("pop.example.org"), Some("tcp.example.org"), system),
            "pop.example.org"
        );
        assert_eq!(
            pick_hostname(None, Some("tcp.example.org"), system),
            "tcp.example.org"
        );
        // A TCPLOCALHOST that is no host name is passed over, as is such a system name.
        assert_eq!(
            pick_hostname(None, Some("evil> host"), system),
            "sys.example.org"
        );
        assert_eq!(pick_hostname(None, Some(""), system), "sys.example.org");
        assert_eq!(pick_hostname(None, None, system), "sys.example.org");
        assert_eq!(
            pick_hostname(None, None, || Some("bad name".to_string())),
            "localhost"
        );
        assert_eq!(pick_hostname(None, None, no_system), "localhost");
    }
}
