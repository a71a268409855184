//! session: one POP3 session, AUTHORIZATION -> TRANSACTION -> UPDATE (RFC 1939), generic over
//! the client's byte stream (`Read`) and the reply stream (`Write`), so a whole session runs
//! in-process in tests and fuzz targets.
//!
//! Guarantees:
//! - [`allowed`] alone decides whether a command may run in the current state; anything else
//!   gets `-ERR` and the session goes on. Client bytes never cause a panic.
//! - Every failed login, whatever the cause (unknown user, wrong password, disabled account,
//!   unsafe store file, no secret, wrong uid), gets the same reply after the same total delay
//!   (`auth_delay`, measured from the command); after `max_auth_failures` the connection
//!   closes. The reason goes to the log only. An outage ([`Denied::Outage`]) gets `[SYS/TEMP]`
//!   after the same delay and is not counted; an authenticator that can no longer be trusted
//!   ([`Denied::Fatal`]) ends the session at once.
//! - AUTHORIZATION is bounded: at most `max_login_commands` commands (and malformed lines) are
//!   answered, and none after `login_deadline`; then a goodbye and the end.
//! - Credentials are checked by an [`Authenticator`]; the real one (in `ipop3d`) becomes the
//!   account for good before it returns the Maildir, so no mail is touched as root.
//! - DELE only marks. Messages are removed only by QUIT in TRANSACTION (the UPDATE state); a
//!   client that goes away, an idle timeout or a write error deletes nothing.
//! - Replies are buffered and written once per batch of pipelined commands (when no complete
//!   line is waiting); message bodies stream in [`maildir::CHUNK`]-sized pieces, so memory stays
//!   bounded whatever the message size.
//!
//! `Session::handle` is the table of contents: [`allowed`], then one exhaustive match whose
//! arms each call a handler, grouped by concern: [`authorization`] (CAPA, USER, PASS, APOP,
//! the login), [`listing`] (STAT, LIST, UIDL, NOOP), [`retrieval`] (RETR, TOP) and [`update`]
//! (DELE, RSET, QUIT).

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::auth::sasl::Mechanism;
use crate::maildir::{self, Maildrop, Refused};
use crate::pop3::wire::{Command, LineError, Parser, Response};
use crate::system::wipe::wipe;

mod authorization;
mod listing;
mod retrieval;
mod update;

/// What the session needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether USER/PASS is allowed (and advertised by CAPA) without TLS.
    pub plaintext: bool,
    /// Whether USER/PASS is allowed (and advertised by CAPA) under TLS.
    pub plaintext_over_tls: bool,
    /// Whether the connection is under TLS, or STLS is offered.
    pub tls: Tls,
    /// The SASL mechanisms AUTH offers, each still subject to the plaintext rule (PLAIN,
    /// LOGIN) and to TLS (SCRAM-SHA-256-PLUS): see [`Settings::mechanisms_now`].
    pub sasl: Vec<Mechanism>,
    /// The total time from a login command to its failure reply.
    pub auth_delay: Duration,
    /// Failed logins after which the connection closes.
    pub max_auth_failures: u32,
    /// The greeting's RFC 1939 timestamp, angle brackets included; unique per connection.
    pub timestamp: String,
    /// Commands (and malformed lines) answered before login; the next one ends the session.
    pub max_login_commands: u32,
    /// When AUTHORIZATION ends, however busy the client keeps it (`None`: no limit).
    pub login_deadline: Option<Instant>,
    /// Whose UIDLs messages new to ipop3d get (the `uidl_compat` key).
    pub uidl_compat: crate::maildir::import::UidlCompat,
}

/// TLS on the connection, as the session sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Not configured (or not possible here): STLS is refused.
    Off,
    /// Configured and not yet active: CAPA lists STLS, and STLS ends [`Session::run`] with
    /// [`End::StartTls`] once `+OK` is written, for the caller to run the handshake.
    Offered,
    /// Active; the text (version and cipher suite) goes into the login log lines.
    Active(String),
}

impl Settings {
    /// Whether USER/PASS (and later AUTH PLAIN/LOGIN) is accepted now.
    pub fn plaintext_allowed(&self) -> bool {
        match self.tls {
            Tls::Active(_) => self.plaintext_over_tls,
            Tls::Off | Tls::Offered => self.plaintext,
        }
    }

    /// The mechanisms AUTH accepts now, in the order CAPA and a bare AUTH list them.
    pub fn mechanisms_now(&self) -> Vec<Mechanism> {
        let tls = matches!(self.tls, Tls::Active(_));
        Mechanism::ALL
            .into_iter()
            .filter(|m| self.sasl.contains(m))
            .filter(|m| !m.is_plaintext() || self.plaintext_allowed())
            .filter(|m| !m.needs_tls() || tls)
            .collect()
    }

    /// ` tls=VERSION/SUITE` for a login log line under TLS; empty otherwise.
    pub fn tls_field(&self) -> String {
        match &self.tls {
            Tls::Active(what) => format!(" tls={what}"),
            Tls::Off | Tls::Offered => String::new(),
        }
    }
}

/// What a client offers to log in.
#[derive(Debug)]
pub enum Credentials<'a> {
    Apop {
        login: &'a str,
        timestamp: &'a str,
        digest: &'a [u8],
    },
    Plain {
        login: &'a str,
        password: &'a [u8],
    },
}

impl Credentials<'_> {
    pub fn login(&self) -> &str {
        match self {
            Credentials::Apop { login, .. } | Credentials::Plain { login, .. } => login,
        }
    }
    fn method(&self) -> &'static str {
        match self {
            Credentials::Apop { .. } => "apop",
            Credentials::Plain { .. } => "user",
        }
    }
}

