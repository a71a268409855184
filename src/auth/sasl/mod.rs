//! sasl: the server side of the SASL mechanisms AUTH offers (RFC 5034), as pure state machines.
//!
//! Guarantees:
//! - No I/O, no clock, no randomness: an [`Exchange`] is fed the client's decoded messages and
//!   the account's credentials and yields one [`Step`] per call. The caller supplies the
//!   CRAM-MD5 challenge and the SCRAM server nonce in the [`Context`], so recorded exchanges
//!   (RFC 2195, RFC 4616, RFC 7677 §3) replay byte for byte in the tests.
//! - Never a panic, whatever the bytes or the order of the calls: a call out of order, a
//!   client message longer than [`MAX_MESSAGE`] bytes or anything malformed is a
//!   [`Step::Failure`], and after a `Success` or a `Failure` every call is a `Failure`.
//! - [`Step::Success`] only after the client proved it knows the account's secret: passwords
//!   and digests are compared in constant time ([`crate::auth::apop::constant_time_eq`]);
//!   SCRAM proofs are checked as RFC 5802 §3 says, and an [`Credential::Absent`] account
//!   goes through the same steps as a real one and fails only at the client's proof.
//! - Every secret the machine holds (a PLAIN or LOGIN password, SCRAM keys) is wiped from
//!   memory when dropped; no `Debug` output and no failure reason ever contains a secret or
//!   the client's bytes (reasons are fixed texts, for the log only).
//!
//! One file per mechanism (`plain`, `login`, `cram`, `scram`, with the GS2 header of SCRAM in
//! `gs2`); each is an enum whose variants are the states, each holding what that state needs,
//! and one transition function `on(self, Event) -> Next<Self>` consuming the state.
//!
//! Strings are compared as bytes: no SASLprep (RFC 4013) is applied to user names or
//! passwords, so a password works exactly as stored, whatever its Unicode form.

// Until ipop3d's back drives exchanges (being written alongside), only the session's CAPA and
// AUTH parsing and the fuzz target reach this module; drop this line once the back does.

mod cram;
mod gs2;
mod login;
mod plain;
mod scram;

pub use scram::ScramKeys;

use crate::auth::apop::constant_time_eq;
use crate::store::Secret;

/// The PBKDF2 iteration count of every [`ScramKeys`] the tools write (RFC 7677 §4's minimum).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// The longest client message (decoded) any mechanism accepts.
pub const MAX_MESSAGE: usize = 1024;

/// The longest user name and password, in bytes (RFC 4616 §2's limit for PLAIN, applied to all).
pub const MAX_FIELD: usize = 255;

/// A SASL mechanism the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Login,
    CramMd5,
    ScramSha256,
    ScramSha256Plus,
}

impl Mechanism {
    /// Every mechanism, strongest first: the order CAPA's `SASL` line and a bare `AUTH` list
    /// them (clients that take the first one they know get the best): SCRAM-SHA-256-PLUS,
    /// SCRAM-SHA-256, CRAM-MD5, PLAIN, LOGIN.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha256,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
    ];

    /// The registered name (RFC 4422 §3.1), as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
        }
    }

    /// The mechanism a client named, in any letter case.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// Whether the password crosses the wire as it is (PLAIN, LOGIN): offered only where the
    /// server's plaintext rule allows USER/PASS.
    pub fn is_plaintext(self) -> bool {
        matches!(self, Mechanism::Plain | Mechanism::Login)
    }

    /// Whether the mechanism binds to the TLS channel, so exists only over TLS.
    pub fn needs_tls(self) -> bool {
        self == Mechanism::ScramSha256Plus
    }

    /// The name in log lines (`method=...`): lowercase.
    pub fn log_name(self) -> &'static str {
        match self {
            Mechanism::Plain => "plain",
            Mechanism::Login => "login",
            Mechanism::CramMd5 => "cram-md5",
            Mechanism::ScramSha256 => "scram-sha-256",
            Mechanism::ScramSha256Plus => "scram-sha-256-plus",
        }
    }
}

/// What the connection can bind to (SCRAM-SHA-256-PLUS, RFC 5929 / RFC 9266).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelBinding {
    /// tls-server-end-point: the hash of the server's certificate as RFC 5929 §4.1 says
    /// (computed by the caller).
    pub server_end_point: Option<Vec<u8>>,
    /// tls-exporter: 32 bytes exported with label "EXPORTER-Channel-Binding", empty context;
    /// TLS 1.3 only (caller provides or None).
    pub exporter: Option<Vec<u8>>,
}

