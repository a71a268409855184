//! cram: the CRAM-MD5 mechanism (RFC 2195), server side.
//!
//! Guarantees: the challenge is the caller's (like the APOP timestamp); the client's answer is
//! `user SP digest`, split at the last space, with exactly 32 hex digits (either case) that
//! must equal HMAC-MD5(key = the account's secret, the challenge), compared in constant time.
//! An initial response is refused: CRAM-MD5 is server-first, and RFC 4422 §4 says a client
//! must not send one for such a mechanism.

use hmac::{Hmac, Mac};
use md5::Md5;

use super::{check_login, Credential, Event, Next};
use crate::auth::apop::constant_time_eq;

/// CRAM-MD5's states.
pub(super) enum CramMd5 {
    Ready(Challenge),
    /// The challenge was sent; `user SP digest` comes next.
    AwaitingAnswer(Challenge),
    /// The answer named a login: the account's secret comes next.
    AwaitingSecret(Answer),
}

/// The challenge, as sent.
pub(super) struct Challenge(String);

/// What the client answered to the challenge.
pub(super) struct Answer {
    challenge: Challenge,
    login: String,
    /// The client's digest, lowercased.
    digest: [u8; 32],
}

impl CramMd5 {
    pub(super) fn new(challenge: String) -> CramMd5 {
        CramMd5::Ready(Challenge(challenge))
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            CramMd5::Ready(_) => "start",
            CramMd5::AwaitingAnswer(_) => "the CRAM-MD5 answer",
            CramMd5::AwaitingSecret(_) => "the account's secret",
        }
    }

    pub(super) fn on(self, event: Event) -> Next<CramMd5> {
        match (self, event) {
            (CramMd5::Ready(challenge), Event::Start(None)) => {
                if challenge.0.is_empty() {
                    return Next::failure("no CRAM-MD5 challenge (server configuration)");
                }
                let bytes = challenge.0.as_bytes().to_vec();
                Next::Challenge(CramMd5::AwaitingAnswer(challenge), bytes)
            }
            (CramMd5::Ready(_), Event::Start(Some(_))) => {
                Next::failure("initial response to CRAM-MD5 (a server-first mechanism)")
            }
            (CramMd5::AwaitingAnswer(challenge), Event::Respond(answer)) => match parse(answer) {
                Ok((login, digest)) => Next::Lookup(
                    CramMd5::AwaitingSecret(Answer {
                        challenge,
                        login: login.clone(),
                        digest,
                    }),
                    login,
                ),
                Err(reason) => Next::failure(reason),
            },
            (CramMd5::AwaitingSecret(answer), Event::Provide(credential)) => {
                answer.verify(credential)
            }
            (state, _) => Next::out_of_order(state.name()),
        }
    }
}

impl Answer {
    fn verify(self, credential: Credential) -> Next<CramMd5> {
        let secret = match credential {
            Credential::Secret(secret) => secret,
            Credential::Scram(_) => return Next::failure("SCRAM keys given to CRAM-MD5"),
            Credential::Absent { .. } => return Next::failure("no usable account"),
        };
        if constant_time_eq(&digest(secret, self.challenge.0.as_bytes()), &self.digest) {
            Next::Success(self.login)
        } else {
            Next::failure("wrong digest")
        }
    }
}

/// Lowercase hex HMAC-MD5(key = `secret`, `challenge`) (RFC 2195 §2).
pub(super) fn digest(secret: &[u8], challenge: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length (RFC 2104 §2 hashes a long one): this cannot fail.
    let mut mac = Hmac::<Md5>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(challenge);
    let sum = mac.finalize().into_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in sum.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

/// `user SP digest`, split at the last space (a user name may hold spaces).
fn parse(answer: &[u8]) -> Result<(String, [u8; 32]), &'static str> {
    let Some(space) = answer.iter().rposition(|&b| b == b' ') else {
        return Err("not user SP digest");
    };
    let (name, hex) = (&answer[..space], &answer[space + 1..]);
    let login = check_login(name)?;
    let Ok(digest) = <[u8; 32]>::try_from(hex) else {
        return Err("digest not 32 hex digits");
    };
    if !digest.iter().all(u8::is_ascii_hexdigit) {
        return Err("digest not 32 hex digits");
    }
    Ok((login, digest.map(|b| b.to_ascii_lowercase())))
}

#[cfg(test)]
mod tests {
    use super::super::{Context, Credential, Exchange, Mechanism, Step};