/// Why a login did not succeed; the text is for the log only, never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Wrong credentials, or any reason the client must not learn (unknown user, disabled
    /// account, unusable store): `[AUTH]` after the delay, one failure counted.
    Wrong(String),
    /// An outage (an account source or the disable list cannot be read): `[SYS/TEMP]` after
    /// the delay, not counted as a failure.
    Outage(String),
    /// The process can no longer be trusted (a privilege drop failed half-way): logged, and
    /// the session ends at once.
    Fatal(String),
}

/// A successful login: the account's Maildir, or why it cannot be found (for the log; the
/// client gets `[SYS/TEMP]` and the connection closes, as the process is the account now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Granted {
    Maildir(PathBuf),
    Unavailable(String),
    /// The login succeeded in another process, which serves the rest of the session (the
    /// pre-login front of the privilege split): this session ends here, writing nothing.
    Elsewhere,
}

/// The authenticator's answer to one step of a SASL exchange.
#[derive(Debug)]
pub enum SaslReply {
    /// Send this challenge (raw bytes; the session base64-encodes it) and wait for the answer.
    Challenge(Vec<u8>),
    /// The exchange is over: the login it named (empty if it never got that far), and the
    /// outcome, as [`Authenticator::authenticate`]'s.
    Done {
        login: String,
        outcome: Result<Granted, Denied>,
    },
}

impl SaslReply {
    /// A failed exchange.
    pub fn failed(login: &str, reason: &str) -> SaslReply {
        SaslReply::Done {
            login: login.to_string(),
            outcome: Err(Denied::Wrong(reason.to_string())),
        }
    }
}

/// Checks credentials. On success the process may act only as the account from then on.
pub trait Authenticator {
    fn authenticate(&mut self, credentials: &Credentials) -> Result<Granted, Denied>;

    /// Starts a SASL exchange with `mechanism` (one [`Settings::mechanisms_now`] allows) and
    /// the decoded initial response, if the client sent one.
    fn sasl_start(&mut self, mechanism: Mechanism, initial: Option<&[u8]>) -> SaslReply {
        let _ = (mechanism, initial);
        SaslReply::failed("", "no SASL here")
    }

    /// The client's decoded answer to the last challenge.
    fn sasl_respond(&mut self, response: &[u8]) -> SaslReply {
        let _ = response;
        SaslReply::failed("", "no SASL here")
    }

    /// The exchange ends without an answer the mechanism can read: the client cancelled
    /// (`*`), or sent what is not base64 or too long. It is a failed login like any other.
    fn sasl_abort(&mut self, reason: &str) -> SaslReply {
        SaslReply::failed("", reason)
    }

    /// Whether the outcome of each login is logged by whoever decided it (the back of the
    /// split) rather than by this session.
    fn logged_elsewhere(&self) -> bool {
        false
    }
}

/// The session's state (RFC 1939 §3).
#[derive(Debug)]
pub enum State {
    Authorization {
        /// The name given with USER, waiting for PASS.
        user: Option<String>,
    },
    Transaction(Box<Maildrop>),
    Update,
}

/// Whether `command` may run in `state`.
pub fn allowed(state: &State, command: &Command) -> bool {
    use Command as C;
    // Exhaustive on purpose: a new command must be placed in every state.
    match (state, command) {
        (
            State::Authorization { .. },
            C::User(_)
            | C::Apop { .. }
            | C::Quit
            | C::Capa
            | C::Stls
            | C::AuthList
            | C::Auth { .. },
        ) => true,
        (State::Authorization { user }, C::Pass(_)) => user.is_some(),
        (
            State::Authorization { .. },
            C::Stat
            | C::List(_)
            | C::Retr(_)
            | C::Dele(_)
            | C::Noop
            | C::Rset
            | C::Top { .. }
            | C::Uidl(_),
        ) => false,
        (
            State::Transaction(_),
            C::Stat
            | C::List(_)
            | C::Retr(_)
            | C::Dele(_)
            | C::Noop
            | C::Rset
            | C::Quit
            | C::Top { .. }
            | C::Uidl(_)
            | C::Capa,
        ) => true,
        (
            State::Transaction(_),
            C::User(_) | C::Pass(_) | C::Apop { .. } | C::Stls | C::AuthList | C::Auth { .. },
        ) => false,
        (State::Update, _) => false,
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Quit,
    /// The client closed the connection without QUIT.
    Closed,
    Timeout,
    TooManyFailures,
    /// More commands before login than `max_login_commands`.
    TooManyCommands,
    /// Still not logged in at the login deadline.
    LoginTimeout,
    /// The authenticator could not be trusted any more (a failed privilege drop).
    Fatal,
    /// The login succeeded and another process carries on (see [`Granted::Elsewhere`]).
    HandedOver,
    /// STLS was accepted and `+OK` written: the caller runs the TLS handshake and goes on
    /// with [`Session::after_tls`]. Nothing the client sent after the STLS line is kept.
    StartTls,
    /// Login succeeded but the Maildir could not be opened (or was locked).
    Mailbox,
    /// Reading the client or writing to it failed, or a message could not be read mid-reply.
    Io,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Quit => "quit",
            End::Closed => "closed",
            End::Timeout => "timeout",
            End::TooManyFailures => "too-many-failures",
            End::TooManyCommands => "too-many-commands",
            End::LoginTimeout => "login-timeout",
            End::Fatal => "fatal",
            End::HandedOver => "handed-over",
            End::StartTls => "stls",
            End::Mailbox => "mailbox-error",
            End::Io => "io-error",
        }
    }
}

