//! login: the LOGIN mechanism (draft-murchison-sasl-login-00), server side.
//!
//! Guarantees: the user name, then the password, each prompted for (`Username:`,
//! `Password:`) unless the initial response already gave the user name; both 1 to 255 bytes
//! without NUL, the name UTF-8. The account is looked up only once both are in, so the
//! caller holds a secret for no client round trip; the password is a
//! [`crate::store::Secret`] until `provide` compares it in constant time.

use super::{check_login, check_password, Claim, Event, Next};

const USERNAME: &[u8] = b"Username:";
const PASSWORD: &[u8] = b"Password:";

/// LOGIN's states.
pub(super) enum Login {
    Ready,
    /// `Username:` was sent.
    AwaitingUsername,
    /// `Password:` was sent for this user name.
    AwaitingPassword(Username),
    /// Both are in: the account's secret comes next.
    AwaitingSecret(Claim),
}

/// A user name that passed [`check_login`].
pub(super) struct Username(String);

impl Login {
    pub(super) fn new() -> Login {
        Login::Ready
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Login::Ready => "start",
            Login::AwaitingUsername => "the user name",
            Login::AwaitingPassword(_) => "the password",
            Login::AwaitingSecret(_) => "the account's secret",
        }
    }

    pub(super) fn on(self, event: Event) -> Next<Login> {
        match (self, event) {
            (Login::Ready, Event::Start(None)) => {
                Next::Challenge(Login::AwaitingUsername, USERNAME.to_vec())
            }
            (Login::Ready, Event::Start(Some(name)))
            | (Login::AwaitingUsername, Event::Respond(name)) => match check_login(name) {
                Ok(login) => {
                    Next::Challenge(Login::AwaitingPassword(Username(login)), PASSWORD.to_vec())
                }
                Err(reason) => Next::failure(reason),
            },
            (Login::AwaitingPassword(Username(login)), Event::Respond(password)) => {
                match check_password(password) {
                    Ok(password) => Next::Lookup(
                        Login::AwaitingSecret(Claim {
                            login: login.clone(),
                            password,
                        }),
                        login,
                    ),
                    Err(reason) => Next::failure(reason),
                }
            }
            (Login::AwaitingSecret(claim), Event::Provide(credential)) => claim.verify(credential),
            (state, _) => Next::out_of_order(state.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Context, Credential, Exchange, Mechanism, Step};

    fn exchange() -> Exchange {
        Exchange::new(
            Mechanism::Login,
            Context {
                cram_challenge: String::new(),
                server_nonce: String::new(),
                tls: None,
            },
        )
    }

    #[test]
    fn prompts_then_verdict() {
        let mut x = exchange();
        assert_eq!(x.start(None), Step::Challenge(b"Username:".to_vec()));
        assert_eq!(x.respond(b"tim"), Step::Challenge(b"Password:".to_vec()));
        assert_eq!(
            x.respond(b"tanstaaftanstaaf"),
            Step::Lookup {
                login: "tim".into()
            }
        );
        assert_eq!(
            x.provide(Credential::Secret(b"tanstaaftanstaaf")),
            Step::Success {
                login: "tim".into()
            }
        );
        assert!(matches!(x.respond(b""), Step::Failure(_)));
    }

    #[test]
    fn initial_response_is_the_user_name() {
        let mut x = exchange();
        assert_eq!(
            x.start(Some(b"tim")),
            Step::Challenge(b"Password:".to_vec())
        );
        assert!(matches!(
            x.respond(b"tanstaaftanstaaf"),
            Step::Lookup { .. }
        ));
        assert!(matches!(
            x.provide(Credential::Secret(b"tanstaaftanstaaF")),
            Step::Failure(_)
        ));
        // "=": an empty user name.
        let mut x = exchange();
        assert!(matches!(x.start(Some(b"")), Step::Failure(_)));
    }

    #[test]
    fn refusals() {
        let long = [b'a'; 256];
        for name in [&b""[..], b"t\0m", b"t\xffm", &long] {
            let mut x = exchange();
            x.start(None);
            assert!(matches!(x.respond(name), Step::Failure(_)), "{name:?}");
        }
        for password in [&b""[..], b"p\0w", &long] {
            let mut x = exchange();
            x.start(Some(b"tim"));
            assert!(
                matches!(x.respond(password), Step::Failure(_)),
                "{password:?}"
            );
        }
        for credential in [
            Credential::Absent {
                salt: b"s",
                iterations: 4096,
            },
            Credential::Scram(&super::super::ScramKeys::derive(b"pw", b"s", 1)),
        ] {
            let mut x = exchange();
            x.start(Some(b"tim"));
            x.respond(b"pw");
            assert!(matches!(x.provide(credential), Step::Failure(_)));
        }
    }
}
