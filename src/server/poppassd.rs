//! poppassd: `apoppassd`, one poppassd session (the protocol of Qualcomm's poppassd, which
//! Roundcube's and Horde's password plugins speak) on standard input and output, changing the
//! mail-only password the store holds.
//!
//! Guarantees:
//! - The old mail password authenticates with ipop3d's rules (its lookup: unknown names, uid or
//!   gid 0, disabled addresses, unusable store files fail alike), the same reply for every
//!   failure (`500 Authentication failed.`) after the same `auth_delay`, and at most
//!   `max_auth_failures` tries per connection. The new password passes the store's policy and
//!   the login-password gate ([`crate::auth::login_password`]: it must not be the account's
//!   login password), in the back, and is written by the store's locked atomic write, as the
//!   account, with its SCRAM keys.
//! - The gate is no oracle for the login password beyond what a user needs: it asks PAM at
//!   most once per connection, every `newpass` is answered no sooner than `auth_delay` after
//!   it arrived, whatever the outcome, and its refusal says only that the rule was broken.
//! - Started as root, the session is split as ipop3d's is: a confined front (the same sandbox)
//!   reads and parses every client line, at most one line per read; the back, which lets go of
//!   the client's connection once the front is forked (it never holds the socket), verifies,
//!   owns the delay and the count, writes, and logs. A front that breaks the pipe's contract
//!   ends the connection. Started as a user, one process serves that user.
//! - Lines are at most 255 octets (LF included), CRLF or bare LF, commands in any case; a
//!   longer line ends the session. No secret reaches a log line or a reply.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::auth::apop;
use crate::config::Config;
use crate::pop3::session::{sanitize, Denied};
use crate::store::Secret;
use crate::system::accounts::{Accounts, Login};
use crate::system::process;
use crate::system::sandbox;

use super::connection;
use super::ipop3d::lookup_login;
use super::pipe::{FrameError, Request, Verdict};

/// The longest line, LF included.
const MAX_LINE: usize = 255;
/// Exit status of a session that ended on an error.
const EXIT_SESSION_ERROR: u8 = 1;

/// The command line (also the source of the man page).
pub fn command() -> clap::Command {
    clap::Command::new("apoppassd")
        .version(env!("CARGO_PKG_VERSION"))
        .about("poppassd for the apoptools store: webmail changes the mail-only password")
        .long_about(
            "apoppassd serves one poppassd session on standard input and output, for tcpserver \
             or systemd socket activation (port 106 on 127.0.0.1: webmail's password plugins, \
             Roundcube's and Horde's poppassd drivers, speak it). The client names an account \
             (user), proves the current mail password (pass) and sets a new one (newpass); \
             the new one passes apoppasswd(1)'s policy and is written as apoppasswd writes it.",
        )
        .arg(crate::tools::cli::config_arg())
}

