//! The SCRAM vectors and tables, every mechanism's out-of-order calls, and a property test over
//! random input. (PLAIN, LOGIN, CRAM-MD5 and the GS2 header have their own tests next to their
//! code.)
//!
//! RFC 5802 §5's example exchange is SCRAM-SHA-1, which the server does not offer: only RFC
//! 7677 §3's SCRAM-SHA-256 exchange is replayed here, byte for byte.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::*;

const RFC7677_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC7677_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

fn context(tls: Option<ChannelBinding>) -> Context {
    Context {
        cram_challenge: "<1896.697170952@postoffice.reston.mci.net>".into(),
        server_nonce: RFC7677_SERVER_NONCE.into(),
        tls,
    }
}

fn end_point() -> Vec<u8> {
    Sha256::digest(b"a certificate").to_vec()
}

fn exporter() -> Vec<u8> {
    (0u8..32).map(|i| i.wrapping_mul(37)).collect()
}

/// TLS with both bindings, or with one of them.
fn tls(server_end_point: bool, exporter_too: bool) -> Option<ChannelBinding> {
    Some(ChannelBinding {
        server_end_point: server_end_point.then(end_point),
        exporter: exporter_too.then(exporter),
    })
}

fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A SCRAM-SHA-256 client written from RFC 5802 §3, independent of the server's code.
struct Client {
    password: Vec<u8>,
    /// The GS2 header as the client sends it.
    header: String,
    /// The binding data it appends to the header in `c=`.
    cbind: Vec<u8>,
    bare: String,
    nonce: String,
}

impl Client {
    fn new(header: &str, cbind: &[u8], user: &str, password: &[u8]) -> Client {
        Client::with_bare(
            header,
            cbind,
            &format!("n={user},r=rOprNGfwEbeRWgbNEkqO"),
            password,
        )
    }

    fn with_bare(header: &str, cbind: &[u8], bare: &str, password: &[u8]) -> Client {
        let nonce = bare
            .split(',')
            .find_map(|f| f.strip_prefix("r="))
            .unwrap_or("")
            .to_owned();
        Client {
            password: password.to_vec(),
            header: header.into(),
            cbind: cbind.to_vec(),
            bare: bare.into(),
            nonce,
        }
    }

    fn first(&self) -> Vec<u8> {
        format!("{}{}", self.header, self.bare).into_bytes()
    }

    /// The `c=` value the client sends.
    fn c(&self) -> String {
        let mut data = self.header.as_bytes().to_vec();
        data.extend_from_slice(&self.cbind);
        STANDARD.encode(data)
    }

    /// The client-final message and the server-final message to expect.
    fn last(&self, server_first: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let r = field(server_first, "r=");
        self.last_with(server_first, &format!("c={},r={r}", self.c()))
    }

    /// The client-final message with `without_proof` as given (the proof computed over it).
    fn last_with(&self, server_first: &[u8], without_proof: &str) -> (Vec<u8>, Vec<u8>) {
        let r = field(server_first, "r=");
        assert!(
            r.starts_with(&self.nonce),
            "the server kept the client nonce"
        );
        assert!(r.len() > self.nonce.len(), "the server added its nonce");
        let salt = STANDARD.decode(field(server_first, "s=")).unwrap();
        let iterations: u32 = field(server_first, "i=").parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(&self.password, &salt, iterations, &mut salted);
        let client_key = hmac256(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac256(&salted, b"Server Key");
        let auth = format!(
            "{},{},{without_proof}",
            self.bare,
            std::str::from_utf8(server_first).unwrap()
        );
        let signature = hmac256(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_final = format!(
            "v={}",
            STANDARD.encode(hmac256(&server_key, auth.as_bytes()))
        );
        (
            format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes(),
            server_final.into_bytes(),
        )
    }
}

/// The value of `name` (as "r=") in a server-first message.
fn field<'a>(message: &'a [u8], name: &str) -> &'a str {
    std::str::from_utf8(message)
        .unwrap()
        .split(',')
        .find_map(|f| f.strip_prefix(name))
        .unwrap()
}

/// What an account gives SCRAM in the tables: "pencil", a short salt and count.
fn keys() -> ScramKeys {
    ScramKeys::derive(b"pencil", b"table salt", 16)
}