/// What happened, for the closing log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub end: End,
    /// The login name that succeeded, if any (sanitised).
    pub user: Option<String>,
    pub messages: usize,
    pub retrieved: usize,
    pub deleted: usize,
    pub bytes_sent: u64,
}

/// One event for the log: a word naming it and `key=value` fields (already sanitised).
pub type LogFn<'a> = dyn FnMut(&str, &str) + 'a;

/// Buffered replies; writes when asked or when a body chunk fills the buffer.
struct Output<W: Write> {
    w: W,
    buf: Vec<u8>,
    sent: u64,
}

impl<W: Write> Output<W> {
    fn send(&mut self, r: &Response) -> io::Result<()> {
        r.write_to(&mut self.buf)?;
        if self.buf.len() >= maildir::CHUNK {
            self.write_buf()?;
        }
        Ok(())
    }

    fn write_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.w.write_all(&self.buf)?;
            self.sent += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_buf()?;
        self.w.flush()
    }
}

enum Flow {
    Go,
    Stop(End),
}

/// How [`Session::serve`] begins.
enum Start {
    /// A new connection: the greeting.
    Greeting,
    /// After the TLS handshake that STLS began: nothing is sent first.
    Continue,
    /// A login another process accepted (its sanitised name, method and grant).
    Resume(String, &'static str, Granted),
}

/// A session over one connection.
pub struct Session<'a, A: Authenticator> {
    settings: Settings,
    auth: A,
    log: &'a mut LogFn<'a>,
    state: State,
    failures: u32,
    /// Commands and malformed lines seen in AUTHORIZATION.
    login_commands: u32,
    /// The mechanism of the SASL exchange under way: the next line is its client response.
    sasl: Option<Mechanism>,
    summary: Summary,
}

impl<'a, A: Authenticator> Session<'a, A> {
    pub fn new(settings: Settings, auth: A, log: &'a mut LogFn<'a>) -> Self {
        Session {
            settings,
            auth,
            log,
            state: State::Authorization { user: None },
            failures: 0,
            login_commands: 0,
            sasl: None,
            summary: Summary {
                end: End::Closed,
                user: None,
                messages: 0,
                retrieved: 0,
                deleted: 0,
                bytes_sent: 0,
            },
        }
    }

    /// Runs the session to its end: greeting, commands, and UPDATE if the client QUITs.
    /// A read error of kind `TimedOut` or `WouldBlock` is the idle timeout.
    pub fn run(self, input: impl Read, output: impl Write) -> Summary {
        self.serve(Start::Greeting, input, output).0
    }

    /// Like [`Session::run`], but an accepted STLS (only where [`Settings::tls`] is
    /// [`Tls::Offered`]) returns the session too, with `End::StartTls`: the caller runs the
    /// handshake over the same connection and goes on with [`Session::after_tls`].
    pub fn run_until_tls(self, input: impl Read, output: impl Write) -> (Summary, Option<Self>) {
        self.serve(Start::Greeting, input, output)
    }

    /// Goes on after a completed TLS handshake (`what`: version and suite, for the log): no
    /// new greeting; what the client said before STLS (a USER name) is forgotten, the login
    /// commands and failures counted so far still count (RFC 2595 §4).
    pub fn after_tls(
        mut self,
        what: String,
        input: impl Read,
        output: impl Write,
    ) -> (Summary, Option<Self>) {
        self.settings.tls = Tls::Active(what);
        self.state = State::Authorization { user: None };
        self.serve(Start::Continue, input, output)
    }

    /// Goes on with a session whose login `login` (by `method`) another process accepted and
    /// whose authenticator (this process) granted `granted`: the Maildir is opened and the
    /// session continues in TRANSACTION. The client has had the greeting already.
    pub fn resume(
        self,
        login: &str,
        method: &'static str,
        granted: Granted,
        input: impl Read,
        output: impl Write,
    ) -> Summary {
        let start = Start::Resume(sanitize(login), method, granted);
        self.serve(start, input, output).0
    }