/// A log line on standard error.
fn log_line(event: &str, remote: &str, fields: &str) {
    let line = format!("apoppassd: {event} remote={remote} {fields}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// The entry point of the `apoppassd` binary.
pub fn main() -> ExitCode {
    let remote = super::ipop3d::remote_address();
    if process::forbid_core_dumps().is_err() {
        log_line("fatal", &remote, "reason=\"cannot forbid core dumps\"");
        return ExitCode::from(EXIT_SESSION_ERROR);
    }
    let matches = match command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let started = Instant::now();
    let config = match Config::load(matches.get_one::<PathBuf>("config").map(|p| p.as_path())) {
        Ok(c) => c,
        Err(e) => {
            log_line("error", &remote, &format!("reason={:?}", e.to_string()));
            let _ = connection::Stdout.write_all(b"500 Service temporarily unavailable.\r\n");
            return ExitCode::from(crate::error::exit::CONFIG);
        }
    };
    let accounts = match Accounts::open(config.passwd_file.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            log_line("error", &remote, &format!("reason={:?}", e.to_string()));
            let _ = connection::Stdout.write_all(b"500 Service temporarily unavailable.\r\n");
            return ExitCode::from(crate::error::exit::SYSTEM);
        }
    };
    connection::set_socket_options(config.timeout);
    let mut back = Back {
        config: &config,
        accounts,
        remote: &remote,
        verified: None,
        failures: 0,
        login_checked: false,
    };
    let code = if nix::unistd::geteuid().is_root() {
        split(&config, back, &remote, started)
    } else {
        let input = front_input(&config, started);
        let end = dialogue(input, connection::Stdout, &mut back, &config);
        log_line("end", &remote, &end_fields(&end, started));
        end.status()
    };
    ExitCode::from(code)
}

/// How a session ended.
#[derive(Debug)]
struct End {
    result: &'static str,
    user: String,
}

impl End {
    fn status(&self) -> u8 {
        match self.result {
            "quit" | "closed" | "timeout" => 0,
            _ => EXIT_SESSION_ERROR,
        }
    }
}

fn end_fields(end: &End, started: Instant) -> String {
    format!(
        "user={} result={} duration={:.3}s",
        end.user,
        end.result,
        started.elapsed().as_secs_f64()
    )
}

/// The client's lines, one per read, with the idle timeout and the login deadline.
fn front_input(config: &Config, started: Instant) -> connection::Stdin {
    connection::Stdin {
        login_deadline: Some(started + config.login_timeout),
        one_line: true,
        ..connection::Stdin::idle(config.timeout)
    }
}

/// What a check or a change came to.
enum Outcome {
    Ok,
    /// A wrong login (after the delay); `true` once no try is left.
    Wrong(bool),
    /// The new password was refused: why, for the client.
    Refused(String),
    Outage,
    Fatal,
}

/// The side that decides: verifies the old password, writes the new one.
trait Decide {
    fn check(&mut self, login: &str, old: &[u8]) -> Outcome;
    fn change(&mut self, new: &[u8]) -> Outcome;
}

/// The real decisions, with the store.
struct Back<'c> {
    config: &'c Config,
    accounts: Accounts,
    remote: &'c str,
    /// The login whose old password verified.
    verified: Option<(String, Login)>,
    failures: u32,
    /// Whether this connection has asked PAM about a new password (at most once).
    login_checked: bool,
}

/// The reply to a new password that is the login password: the rule, not a confirmation.
const LOGIN_PASSWORD_REFUSED: &str =
    "the password is not allowed: a mail password must differ from your login password";
/// The reply to a second new password after the login password was asked about once.
const ONE_CHECK: &str = "one new password per connection; connect again";

impl Decide for Back<'_> {
    fn check(&mut self, login: &str, old: &[u8]) -> Outcome {
        let started = Instant::now();
        self.verified = None;
        let who = sanitize(login);
        let result = lookup_login(self.config, &self.accounts, login).and_then(|(l, record)| {
            if apop::constant_time_eq(record.secret.as_bytes(), old) {
                Ok(l)
            } else {
                Err(Denied::Wrong("wrong password".into()))
            }
        });
        match result {
            Ok(l) => {
                log_line("login", self.remote, &format!("user={who} result=ok"));
                self.verified = Some((login.to_string(), l));
                Outcome::Ok
            }
            Err(Denied::Wrong(reason)) => {
                self.failures += 1;
                let fields = format!("user={who} result=fail reason={reason:?}");
                log_line("login", self.remote, &fields);
                std::thread::sleep(self.config.auth_delay.saturating_sub(started.elapsed()));
                Outcome::Wrong(self.failures >= self.config.max_auth_failures)
            }
            Err(Denied::Outage(reason)) => {
                let fields = format!("user={who} result=unavailable reason={reason:?}");
                log_line("login", self.remote, &fields);
                std::thread::sleep(self.config.auth_delay.saturating_sub(started.elapsed()));
                Outcome::Outage
            }
            Err(Denied::Fatal(reason)) => {
                log_line(
                    "fatal",
                    self.remote,
                    &format!("user={who} reason={reason:?}"),
                );
                Outcome::Fatal
            }
        }
    }

    fn change(&mut self, new: &[u8]) -> Outcome {
        let started = Instant::now();
        let outcome = self.change_now(new);
        // Whatever the answer (refused, unavailable, written), no sooner than a wrong password's.
        if !matches!(outcome, Outcome::Fatal) {
            std::thread::sleep(self.config.auth_delay.saturating_sub(started.elapsed()));
        }
        outcome
    }
}