/// Runs a whole SCRAM exchange (no initial response) with `client` against `credential`,
/// returning every step, the last one a verdict. A step the client did not expect is kept as
/// it is and ends the run.
fn run(
    mechanism: Mechanism,
    tls: Option<ChannelBinding>,
    client: &Client,
    credential: Credential,
) -> Vec<Step> {
    let mut x = Exchange::new(mechanism, context(tls));
    let mut steps = vec![x.start(None)];
    if steps[0] != Step::Challenge(vec![]) {
        return steps;
    }
    steps.push(x.respond(&client.first()));
    if !matches!(steps[1], Step::Lookup { .. }) {
        return steps;
    }
    let server_first = match x.provide(credential) {
        Step::Challenge(bytes) => bytes,
        other => {
            steps.push(other);
            return steps;
        }
    };
    steps.push(Step::Challenge(server_first.clone()));
    let (last, server_final) = client.last(&server_first);
    match x.respond(&last) {
        Step::Challenge(bytes) => {
            assert_eq!(bytes, server_final, "the server signature");
            steps.push(Step::Challenge(bytes));
            steps.push(x.respond(b""));
        }
        other => steps.push(other),
    }
    assert!(x.is_finished());
    steps
}

fn succeeded(steps: &[Step]) -> bool {
    matches!(steps.last(), Some(Step::Success { .. }))
}

fn failed(steps: &[Step]) -> bool {
    matches!(steps.last(), Some(Step::Failure(_)))
}

#[test]
fn mechanism_names() {
    let table = [
        (
            Mechanism::ScramSha256Plus,
            "SCRAM-SHA-256-PLUS",
            false,
            true,
        ),
        (Mechanism::ScramSha256, "SCRAM-SHA-256", false, false),
        (Mechanism::CramMd5, "CRAM-MD5", false, false),
        (Mechanism::Plain, "PLAIN", true, false),
        (Mechanism::Login, "LOGIN", true, false),
    ];
    assert_eq!(Mechanism::ALL, table.map(|(m, ..)| m));
    for (m, name, plaintext, tls) in table {
        assert_eq!(m.name(), name);
        assert_eq!(m.log_name(), name.to_ascii_lowercase());
        assert_eq!(Mechanism::from_name(name), Some(m));
        assert_eq!(Mechanism::from_name(&name.to_ascii_lowercase()), Some(m));
        assert_eq!(m.is_plaintext(), plaintext);
        assert_eq!(m.needs_tls(), tls);
        assert_eq!(Exchange::new(m, context(None)).mechanism(), m);
    }
    for unknown in [
        "",
        "SCRAM-SHA-1",
        "DIGEST-MD5",
        "PLAIN ",
        "GSSAPI",
        "XOAUTH2",
    ] {
        assert_eq!(Mechanism::from_name(unknown), None);
    }
}

#[test]
fn rfc7677_exchange_byte_for_byte() {
    let salt = STANDARD.decode(RFC7677_SALT).unwrap();
    let keys = ScramKeys::derive(b"pencil", &salt, SCRAM_ITERATIONS);
    let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
        s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let server_final = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    let user = || Step::Lookup {
        login: "user".into(),
    };
    for initial in [false, true] {
        let mut x = Exchange::new(Mechanism::ScramSha256, context(None));
        let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        if initial {
            assert_eq!(x.start(Some(client_first)), user());
        } else {
            assert_eq!(x.start(None), Step::Challenge(vec![]));
            assert_eq!(x.respond(client_first), user());
        }
        assert_eq!(
            x.provide(Credential::Scram(&keys)),
            Step::Challenge(server_first.to_vec())
        );
        assert_eq!(
            x.respond(client_final),
            Step::Challenge(server_final.to_vec())
        );
        assert_eq!(
            x.respond(b""),
            Step::Success {
                login: "user".into()
            }
        );
        assert!(matches!(x.respond(b""), Step::Failure(_)));
    }
    // The same exchange, from the test client.
    let client = Client::new("n,,", b"", "user", b"pencil");
    let (last, end) = client.last(server_first);
    assert_eq!(last, client_final);
    assert_eq!(end, server_final);
}

