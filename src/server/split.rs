//! split: ipop3d started as root serves each connection with two processes, so that nothing
//! privileged reads a client byte before the login.
//!
//! Guarantees:
//! - The **front** (a forked child) is confined before it sends the greeting: chrooted into
//!   `login_chroot`, running as `login_user` with no groups, no new privileges, not dumpable,
//!   no files, no children ([`crate::system::sandbox`]). It parses every client byte of the
//!   AUTHORIZATION state, reading at most one line at a time, so the bytes after a login line
//!   stay in the socket. It relays each login attempt to the back ([`super::pipe`]) and writes
//!   the reply the back's verdict calls for. It never sees a stored secret.
//! - The **back** (the process tcpserver started, root until the login) makes the greeting's
//!   timestamp, never reads the client before the login, verifies every attempt against its
//!   own timestamp, owns the delay and the failure count (a compromised front cannot skip
//!   them) and logs each outcome. On success it drops to the account for good and, once the
//!   front has exited, serves TRANSACTION on the connection itself.
//! - With TLS (`tls_cert`/`tls_key`), the front alone reads the key and certificate, as root
//!   and before it is confined; it runs the handshake (at once with `--implicit-tls`, after
//!   `STLS` otherwise) and tells the back the version and suite. After a login under TLS the
//!   front stays as the relay between TLS and the pipe, which the back, now the account, uses
//!   as its standard input and output: the client's socket is closed in the back, and no
//!   process running as a mail account ever holds the key.
//! - Anything unexpected from the front (a malformed or unexpected frame, more attempts than
//!   `max_auth_failures`, a USER/PASS attempt the plaintext rule forbids, a second TLS
//!   report) ends the connection with a log line and a non-zero exit, never a login. A front
//!   that cannot be confined, or cannot load the key, sends no greeting: it logs and exits
//!   non-zero.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::auth::sasl::{ChannelBinding, Mechanism};
use crate::config::Config;
use crate::pop3::session::{
    self, Authenticator, Credentials, Denied, Granted, SaslReply, Session, Settings, Tls,
};
use crate::system::process;
use crate::system::sandbox::{self, LoginUser};

use super::connection;
use super::ipop3d::{end_fields, exit_status, log_end, log_line, SystemAuth, EXIT_SESSION_ERROR};
use super::pipe::{FrameError, Request, Verdict};
use super::tls;

/// Where the front finds the TLS certificate and key, and whether TLS starts at once.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `--implicit-tls`: the handshake comes before the greeting.
    pub implicit: bool,
}

/// A stand-in for the front (the hostile tests' scripted fronts): it gets the pipe's end and
/// returns whether it ended well. Never set outside the `testing` feature's entry point.
pub type FakeFront = Box<dyn FnOnce(UnixStream) -> bool>;

/// What [`serve`] needs to know about the connection besides the configuration.
pub(super) struct Connection<'a> {
    pub tls_files: Option<TlsFiles>,
    pub remote: &'a str,
    pub started: Instant,
    pub fake_front: Option<FakeFront>,
}