impl Back<'_> {
    /// [`Decide::change`] without its delay.
    fn change_now(&mut self, new: &[u8]) -> Outcome {
        use crate::auth::login_password;
        use crate::error::Error;
        let Some((login, l)) = self.verified.take() else {
            return Outcome::Fatal;
        };
        let who = sanitize(&login);
        let refuse = |back: &mut Self, reason: &str, reply: &str| {
            let fields = format!("user={who} result=refused reason={reason:?}");
            log_line("change", back.remote, &fields);
            back.verified = Some((login.clone(), l.clone()));
            Outcome::Refused(reply.to_string())
        };
        if let Err(e) = crate::store::check_policy(new, self.config.min_length) {
            let why = match e {
                Error::Policy(why) => why,
                other => other.to_string(),
            };
            return refuse(self, &why, &why);
        }
        let gated = login_password::applies(&self.config.login_password_check, &self.accounts);
        if gated && self.login_checked {
            return refuse(self, "a second new password on the connection", ONE_CHECK);
        }
        self.login_checked |= gated;
        let checked = login_password::check(
            &self.config.login_password_check,
            &self.accounts,
            &l.account,
            new,
        );
        match checked {
            Ok(_) => {}
            Err(Error::Policy(why)) => return refuse(self, &why, LOGIN_PASSWORD_REFUSED),
            Err(e) => {
                let fields = format!("user={who} result=unavailable reason={:?}", e.to_string());
                log_line("change", self.remote, &fields);
                return Outcome::Outage;
            }
        }
        let written = crate::store::write(
            &l.account,
            l.ext.as_deref(),
            new,
            &format!("apoppassd:{login}"),
            self.config.lock_wait,
        );
        match written {
            Ok(()) => {
                log_line("change", self.remote, &format!("user={who} result=ok"));
                Outcome::Ok
            }
            Err(e) => {
                let fields = format!("user={who} result=unavailable reason={:?}", e.to_string());
                log_line("change", self.remote, &fields);
                Outcome::Outage
            }
        }
    }
}

/// The dialogue: reads commands, asks `decide`, writes replies; how it ended.
fn dialogue(
    mut input: impl Read,
    mut output: impl Write,
    decide: &mut dyn Decide,
    config: &Config,
) -> End {
    let mut send = |text: &str| output.write_all(format!("{text}\r\n").as_bytes());
    let end = |result: &'static str, user: &Option<String>| End {
        result,
        user: user.as_deref().map_or("-".to_string(), sanitize),
    };
    if send("200 apoppassd ready, who are you?").is_err() {
        return end("io-error", &None);
    }
    let (mut user, mut verified): (Option<String>, bool) = (None, false);
    let mut commands = 0;
    loop {
        let line = match read_line(&mut input) {
            Ok(Some(line)) => line,
            Ok(None) => return end("closed", &user),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = send("500 Line too long.");
                return end("line-too-long", &user);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return end("timeout", &user),
            Err(_) => return end("io-error", &user),
        };
        commands += 1;
        if commands > config.max_login_commands {
            let _ = send("500 Too many commands; goodbye.");
            return end("too-many-commands", &user);
        }
        let text = line.as_bytes();
        let (word, rest) = match text.iter().position(|&b| b == b' ') {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (text, &b""[..]),
        };
        let reply = match word.to_ascii_lowercase().as_slice() {
            b"user" => match std::str::from_utf8(rest) {
                Ok(name) if !name.is_empty() && !name.contains(' ') => {
                    user = Some(name.to_string());
                    verified = false;
                    "200 Your password please.".to_string()
                }
                _ => "500 Invalid user name.".to_string(),
            },
            b"pass" => match &user {
                None => "500 Send user first.".to_string(),
                Some(name) => match decide.check(name, rest) {
                    Outcome::Ok => {
                        verified = true;
                        "200 Your new password please.".to_string()
                    }
                    Outcome::Wrong(last) => {
                        let _ = send("500 Authentication failed.");
                        if last {
                            return end("too-many-failures", &user);
                        }
                        continue;
                    }
                    Outcome::Outage => "500 Service temporarily unavailable.".to_string(),
                    Outcome::Refused(_) | Outcome::Fatal => {
                        let _ = send("500 Service temporarily unavailable.");
                        return end("fatal", &user);
                    }
                },
            },
            b"newpass" if !verified => "500 Send pass first.".to_string(),
            b"newpass" => match decide.change(rest) {
                Outcome::Ok => {
                    verified = false;
                    "200 Password changed.".to_string()
                }
                Outcome::Refused(why) => format!("500 {why}"),
                Outcome::Outage => "500 Service temporarily unavailable.".to_string(),
                Outcome::Wrong(_) | Outcome::Fatal => {
                    let _ = send("500 Service temporarily unavailable.");
                    return end("fatal", &user);
                }
            },
            b"quit" => {
                let _ = send("200 Bye.");
                return end("quit", &user);
            }
            _ => "500 Unknown command.".to_string(),
        };
        if send(&reply).is_err() {
            return end("io-error", &user);
        }
    }
}