#[test]
fn derive_gives_rfc7677_keys() {
    // StoredKey and ServerKey of "pencil" with the RFC's salt and count: the exchange above
    // verifies with them, and an independent PBKDF2 (Python's hashlib) agrees.
    let salt = STANDARD.decode(RFC7677_SALT).unwrap();
    let keys = ScramKeys::derive(b"pencil", &salt, 4096);
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(
        hex(&keys.stored_key),
        "586e5df283e6dceb5c3e791d8b8528ec191e664045ce971792e2e6b5bb13e2a6"
    );
    assert_eq!(
        hex(&keys.server_key),
        "c1f3cbc1c13a9d35a14c0990eed97629ea225863e566a4314ab99f3f00e5d9d5"
    );
    assert_eq!(keys.salt, salt);
    assert_eq!(keys.iterations, 4096);
    // Debug shows neither key.
    let shown = format!("{keys:?}");
    assert!(
        shown.contains("4096") && shown.contains(RFC7677_SALT),
        "{shown}"
    );
    assert!(
        !shown.contains("stored") && !shown.contains("server_key"),
        "{shown}"
    );
    assert!(
        !shown.contains(&format!("{:?}", keys.stored_key)),
        "{shown}"
    );
}

#[test]
fn cbind_flags_by_mechanism_and_tls() {
    use Mechanism::{ScramSha256 as Scram, ScramSha256Plus as Plus};
    let ep = end_point();
    let ex = exporter();
    let none: Option<ChannelBinding> = None;
    // (mechanism, TLS, GS2 header, binding data the client appends, accepted)
    type Row<'a> = (Mechanism, Option<ChannelBinding>, &'a str, &'a [u8], bool);
    let table: Vec<Row> = vec![
        (Scram, none.clone(), "n,,", b"", true),
        (Scram, none.clone(), "y,,", b"", true),
        (Scram, none.clone(), "p=tls-exporter,,", &ex, false),
        (Scram, none.clone(), "p=tls-server-end-point,,", &ep, false),
        (Scram, tls(true, true), "n,,", b"", true),
        (Scram, tls(true, true), "y,,", b"", false),
        (Scram, tls(true, false), "y,,", b"", false),
        (Scram, tls(false, false), "y,,", b"", true),
        (Scram, tls(true, true), "p=tls-exporter,,", &ex, false),
        (
            Scram,
            tls(true, true),
            "p=tls-server-end-point,,",
            &ep,
            false,
        ),
        (Plus, none.clone(), "n,,", b"", false),
        (Plus, none.clone(), "p=tls-server-end-point,,", &ep, false),
        (
            Plus,
            tls(false, false),
            "p=tls-server-end-point,,",
            &ep,
            false,
        ),
        (Plus, tls(true, true), "n,,", b"", false),
        (Plus, tls(true, true), "y,,", b"", false),
        (Plus, tls(true, true), "p=tls-server-end-point,,", &ep, true),
        (Plus, tls(true, true), "p=tls-exporter,,", &ex, true),
        (
            Plus,
            tls(true, false),
            "p=tls-server-end-point,,",
            &ep,
            true,
        ),
        (Plus, tls(true, false), "p=tls-exporter,,", &ex, false),
        (Plus, tls(false, true), "p=tls-exporter,,", &ex, true),
        (
            Plus,
            tls(false, true),
            "p=tls-server-end-point,,",
            &ep,
            false,
        ),
        (Plus, tls(true, true), "p=tls-unique,,", &ep, false),
        (Plus, tls(true, true), "p=TLS-EXPORTER,,", &ex, false),
        (Plus, tls(true, true), "p=tls-exporter,a=user,", &ex, true),
        // The right type with the wrong data, or the other type's data.
        (Plus, tls(true, true), "p=tls-exporter,,", &ep, false),
        (
            Plus,
            tls(true, true),
            "p=tls-server-end-point,,",
            &ex,
            false,
        ),
        (
            Plus,
            tls(true, true),
            "p=tls-server-end-point,,",
            b"",
            false,
        ),
        (Plus, tls(true, true), "p=tls-exporter,,", &ex[..31], false),
        // Binding data with a flag that says there is none.
        (Scram, none.clone(), "n,,", &ex, false),
        (Scram, tls(true, true), "n,,", &ex, false),
    ];
    let keys = keys();
    for (mechanism, tls, header, cbind, accepted) in table {
        let client = Client::new(header, cbind, "user", b"pencil");
        let steps = run(mechanism, tls.clone(), &client, Credential::Scram(&keys));
        assert_eq!(
            succeeded(&steps),
            accepted,
            "{mechanism:?} {tls:?} {header:?}: {steps:?}"
        );
        assert!(succeeded(&steps) || failed(&steps), "{steps:?}");
    }
}