/// Serves one connection as front and back; the back's exit status.
pub(super) fn serve(
    config: &Config,
    mut settings: Settings,
    mut auth: SystemAuth,
    connection: Connection,
) -> u8 {
    let Connection {
        tls_files,
        remote,
        started,
        fake_front,
    } = connection;
    let front_settings = settings.clone();
    let chroot = config.login_chroot.clone();
    let timeout = config.timeout;
    let front_tls = tls_files.clone();
    let forked = fork_front(config, move |front_end, user| {
        if let Some(fake) = fake_front {
            return fake(front_end);
        }
        let work = Front {
            chroot: &chroot,
            user,
            settings: front_settings,
            tls: front_tls,
            timeout,
            started,
        };
        work.run(front_end)
    });
    let (pid, mut pipe) = match forked {
        Ok(forked) => forked,
        Err(why) => return refuse(remote, &why),
    };
    let mut failures = 0;
    // The mechanism of the SASL exchange under way.
    let mut sasl: Option<Mechanism> = None;
    // After a fatal verdict, or the last failure allowed, the front may only log and end.
    let mut finished = false;
    let mut fatal = false;
    // The front's own log lines: a bounded number, of known events only.
    let mut logs_left = settings.max_login_commands.saturating_add(8);
    loop {
        let request = match Request::read_from(&mut pipe) {
            Ok(Ok(Request::Log { event, fields })) => {
                if logs_left == 0 || !["login", "end", "fatal", "tls"].contains(&event.as_str()) {
                    return stop_front(pid, remote, "the login process logged out of bounds");
                }
                logs_left -= 1;
                log_line(&event, remote, &fields);
                continue;
            }
            Ok(Ok(Request::Tls {
                what,
                end_point,
                exporter,
            })) => {
                if tls_files.is_none() || settings.tls != Tls::Offered {
                    return stop_front(pid, remote, "the login process reported TLS out of turn");
                }
                settings.tls = Tls::Active(what);
                auth.sasl.tls = Some(ChannelBinding {
                    server_end_point: (!end_point.is_empty()).then_some(end_point),
                    exporter: (!exporter.is_empty()).then_some(exporter),
                });
                continue;
            }
            Ok(Ok(request)) => request,
            // The front ended the session before any login succeeded.
            Ok(Err(FrameError::Closed)) => {
                let status = wait_front(pid, remote);
                return if fatal { EXIT_SESSION_ERROR } else { status };
            }
            Ok(Err(FrameError::Malformed(why))) => {
                return stop_front(pid, remote, &format!("the login process sent {why}"))
            }
            Err(e) => return stop_front(pid, remote, &format!("reading the login process: {e}")),
        };
        if finished {
            return stop_front(
                pid,
                remote,
                "the login process tried again after the last attempt",
            );
        }
        let begun = Instant::now();
        let tls_field = settings.tls_field();
        // Every request ends as a login's outcome, or (SASL) a challenge for the client.
        let (method, reply) = match request {
            Request::Apop { login, digest } => {
                let creds = Credentials::Apop {
                    login: &login,
                    timestamp: &settings.timestamp,
                    digest: &digest,
                };
                let outcome = auth.authenticate(&creds);
                ("apop", SaslReply::Done { login, outcome })
            }
            Request::Plain { login, password } => {
                if !settings.plaintext_allowed() {
                    // The front refuses USER itself where the rule forbids it.
                    return stop_front(
                        pid,
                        remote,
                        "the login process relayed a forbidden USER/PASS",
                    );
                }
                let creds = Credentials::Plain {
                    login: &login,
                    password: password.as_bytes(),
                };
                let outcome = auth.authenticate(&creds);
                ("user", SaslReply::Done { login, outcome })
            }
            Request::SaslStart { mechanism, initial } => {
                let allowed = Mechanism::from_name(&mechanism)
                    .filter(|m| settings.mechanisms_now().contains(m));
                let Some(mechanism) = allowed.filter(|_| sasl.is_none()) else {
                    return stop_front(pid, remote, "the login process started SASL out of turn");
                };
                sasl = Some(mechanism);
                let initial = initial.as_ref().map(|i| i.as_bytes());
                (mechanism.log_name(), auth.sasl_start(mechanism, initial))
            }
            Request::SaslRespond { response } => {
                let Some(mechanism) = sasl else {
                    return stop_front(pid, remote, "the login process answered no challenge");
                };
                (mechanism.log_name(), auth.sasl_respond(response.as_bytes()))
            }
            Request::SaslAbort { reason } => {
                let Some(mechanism) = sasl else {
                    return stop_front(pid, remote, "the login process ended no exchange");
                };
                (mechanism.log_name(), auth.sasl_abort(&reason))
            }
            Request::NewPassword { .. } => {
                return stop_front(pid, remote, "the login process sent apoppassd's newpass");
            }
            Request::Log { .. } | Request::Tls { .. } => unreachable!("handled above"),
        };
        let (login, outcome) = match reply {
            SaslReply::Challenge(bytes) => {
                if Verdict::Challenge(bytes).write_to(&mut pipe).is_err() {
                    return stop_front(pid, remote, "the login process is gone");
                }
                continue;
            }
            SaslReply::Done { login, outcome } => (login, outcome),
        };
        sasl = None;
        let who = if login.is_empty() {
            "-".to_string()
        } else {
            session::sanitize(&login)
        };
        let delay = || std::thread::sleep(settings.auth_delay.saturating_sub(begun.elapsed()));
        let verdict = match &outcome {
            Ok(_) => Verdict::Granted,
            Err(Denied::Wrong(reason)) => {
                failures += 1;
                log_line(
                    "login",
                    remote,
                    &format!("user={who} method={method} result=fail reason={reason:?}{tls_field}"),
                );
                delay();
                Verdict::Wrong
            }
            Err(Denied::Outage(reason)) => {
                log_line(
                    "login",
                    remote,
                    &format!(
                        "user={who} method={method} result=unavailable reason={reason:?}{tls_field}"
                    ),
                );
                delay();
                Verdict::Outage
            }
            Err(Denied::Fatal(reason)) => {
                log_line(
                    "fatal",
                    remote,
                    &format!("user={who} method={method} reason={reason:?}"),
                );
                Verdict::Fatal
            }
        };
        if verdict.write_to(&mut pipe).is_err() {
            return stop_front(pid, remote, "the login process is gone");
        }
        match outcome {
            Ok(granted) if matches!(settings.tls, Tls::Active(_)) => {
                // The front relays between TLS and the pipe, which becomes this process's
                // standard input and output: the client's socket is closed here.
                if let Err(e) = onto_stdio(&pipe) {
                    return stop_front(pid, remote, &format!("cannot take the relay: {e}"));
                }
                drop(pipe);
                let session = (settings, auth, login.as_str(), method, granted);
                let status = transaction(session, config.timeout, remote, started);
                // The relay ends when it sees the pipe close.
                let _ = nix::unistd::close(nix::libc::STDIN_FILENO);
                let _ = nix::unistd::close(nix::libc::STDOUT_FILENO);
                let _ = wait_front(pid, remote);
                return status;
            }
            Ok(granted) => {
                drop(pipe);
                // The front writes nothing after a granted login; once it has exited, the
                // connection is the back's alone.
                let front_status = wait_front(pid, remote);
                if front_status != 0 {
                    return front_status;
                }
                let session = (settings, auth, login.as_str(), method, granted);
                return transaction(session, config.timeout, remote, started);
            }
            Err(Denied::Fatal(_)) => {
                fatal = true;
                finished = true;
            }
            // The front stops at the same count; if it tries again, it is stopped.
            Err(_) if failures >= settings.max_auth_failures => finished = true,
            Err(_) => {}
        }
    }
}