    const CHALLENGE: &str = "<1896.697170952@postoffice.reston.mci.net>";

    fn exchange() -> Exchange {
        Exchange::new(
            Mechanism::CramMd5,
            Context {
                cram_challenge: CHALLENGE.into(),
                server_nonce: String::new(),
                tls: None,
            },
        )
    }

    fn answer(response: &[u8], secret: &[u8]) -> Step {
        let mut x = exchange();
        assert_eq!(
            x.start(None),
            Step::Challenge(CHALLENGE.as_bytes().to_vec())
        );
        match x.respond(response) {
            Step::Lookup { login } => {
                let step = x.provide(Credential::Secret(secret));
                if let Step::Success { login: proven } = &step {
                    assert_eq!(proven, &login);
                }
                step
            }
            other => other,
        }
    }

    #[test]
    fn rfc2195_example() {
        assert_eq!(
            &super::digest(b"tanstaaftanstaaf", CHALLENGE.as_bytes()),
            b"b913a602c7eda7a495b4e6e7334d3890"
        );
        let tim = Step::Success {
            login: "tim".into(),
        };
        assert_eq!(
            answer(b"tim b913a602c7eda7a495b4e6e7334d3890", b"tanstaaftanstaaf"),
            tim
        );
        // The hex digits in either case.
        assert_eq!(
            answer(b"tim B913A602C7EDA7A495B4E6E7334D3890", b"tanstaaftanstaaf"),
            tim
        );
    }

    #[test]
    fn refusals() {
        let fails = |response: &[u8], secret: &[u8]| {
            let step = answer(response, secret);
            assert!(matches!(step, Step::Failure(_)), "{response:?}: {step:?}");
        };
        fails(b"tim b913a602c7eda7a495b4e6e7334d3890", b"tanstaaftanstaaF");
        fails(b"tim b913a602c7eda7a495b4e6e7334d3891", b"tanstaaftanstaaf");
        fails(b"tim b913a602c7eda7a495b4e6e7334d389", b"tanstaaftanstaaf");
        fails(
            b"tim b913a602c7eda7a495b4e6e7334d38900",
            b"tanstaaftanstaaf",
        );
        fails(b"tim b913a602c7eda7a495b4e6e7334d389g", b"tanstaaftanstaaf");
        fails(b"timb913a602c7eda7a495b4e6e7334d3890", b"tanstaaftanstaaf");
        fails(b" b913a602c7eda7a495b4e6e7334d3890", b"tanstaaftanstaaf");
        fails(
            b"tim b913a602c7eda7a495b4e6e7334d3890 ",
            b"tanstaaftanstaaf",
        );
        fails(b"", b"tanstaaftanstaaf");
        fails(
            b"t\0m b913a602c7eda7a495b4e6e7334d3890",
            b"tanstaaftanstaaf",
        );
        // Any initial response, even an empty one.
        for initial in [&b""[..], b"tim b913a602c7eda7a495b4e6e7334d3890"] {
            let mut x = exchange();
            assert!(matches!(x.start(Some(initial)), Step::Failure(_)));
        }
        // Only the secret will do.
        for credential in [
            Credential::Absent {
                salt: b"s",
                iterations: 4096,
            },
            Credential::Scram(&super::super::ScramKeys::derive(
                b"tanstaaftanstaaf",
                b"s",
                1,
            )),
        ] {
            let mut x = exchange();
            x.start(None);
            x.respond(b"tim b913a602c7eda7a495b4e6e7334d3890");
            assert!(matches!(x.provide(credential), Step::Failure(_)));
        }
        // No challenge configured.
        let mut x = Exchange::new(
            Mechanism::CramMd5,
            Context {
                cram_challenge: String::new(),
                server_nonce: String::new(),
                tls: None,
            },
        );
        assert!(matches!(x.start(None), Step::Failure(_)));
    }

    #[test]
    fn user_names_with_spaces_split_at_the_last() {
        let challenge = CHALLENGE.as_bytes();
        let mut response = b"tim smith ".to_vec();
        response.extend_from_slice(&super::digest(b"pw", challenge));
        assert_eq!(
            answer(&response, b"pw"),
            Step::Success {
                login: "tim smith".into()
            }
        );
        // Two spaces: the name keeps the first (the account lookup decides about it).
        let mut x = exchange();
        x.start(None);
        assert_eq!(
            x.respond(b"tim  b913a602c7eda7a495b4e6e7334d3890"),
            Step::Lookup {
                login: "tim ".into()
            }
        );
    }
}
