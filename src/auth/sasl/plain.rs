//! plain: the PLAIN mechanism (RFC 4616), server side.
//!
//! Guarantees: the message is `[authzid] NUL authcid NUL passwd` exactly; the authzid is
//! empty or the authcid itself (no acting as someone else); authcid and passwd are 1 to 255
//! bytes without NUL, the authcid UTF-8. The password is held as a [`crate::store::Secret`]
//! (wiped on drop) only until `provide`, and compared with the account's secret in constant
//! time.

use super::{check_login, check_password, Claim, Event, Next};

/// PLAIN's states.
pub(super) enum Plain {
    /// Not started.
    Ready,
    /// The empty challenge was sent; the message comes next.
    AwaitingMessage,
    /// The message named a login: the account's secret comes next.
    AwaitingSecret(Claim),
}

impl Plain {
    pub(super) fn new() -> Plain {
        Plain::Ready
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Plain::Ready => "start",
            Plain::AwaitingMessage => "the PLAIN message",
            Plain::AwaitingSecret(_) => "the account's secret",
        }
    }

    pub(super) fn on(self, event: Event) -> Next<Plain> {
        match (self, event) {
            // RFC 4422 §5: without an initial response, an empty challenge asks for it.
            (Plain::Ready, Event::Start(None)) => Next::Challenge(Plain::AwaitingMessage, vec![]),
            (Plain::Ready, Event::Start(Some(message)))
            | (Plain::AwaitingMessage, Event::Respond(message)) => match parse(message) {
                Ok(claim) => {
                    let login = claim.login.clone();
                    Next::Lookup(Plain::AwaitingSecret(claim), login)
                }
                Err(reason) => Next::failure(reason),
            },
            (Plain::AwaitingSecret(claim), Event::Provide(credential)) => claim.verify(credential),
            (state, _) => Next::out_of_order(state.name()),
        }
    }
}

/// `[authzid] NUL authcid NUL passwd` (RFC 4616 §2).
fn parse(message: &[u8]) -> Result<Claim, &'static str> {
    let mut fields = message.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err("not authzid NUL authcid NUL passwd");
    };
    let login = check_login(authcid)?;
    // A NUL after the second one lands in the password, which refuses it.
    let password = check_password(passwd)?;
    if !authzid.is_empty() && authzid != authcid {
        return Err("authzid differs from the user name");
    }
    Ok(Claim { login, password })
}

#[cfg(test)]
mod tests {
    use super::super::{Context, Credential, Exchange, Mechanism, Step};

    fn exchange() -> Exchange {
        Exchange::new(
            Mechanism::Plain,
            Context {
                cram_challenge: String::new(),
                server_nonce: String::new(),
                tls: None,
            },
        )
    }

    fn lookup(login: &str) -> Step {
        Step::Lookup {
            login: login.into(),
        }
    }

    fn success(login: &str) -> Step {
        Step::Success {
            login: login.into(),
        }
    }

    #[test]
    fn rfc4616_examples() {
        // §4: "tim" with password "tanstaaftanstaaf", no authzid.
        let mut x = exchange();
        assert_eq!(x.start(Some(b"\0tim\0tanstaaftanstaaf")), lookup("tim"));
        assert_eq!(
            x.provide(Credential::Secret(b"tanstaaftanstaaf")),
            success("tim")
        );
        // §4: Kurt acting as Ursel: we never let one account act as another.
        let mut x = exchange();
        assert_eq!(
            x.start(Some(b"Ursel\0Kurt\0xipj3plmq")),
            Step::Failure("authzid differs from the user name".into())
        );
        assert!(x.is_finished());
    }

    #[test]
    fn without_initial_response_an_empty_challenge() {
        let mut x = exchange();
        assert_eq!(x.start(None), Step::Challenge(vec![]));
        assert_eq!(x.respond(b"tim\0tim\0tanstaaftanstaaf"), lookup("tim"));
        assert_eq!(
            x.provide(Credential::Secret(b"tanstaaftanstaaf")),
            success("tim")
        );
        assert!(matches!(x.respond(b""), Step::Failure(_)));
    }

    #[test]
    fn verdicts() {
        let cases: &[(Credential, bool)] = &[
            (Credential::Secret(b"tanstaaftanstaaf"), true),
            (Credential::Secret(b"tanstaaftanstaaF"), false),
            (Credential::Secret(b"tanstaaftanstaa"), false),
            (Credential::Secret(b"tanstaaftanstaaff"), false),
            (Credential::Secret(b""), false),
            (
                Credential::Absent {
                    salt: b"salt",
                    iterations: 4096,
                },
                false,
            ),
            (
                Credential::Scram(&super::super::ScramKeys::derive(
                    b"tanstaaftanstaaf",
                    b"salt",
                    1,
                )),
                false,
            ),
        ];
        for (credential, ok) in cases {
            let mut x = exchange();
            assert_eq!(x.start(Some(b"\0tim\0tanstaaftanstaaf")), lookup("tim"));
            let step = x.provide(*credential);
            assert_eq!(step == success("tim"), *ok, "{credential:?}: {step:?}");
            if !ok {
                assert!(matches!(step, Step::Failure(_)));
            }
        }
    }

    #[test]
    fn malformed_messages() {
        let long = [b'a'; 256];
        let mut too_long_user = b"\0".to_vec();
        too_long_user.extend_from_slice(&long);
        too_long_user.extend_from_slice(b"\0pw");
        let mut too_long_password = b"\0tim\0".to_vec();
        too_long_password.extend_from_slice(&long);
        let cases: &[&[u8]] = &[
            b"",
            b"tim",
            b"\0tim",
            b"tim\0pw",
            b"\0\0pw",
            b"\0tim\0",
            b"\0tim\0pw\0",
            b"\0tim\0p\0w",
            b"\0t\xffm\0pw",
            b"bob\0tim\0pw",
            b"Tim\0tim\0pw",
            &too_long_user,
            &too_long_password,
        ];
        for &message in cases {
            let mut x = exchange();
            assert!(
                matches!(x.start(Some(message)), Step::Failure(_)),
                "{message:?}"
            );
            let mut x = exchange();
            x.start(None);
            assert!(
                matches!(x.respond(message), Step::Failure(_)),
                "{message:?}"
            );
        }
        // At the limits: 255 bytes each, and a UTF-8 name.
        let mut longest = b"\0".to_vec();
        longest.extend_from_slice(&long[..255]);
        longest.push(0);
        longest.extend_from_slice(&long[..255]);
        let mut x = exchange();
        assert!(matches!(x.start(Some(&longest)), Step::Lookup { .. }));
        let mut x = exchange();
        assert_eq!(x.start(Some("\0jürgen\0pw".as_bytes())), lookup("jürgen"));
        // A password is bytes, not necessarily UTF-8.
        let mut x = exchange();
        assert_eq!(x.start(Some(b"\0tim\0\xff\xfe")), lookup("tim"));
        assert_eq!(x.provide(Credential::Secret(b"\xff\xfe")), success("tim"));
    }
}