/// The back after a granted login: the rest of the session on the connection.
fn transaction(
    (settings, auth, login, method, granted): (Settings, SystemAuth, &str, &'static str, Granted),
    timeout: std::time::Duration,
    remote: &str,
    started: Instant,
) -> u8 {
    let mut log = |event: &str, fields: &str| log_line(event, remote, fields);
    let input = connection::Stdin::idle(timeout);
    let summary = Session::new(settings, auth, &mut log).resume(
        login,
        method,
        granted,
        input,
        connection::Stdout,
    );
    log_end(remote, &summary, started)
}

/// Forks the front of one connection, once what its confinement needs is there: the
/// `login_user`, looked up now (the chroot will hide the account database), and a safe
/// `login_chroot`. `work` runs in the child with its end of the pipe and the user to become;
/// the error, for the log, means no front and no greeting. ipop3d's and apoppassd's one way in.
pub(super) fn fork_front(
    config: &Config,
    work: impl FnOnce(UnixStream, LoginUser) -> bool,
) -> Result<(Pid, UnixStream), String> {
    let user = LoginUser::lookup(&config.login_user)
        .map_err(|e| format!("login_user {}: {e}", config.login_user))?;
    sandbox::check_chroot(&config.login_chroot).map_err(|e| format!("login_chroot: {e}"))?;
    let (front_end, back_end) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    process::fork_worker(back_end, move || work(front_end, user)).map_err(|e| format!("fork: {e}"))
}

/// The front's log: each line goes to the back as a [`Request::Log`] (with RLIMIT_FSIZE 0
/// the front may not write to a log file itself). `None` if the pipe cannot be shared.
pub(super) fn pipe_logger(pipe: &UnixStream) -> Option<impl FnMut(&str, &str)> {
    let mut logger = pipe.try_clone().ok()?;
    Some(move |event: &str, fields: &str| {
        let line = Request::Log {
            event: event.to_string(),
            fields: fields.to_string(),
        };
        let _ = line.write_to(&mut logger);
    })
}

/// The front's part of the connection.
struct Front<'a> {
    chroot: &'a std::path::Path,
    user: LoginUser,
    settings: Settings,
    tls: Option<TlsFiles>,
    timeout: std::time::Duration,
    started: Instant,
}