#[test]
fn plus_exchanges_bind_to_the_channel() {
    // tls-server-end-point, then tls-exporter, each a whole exchange with the test client:
    // the challenge shapes are those of SCRAM-SHA-256.
    let keys = keys();
    for (header, data) in [
        ("p=tls-server-end-point,,", end_point()),
        ("p=tls-exporter,,", exporter()),
    ] {
        let client = Client::new(header, &data, "user", b"pencil");
        let steps = run(
            Mechanism::ScramSha256Plus,
            tls(true, true),
            &client,
            Credential::Scram(&keys),
        );
        assert_eq!(steps.len(), 5, "{steps:?}");
        assert_eq!(steps[0], Step::Challenge(vec![]));
        assert_eq!(
            steps[1],
            Step::Lookup {
                login: "user".into()
            }
        );
        assert_eq!(
            steps[4],
            Step::Success {
                login: "user".into()
            }
        );
        // c= carries the header and the binding data, base64.
        let mut want = header.as_bytes().to_vec();
        want.extend_from_slice(&data);
        assert_eq!(STANDARD.decode(client.c()).unwrap(), want);
        // The wrong password fails at the proof.
        let wrong = Client::new(header, &data, "user", b"pencil!");
        let steps = run(
            Mechanism::ScramSha256Plus,
            tls(true, true),
            &wrong,
            Credential::Scram(&keys),
        );
        assert_eq!(steps.len(), 4);
        assert_eq!(steps[3], Step::Failure("wrong proof".into()));
    }
}

#[test]
fn user_names_and_authzids() {
    let keys = keys();
    // (GS2 header, escaped user name, the login looked up, or None for a failure at once)
    let table: &[(&str, &str, Option<&str>)] = &[
        ("n,,", "user", Some("user")),
        ("n,,", "us=2Cer", Some("us,er")),
        ("n,,", "us=3Der", Some("us=er")),
        ("n,,", "=3D=2C", Some("=,")),
        ("n,,", "jürgen", Some("jürgen")),
        ("n,,", "tim smith", Some("tim smith")),
        ("n,,", "", None),
        ("n,,", "us=er", None),
        ("n,,", "us=2cer", None),
        ("n,,", "user=", None),
        ("n,,", "us=20er", None),
        ("n,a=user,", "user", Some("user")),
        ("n,a=us=2Cer,", "us=2Cer", Some("us,er")),
        ("n,a=us=2Cer,", "us,er", None),
        ("n,a=other,", "user", None),
        ("n,a=User,", "user", None),
        ("n,a=,", "user", None),
        ("y,a=user,", "user", Some("user")),
    ];
    for &(header, user, login) in table {
        let client = Client::new(header, b"", user, b"pencil");
        let steps = run(
            Mechanism::ScramSha256,
            None,
            &client,
            Credential::Scram(&keys),
        );
        match login {
            Some(login) => {
                assert_eq!(
                    steps[1],
                    Step::Lookup {
                        login: login.into()
                    },
                    "{header} {user}"
                );
                assert!(succeeded(&steps), "{header} {user}: {steps:?}");
            }
            None => {
                assert_eq!(steps.len(), 2, "{header} {user}: {steps:?}");
                assert!(failed(&steps), "{header} {user}: {steps:?}");
            }
        }
    }
    // 255 bytes at most, after unescaping.
    let long = "a".repeat(254);
    for (user, ok) in [
        (format!("{long}=2C=2C"), false),
        (format!("{long}=2C"), true),
    ] {
        let client = Client::new("n,,", b"", &user, b"pencil");
        let steps = run(
            Mechanism::ScramSha256,
            None,
            &client,
            Credential::Scram(&keys),
        );
        assert_eq!(succeeded(&steps), ok, "{steps:?}");
    }
}