/// One line without its CRLF or LF, as a secret (it may hold a password); `None` at the end
/// of the stream; `InvalidData` past [`MAX_LINE`].
fn read_line(input: &mut impl Read) -> io::Result<Option<Secret>> {
    let mut buf = [0u8; MAX_LINE];
    let mut len = 0;
    let line = loop {
        if len == buf.len() {
            break Err(io::ErrorKind::InvalidData.into());
        }
        match input.read(&mut buf[len..]) {
            // The end of the stream; a partial last line is no command.
            Ok(0) => break Ok(None),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
        if let Some(lf) = buf[..len].iter().position(|&b| b == b'\n') {
            let body = &buf[..lf];
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            break Ok(Some(Secret::new(body.to_vec())));
        }
    };
    crate::system::wipe::wipe(&mut buf);
    line
}

/// The front's side of the pipe: every decision is the back's.
struct Relay {
    pipe: UnixStream,
}

impl Relay {
    fn ask(&mut self, request: &Request) -> Outcome {
        if request.write_to(&mut self.pipe).is_err() {
            return Outcome::Fatal;
        }
        match Verdict::read_from(&mut self.pipe) {
            Ok(Ok(Verdict::Granted)) => Outcome::Ok,
            Ok(Ok(Verdict::Wrong)) => Outcome::Wrong(false),
            // The back's count ran out: it says so by closing after its verdict.
            Ok(Ok(Verdict::Fatal)) => Outcome::Wrong(true),
            Ok(Ok(Verdict::Outage)) => Outcome::Outage,
            Ok(Ok(Verdict::Refused(why))) => Outcome::Refused(why),
            Ok(Ok(Verdict::Challenge(_))) | Ok(Err(_)) | Err(_) => Outcome::Fatal,
        }
    }
}

impl Decide for Relay {
    fn check(&mut self, login: &str, old: &[u8]) -> Outcome {
        self.ask(&Request::Plain {
            login: login.to_string(),
            password: Secret::new(old.to_vec()),
        })
    }

    fn change(&mut self, new: &[u8]) -> Outcome {
        self.ask(&Request::NewPassword {
            password: Secret::new(new.to_vec()),
        })
    }
}

/// As root: the confined front reads the client, this process decides.
fn split(config: &Config, mut back: Back, remote: &str, started: Instant) -> u8 {
    let chroot = config.login_chroot.clone();
    let front_config = config.clone();
    let forked = super::split::fork_front(config, move |front_end, user| {
        let Some(mut log) = super::split::pipe_logger(&front_end) else {
            return false;
        };
        if let Err(e) = sandbox::confine(&chroot, user) {
            log(
                "fatal",
                &format!("reason={:?}", format!("cannot confine: {e}")),
            );
            return false;
        }
        let input = front_input(&front_config, started);
        let mut relay = Relay { pipe: front_end };
        let end = dialogue(input, connection::Stdout, &mut relay, &front_config);
        log("end", &end_fields(&end, started));
        end.status() == 0
    });
    let (pid, mut pipe) = match forked {
        Ok(f) => f,
        Err(why) => return refuse(remote, &why),
    };
    // The front alone holds the client's connection from here on.
    if let Err(e) = super::split::let_go_of_the_client() {
        return stop_front(
            pid,
            remote,
            &format!("cannot close the client's connection: {e}"),
        );
    }
    let mut logs_left = config.max_login_commands.saturating_add(4);
    let mut finished = false;
    loop {
        let verdict = match Request::read_from(&mut pipe) {
            Ok(Ok(Request::Log { event, fields })) => {
                if logs_left == 0 || !["end", "fatal"].contains(&event.as_str()) {
                    return stop_front(pid, remote, "the front logged out of bounds");
                }
                logs_left -= 1;
                log_line(&event, remote, &fields);
                continue;
            }
            Ok(Ok(_)) if finished => {
                return stop_front(pid, remote, "the front tried again after the last attempt");
            }
            Ok(Ok(Request::Plain { login, password })) => {
                match back.check(&login, password.as_bytes()) {
                    Outcome::Ok => Verdict::Granted,
                    Outcome::Wrong(false) => Verdict::Wrong,
                    Outcome::Wrong(true) => {
                        finished = true;
                        Verdict::Fatal
                    }
                    Outcome::Outage => Verdict::Outage,
                    Outcome::Refused(_) | Outcome::Fatal => {
                        finished = true;
                        Verdict::Fatal
                    }
                }
            }
            Ok(Ok(Request::NewPassword { password })) => {
                if back.verified.is_none() {
                    return stop_front(pid, remote, "the front sent newpass unverified");
                }
                match back.change(password.as_bytes()) {
                    Outcome::Ok => Verdict::Granted,
                    Outcome::Refused(why) => Verdict::Refused(why),
                    Outcome::Outage => Verdict::Outage,
                    Outcome::Wrong(_) | Outcome::Fatal => Verdict::Fatal,
                }
            }
            Ok(Ok(_)) => {
                return stop_front(
                    pid,
                    remote,
                    "the front sent a request apoppassd has no use for",
                )
            }
            Ok(Err(FrameError::Closed)) => {
                return super::split::wait_front_logged(log_line, pid, remote)
            }
            Ok(Err(FrameError::Malformed(why))) => {
                return stop_front(pid, remote, &format!("the front sent {why}"))
            }
            Err(e) => return stop_front(pid, remote, &format!("reading the front: {e}")),
        };
        if verdict.write_to(&mut pipe).is_err() {
            return stop_front(pid, remote, "the front is gone");
        }
    }
}

/// Logs why the connection is refused before any greeting; the exit status.
fn refuse(remote: &str, reason: &str) -> u8 {
    log_line("fatal", remote, &format!("reason={reason:?}"));
    EXIT_SESSION_ERROR
}

/// Kills the front after a breach of the pipe's contract, logs it; the exit status.
fn stop_front(pid: nix::unistd::Pid, remote: &str, reason: &str) -> u8 {
    super::split::stop_front_logged(log_line, pid, remote, reason)
}

/// The dialogue over `data` with a stand-in for the back that knows one password no input can
/// guess; the replies (for the `poppassd_dialogue` fuzz target).
#[cfg(feature = "testing")]
pub(crate) fn dialogue_for_fuzzing(data: &[u8]) -> Vec<u8> {
    struct Stub;
    impl Decide for Stub {
        fn check(&mut self, _: &str, old: &[u8]) -> Outcome {
            if old == b"\x9e\x37\x79\xb9\x7f\x4a\x7c\x15-not-guessable-\x01\x02\x03\x04" {
                Outcome::Ok
            } else {
                Outcome::Wrong(false)
            }
        }
        fn change(&mut self, new: &[u8]) -> Outcome {
            match crate::store::check_policy(new, 8) {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::Refused(e.to_string()),
            }
        }
    }
    /// Hands out at most one line per read, as the front's reader does.
    struct Lines<'a>(&'a [u8]);
    impl Read for Lines<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let end = self
                .0
                .iter()
                .position(|&b| b == b'\n')
                .map_or(self.0.len(), |i| i + 1);
            let n = end.min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let config = Config {
        max_login_commands: 10_000,
        ..Config::default()
    };
    let mut out = Vec::new();
    let _ = dialogue(Lines(data), &mut out, &mut Stub, &config);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_either_ending_works() {
        let mut input: &[u8] = b"user alice\r\npass pw with spaces\nQUIT\r\n";
        let mut got = Vec::new();
        while let Some(line) = read_line(&mut OneByte(&mut input)).unwrap() {
            got.push(String::from_utf8(line.as_bytes().to_vec()).unwrap());
        }
        assert_eq!(got, ["user alice", "pass pw with spaces", "QUIT"]);
        let long = format!("pass {}\n", "x".repeat(300));
        let err = read_line(&mut long.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    /// Hands out one byte per read, as the front's one-line reader may.
    struct OneByte<'a, 'b>(&'a mut &'b [u8]);
    impl Read for OneByte<'_, '_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.split_first() {
                Some((&b, rest)) if !buf.is_empty() => {
                    buf[0] = b;
                    *self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }
}