    fn serve(
        mut self,
        start: Start,
        mut input: impl Read,
        output: impl Write,
    ) -> (Summary, Option<Self>) {
        let mut out = Output {
            w: output,
            buf: Vec::with_capacity(2 * maildir::CHUNK),
            sent: 0,
        };
        let mut parser = Parser::new();
        let mut chunk = vec![0u8; 4096];
        let first = match start {
            Start::Greeting => {
                let ts = self.settings.timestamp.clone();
                out.send(&Response::Greeting(&ts)).map(|()| Flow::Go)
            }
            Start::Continue => Ok(Flow::Go),
            Start::Resume(who, method, granted) => self.granted(granted, who, method, &mut out),
        };
        let mut end = match first.and_then(|flow| out.flush().map(|()| flow)) {
            Ok(Flow::Go) => None,
            Ok(Flow::Stop(e)) => Some(e),
            Err(_) => Some(End::Io),
        };
        while end.is_none() {
            loop {
                // During a SASL exchange the next line is the client's response.
                let flow = if self.sasl.is_some() {
                    match parser.next_response() {
                        Some(line) => self.sasl_line(line, &mut out),
                        None => break,
                    }
                } else {
                    match parser.next_item() {
                        Some(item) => self.handle(item, &mut out),
                        None => break,
                    }
                };
                match flow {
                    Ok(Flow::Go) => {}
                    Ok(Flow::Stop(e)) => {
                        end = Some(e);
                        break;
                    }
                    Err(_) => {
                        end = Some(End::Io);
                        break;
                    }
                }
            }
            if out.flush().is_err() {
                end = Some(End::Io);
            }
            if end.is_some() {
                break;
            }
            match input.read(&mut chunk) {
                Ok(0) => end = Some(End::Closed),
                Ok(n) => {
                    parser.feed(&chunk[..n]);
                    // The bytes may hold a password; the parser keeps what it needs.
                    wipe(&mut chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    let _ = out.send(&Response::Autologout).and_then(|_| out.flush());
                    end = Some(End::Timeout);
                }
                Err(_) => end = Some(End::Io),
            }
        }
        self.summary.end = end.unwrap_or(End::Io);
        self.summary.bytes_sent += out.sent;
        if self.summary.end == End::StartTls {
            // The parser goes with this function: no byte read before the handshake is kept.
            return (self.summary.clone(), Some(self));
        }
        // Dropping the state releases the maildrop lock without deleting anything.
        self.state = State::Update;
        (self.summary, None)
    }

    fn handle<W: Write>(
        &mut self,
        item: Result<Command, LineError>,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        if let State::Authorization { .. } = self.state {
            if let Some(end) = self.login_bound_reached() {
                out.send(&match end {
                    End::LoginTimeout => Response::LoginTimeout,
                    _ => Response::TooManyCommands,
                })?;
                return Ok(Flow::Stop(end));
            }
            self.login_commands += 1;
        }
        let command = match item {
            Ok(c) => c,
            Err(e) => {
                out.send(&Response::Line(e))?;
                return Ok(Flow::Go);
            }
        };
        if !allowed(&self.state, &command) {
            let reply = match (&self.state, &command) {
                (State::Authorization { .. }, Command::Pass(_)) => Response::NeedUser,
                _ => Response::WrongState,
            };
            out.send(&reply)?;
            return Ok(Flow::Go);
        }
        // The table of contents: every command, one exhaustive match, each arm one call.
        match command {
            Command::Capa => self.capa(out),
            Command::Stls => self.stls(out),
            Command::AuthList => self.auth_list(out),
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial, out),
            Command::User(name) => self.user(name, out),
            Command::Pass(password) => self.pass(password, out),
            Command::Apop { name, digest } => self.apop(&name, &digest, out),
            Command::Stat => self.stat(out),
            Command::List(msg) => self.list(msg, out),
            Command::Uidl(msg) => self.uidl(msg, out),
            Command::Noop => self.noop(out),
            Command::Retr(msg) => self.retr(msg, out),
            Command::Top { msg, lines } => self.top(msg, lines, out),
            Command::Dele(msg) => self.dele(msg, out),
            Command::Rset => self.rset(out),
            Command::Quit => self.quit(out),
        }
    }

    /// Whether AUTHORIZATION has run out of commands or of time.
    fn login_bound_reached(&self) -> Option<End> {
        if self.login_commands >= self.settings.max_login_commands {
            return Some(End::TooManyCommands);
        }
        match self.settings.login_deadline {
            Some(deadline) if Instant::now() >= deadline => Some(End::LoginTimeout),
            _ => None,
        }
    }

    /// Runs `f` on the open maildrop. Outside TRANSACTION (which [`allowed`] refuses before
    /// dispatch) the reply is the wrong-state `-ERR`.
    fn with_maildrop<W: Write>(
        &mut self,
        out: &mut Output<W>,
        f: impl FnOnce(&mut Maildrop, &mut Output<W>) -> io::Result<()>,
    ) -> io::Result<Flow> {
        match &mut self.state {
            State::Transaction(md) => f(md, out)?,
            _ => out.send(&Response::WrongState)?,
        }
        Ok(Flow::Go)
    }
}

/// The reply to a message number that cannot be used.
fn refused(r: Refused) -> Response<'static> {
    match r {
        Refused::NoSuchMessage => Response::NoSuchMessage,
        Refused::Deleted => Response::AlreadyDeleted,
    }
}