#[test]
fn client_first_messages() {
    let keys = keys();
    // (client-first-message-bare, accepted)
    let table: &[(&str, bool)] = &[
        ("n=user,r=abc", true),
        ("n=user,r=!~", true),
        ("n=user,r=abc,x=ext", true),
        ("n=user,r=abc,x=ext,y=a=b", true),
        ("m=ext,n=user,r=abc", false),
        ("n=user,r=abc,m=ext", false),
        ("n=user,r=", false),
        ("n=user,r=a b", false),
        ("n=user,r=a\x7f", false),
        ("n=user,r=aé", false),
        ("n=user", false),
        ("n=user,", false),
        ("r=abc,n=user", false),
        ("n=user,r=abc,", false),
        ("n=user,r=abc,x", false),
        ("n=user,r=abc,x=", false),
        ("n=user,r=abc,1=ext", false),
        ("n=user,r=abc,xy=ext", false),
        ("user,r=abc", false),
        ("", false),
    ];
    for &(bare, ok) in table {
        let client = Client::with_bare("n,,", b"", bare, b"pencil");
        let steps = run(
            Mechanism::ScramSha256,
            None,
            &client,
            Credential::Scram(&keys),
        );
        assert_eq!(succeeded(&steps), ok, "{bare:?}: {steps:?}");
        if !ok {
            assert_eq!(steps.len(), 2, "{bare:?} fails at the client-first message");
        }
    }
    // Not UTF-8, or with a NUL, or empty as an initial response.
    for first in [&b"n,,n=us\xffer,r=abc"[..], b"n,,n=us\0er,r=abc", b""] {
        let mut x = Exchange::new(Mechanism::ScramSha256, context(None));
        assert!(
            matches!(x.start(Some(first)), Step::Failure(_)),
            "{first:?}"
        );
    }
}

#[test]
fn client_final_messages() {
    let keys = keys();
    let client = Client::new("n,,", b"", "user", b"pencil");
    let full_nonce = format!("rOprNGfwEbeRWgbNEkqO{RFC7677_SERVER_NONCE}");
    let biws = client.c();
    // (client-final-message-without-proof, accepted); the proof is right for each.
    let table: Vec<(String, bool)> = vec![
        (format!("c={biws},r={full_nonce}"), true),
        (format!("c={biws},r={full_nonce},x=ext"), true),
        (format!("c={biws},r={full_nonce},m=ext"), false),
        (format!("c={biws},r={full_nonce},x"), false),
        (format!("c={biws},r=rOprNGfwEbeRWgbNEkqO"), false),
        (format!("c={biws},r={full_nonce}x"), false),
        (
            format!("c={biws},r={}", &full_nonce[..full_nonce.len() - 1]),
            false,
        ),
        (format!("c={biws},r="), false),
        (format!("c={biws}"), false),
        (format!("r={full_nonce},c={biws}"), false),
        (format!("c=,r={full_nonce}"), false),
        (format!("c=eSws,r={full_nonce}"), false), // "y,,"
        (format!("c=biws=,r={full_nonce}"), false),
        (format!("c=biw,r={full_nonce}"), false),
        (format!("c=biws,,r={full_nonce}"), false),
        (format!("c=bix=,r={full_nonce}"), false), // non-canonical base64
        (
            format!("c={},r={full_nonce}", STANDARD.encode("n,a=user,")),
            false,
        ),
        (format!("x=ext,c={biws},r={full_nonce}"), false),
    ];
    for (without_proof, ok) in table {
        let mut x = Exchange::new(Mechanism::ScramSha256, context(None));
        x.start(Some(&client.first()));
        let Step::Challenge(server_first) = x.provide(Credential::Scram(&keys)) else {
            panic!("no server-first message");
        };
        let (last, server_final) = client.last_with(&server_first, &without_proof);
        let step = x.respond(&last);
        if ok {
            assert_eq!(step, Step::Challenge(server_final), "{without_proof}");
        } else {
            assert!(
                matches!(step, Step::Failure(_)),
                "{without_proof}: {step:?}"
            );
        }
    }
    // The proof itself: bad base64, the wrong length, altered, missing, not last.
    let without_proof = format!("c={biws},r={full_nonce}");
    let mut right = String::new();
    for last in [
        format!("{without_proof},p=not base64!"),
        format!("{without_proof},p=AAAA"),
        format!("{without_proof},p={}", STANDARD.encode([0u8; 32])),
        format!("{without_proof},p={}", STANDARD.encode([0u8; 33])),
        format!("{without_proof},p="),
        without_proof.clone(),
        String::from("RIGHT,x=ext"),
        String::from("RIGHT-FLIPPED"),
        String::from("RIGHT-UNPADDED"),
    ] {
        let mut x = Exchange::new(Mechanism::ScramSha256, context(None));
        x.start(Some(&client.first()));
        let Step::Challenge(server_first) = x.provide(Credential::Scram(&keys)) else {
            panic!("no server-first message");
        };
        if right.is_empty() {
            right = String::from_utf8(client.last(&server_first).0).unwrap();
        }
        let last = if let Some(tail) = last.strip_prefix("RIGHT") {
            match tail {
                "-FLIPPED" => {
                    let (head, proof) = right.rsplit_once("p=").unwrap();
                    let mut bytes = STANDARD.decode(proof).unwrap();
                    bytes[31] ^= 1;
                    format!("{head}p={}", STANDARD.encode(bytes))
                }
                "-UNPADDED" => right.trim_end_matches('=').to_owned(),
                _ => format!("{right}{tail}"),
            }
        } else {
            last
        };
        assert!(
            matches!(x.respond(last.as_bytes()), Step::Failure(_)),
            "{last}"
        );
    }
}

