//! authorization: CAPA, USER, PASS, APOP, STLS and AUTH, and the login they lead to (RFC 1939
//! §4, §7; RFC 2595; RFC 5034).
//!
//! Guarantees: every failed login, whatever the cause or the mechanism (a wrong password, an
//! unknown user, a cancelled or malformed SASL exchange), gets the same reply after the same
//! total delay (`auth_delay`, measured from the client's last line), counts once, and its
//! reason goes to the log only; after `max_auth_failures` the connection closes. A login the
//! authenticator grants opens the maildrop (as the account) and moves the session to
//! TRANSACTION. AUTH offers exactly the mechanisms [`Settings::mechanisms_now`] allows, the
//! same list CAPA's SASL line shows.

use std::io::{self, Write};
use std::time::Instant;

use base64::Engine;

use crate::auth::sasl::Mechanism;
use crate::error::Error;
use crate::maildir::Maildrop;
use crate::pop3::wire::{LineError, Password, Response};

use super::{
    sanitize, Authenticator, Credentials, Denied, End, Flow, Granted, Output, SaslReply, Session,
    Settings, State, Tls,
};

impl<A: Authenticator> Session<'_, A> {
    /// CAPA (RFC 2449), answered in AUTHORIZATION and TRANSACTION alike.
    pub(super) fn capa<W: Write>(&mut self, out: &mut Output<W>) -> io::Result<Flow> {
        out.send(&Response::CapaListing)?;
        let implementation = concat!("IMPLEMENTATION apoptools-", env!("CARGO_PKG_VERSION"));
        let mut caps = vec!["TOP", "UIDL"];
        let authorization = matches!(self.state, State::Authorization { .. });
        if self.settings.tls == Tls::Offered && authorization {
            caps.push("STLS");
        }
        if self.settings.plaintext_allowed() {
            caps.push("USER");
        }
        let sasl = sasl_capability(&self.settings);
        caps.extend([
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "EXPIRE NEVER",
            implementation,
        ]);
        if let Some(line) = &sasl {
            caps.push(line);
        }
        for c in caps {
            out.send(&Response::Capability(c))?;
        }
        out.send(&Response::End)?;
        Ok(Flow::Go)
    }

    /// USER. Where plaintext logins are off it is a failed login like any other (the delay,
    /// one count): a refused command costs the client what it costs the log.
    pub(super) fn user<W: Write>(&mut self, name: String, out: &mut Output<W>) -> io::Result<Flow> {
        if !self.settings.plaintext_allowed() {
            let started = Instant::now();
            self.state = State::Authorization { user: None };
            (self.log)(
                "login",
                &format!(
                    "user={} method=user result=fail reason=\"plaintext not allowed\"{}",
                    sanitize(&name),
                    self.settings.tls_field()
                ),
            );
            let reply = plaintext_refusal(&self.settings);
            return self.failed(started, reply, out);
        } else {
            self.state = State::Authorization { user: Some(name) };
            out.send(&Response::UserAccepted)?;
        }
        Ok(Flow::Go)
    }

    /// PASS; the password is wiped when it goes out of scope here.
    pub(super) fn pass<W: Write>(
        &mut self,
        password: Password,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        let user = match std::mem::replace(&mut self.state, State::Authorization { user: None }) {
            State::Authorization { user: Some(u) } => u,
            other => {
                self.state = other;
                out.send(&Response::NeedUser)?;
                return Ok(Flow::Go);
            }
        };
        let creds = Credentials::Plain {
            login: &user,
            password: password.as_bytes(),
        };
        self.login(&creds, out)
    }

    /// STLS (RFC 2595 §4): `+OK` where TLS is offered and not yet active, and the session
    /// stops for the handshake; `-ERR` otherwise.
    pub(super) fn stls<W: Write>(&mut self, out: &mut Output<W>) -> io::Result<Flow> {
        if self.settings.tls != Tls::Offered {
            out.send(&Response::TlsUnavailable)?;
            return Ok(Flow::Go);
        }
        self.state = State::Authorization { user: None };
        out.send(&Response::BeginTls)?;
        Ok(Flow::Stop(End::StartTls))
    }

    pub(super) fn apop<W: Write>(
        &mut self,
        name: &str,
        digest: &str,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        let ts = self.settings.timestamp.clone();
        let creds = Credentials::Apop {
            login: name,
            timestamp: &ts,
            digest: digest.as_bytes(),
        };
        self.login(&creds, out)
    }

    /// A failed login: the reply after the delay (counted from `started`), one failure
    /// counted, and the end of the session at `max_auth_failures`.
    fn failed<W: Write>(
        &mut self,
        started: Instant,
        reply: Response,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        self.failures += 1;
        std::thread::sleep(self.settings.auth_delay.saturating_sub(started.elapsed()));
        out.send(&reply)?;
        if self.failures >= self.settings.max_auth_failures {
            return Ok(Flow::Stop(End::TooManyFailures));
        }
        Ok(Flow::Go)
    }

    fn login<W: Write>(&mut self, creds: &Credentials, out: &mut Output<W>) -> io::Result<Flow> {
        let started = Instant::now();
        let outcome = self.auth.authenticate(creds);
        self.finish_login(creds.login(), creds.method(), outcome, started, out)
    }

    /// `AUTH` alone: the mechanisms on offer now, one per line (Outlook's discovery).
    pub(super) fn auth_list<W: Write>(&mut self, out: &mut Output<W>) -> io::Result<Flow> {
        out.send(&Response::AuthListing)?;
        for m in self.settings.mechanisms_now() {
            out.send(&Response::Capability(m.name()))?;
        }
        out.send(&Response::End)?;
        Ok(Flow::Go)
    }

    /// `AUTH mechanism [initial-response]` (RFC 5034).
    pub(super) fn auth<W: Write>(
        &mut self,
        name: &str,
        initial: Option<Password>,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        let started = Instant::now();
        self.state = State::Authorization { user: None };
        let offered = Mechanism::from_name(name).filter(|m| self.settings.sasl.contains(m));
        let Some(mechanism) = offered.filter(|m| !m.needs_tls() || self.tls_active()) else {
            out.send(&Response::UnknownMechanism)?;
            return Ok(Flow::Go);
        };
        let method = mechanism.log_name();
        if mechanism.is_plaintext() && !self.settings.plaintext_allowed() {
            let tls = self.settings.tls_field();
            (self.log)(
                "login",
                &format!(
                    "user=- method={method} result=fail reason=\"plaintext not allowed\"{tls}"
                ),
            );
            let reply = plaintext_refusal(&self.settings);
            return self.failed(started, reply, out);
        }
        let reply = match initial.as_ref().map(decode) {
            None => self.auth.sasl_start(mechanism, None),
            Some(Ok(bytes)) => self.auth.sasl_start(mechanism, Some(bytes.as_bytes())),
            // The exchange is started and ended at once, so the failure is the
            // authenticator's (the back's, in the split) to delay, count and log.
            Some(Err(())) => match self.auth.sasl_start(mechanism, None) {
                SaslReply::Challenge(_) => self.auth.sasl_abort("initial response not base64"),
                done => done,
            },
        };
        self.sasl_reply(mechanism, reply, started, out)
    }

    /// A line during a SASL exchange: `*` cancels; anything else is base64 for the mechanism.
    pub(super) fn sasl_line<W: Write>(
        &mut self,
        line: Result<Password, LineError>,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        let started = Instant::now();
        let Some(mechanism) = self.sasl else {
            out.send(&Response::WrongState)?;
            return Ok(Flow::Go);
        };
        let reply = match line {
            Ok(l) if l.as_bytes() == b"*" => self.auth.sasl_abort("cancelled by the client"),
            Ok(l) => match decode(&l) {
                Ok(bytes) => self.auth.sasl_respond(bytes.as_bytes()),
                Err(()) => self.auth.sasl_abort("response not base64"),
            },
            Err(_) => self.auth.sasl_abort("response too long"),
        };
        self.sasl_reply(mechanism, reply, started, out)
    }

    /// A challenge to send, or the end of the exchange as a login's outcome.
    fn sasl_reply<W: Write>(
        &mut self,
        mechanism: Mechanism,
        reply: SaslReply,
        started: Instant,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        match reply {
            SaslReply::Challenge(bytes) => {
                self.sasl = Some(mechanism);
                let text = base64::engine::general_purpose::STANDARD.encode(bytes);
                out.send(&Response::Challenge(&text))?;
                Ok(Flow::Go)
            }
            SaslReply::Done { login, outcome } => {
                self.sasl = None;
                self.finish_login(&login, mechanism.log_name(), outcome, started, out)
            }
        }
    }

    fn tls_active(&self) -> bool {
        matches!(self.settings.tls, Tls::Active(_))
    }

    /// The reply to a login's outcome: the failure reply after the delay, or TRANSACTION.
    fn finish_login<W: Write>(
        &mut self,
        login: &str,
        method: &'static str,
        outcome: Result<Granted, Denied>,
        started: Instant,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        let who = if login.is_empty() {
            "-".to_string()
        } else {
            sanitize(login)
        };
        let remote = self.auth.logged_elsewhere();
        let granted = match outcome {
            Ok(granted) => granted,
            Err(Denied::Wrong(reason)) => {
                if !remote {
                    (self.log)(
                        "login",
                        &format!(
                            "user={who} method={method} result=fail reason={reason:?}{}",
                            self.settings.tls_field()
                        ),
                    );
                }
                return self.failed(started, Response::AuthFailed, out);
            }
            Err(Denied::Outage(reason)) => {
                if !remote {
                    (self.log)(
                        "login",
                        &format!("user={who} method={method} result=unavailable reason={reason:?}"),
                    );
                }
                std::thread::sleep(self.settings.auth_delay.saturating_sub(started.elapsed()));
                out.send(&Response::AuthUnavailable)?;
                return Ok(Flow::Go);
            }
            Err(Denied::Fatal(reason)) => {
                if !remote {
                    (self.log)(
                        "fatal",
                        &format!("user={who} method={method} reason={reason:?}"),
                    );
                }
                out.send(&Response::Unavailable)?;
                return Ok(Flow::Stop(End::Fatal));
            }
        };
        self.granted(granted, who, method, out)
    }

    /// A granted login: open the Maildir (as the account) and enter TRANSACTION.
    pub(super) fn granted<W: Write>(
        &mut self,
        granted: Granted,
        who: String,
        method: &str,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        let path = match granted {
            Granted::Maildir(path) => path,
            Granted::Elsewhere => return Ok(Flow::Stop(End::HandedOver)),
            Granted::Unavailable(reason) => {
                self.summary.user = Some(who.clone());
                (self.log)(
                    "login",
                    &format!(
                        "user={who} method={method} result=fail mailbox={reason:?}{}",
                        self.settings.tls_field()
                    ),
                );
                out.send(&Response::MailboxUnavailable)?;
                return Ok(Flow::Stop(End::Mailbox));
            }
        };
        self.summary.user = Some(who.clone());
        match Maildrop::open_compat(&path, self.settings.uidl_compat) {
            Ok(md) => {
                let (count, _) = md.stat();
                let r = &md.report;
                (self.log)(
                    "login",
                    &format!(
                        "user={who} method={method} result=ok messages={count} moved={} \
                         measured={}{}{}",
                        r.moved,
                        r.measured,
                        match r.imported {
                            0 => String::new(),
                            n => format!(" imported={n}"),
                        },
                        self.settings.tls_field()
                    ),
                );
                self.summary.messages = count;
                out.send(&Response::MailboxOpen(count))?;
                self.state = State::Transaction(Box::new(md));
                Ok(Flow::Go)
            }
            Err(e) => {
                let (reply, reason) = match &e {
                    Error::Busy(_) => (Response::InUse, "in-use".to_string()),
                    other => (Response::MailboxUnavailable, other.to_string()),
                };
                (self.log)(
                    "login",
                    &format!(
                        "user={who} method={method} result=fail mailbox={reason:?}{}",
                        self.settings.tls_field()
                    ),
                );
                out.send(&reply)?;
                Ok(Flow::Stop(End::Mailbox))
            }
        }
    }
}

/// CAPA's `SASL` line (RFC 2449 §6.3), or none when no mechanism is on offer now.
fn sasl_capability(settings: &Settings) -> Option<String> {
    let names: Vec<&str> = settings
        .mechanisms_now()
        .into_iter()
        .map(Mechanism::name)
        .collect();
    (!names.is_empty()).then(|| format!("SASL {}", names.join(" ")))
}

/// The reply to USER or AUTH PLAIN/LOGIN where the plaintext rule forbids them: where TLS
/// would make them acceptable, the reply says so.
fn plaintext_refusal(settings: &Settings) -> Response<'static> {
    if settings.tls == Tls::Offered && settings.plaintext_over_tls {
        Response::PlaintextNeedsTls
    } else {
        Response::PlaintextDisabled
    }
}

/// Strict base64 (RFC 4648 with padding), as RFC 5034 requires; `=` alone is the empty
/// initial response (RFC 5034 §4) and an empty line the empty response.
fn decode(text: &Password) -> Result<Password, ()> {
    let bytes = text.as_bytes();
    if bytes == b"=" {
        return Ok(Password::new(Vec::new()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(bytes)
        .map(Password::new)
        .map_err(|_| ())
}