impl ChannelBinding {
    /// Whether SCRAM-SHA-256-PLUS can run: at least one binding type is available. Where it
    /// is, a SCRAM-SHA-256 client saying `y` (it could bind but thinks the server cannot)
    /// is refused as a downgrade.
    pub fn any(&self) -> bool {
        self.server_end_point.is_some() || self.exporter.is_some()
    }

    /// The binding data for a channel binding type name (RFC 5056 names are case-sensitive).
    fn data(&self, name: &str) -> Option<&[u8]> {
        match name {
            "tls-server-end-point" => self.server_end_point.as_deref(),
            "tls-exporter" => self.exporter.as_deref(),
            _ => None,
        }
    }
}

/// What an exchange is given when it starts.
#[derive(Debug, Clone)]
pub struct Context {
    /// CRAM-MD5's challenge, e.g. "<1896.697170952@dbc.mtview.ca.us>" (the caller makes it like
    /// the APOP timestamp).
    pub cram_challenge: String,
    /// SCRAM's server nonce part (printable ASCII without ','), injected so tests replay RFC
    /// exchanges byte for byte; the caller makes it random (>= 18 random bytes, base64).
    pub server_nonce: String,
    /// None without TLS; with TLS, what SCRAM-SHA-256-PLUS can bind to.
    pub tls: Option<ChannelBinding>,
}

/// What the caller has for the login the mechanism asked about.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// The account's plaintext-equivalent secret (every record has one; PLAIN, LOGIN, CRAM-MD5
    /// use it). SCRAM refuses it: the caller derives [`ScramKeys`] for a record without them.
    Secret(&'a [u8]),
    /// The account's SCRAM keys (from the store, or derived by the caller for an old record).
    /// PLAIN, LOGIN and CRAM-MD5 refuse them.
    Scram(&'a ScramKeys),
    /// No usable account (unknown, disabled, ...): SCRAM goes on with this salt and count so
    /// the client cannot tell, and fails at the end; the others fail at once.
    Absent { salt: &'a [u8], iterations: u32 },
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Secret(..)"),
            Credential::Scram(keys) => f.debug_tuple("Scram").field(keys).finish(),
            Credential::Absent { iterations, .. } => f
                .debug_struct("Absent")
                .field("iterations", iterations)
                .finish_non_exhaustive(),
        }
    }
}

/// One step of an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge to the client (raw bytes; the session base64-encodes it), then call
    /// `respond` with its answer.
    Challenge(Vec<u8>),
    /// The mechanism knows the login now and needs its credentials: call `provide`.
    /// For SCRAM, `login` is the SCRAM username unescaped (=2C → ',', =3D → '=').
    Lookup { login: String },
    /// The login is proven. (For SCRAM this comes only after the server-final message was sent
    /// as a Challenge and the client answered it with an empty response, as RFC 5034 §4
    /// requires since POP3 has no success-with-data.)
    Success { login: String },
    /// Failed; the text is for the log only (never a secret or the client's bytes).
    Failure(String),
}

/// One AUTH exchange: [`Exchange::start`] once, then [`Exchange::respond`] after each
/// `Challenge` and [`Exchange::provide`] after the `Lookup`, until `Success` or `Failure`.
pub struct Exchange {
    mechanism: Mechanism,
    state: State,
}

/// The exchange's state: the mechanism's own, or finished.
enum State {
    Plain(plain::Plain),
    Login(login::Login),
    CramMd5(cram::CramMd5),
    Scram(scram::Scram),
    Finished,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Plain(m) => m.name(),
            State::Login(m) => m.name(),
            State::CramMd5(m) => m.name(),
            State::Scram(m) => m.name(),
            State::Finished => "finished",
        }
    }
}