#[test]
fn absent_accounts_look_like_real_ones_until_the_proof() {
    // A real account and an absent one with the same salt and count: the same steps and the
    // same server-first message; both fail at the proof (the absent one whatever the proof).
    let real = keys();
    let absent = Credential::Absent {
        salt: &real.salt,
        iterations: real.iterations,
    };
    let right = Client::new("n,,", b"", "user", b"pencil");
    let wrong = Client::new("n,,", b"", "user", b"pencil!");
    let with_real = run(
        Mechanism::ScramSha256,
        None,
        &wrong,
        Credential::Scram(&real),
    );
    let with_absent = run(Mechanism::ScramSha256, None, &right, absent);
    assert_eq!(with_real.len(), 4);
    assert_eq!(with_absent.len(), 4);
    assert_eq!(with_real[..3], with_absent[..3]);
    assert_eq!(with_real[3], Step::Failure("wrong proof".into()));
    assert_eq!(with_absent[3], Step::Failure("no usable account".into()));
    // The server-first message of an absent account: the usual form.
    let Step::Challenge(server_first) = &with_absent[2] else {
        panic!("{with_absent:?}");
    };
    assert_eq!(
        std::str::from_utf8(server_first).unwrap(),
        format!(
            "r=rOprNGfwEbeRWgbNEkqO{RFC7677_SERVER_NONCE},s={},i=16",
            STANDARD.encode("table salt")
        )
    );
    // Absent with PLUS too.
    let plus = Client::new("p=tls-exporter,,", &exporter(), "user", b"pencil");
    let steps = run(Mechanism::ScramSha256Plus, tls(true, true), &plus, absent);
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[3], Step::Failure("no usable account".into()));
}

#[test]
fn scram_refuses_what_it_cannot_use() {
    let client = Client::new("n,,", b"", "user", b"pencil");
    let unusable = [
        Credential::Secret(b"pencil"),
        Credential::Absent {
            salt: b"",
            iterations: 4096,
        },
        Credential::Absent {
            salt: b"salt",
            iterations: 0,
        },
    ];
    for credential in unusable {
        let steps = run(Mechanism::ScramSha256, None, &client, credential);
        assert_eq!(steps.len(), 3, "{credential:?}: {steps:?}");
        assert!(failed(&steps));
    }
    let zero = ScramKeys::derive(b"pencil", b"salt", 0);
    let steps = run(
        Mechanism::ScramSha256,
        None,
        &client,
        Credential::Scram(&zero),
    );
    assert!(failed(&steps));
    // A server nonce that cannot go in the message fails at the start.
    for nonce in ["", "a,b", "a b", "é"] {
        let mut x = Exchange::new(
            Mechanism::ScramSha256,
            Context {
                server_nonce: nonce.into(),
                ..context(None)
            },
        );
        assert!(matches!(x.start(None), Step::Failure(_)), "{nonce:?}");
    }
    // -PLUS without TLS, or with TLS but no binding.
    for tls in [None, tls(false, false)] {
        let mut x = Exchange::new(Mechanism::ScramSha256Plus, context(tls));
        assert!(matches!(x.start(None), Step::Failure(_)));
    }
}