impl Front<'_> {
    /// Loads the TLS files (still root), is confined, then runs the AUTHORIZATION state of
    /// the session, over TLS once it is up, and after a login under TLS the relay; whether
    /// it all ended well. Its log lines go to the back through the pipe (with RLIMIT_FSIZE 0
    /// it may not write to a log file itself).
    fn run(mut self, pipe: UnixStream) -> bool {
        let Some(mut log) = pipe_logger(&pipe) else {
            return false;
        };
        let fatal = |log: &mut dyn FnMut(&str, &str), reason: String| {
            log("fatal", &format!("reason={reason:?}"));
            false
        };
        // The key is read here, as root, in this process only: the back never holds it.
        let tls_config = match &self.tls {
            Some(files) => match tls::load(&files.cert, &files.key) {
                Ok(config) => Some(config),
                Err(e) => return fatal(&mut log, e),
            },
            None => None,
        };
        if let Err(e) = sandbox::confine(self.chroot, self.user) {
            return fatal(&mut log, format!("cannot confine the login process: {e}"));
        }
        let Ok(mut reports) = pipe.try_clone() else {
            return false;
        };
        let Ok(relay_pipe) = pipe.try_clone() else {
            return false;
        };
        let (login_deadline, timeout) = (self.settings.login_deadline, self.timeout);
        let stdin = move || connection::Stdin {
            login_deadline,
            ..connection::Stdin::idle(timeout)
        };
        // A handshake, then its version and suite reported to the back.
        let mut handshake = || -> Result<(tls::Link, String), String> {
            let Some(loaded) = &tls_config else {
                return Err("TLS is not configured".into());
            };
            let link = tls::Link::accept(loaded.config.clone(), stdin())?;
            let what = link.describe();
            let report = Request::Tls {
                what: what.clone(),
                end_point: loaded.end_point.clone(),
                exporter: link.exporter().unwrap_or_default(),
            };
            report
                .write_to(&mut reports)
                .map_err(|e| format!("reporting TLS to the back: {e}"))?;
            Ok((link, what))
        };
        let implicit = self.tls.as_ref().is_some_and(|t| t.implicit);
        let mut link = None;
        if implicit {
            match handshake() {
                Ok((up, what)) => {
                    self.settings.tls = Tls::Active(what);
                    link = Some(up);
                }
                Err(e) => {
                    log("tls", &format!("result=fail reason={e:?}"));
                    return false;
                }
            }
        }
        let mut failed_handshake = None;
        let summary = {
            let session = Session::new(self.settings, Relay { pipe }, &mut log);
            let (summary, rest) = match &link {
                Some(up) => session.run_until_tls(up, up),
                None => {
                    let input = connection::Stdin {
                        one_line: true,
                        ..stdin()
                    };
                    session.run_until_tls(input, connection::Stdout)
                }
            };
            match rest {
                // STLS: the handshake, then the same session under TLS.
                Some(session) => match handshake() {
                    Ok((up, what)) => {
                        let (summary, _) = session.after_tls(what, &up, &up);
                        link = Some(up);
                        summary
                    }
                    Err(e) => {
                        failed_handshake = Some(e);
                        summary
                    }
                },
                None => summary,
            }
        };
        if let Some(e) = failed_handshake {
            log("tls", &format!("result=fail reason={e:?}"));
            return false;
        }
        if summary.end == session::End::HandedOver {
            return match link {
                Some(up) => up.relay(&relay_pipe, self.timeout * 2).is_ok(),
                None => true,
            };
        }
        if let Some(up) = link {
            up.close();
        }
        log("end", &end_fields(&summary, self.started));
        exit_status(&summary) == 0
    }
}

/// The front's authenticator: every attempt goes to the back, which decides.
struct Relay {
    pipe: UnixStream,
}

impl Relay {
    /// Sends one request and reads the back's verdict, as the session sees it (the login is
    /// the back's to log, so none is named here).
    fn ask(&mut self, request: &Request) -> SaslReply {
        let done = |outcome| SaslReply::Done {
            login: String::new(),
            outcome,
        };
        let gone = || done(Err(Denied::Fatal("the back is gone".into())));
        if request.write_to(&mut self.pipe).is_err() {
            return gone();
        }
        match Verdict::read_from(&mut self.pipe) {
            Ok(Ok(Verdict::Challenge(bytes))) => SaslReply::Challenge(bytes),
            Ok(Ok(Verdict::Granted)) => done(Ok(Granted::Elsewhere)),
            Ok(Ok(Verdict::Wrong)) => done(Err(Denied::Wrong(String::new()))),
            Ok(Ok(Verdict::Outage)) => done(Err(Denied::Outage(String::new()))),
            Ok(Ok(Verdict::Fatal | Verdict::Refused(_))) | Ok(Err(_)) | Err(_) => gone(),
        }
    }
}