/// What the caller did: the input of every mechanism's transition function.
enum Event<'a> {
    Start(Option<&'a [u8]>),
    Respond(&'a [u8]),
    Provide(Credential<'a>),
}

/// Where a transition leads: on to a new state with a challenge or a lookup, or to the end.
/// (The variants mirror [`Step`], so a mechanism cannot go on after a verdict.)
enum Next<M> {
    Challenge(M, Vec<u8>),
    Lookup(M, String),
    Success(String),
    Failure(String),
}

impl<M> Next<M> {
    fn failure(reason: &str) -> Next<M> {
        Next::Failure(reason.to_owned())
    }

    /// The reply to an event the state does not expect.
    fn out_of_order(state: &str) -> Next<M> {
        Next::Failure(format!("out of order (waiting for {state})"))
    }

    fn into_step(self, wrap: impl FnOnce(M) -> State) -> (Step, State) {
        match self {
            Next::Challenge(m, bytes) => (Step::Challenge(bytes), wrap(m)),
            Next::Lookup(m, login) => (Step::Lookup { login }, wrap(m)),
            Next::Success(login) => (Step::Success { login }, State::Finished),
            Next::Failure(reason) => (Step::Failure(reason), State::Finished),
        }
    }
}

impl Exchange {
    pub fn new(mechanism: Mechanism, context: Context) -> Exchange {
        let state = match mechanism {
            Mechanism::Plain => State::Plain(plain::Plain::new()),
            Mechanism::Login => State::Login(login::Login::new()),
            Mechanism::CramMd5 => State::CramMd5(cram::CramMd5::new(context.cram_challenge)),
            Mechanism::ScramSha256 => State::Scram(scram::Scram::new(false, context)),
            Mechanism::ScramSha256Plus => State::Scram(scram::Scram::new(true, context)),
        };
        Exchange { mechanism, state }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the exchange has ended (after a `Success` or a `Failure`); for the tests and the
    /// fuzz target (the session knows from the steps).
    #[cfg(any(test, feature = "testing"))]
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// `initial`: None when AUTH had no initial response; Some(b"") for "=" (an empty one);
    /// Some(bytes) decoded.
    ///
    /// PLAIN with None answers `Challenge(b"")`; LOGIN answers `Challenge(b"Username:")`
    /// (with an initial response, that is the user name, and the answer is
    /// `Challenge(b"Password:")`); CRAM-MD5 answers `Challenge(cram_challenge)`, and fails on
    /// any initial response (it is a server-first mechanism: RFC 4422 §4 forbids one);
    /// SCRAM with None answers `Challenge(b"")` to get the client-first message.
    pub fn start(&mut self, initial: Option<&[u8]>) -> Step {
        self.advance(Event::Start(initial))
    }

    /// The client's decoded answer to the last `Challenge`.
    pub fn respond(&mut self, response: &[u8]) -> Step {
        self.advance(Event::Respond(response))
    }

    /// The credentials for the login of the last `Lookup`.
    pub fn provide(&mut self, credential: Credential) -> Step {
        self.advance(Event::Provide(credential))
    }

    fn advance(&mut self, event: Event) -> Step {
        let state = std::mem::replace(&mut self.state, State::Finished);
        let client_bytes = match &event {
            Event::Start(Some(bytes)) | Event::Respond(bytes) => bytes.len(),
            Event::Start(None) | Event::Provide(_) => 0,
        };
        if client_bytes > MAX_MESSAGE {
            return Step::Failure(format!("client message longer than {MAX_MESSAGE} bytes"));
        }
        let (step, next) = match state {
            State::Plain(m) => m.on(event).into_step(State::Plain),
            State::Login(m) => m.on(event).into_step(State::Login),
            State::CramMd5(m) => m.on(event).into_step(State::CramMd5),
            State::Scram(m) => m.on(event).into_step(State::Scram),
            State::Finished => (
                Step::Failure("the exchange has ended".into()),
                State::Finished,
            ),
        };
        self.state = next;
        step
    }
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("mechanism", &self.mechanism)
            .field("state", &self.state.name())
            .finish()
    }
}

/// A user name as PLAIN, LOGIN and CRAM-MD5 take it: 1 to [`MAX_FIELD`] bytes of UTF-8, no NUL.
fn check_login(bytes: &[u8]) -> Result<String, &'static str> {
    if bytes.is_empty() {
        return Err("empty user name");
    }
    if bytes.len() > MAX_FIELD {
        return Err("user name too long");
    }
    if bytes.contains(&0) {
        return Err("NUL in the user name");
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err("user name not UTF-8"),
    }
}

/// A password as PLAIN and LOGIN take it: 1 to [`MAX_FIELD`] bytes, no NUL (any other byte:
/// the store's secrets are bytes, so no UTF-8 check).
fn check_password(bytes: &[u8]) -> Result<Secret, &'static str> {
    if bytes.is_empty() {
        return Err("empty password");
    }
    if bytes.len() > MAX_FIELD {
        return Err("password too long");
    }
    if bytes.contains(&0) {
        return Err("NUL in the password");
    }
    Ok(Secret::new(bytes.to_vec()))
}

/// A login and the password the client sent for it (PLAIN, LOGIN), waiting for the account.
struct Claim {
    login: String,
    password: Secret,
}

impl Claim {
    /// The verdict of a plaintext mechanism once the account's credential is known.
    fn verify<M>(self, credential: Credential) -> Next<M> {
        match credential {
            Credential::Secret(secret) => {
                if constant_time_eq(self.password.as_bytes(), secret) {
                    Next::Success(self.login)
                } else {
                    Next::failure("wrong password")
                }
            }
            Credential::Scram(_) => Next::failure("SCRAM keys given to a plaintext mechanism"),
            Credential::Absent { .. } => Next::failure("no usable account"),
        }
    }
}

#[cfg(test)]
mod tests;