#[test]
fn after_the_server_final_message() {
    let keys = keys();
    let client = Client::new("n,,", b"", "user", b"pencil");
    for ack in [&b"x"[..], b"v=", b"*", b" "] {
        let mut x = Exchange::new(Mechanism::ScramSha256, context(None));
        x.start(Some(&client.first()));
        let Step::Challenge(server_first) = x.provide(Credential::Scram(&keys)) else {
            panic!()
        };
        assert!(matches!(
            x.respond(&client.last(&server_first).0),
            Step::Challenge(_)
        ));
        assert!(matches!(x.respond(ack), Step::Failure(_)), "{ack:?}");
        assert!(x.is_finished());
    }
}

#[test]
fn long_messages_fail() {
    let long = vec![b'a'; MAX_MESSAGE + 1];
    for mechanism in Mechanism::ALL {
        let mut x = Exchange::new(mechanism, context(tls(true, true)));
        assert!(matches!(x.start(Some(&long)), Step::Failure(_)));
        let mut x = Exchange::new(mechanism, context(tls(true, true)));
        assert!(matches!(x.start(None), Step::Challenge(_)), "{mechanism:?}");
        assert!(matches!(x.respond(&long), Step::Failure(_)));
        assert!(x.is_finished());
    }
    // 1024 bytes are still read (and fail for what they say, or go on).
    let mut first = b"n,,n=user,r=".to_vec();
    first.resize(MAX_MESSAGE, b'a');
    let mut x = Exchange::new(Mechanism::ScramSha256, context(None));
    assert!(matches!(x.start(Some(&first)), Step::Lookup { .. }));
}

/// A whole exchange's worth of right answers for `mechanism`, as (start, responses).
fn script(mechanism: Mechanism) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
    match mechanism {
        Mechanism::Plain => (None, vec![b"\0user\0pencil".to_vec()]),
        Mechanism::Login => (None, vec![b"user".to_vec(), b"pencil".to_vec()]),
        Mechanism::CramMd5 => {
            let mut answer = b"user ".to_vec();
            answer.extend_from_slice(&cram::digest(
                b"pencil",
                context(None).cram_challenge.as_bytes(),
            ));
            (None, vec![answer])
        }
        Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => (None, vec![]),
    }
}

#[test]
fn every_call_out_of_order_fails() {
    let keys = keys();
    let secret = Credential::Secret(b"pencil");
    let credential = |m: Mechanism| match m {
        Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Credential::Scram(&keys),
        _ => secret,
    };
    for mechanism in Mechanism::ALL {
        let fresh = || Exchange::new(mechanism, context(tls(true, true)));
        // Before start: respond and provide.
        let mut x = fresh();
        assert!(matches!(x.respond(b"x"), Step::Failure(_)), "{mechanism:?}");
        assert!(matches!(x.start(None), Step::Failure(_)), "ended");
        let mut x = fresh();
        assert!(matches!(x.provide(secret), Step::Failure(_)));
        // start twice.
        let mut x = fresh();
        x.start(None);
        assert!(matches!(x.start(None), Step::Failure(_)), "{mechanism:?}");
        // provide while a challenge is pending.
        let mut x = fresh();
        x.start(None);
        assert!(matches!(x.provide(credential(mechanism)), Step::Failure(_)));
        // respond (or start) while a lookup is pending.
        for again in [true, false] {
            let mut x = fresh();
            let step = lookup(&mut x, mechanism);
            assert!(
                matches!(step, Step::Lookup { .. }),
                "{mechanism:?}: {step:?}"
            );
            let step = if again { x.respond(b"") } else { x.start(None) };
            assert!(matches!(step, Step::Failure(_)), "{mechanism:?}");
        }
        // Everything after Success and after Failure.
        let mut won = fresh();
        lookup(&mut won, mechanism);
        let mut step = won.provide(credential(mechanism));
        if let Step::Challenge(server_first) = &step {
            let last = scram_client(mechanism).last(server_first).0;
            assert!(matches!(won.respond(&last), Step::Challenge(_)));
            step = won.respond(b"");
        }
        assert!(
            matches!(step, Step::Success { .. }),
            "{mechanism:?}: {step:?}"
        );
        let mut lost = fresh();
        lookup(&mut lost, mechanism);
        assert!(matches!(
            lost.provide(Credential::Secret(b"wrong")),
            Step::Failure(_)
        ));
        for x in [&mut won, &mut lost] {
            assert!(x.is_finished());
            assert!(matches!(x.start(None), Step::Failure(_)));
            assert!(matches!(x.start(Some(b"")), Step::Failure(_)));
            assert!(matches!(x.respond(b""), Step::Failure(_)));
            assert!(matches!(x.provide(secret), Step::Failure(_)));
            assert!(matches!(x.provide(credential(mechanism)), Step::Failure(_)));
        }
    }
}

