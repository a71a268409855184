//! authorization: CAPA, USER, PASS and APOP, and the login they lead to (RFC 1939 §4, §7).
//!
//! Guarantees: every failed login, whatever the cause, gets the same reply after the same total
//! delay (`auth_delay`, measured from the command), and the reason goes to the log only; after
//! `max_auth_failures` the connection closes. A login the authenticator grants opens the
//! maildrop (as the account) and moves the session to TRANSACTION.

use std::io::{self, Write};
use std::time::Instant;

use crate::error::Error;
use crate::maildir::Maildrop;
use crate::pop3::wire::{Password, Response};

use super::{
    sanitize, Authenticator, Credentials, Denied, End, Flow, Granted, Output, Session, State, Tls,
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
        caps.extend([
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "EXPIRE NEVER",
            implementation,
        ]);
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
            // Where TLS would make it acceptable, the reply says so.
            let reply = if self.settings.tls == Tls::Offered && self.settings.plaintext_over_tls {
                Response::PlaintextNeedsTls
            } else {
                Response::PlaintextDisabled
            };
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
        let who = sanitize(creds.login());
        let method = creds.method();
        let remote = self.auth.logged_elsewhere();
        let granted = match self.auth.authenticate(creds) {
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
        match Maildrop::open(&path) {
            Ok(md) => {
                let (count, _) = md.stat();
                let r = &md.report;
                (self.log)(
                    "login",
                    &format!(
                        "user={who} method={method} result=ok messages={count} moved={} \
                         measured={}{}",
                        r.moved,
                        r.measured,
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