/// A client-supplied string made safe for a log line: printable ASCII but space and `\`
/// kept, everything else escaped, at most 64 characters shown.
pub fn sanitize(s: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() && c != '\\' {
            out.push(c);
        } else {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildir::import::UidlCompat;
    use std::cell::RefCell;
    use std::path::Path;
    use std::rc::Rc;
    use std::time::Instant;

    /// Accepts alice with password "open sesame" (USER/PASS) or the APOP digest of it.
    struct FakeAuth {
        maildir: PathBuf,
        seen: Rc<RefCell<Vec<String>>>,
    }

    impl Authenticator for FakeAuth {
        fn authenticate(&mut self, c: &Credentials) -> Result<Granted, Denied> {
            self.seen.borrow_mut().push(c.login().to_string());
            let ok = match c {
                Credentials::Plain { login, password } => {
                    *login == "alice" && *password == b"open sesame"
                }
                Credentials::Apop {
                    login,
                    timestamp,
                    digest,
                } => {
                    *login == "alice"
                        && crate::auth::apop::verify(timestamp.as_bytes(), b"open sesame", digest)
                }
            };
            if ok {
                Ok(Granted::Maildir(self.maildir.clone()))
            } else {
                Err(Denied::Wrong("bad password".into()))
            }
        }
    }

    const TS: &str = "<42.1700000000123456789@test.example>";

    fn settings(plaintext: bool) -> Settings {
        Settings {
            plaintext,
            plaintext_over_tls: plaintext,
            tls: Tls::Off,
            sasl: Mechanism::ALL.to_vec(),
            auth_delay: Duration::ZERO,
            max_auth_failures: 3,
            timestamp: TS.into(),
            max_login_commands: 30,
            login_deadline: None,
            uidl_compat: UidlCompat::None,
        }
    }

    fn maildir(messages: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        for (name, body) in messages {
            std::fs::write(dir.path().join("new").join(name), body).unwrap();
        }
        dir
    }

    struct Run {
        out: String,
        summary: Summary,
        log: Vec<String>,
        seen: Vec<String>,
    }

    fn run_with(dir: &Path, s: Settings, input: impl Read) -> Run {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let auth = FakeAuth {
            maildir: dir.to_path_buf(),
            seen: seen.clone(),
        };
        let mut log = Vec::new();
        let mut out = Vec::new();
        let summary = {
            let mut logger = |event: &str, fields: &str| log.push(format!("{event} {fields}"));
            Session::new(s, auth, &mut logger).run(input, &mut out)
        };
        let seen = seen.borrow().clone();
        Run {
            out: String::from_utf8(out).unwrap(),
            summary,
            log,
            seen,
        }
    }

    fn run(dir: &Path, plaintext: bool, input: &str) -> Run {
        run_with(dir, settings(plaintext), input.as_bytes())
    }

    const M1: &[u8] = b"Subject: one\n\nHello\n.\n..dots\nend";
    const M2: &[u8] = b"Subject: two\r\n\r\nbody\r\n";

    #[test]
    fn full_session_like_the_seed() {
        let dir = maildir(&[("1700000001.1.h", M1), ("1700000002.1.h", M2)]);
        let r = run(
            dir.path(),
            true,
            "USER alice\r\nPASS open sesame\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nRETR 1\r\n\
             TOP 2 0\r\nDELE 1\r\nLIST\r\nRETR 1\r\nDELE 9\r\nQUIT\r\n",
        );
        let want = format!(
            "+OK POP3 server ready {TS}\r\n\
             +OK User name accepted, password please\r\n\
             +OK Mailbox open, 2 messages\r\n\
             +OK 2 61\r\n\
             +OK Mailbox scan listing follows\r\n1 39\r\n2 22\r\n.\r\n\
             +OK 2 22\r\n\
             +OK Unique-ID listing follows\r\n1 1700000001.1.h\r\n2 1700000002.1.h\r\n.\r\n\
             +OK 39 octets\r\nSubject: one\r\n\r\nHello\r\n..\r\n...dots\r\nend\r\n.\r\n\
             +OK Top of message follows\r\nSubject: two\r\n\r\n.\r\n\
             +OK Message deleted\r\n\
             +OK Mailbox scan listing follows\r\n2 22\r\n.\r\n\
             -ERR Message already deleted\r\n\
             -ERR No such message\r\n\
             +OK Sayonara\r\n"
        );
        assert_eq!(r.out, want);
        assert_eq!(r.summary.end, End::Quit);
        assert_eq!(r.summary.deleted, 1);
        assert_eq!(r.summary.retrieved, 2);
        assert_eq!(r.summary.bytes_sent, want.len() as u64);
        assert_eq!(r.log.len(), 1);
        assert!(r.log[0].starts_with("login user=alice method=user result=ok messages=2"));
        let cur: Vec<_> = std::fs::read_dir(dir.path().join("cur")).unwrap().collect();
        assert_eq!(cur.len(), 1);
    }

    #[test]
    fn apop_login_and_capa() {
        let dir = maildir(&[]);
        let digest = crate::auth::apop::digest(TS.as_bytes(), b"open sesame");
        let digest = std::str::from_utf8(&digest).unwrap();
        let r = run(
            dir.path(),
            false,
            &format!("CAPA\r\nAPOP alice {digest}\r\nCAPA\r\nQUIT\r\n"),
        );
        let capa = format!(
            "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
             PIPELINING\r\nEXPIRE NEVER\r\nIMPLEMENTATION apoptools-{}\r\n\
             SASL SCRAM-SHA-256 CRAM-MD5\r\n.\r\n",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(
            r.out,
            format!(
                "+OK POP3 server ready {TS}\r\n{capa}+OK Mailbox open, 0 messages\r\n{capa}\
                 +OK Sayonara\r\n"
            )
        );
        let r = run(dir.path(), true, "CAPA\r\nQUIT\r\n");
        assert!(
            r.out.contains("\r\nUIDL\r\nUSER\r\nRESP-CODES\r\n"),
            "{}",
            r.out
        );
    }

    #[test]
    fn plaintext_refused_when_not_allowed() {
        let dir = maildir(&[]);
        let r = run(
            dir.path(),
            false,
            "USER alice\r\nPASS open sesame\r\nQUIT\r\n",
        );
        assert_eq!(
            r.out,
            format!(
                "+OK POP3 server ready {TS}\r\n\
                 -ERR Plaintext login is not allowed here; use APOP\r\n\
                 -ERR USER first\r\n+OK Sayonara\r\n"
            )
        );
        assert!(r.seen.is_empty(), "the authenticator was never asked");
    }

    #[test]
    fn failures_look_alike_and_close_after_the_limit() {
        let dir = maildir(&[("1700000001.1.h", M1)]);
        let r = run(
            dir.path(),
            true,
            "USER nobody\r\nPASS x\r\nAPOP alice 00000000000000000000000000000000\r\n\
             USER alice\r\nPASS wrong\r\nUSER alice\r\nPASS open sesame\r\n",
        );
        let fail = "-ERR [AUTH] Authentication failed.\r\n";
        let user = "+OK User name accepted, password please\r\n";
        assert_eq!(
            r.out,
            format!("+OK POP3 server ready {TS}\r\n{user}{fail}{fail}{user}{fail}")
        );
        assert_eq!(r.summary.end, End::TooManyFailures);
        assert_eq!(r.seen, ["nobody", "alice", "alice"]);
        assert!(r.log.iter().all(|l| l.contains("result=fail")));
        assert!(!r
            .log
            .iter()
            .any(|l| l.contains("wrong") || l.contains("0000")));
    }

    #[test]
    fn auth_delay_applies_to_failures() {
        let dir = maildir(&[]);
        let mut s = settings(true);
        s.auth_delay = Duration::from_millis(50);
        let started = Instant::now();
        let r = run_with(dir.path(), s, &b"USER bob\r\nPASS x\r\nQUIT\r\n"[..]);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(r.out.contains("[AUTH]"));
    }

    #[test]
    fn wrong_state_and_bad_lines_keep_the_session() {
        let dir = maildir(&[("1700000001.1.h", M2)]);
        let r = run(
            dir.path(),
            true,
            "STAT\r\nRETR 1\r\nPASS x\r\n\0\r\nBOGUS\r\nUSER alice\r\nPASS open sesame\r\n\
             USER alice\r\nAPOP a b\r\nRETR 0\r\nRETR 2\r\nTOP 1\r\nLIST 4294967296\r\nNOOP\r\n\
             RSET\r\nQUIT\r\n",
        );
        let want = format!(
            "+OK POP3 server ready {TS}\r\n\
             -ERR Command not valid in this state\r\n\
             -ERR Command not valid in this state\r\n\
             -ERR USER first\r\n\
             -ERR NUL byte in command\r\n\
             -ERR Unknown command\r\n\
             +OK User name accepted, password please\r\n\
             +OK Mailbox open, 1 messages\r\n\
             -ERR Command not valid in this state\r\n\
             -ERR Command not valid in this state\r\n\
             -ERR No such message\r\n\
             -ERR No such message\r\n\
             -ERR Invalid arguments\r\n\
             -ERR Invalid arguments\r\n\
             +OK\r\n\
             +OK Mailbox reset, 1 messages\r\n\
             +OK Sayonara\r\n"
        );
        assert_eq!(r.out, want);
    }

    #[test]
    fn dropped_connection_and_timeout_delete_nothing() {
        let dir = maildir(&[("1700000001.1.h", M1), ("1700000002.1.h", M2)]);
        let r = run(
            dir.path(),
            true,
            "USER alice\r\nPASS open sesame\r\nDELE 1\r\nDELE 2\r\n",
        );
        assert_eq!(r.summary.end, End::Closed);
        assert_eq!(r.summary.deleted, 0);
        assert_eq!(
            std::fs::read_dir(dir.path().join("cur")).unwrap().count(),
            2
        );

        /// Gives its bytes, then reports the idle timeout.
        struct ThenTimeout(io::Cursor<Vec<u8>>);
        impl Read for ThenTimeout {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::ErrorKind::TimedOut.into()),
                    n => Ok(n),
                }
            }
        }
        let input = ThenTimeout(io::Cursor::new(
            b"USER alice\r\nPASS open sesame\r\nDELE 1\r\n".to_vec(),
        ));
        let r = run_with(dir.path(), settings(true), input);
        assert_eq!(r.summary.end, End::Timeout);
        assert!(r
            .out
            .ends_with("+OK Message deleted\r\n-ERR [SYS/TEMP] Autologout; idle for too long\r\n"));
        assert_eq!(
            std::fs::read_dir(dir.path().join("cur")).unwrap().count(),
            2
        );
    }

    #[test]
    fn second_session_is_in_use_and_removed_message_is_an_error() {
        let dir = maildir(&[("1700000001.1.h", M1), ("1700000002.1.h", M2)]);
        let held = Maildrop::open(dir.path()).unwrap();
        let r = run(
            dir.path(),
            true,
            "USER alice\r\nPASS open sesame\r\nSTAT\r\n",
        );
        assert!(
            r.out
                .ends_with("-ERR [IN-USE] Mailbox is locked by another session\r\n"),
            "{}",
            r.out
        );
        assert_eq!(r.summary.end, End::Mailbox);
        drop(held);

        /// Removes every message file once the client has logged in.
        struct Remover {
            input: io::Cursor<Vec<u8>>,
            cur: PathBuf,
            reads: usize,
        }
        impl Read for Remover {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.reads += 1;
                if self.reads == 2 {
                    for e in std::fs::read_dir(&self.cur)? {
                        std::fs::remove_file(e?.path())?;
                    }
                }
                let max = buf.len().min(30);
                let n = self.input.read(&mut buf[..max])?;
                Ok(n)
            }
        }
        let input = Remover {
            input: io::Cursor::new(
                b"USER alice\r\nPASS open sesame\r\nRETR 1\r\nTOP 2 1\r\nSTAT\r\nQUIT\r\n".to_vec(),
            ),
            cur: dir.path().join("cur"),
            reads: 0,
        };
        let r = run_with(dir.path(), settings(true), input);
        assert!(
            r.out.ends_with(
                "-ERR Message is no longer available\r\n-ERR Message is no longer available\r\n\
                 +OK 2 61\r\n+OK Sayonara\r\n"
            ),
            "{}",
            r.out
        );
    }

    #[test]
    fn replies_are_written_once_per_batch() {
        let dir = maildir(&[("1700000001.1.h", M2)]);
        /// Records the size of every write.
        struct Writes(Rc<RefCell<Vec<usize>>>);
        impl Write for Writes {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.borrow_mut().push(buf.len());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let writes = Rc::new(RefCell::new(Vec::new()));
        let mut log = |_: &str, _: &str| {};
        let auth = FakeAuth {
            maildir: dir.path().to_path_buf(),
            seen: Rc::default(),
        };
        let input =
            &b"USER alice\r\nPASS open sesame\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nQUIT\r\n"[..];
        let summary =
            Session::new(settings(true), auth, &mut log).run(input, Writes(writes.clone()));
        assert_eq!(summary.end, End::Quit);
        // The greeting, then the whole pipelined batch in one write.
        assert_eq!(writes.borrow().len(), 2, "{:?}", writes.borrow());
    }

    /// Hands out its bytes `size` at a time.
    struct Chunks<'b> {
        bytes: &'b [u8],
        size: usize,
    }

    impl Read for Chunks<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.size.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn every_input_chunk_size_gives_the_same_session() {
        let input =
            b"CAPA\nUSER alice\r\nPASS open sesame\r\nLIST\r\nUIDL 1\r\nRETR 1\nTOP 1 1\r\n\
                      DELE 1\r\nBOGUS\r\nSTAT\r\nRSET\r\nQUIT\r\n";
        let mut want: Option<String> = None;
        for size in 1..=input.len() {
            let dir = maildir(&[("1700000001.1.h", M1)]);
            let r = run_with(dir.path(), settings(true), Chunks { bytes: input, size });
            assert_eq!(r.summary.end, End::Quit);
            match &want {
                None => want = Some(r.out),
                Some(w) => assert_eq!(&r.out, w, "chunk size {size}"),
            }
        }
        assert!(want
            .unwrap()
            .ends_with("+OK Mailbox reset, 1 messages\r\n+OK Sayonara\r\n"));
    }

    /// STLS with more commands behind it, in every chunking: the session stops right after
    /// `+OK Begin TLS negotiation`, nothing after the STLS line is answered or kept, and the
    /// same session goes on under TLS with the USER name forgotten and the counts kept.
    #[test]
    fn stls_stops_the_session_and_drops_what_follows_in_every_chunking() {
        let input = b"CAPA\r\nUSER alice\r\nSTLS\r\nCAPA\r\nPASS open sesame\r\nQUIT\r\n";
        let capa_before = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nSTLS\r\nRESP-CODES\r\n";
        for size in 1..=input.len() {
            let dir = maildir(&[("1700000001.1.h", M1)]);
            let mut s = settings(true);
            s.tls = Tls::Offered;
            s.plaintext = false;
            s.max_login_commands = 6;
            let auth = FakeAuth {
                maildir: dir.path().to_path_buf(),
                seen: Rc::new(RefCell::new(Vec::new())),
            };
            let mut log = Vec::new();
            let mut logger = |event: &str, fields: &str| log.push(format!("{event} {fields}"));
            let mut out = Vec::new();
            let session = Session::new(s, auth, &mut logger);
            let (summary, rest) = session.run_until_tls(Chunks { bytes: input, size }, &mut out);
            assert_eq!(summary.end, End::StartTls, "chunk size {size}");
            let out = String::from_utf8(out).unwrap();
            assert!(out.starts_with(&format!("+OK POP3 server ready {TS}\r\n{capa_before}")));
            assert!(
                out.ends_with(
                    "-ERR Plaintext login needs TLS first (STLS); or use APOP\r\n\
                               +OK Begin TLS negotiation\r\n"
                ),
                "chunk size {size}: {out:?}"
            );
            assert_eq!(out.matches("Capability list").count(), 1, "{out:?}");
            // Under TLS: PASS without a USER (the one before STLS is forgotten), then the
            // login budget of 6 runs out: CAPA, USER and STLS before TLS, PASS, CAPA and
            // NOOP under it, and the second NOOP gets the goodbye.
            let under_tls = b"PASS open sesame\r\nCAPA\r\nNOOP\r\nNOOP\r\n";
            let mut out = Vec::new();
            let rest = rest.expect("the session goes on");
            let what = "TLSv1.3/TLS13_AES_128_GCM_SHA256".to_string();
            let (summary, rest) = rest.after_tls(what, &under_tls[..], &mut out);
            assert!(rest.is_none());
            assert_eq!(summary.end, End::TooManyCommands);
            let out = String::from_utf8(out).unwrap();
            assert!(
                out.starts_with(
                    "-ERR USER first\r\n+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\n"
                ),
                "{out:?}"
            );
            assert!(
                out.ends_with("-ERR Too many commands without a login; goodbye\r\n"),
                "{out:?}"
            );
        }
    }

    #[test]
    fn large_message_streams_in_bounded_pieces() {
        // 3 MiB of bare-LF lines, some starting with a dot.
        let mut body = Vec::new();
        for i in 0..100_000 {
            body.extend_from_slice(if i % 7 == 0 {
                b".dotted line here.....\n"
            } else {
                b"an ordinary line, 24 b\n"
            });
        }
        let dir = maildir(&[("1700000001.1.h", &body)]);
        /// Records the largest single write.
        struct Largest(usize, Vec<u8>);
        impl Write for Largest {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0 = self.0.max(buf.len());
                self.1.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Largest(0, Vec::new());
        let mut log = |_: &str, _: &str| {};
        let auth = FakeAuth {
            maildir: dir.path().to_path_buf(),
            seen: Rc::default(),
        };
        let input = &b"USER alice\r\nPASS open sesame\r\nRETR 1\r\nQUIT\r\n"[..];
        let summary = Session::new(settings(true), auth, &mut log).run(input, &mut out);
        assert_eq!(summary.end, End::Quit);
        assert!(out.0 <= 3 * maildir::CHUNK, "a write of {} bytes", out.0);
        let text = out.1;
        let start = text.windows(8).position(|w| w == b"octets\r\n").unwrap() + 8;
        let end = text.len() - b".\r\n+OK Sayonara\r\n".len();
        let mut unstuffed = Vec::new();
        for line in text[start..end].split_inclusive(|&b| b == b'\n') {
            unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        let want: Vec<u8> = body
            .split_inclusive(|&b| b == b'\n')
            .flat_map(|l| [&l[..l.len() - 1], b"\r\n"].concat())
            .collect();
        assert_eq!(unstuffed.len(), want.len());
        assert!(unstuffed == want);
        let size_line = format!("+OK {} octets\r\n", want.len());
        assert!(text
            .windows(size_line.len())
            .any(|w| w == size_line.as_bytes()));
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_client_input_never_panics_or_deletes_without_quit() {
        let words: &[&[u8]] = &[
            b"USER alice",
            b"PASS open sesame",
            b"PASS nope",
            b"APOP alice x",
            b"STAT",
            b"LIST",
            b"LIST ",
            b"RETR ",
            b"DELE ",
            b"TOP ",
            b"UIDL",
            b"UIDL ",
            b"NOOP",
            b"RSET",
            b"CAPA",
            b"QUIT",
            b"",
            b"\0",
            b"\xff\xfe",
            b".",
            b"retr 1",
            b"top 1 99999999999",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut logged_in, mut deleted) = (0, 0);
        for round in 0..300 {
            let dir = maildir(&[("1700000001.1.h", M1), ("1700000002.1.h", M2)]);
            let mut input = Vec::new();
            if rng.below(2) == 0 {
                input.extend_from_slice(b"USER alice\r\nPASS open sesame\r\n");
            }
            for _ in 0..rng.below(20) {
                match rng.below(10) {
                    0 => input.extend((0..rng.below(600)).map(|_| rng.next() as u8)),
                    1 => input.extend(std::iter::repeat_n(b'A', rng.below(400) as usize)),
                    _ => {
                        let w = words[rng.below(words.len() as u64) as usize];
                        input.extend_from_slice(w);
                        if w.ends_with(b" ") {
                            let n =
                                [0, 1, 2, 3, u64::from(u32::MAX), u64::MAX][rng.below(6) as usize];
                            input.extend_from_slice(n.to_string().as_bytes());
                        }
                    }
                }
                input.extend_from_slice(if rng.below(2) == 0 { b"\r\n" } else { b"\n" });
            }
            let size = 1 + rng.below(64) as usize;
            let r = run_with(
                dir.path(),
                settings(true),
                Chunks {
                    bytes: &input,
                    size,
                },
            );
            for line in r.out.split("\r\n").filter(|l| l.starts_with(['+', '-'])) {
                assert!(
                    line.starts_with("+OK") || line.starts_with("-ERR"),
                    "round {round}: {line:?}"
                );
            }
            let left = std::fs::read_dir(dir.path().join("cur")).unwrap().count()
                + std::fs::read_dir(dir.path().join("new")).unwrap().count();
            if r.summary.end != End::Quit {
                assert_eq!(left, 2, "round {round}: deleted without QUIT");
            }
            assert_eq!(left + r.summary.deleted, 2, "round {round}");
            logged_in += usize::from(r.summary.user.is_some());
            deleted += usize::from(r.summary.deleted > 0);
        }
        // The generator reaches the interesting states.
        assert!(
            logged_in > 10 && deleted > 0,
            "{logged_in} logins, {deleted} with deletions"
        );
    }

    #[test]
    fn allowed_table() {
        use crate::pop3::wire::parse_line;
        let dir = maildir(&[]);
        let open = || State::Transaction(Box::new(Maildrop::open(dir.path()).unwrap()));
        let fresh = State::Authorization { user: None };
        let named = State::Authorization {
            user: Some("u".into()),
        };
        // command, then allowed in: fresh AUTHORIZATION, after USER, TRANSACTION, UPDATE.
        let table: [(&[u8], [bool; 4]); 13] = [
            (b"USER u", [true, true, false, false]),
            (b"PASS p", [false, true, false, false]),
            (b"APOP u d", [true, true, false, false]),
            (b"QUIT", [true, true, true, false]),
            (b"CAPA", [true, true, true, false]),
            (b"STAT", [false, false, true, false]),
            (b"LIST", [false, false, true, false]),
            (b"RETR 1", [false, false, true, false]),
            (b"DELE 1", [false, false, true, false]),
            (b"NOOP", [false, false, true, false]),
            (b"RSET", [false, false, true, false]),
            (b"TOP 1 1", [false, false, true, false]),
            (b"UIDL", [false, false, true, false]),
        ];
        for (line, want) in table {
            let c = parse_line(line).unwrap();
            let got = [
                allowed(&fresh, &c),
                allowed(&named, &c),
                {
                    let t = open();
                    allowed(&t, &c)
                },
                allowed(&State::Update, &c),
            ];
            assert_eq!(got, want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn sanitize_escapes_and_caps() {
        assert_eq!(sanitize("alice"), "alice");
        assert_eq!(sanitize("a b\n\x1b\\é"), "a\\x20b\\x0a\\x1b\\x5c\\xc3\\xa9");
        assert_eq!(sanitize(""), "-");
        let long = sanitize(&"x".repeat(500));
        assert_eq!(long.len(), 67);
        assert!(long.ends_with("..."));
    }
}