fn scram_client(mechanism: Mechanism) -> Client {
    if mechanism == Mechanism::ScramSha256Plus {
        Client::new("p=tls-exporter,,", &exporter(), "user", b"pencil")
    } else {
        Client::new("n,,", b"", "user", b"pencil")
    }
}

/// Drives `x` to its Lookup with right answers (for `user`).
fn lookup(x: &mut Exchange, mechanism: Mechanism) -> Step {
    let mut step = x.start(None);
    if matches!(
        mechanism,
        Mechanism::ScramSha256 | Mechanism::ScramSha256Plus
    ) {
        return x.respond(&scram_client(mechanism).first());
    }
    let (_, responses) = script(mechanism);
    for response in responses {
        step = x.respond(&response);
    }
    step
}

#[test]
fn debug_output_holds_no_secret() {
    let mut x = Exchange::new(Mechanism::Plain, context(None));
    x.start(Some(b"\0user\0pencil"));
    let shown = format!("{x:?}");
    assert!(!shown.contains("pencil"), "{shown}");
    let shown = format!("{:?}", Credential::Secret(b"pencil"));
    assert!(!shown.contains("pencil"), "{shown}");
}

#[test]
fn random_input_never_panics() {
    let keys = keys();
    let client = Client::new("p=tls-exporter,,", &exporter(), "user", b"pencil");
    let plain_client = Client::new("n,,", b"", "user", b"pencil");
    // Right messages to mutate, so the random runs get past the first parse.
    let mut pool: Vec<Vec<u8>> = vec![
        b"\0user\0pencil".to_vec(),
        b"user".to_vec(),
        b"pencil".to_vec(),
        script(Mechanism::CramMd5).1.remove(0),
        client.first(),
        plain_client.first(),
        b"n,a=user,n=user,r=abc,x=y".to_vec(),
        b"y,,n=us=2Cer,r=abc".to_vec(),
    ];
    for c in [&client, &plain_client] {
        let mut x = Exchange::new(Mechanism::ScramSha256Plus, context(tls(true, true)));
        x.start(Some(&c.first()));
        if let Step::Challenge(server_first) = x.provide(Credential::Scram(&keys)) {
            pool.push(c.last(&server_first).0);
        }
    }
    let credentials = [
        Credential::Secret(b"pencil"),
        Credential::Scram(&keys),
        Credential::Absent {
            salt: b"salt",
            iterations: 16,
        },
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let r = next();
        let mechanism = Mechanism::ALL[(r % 5) as usize];
        let tls = match (r >> 3) % 4 {
            0 => None,
            1 => tls(true, false),
            2 => tls(false, true),
            _ => tls(true, true),
        };
        let mut x = Exchange::new(mechanism, context(tls));
        let mut finished = false;
        for _ in 0..(r >> 5) % 6 + 1 {
            let r = next();
            let mut message = match r % 4 {
                0 => (0..r % 40).map(|i| (next() >> (i % 8)) as u8).collect(),
                _ => pool[(r >> 2) as usize % pool.len()].clone(),
            };
            // Mutate: flip, cut or insert a byte.
            if !message.is_empty() {
                let at = (r >> 8) as usize % message.len();
                match (r >> 16) % 4 {
                    0 => message[at] ^= 1 << ((r >> 20) % 8),
                    1 => message.truncate(at),
                    2 => message.insert(at, (r >> 24) as u8),
                    _ => {}
                }
            }
            let step = match (r >> 28) % 5 {
                0 => x.start(None),
                1 => x.start(Some(&message)),
                2 => x.provide(credentials[(r >> 32) as usize % 3]),
                _ => x.respond(&message),
            };
            if finished {
                assert!(matches!(step, Step::Failure(_)), "{step:?} after the end");
            }
            match &step {
                Step::Success { .. } | Step::Failure(_) => {
                    finished = true;
                    assert!(x.is_finished());
                }
                Step::Lookup { login } => {
                    assert!(!login.is_empty() && login.len() <= MAX_FIELD);
                    assert!(!login.contains('\0'));
                }
                Step::Challenge(bytes) => assert!(bytes.len() <= MAX_MESSAGE),
            }
        }
    }
}