impl Authenticator for Relay {
    fn authenticate(&mut self, c: &Credentials) -> Result<Granted, Denied> {
        let request = match c {
            Credentials::Apop { login, digest, .. } => Request::Apop {
                login: login.to_string(),
                digest: digest.to_vec(),
            },
            Credentials::Plain { login, password } => Request::Plain {
                login: login.to_string(),
                password: crate::store::Secret::new(password.to_vec()),
            },
        };
        match self.ask(&request) {
            SaslReply::Done { outcome, .. } => outcome,
            SaslReply::Challenge(_) => Err(Denied::Fatal("the back sent a challenge".into())),
        }
    }

    fn sasl_start(&mut self, mechanism: Mechanism, initial: Option<&[u8]>) -> SaslReply {
        self.ask(&Request::SaslStart {
            mechanism: mechanism.name().to_string(),
            initial: initial.map(|i| crate::store::Secret::new(i.to_vec())),
        })
    }

    fn sasl_respond(&mut self, response: &[u8]) -> SaslReply {
        if response.len() > crate::auth::sasl::MAX_MESSAGE {
            return self.sasl_abort("response too long");
        }
        self.ask(&Request::SaslRespond {
            response: crate::store::Secret::new(response.to_vec()),
        })
    }

    fn sasl_abort(&mut self, reason: &str) -> SaslReply {
        self.ask(&Request::SaslAbort {
            reason: reason.to_string(),
        })
    }

    fn logged_elsewhere(&self) -> bool {
        true
    }
}

/// Makes `pipe` this process's standard input and output (the TLS relay's end).
fn onto_stdio(pipe: &UnixStream) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    for fd in [nix::libc::STDIN_FILENO, nix::libc::STDOUT_FILENO] {
        nix::unistd::dup2(pipe.as_raw_fd(), fd)?;
    }
    Ok(())
}

/// Closes this process's hold on the client's connection: `/dev/null` becomes its standard
/// input and output. For a back that never talks to the client itself (apoppassd's), so a
/// root process never holds the socket the front reads.
pub(crate) fn let_go_of_the_client() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in [nix::libc::STDIN_FILENO, nix::libc::STDOUT_FILENO] {
        nix::unistd::dup2(null.as_raw_fd(), fd)?;
    }
    Ok(())
}

/// Logs why the connection is refused before any greeting; the exit status.
fn refuse(remote: &str, reason: &str) -> u8 {
    log_line("fatal", remote, &format!("reason={reason:?}"));
    EXIT_SESSION_ERROR
}

/// A program's log line: event, remote address, fields (ipop3d's or apoppassd's).
pub(super) type LogLine = fn(&str, &str, &str);

/// Kills the front after a protocol breach, logs it; the exit status.
fn stop_front(pid: Pid, remote: &str, reason: &str) -> u8 {
    stop_front_logged(log_line, pid, remote, reason)
}

/// [`stop_front`], logging with `log`.
pub(super) fn stop_front_logged(log: LogLine, pid: Pid, remote: &str, reason: &str) -> u8 {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = waitpid(pid, None);
    log("fatal", remote, &format!("reason={reason:?}"));
    EXIT_SESSION_ERROR
}

/// Waits for the front; its exit status (a front killed by a signal is logged and is 1).
fn wait_front(pid: Pid, remote: &str) -> u8 {
    wait_front_logged(log_line, pid, remote)
}

/// [`wait_front`], logging with `log`.
pub(super) fn wait_front_logged(log: LogLine, pid: Pid, remote: &str) -> u8 {
    let fatal = |reason: String| {
        log("fatal", remote, &format!("reason={reason:?}"));
        EXIT_SESSION_ERROR
    };
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => return 0,
            Ok(WaitStatus::Exited(_, _)) => return EXIT_SESSION_ERROR,
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                return fatal(format!("the login process was killed by {signal}"))
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return fatal(format!("waiting for the login process: {e}")),
        }
    }
}
