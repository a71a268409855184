//! SASL (RFC 5034, issue #11): byte-exact AUTH dialogues, the mechanism lists of CAPA and bare
//! AUTH under each plaintext rule and TLS, every mechanism logging in (SCRAM driven by this
//! file's own client, -PLUS bound to the certificate), SCRAM's record paths and absent
//! accounts, the failure count, failures alike in text and delay, and logs without secrets.
//!
//! Without TLS these run as any user: a non-root ipop3d reads the world's salt key (the
//! runner's own file), so it offers SCRAM too. TLS and making the salt key need root.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::client::{tls_client, Pop};
use crate::harness::{crlf, need_root, small_message, Server, User, World};
use apoptools::testing::store;

const FAILED: &str = "-ERR [AUTH] Authentication failed.";
const UNSUPPORTED: &str = "-ERR Unsupported authentication mechanism";
const WRONG_STATE: &str = "-ERR Command not valid in this state";
const ASK_USER: &str = "+ VXNlcm5hbWU6"; // "Username:"
const ASK_PASSWORD: &str = "+ UGFzc3dvcmQ6"; // "Password:"
/// A failure's least delay where a test sets auth_delay = 300 (ms).
const DELAYED: Duration = Duration::from_millis(290);

fn b64(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    let bytes = STANDARD.decode(text);
    bytes.unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PLAIN's message (RFC 4616), base64.
fn plain(authzid: &str, user: &str, password: &str) -> String {
    b64(format!("{authzid}\0{user}\0{password}"))
}

/// `AUTH PLAIN` with the initial response for `user` and `password`.
fn auth_plain(user: &str, password: &str) -> String {
    format!("AUTH PLAIN {}", plain("", user, password))
}

/// The next line, which must be a `+ ` challenge; its decoded bytes.
fn challenge(pop: &mut Pop) -> Vec<u8> {
    let line = pop.line();
    let text = line.strip_prefix("+ ");
    unb64(text.unwrap_or_else(|| panic!("not a challenge: {line:?}")))
}

/// `AUTH CRAM-MD5`, and its challenge, which must look like `<...@...>`; the answer (RFC
/// 2195) for `user` and `password`.
fn cram(pop: &mut Pop, user: &str, password: &str) -> String {
    pop.send("AUTH CRAM-MD5");
    let c = challenge(pop);
    let like_apop = c.starts_with(b"<") && c.ends_with(b">") && c.contains(&b'@');
    assert!(like_apop, "{c:?}");
    let mut mac = Hmac::<md5::Md5>::new_from_slice(password.as_bytes()).unwrap();
    mac.update(&c);
    let hex = u128::from_be_bytes(mac.finalize().into_bytes().into());
    b64(format!("{user} {hex:032x}"))
}

/// The salt ipop3d shows for `login` without a usable account (or with a record without keys).
fn absent_salt(key: &[u8], login: &str) -> Vec<u8> {
    hmac256(key, format!("apoptools scram salt\0{login}").as_bytes())[..16].to_vec()
}

/// A SCRAM-SHA-256(-PLUS) client (RFC 5802, RFC 7677), byte for byte.
struct Scram {
    gs2: String,
    cbind: Vec<u8>,
    bare: String,
    nonce: String,
}

impl Scram {
    /// A client for `user` with the GS2 header `gs2` (`p=...` for -PLUS, with the binding
    /// data `cbind`).
    fn new(user: &str, gs2: &str, cbind: &[u8]) -> Scram {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let nonce = format!("{}x{n}y{}", t.unwrap().as_nanos(), std::process::id());
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Scram {
            gs2: gs2.into(),
            cbind: cbind.to_vec(),
            bare: format!("n={user},r={nonce}"),
            nonce,
        }
    }

    /// A SCRAM-SHA-256 client that cannot bind (`n,,`).
    fn n(user: &str) -> Scram {
        Scram::new(user, "n,,", &[])
    }

    /// AUTH with the client-first message (as initial response, or after `+ `); the
    /// server-first message.
    fn start(&self, pop: &mut Pop, initial: bool) -> String {
        let plus = ["", "-PLUS"][usize::from(self.gs2.starts_with("p="))];
        let first = b64(format!("{}{}", self.gs2, self.bare));
        if initial {
            pop.send(&format!("AUTH SCRAM-SHA-256{plus} {first}"));
        } else {
            assert_eq!(pop.cmd(&format!("AUTH SCRAM-SHA-256{plus}")), "+ ");
            pop.send(&first);
        }
        String::from_utf8(challenge(pop)).unwrap()
    }

    /// The client-final message (base64) for `server_first` and `password`, and the
    /// server-final message the server must answer with.
    fn last(&self, server_first: &str, password: &str) -> (String, String) {
        let (nonce, salt, iterations) = server_first_fields(server_first);
        assert!(nonce.starts_with(&self.nonce) && nonce.len() == self.nonce.len() + 24);
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac256(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let binding = [self.gs2.as_bytes(), &self.cbind].concat();
        let without_proof = format!("c={},r={nonce}", b64(binding));
        let auth = format!("{},{server_first},{without_proof}", self.bare);
        let signature = hmac256(&stored_key, auth.as_bytes());
        let proof = std::array::from_fn::<u8, 32, _>(|i| client_key[i] ^ signature[i]);
        let verifier = hmac256(&hmac256(&salted, b"Server Key"), auth.as_bytes());
        let last = format!("{without_proof},p={}", b64(proof));
        (b64(last), format!("v={}", b64(verifier)))
    }

    /// A login that must get through the proof: checks the server-final message, answers it
    /// with an empty line; the reply to that.
    fn login(&self, pop: &mut Pop, password: &str, initial: bool) -> String {
        let first = self.start(pop, initial);
        let (last, verifier) = self.last(&first, password);
        pop.send(&last);
        assert_eq!(String::from_utf8(challenge(pop)).unwrap(), verifier);
        pop.cmd("")
    }

    /// A whole exchange with a wrong `password`: the reply to the client-final message.
    fn fail(&self, pop: &mut Pop, password: &str) -> String {
        let first = self.start(pop, true);
        pop.cmd(&self.last(&first, password).0)
    }
}

/// `r=<nonce>,s=<salt>,i=<count>`, exactly: its three values.
fn server_first_fields(text: &str) -> (String, Vec<u8>, u32) {
    let f: Vec<&str> = text.split(',').collect();
    let [Some(r), Some(s), Some(i)] = [("r=", 0), ("s=", 1), ("i=", 2)]
        .map(|(key, at)| f.get(at).and_then(|v| v.strip_prefix(key)))
    else {
        panic!("server-first {text:?}")
    };
    assert_eq!(f.len(), 3, "{text:?}");
    (r.into(), unb64(s), i.parse().unwrap())
}

/// The server-first message SCRAM-SHA-256 shows `user` on a new connection (then `*`).
fn scram_salt_of(server: &Server, user: &str) -> (String, Vec<u8>, u32) {
    let mut pop = server.connect();
    let first = Scram::n(user).start(&mut pop, true);
    assert_eq!(pop.cmd("*"), FAILED);
    server_first_fields(&first)
}

/// CAPA's lines starting with `SASL`; a bare AUTH's reply must list the same mechanisms,
/// byte for byte.
fn mechanisms(pop: &mut Pop) -> Vec<String> {
    let caps = pop.ok_lines("CAPA");
    let sasl: Vec<String> = caps.into_iter().filter(|c| c.starts_with("SASL")).collect();
    let names = sasl
        .first()
        .and_then(|l| l.strip_prefix("SASL "))
        .unwrap_or_default();
    let want: String = names.split(' ').map(|m| format!("{m}\r\n")).collect();
    pop.send("AUTH");
    let listing = [pop.try_raw_line().unwrap(), pop.multiline_raw()].concat();
    let want = format!("+OK SASL mechanisms follow\r\n{want}.\r\n");
    assert_eq!(String::from_utf8(listing).unwrap(), want);
    sasl
}

/// Neither the passwords nor the base64 of them (alone or in a PLAIN message) are in `log`.
fn assert_no_secrets(log: &str, logins: &[(&str, &str)]) {
    for (user, pw) in logins {
        for needle in [pw.to_string(), b64(pw), plain("", user, pw)] {
            assert!(!log.contains(&needle), "{needle:?} in the log:\n{log}");
        }
    }
}

/// How many lines of `log` contain `want`.
fn lines_with(log: &str, want: &str) -> usize {
    log.lines().filter(|l| l.contains(want)).count()
}

/// The log line's fields of a failed login without a known user.
fn anonymous_failure(method: &str, why: &str) -> String {
    format!("user=- method={method} result=fail reason=\"{why}\"")
}

/// `line`'s reply, which must come after the 300 ms delay these tests set.
fn delayed(pop: &mut Pop, line: &str) -> String {
    let start = Instant::now();
    let reply = pop.cmd(line);
    let took = start.elapsed();
    assert!(took >= DELAYED, "{reply} after {took:?}");
    reply
}

/// CAPA's SASL line and a bare AUTH list exactly the mechanisms allowed now, strongest first:
/// SCRAM-SHA-256 and CRAM-MD5 always, PLAIN and LOGIN only where the plaintext rule lets USER
/// in (INTRANET under the default, `always`; not `never`, not `tls` without TLS); without TLS
/// AUTH takes no -PLUS and nothing unlisted; PLAIN/LOGIN where not listed are refused like
/// USER (the refusal text after the delay, counted, logged), and SCRAM logs in everywhere.
#[test]
fn mechanism_lists_follow_the_plaintext_rule() {
    let mut w = world!("mechanism_lists_follow_the_plaintext_rule");
    let alice = w.user("alice");
    w.set("auth_delay", "300");
    let strong = "SASL SCRAM-SHA-256 CRAM-MD5";
    let all = "SASL SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN";
    for (plaintext, intranet, want) in [
        ("intranet", false, strong),
        ("intranet", true, all),
        ("always", false, all),
        ("never", true, strong),
        ("tls", true, strong),
    ] {
        w.set("plaintext", plaintext);
        let env: &[(&str, &str)] = if intranet { &[("INTRANET", "1")] } else { &[] };
        let server = w.serve_with(env, None);
        let mut pop = server.connect();
        let case = format!("plaintext = {plaintext}, INTRANET {intranet}");
        assert_eq!(mechanisms(&mut pop), [want], "{case}");
        let refused = want == strong;
        if refused {
            // Refused like USER: the refusal after the delay, counted (the third closes).
            let refusal = "-ERR Plaintext login is not allowed here; use APOP";
            let line = auth_plain(alice.name(), &alice.password);
            for line in [line.as_str(), "AUTH LOGIN", "AUTH PLAIN"] {
                assert_eq!(delayed(&mut pop, line), refusal, "{case}");
            }
            pop.expect_closed();
            pop = server.connect();
        }
        assert_eq!(pop.cmd("AUTH SCRAM-SHA-256-PLUS"), UNSUPPORTED, "{case}");
        assert_eq!(pop.cmd("AUTH DIGEST-MD5"), UNSUPPORTED, "{case}");
        // Mechanism names in any case; and a real account logs in with SCRAM everywhere.
        assert!(pop.cmd("auth cram-md5").starts_with("+ "), "{case}");
        assert_eq!(pop.cmd("*"), FAILED, "{case}");
        let reply = Scram::n(alice.name()).login(&mut pop, &alice.password, false);
        assert_eq!(reply, "+OK Mailbox open, 0 messages", "{case}");
        pop.ok("QUIT");
        let log = server.wait_ends(1 + usize::from(refused));
        for (method, n) in [("plain", 2), ("login", 1)] {
            let line = anonymous_failure(method, "plaintext not allowed");
            let want = n * usize::from(refused);
            assert_eq!(lines_with(&log, &line), want, "{case}:\n{log}");
        }
        assert_no_secrets(&log, &[(alice.name(), &alice.password)]);
    }
}

/// Every RFC 5034 corner, byte for byte: the empty challenge `+ `, `*`, `=`, a wrong authzid,
/// bad base64 in a response, responses too long (past the 4096-octet line, past 1024 bytes
/// decoded), an unknown mechanism (at once, not counted), AUTH in TRANSACTION; each failure
/// the one `-ERR [AUTH]` line after the delay, logged with why, and counted whatever the
/// mechanism (APOP, LOGIN, PLAIN; CRAM-MD5, SCRAM, LOGIN): the third closes.
#[test]
fn auth_dialogues_are_byte_exact() {
    let mut w = world!("auth_dialogues_are_byte_exact");
    let alice = w.user("alice");
    w.set("auth_delay", "300");
    let server = w.serve();
    let (a, pw) = (alice.name(), alice.password.as_str());
    let mut pop = server.connect();
    for _ in 0..5 {
        let start = Instant::now();
        assert_eq!(pop.cmd("AUTH X-UNKNOWN"), UNSUPPORTED);
        assert!(start.elapsed() < DELAYED, "an unknown mechanism delayed");
    }
    pop.send("AUTH PLAIN");
    assert_eq!(pop.try_raw_line().unwrap(), b"+ \r\n");
    assert_eq!(delayed(&mut pop, "*"), FAILED);
    // `=` is the empty initial response: PLAIN's message cannot be empty.
    assert_eq!(delayed(&mut pop, "AUTH PLAIN ="), FAILED);
    // A PLAIN authzid other than the user; the third failure closes the connection.
    let line = format!("AUTH PLAIN {}", plain("bob", a, pw));
    assert_eq!(delayed(&mut pop, &line), FAILED);
    pop.expect_closed();

    // Failures of different mechanisms (and APOP) add up to the same limit.
    let mut pop = server.connect();
    let apop = pop.apop_line(a, "wrong-password");
    assert_eq!(delayed(&mut pop, &apop), FAILED);
    assert_eq!(pop.cmd("AUTH LOGIN"), ASK_USER);
    assert_eq!(delayed(&mut pop, "not*base64"), FAILED);
    assert_eq!(pop.cmd("AUTH PLAIN"), "+ ");
    assert_eq!(delayed(&mut pop, &"A".repeat(5000)), FAILED);
    pop.expect_closed();

    let mut pop = server.connect();
    let answer = cram(&mut pop, a, "wrong-password");
    assert_eq!(delayed(&mut pop, &answer), FAILED);
    assert_eq!(Scram::n(a).fail(&mut pop, "wrong-password"), FAILED);
    assert_eq!(pop.cmd(&format!("AUTH LOGIN {}", b64(a))), ASK_PASSWORD);
    assert_eq!(delayed(&mut pop, &b64(vec![b'a'; 1500])), FAILED);
    pop.expect_closed();

    let mut pop = server.connect();
    let line = format!("AUTH PLAIN {}", plain(a, a, pw));
    assert_eq!(pop.cmd(&line), "+OK Mailbox open, 0 messages");
    assert_eq!(pop.cmd("AUTH PLAIN"), WRONG_STATE);
    assert_eq!(pop.cmd(&auth_plain(a, pw)), WRONG_STATE);
    assert_eq!(pop.cmd("AUTH"), WRONG_STATE);
    assert_eq!(pop.ok("STAT"), "+OK 0 0");
    pop.ok("QUIT");
    pop.expect_closed();

    let log = server.wait_ends(4);
    for (method, why) in [
        ("plain", "cancelled by the client"),
        ("plain", "not authzid NUL authcid NUL passwd"),
        ("plain", "authzid differs from the user name"),
        ("login", "response not base64"),
        ("plain", "response too long"),
    ] {
        let want = anonymous_failure(method, why);
        assert_eq!(lines_with(&log, &want), 1, "{want:?}:\n{log}");
    }
    let mixed = ["apop", "login", "cram-md5", "scram-sha-256"];
    let counts = mixed.map(|m| lines_with(&log, &format!("method={m} result=fail ")));
    assert_eq!(counts, [1, 2, 1, 1], "{mixed:?}:\n{log}");
    assert_eq!(lines_with(&log, " result=fail "), 9, "{log}");
    assert_eq!(lines_with(&log, " result=too-many-failures "), 3, "{log}");
    let ok = lines_with(&log, "user=alice method=plain result=ok");
    assert_eq!(ok, 1, "{log}");
    assert_no_secrets(&log, &[(a, pw)]);
}

/// An initial response that is not base64 is a failed login like any other: the one reply
/// after the delay, counted, and a log line with its reason (for fail2ban too).
#[test]
fn bad_base64_initial_response_fails_and_is_logged() {
    let mut w = world!("bad_base64_initial_response_fails_and_is_logged");
    w.user("alice");
    w.set("auth_delay", "300");
    let server = w.serve();
    let mut pop = server.connect();
    for line in [
        "AUTH PLAIN AGFsaWNl!!!",
        "AUTH LOGIN YWxp*2U=",
        "AUTH SCRAM-SHA-256 n,,n=alice",
    ] {
        assert_eq!(delayed(&mut pop, line), FAILED, "{line}");
    }
    pop.expect_closed();
    let log = server.wait_ends(1);
    for method in ["plain", "login", "scram-sha-256"] {
        let want = anonymous_failure(method, "initial response not base64");
        assert_eq!(lines_with(&log, &want), 1, "no {want:?} line:\n{log}");
    }
}

/// PLAIN (with and without an initial response), LOGIN (with and without), CRAM-MD5 and
/// SCRAM-SHA-256 (with and without) each open the mailbox, serve STAT, and log their method.
#[test]
fn every_mechanism_logs_in() {
    let mut w = world!("every_mechanism_logs_in");
    let alice = w.user("alice");
    let m = small_message(1);
    w.deliver(&alice, &m);
    let server = w.serve();
    let (a, pw) = (alice.name(), alice.password.as_str());
    for way in 0..7 {
        let mut pop = server.connect();
        let reply = match way {
            0 => pop.cmd(&auth_plain(a, pw)),
            1 => {
                assert_eq!(pop.cmd("AUTH PLAIN"), "+ ");
                pop.cmd(&plain(a, a, pw))
            }
            2 => {
                assert_eq!(pop.cmd("AUTH LOGIN"), ASK_USER);
                assert_eq!(pop.cmd(&b64(a)), ASK_PASSWORD);
                pop.cmd(&b64(pw))
            }
            3 => {
                assert_eq!(pop.cmd(&format!("AUTH LOGIN {}", b64(a))), ASK_PASSWORD);
                pop.cmd(&b64(pw))
            }
            4 => {
                let answer = cram(&mut pop, a, pw);
                pop.cmd(&answer)
            }
            _ => Scram::n(a).login(&mut pop, pw, way == 5),
        };
        assert_eq!(reply, "+OK Mailbox open, 1 messages", "way {way}");
        assert_eq!(pop.ok("STAT"), format!("+OK 1 {}", crlf(&m).len()));
        pop.ok("QUIT");
        pop.expect_closed();
    }
    let log = server.wait_ends(7);
    for (method, n) in [
        ("plain", 2),
        ("login", 2),
        ("cram-md5", 1),
        ("scram-sha-256", 2),
    ] {
        let want = format!("login remote=127.0.0.1 user=alice method={method} result=ok ");
        assert_eq!(lines_with(&log, &want), n, "{want}\n{log}");
    }
    assert_no_secrets(&log, &[(a, pw)]);
}

/// Stores `user`'s password with apoppasswd (the library's writer: a version-2 record with
/// SCRAM keys); the record's salt.
fn apoppasswd(w: &World, user: &User) -> Vec<u8> {
    w.write_config();
    let input = w.path().join("password");
    std::fs::write(&input, format!("{}\n", user.password)).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_apoppasswd"))
        .arg("--config")
        .arg(w.config_path())
        .args(["--stdin", user.name()])
        .stdin(std::fs::File::open(&input).unwrap())
        .status();
    assert!(status.unwrap().success(), "apoppasswd failed");
    let record = std::fs::read_to_string(store::path(&user.account, None)).unwrap();
    let keys = record
        .lines()
        .find_map(|l| l.strip_prefix("scram-sha-256 4096 "));
    let v2 = record.starts_with("apoptools-secret 2\n") && keys.is_some();
    assert!(v2, "not a version-2 record with keys: {record}");
    unb64(keys.unwrap().split(' ').next().unwrap())
}

/// Replaces `user`'s record with a version-1 one (no SCRAM keys), as older versions wrote.
fn version_1(w: &World, user: &User) {
    let v1 = format!("apoptools-secret 1\nsecret {}\n", user.password);
    w.write_as(
        &user.account,
        &store::path(&user.account, None),
        v1.as_bytes(),
        0o600,
    );
}

/// SCRAM over both record formats: a version-2 record written by apoppasswd shows its own
/// random salt; a version-1 record (no keys) gets keys derived at login with the salt an
/// absent account of that name would show. Both log in.
#[test]
fn scram_logs_in_with_version_1_and_version_2_records() {
    let mut w = world!("scram_logs_in_with_version_1_and_version_2_records");
    let (new, old) = (w.user("carol"), w.user("dave"));
    let stored_salt = apoppasswd(&w, &new);
    version_1(&w, &old);
    let server = w.serve();
    let key = std::fs::read(w.scram_salt_key()).unwrap();
    let (_, salt, i) = scram_salt_of(&server, new.name());
    assert_eq!((&salt, i), (&stored_salt, 4096), "not the record's salt");
    assert_ne!(salt, absent_salt(&key, new.name()));
    let (_, salt, i) = scram_salt_of(&server, old.name());
    assert_eq!((salt, i), (absent_salt(&key, old.name()), 4096));
    for user in [&new, &old] {
        let mut pop = server.connect();
        let reply = Scram::n(user.name()).login(&mut pop, &user.password, true);
        assert_eq!(reply, "+OK Mailbox open, 0 messages", "{}", user.name());
        assert_eq!(pop.ok("STAT"), "+OK 0 0");
        pop.ok("QUIT");
    }
    let log = server.wait_ends(4);
    for name in ["carol", "dave"] {
        let want = format!("user={name} method=scram-sha-256 result=ok");
        assert_eq!(lines_with(&log, &want), 1, "{log}");
    }
    let logins = [
        (new.name(), new.password.as_str()),
        (old.name(), &old.password),
    ];
    assert_no_secrets(&log, &logins);
}

/// An unknown name and disabled accounts get a server-first message like a real account's
/// (the client's nonce and 24 more characters, a 16-byte salt, i=4096) with the same salt on
/// every connection, a different one per name: the absent salt of the name, or a disabled
/// account's own stored salt, the one it showed before it was disabled. Each fails at the
/// proof (even with the right password) with the one failure line.
#[test]
fn scram_absent_accounts_look_like_real_ones() {
    let mut w = world!("scram_absent_accounts_look_like_real_ones");
    let (bob, carol) = (w.user("bob"), w.user("carol"));
    let bob_salt = apoppasswd(&w, &bob);
    version_1(&w, &carol);
    let server = w.serve();
    let key = std::fs::read(w.scram_salt_key()).unwrap();
    assert_eq!(scram_salt_of(&server, "bob").1, bob_salt);
    w.disable(&bob);
    w.disable(&carol);
    let mut salts = Vec::new();
    for (name, want) in [
        ("nosuch", absent_salt(&key, "nosuch")),
        ("bob", bob_salt),
        ("carol", absent_salt(&key, "carol")),
    ] {
        let (r1, s1, i1) = scram_salt_of(&server, name);
        let (r2, s2, i2) = scram_salt_of(&server, name);
        assert_eq!((s1.len(), i1, i2), (16, 4096, 4096), "{name}");
        assert_eq!(
            (&s1, &s2),
            (&want, &want),
            "{name}: not the salt it showed before"
        );
        assert_ne!(r1, r2, "{name}: the nonce repeated");
        salts.push(s1);
    }
    assert!(salts[0] != salts[1] && salts[1] != salts[2] && salts[0] != salts[2]);
    let mut pop = server.connect();
    let tries = [
        ("nosuch", "pw-nosuch-secret"),
        ("bob", &bob.password),
        ("carol", &carol.password),
    ];
    let replies = tries.map(|(name, pw)| Scram::n(name).fail(&mut pop, pw));
    assert_eq!(replies, [FAILED; 3]);
    pop.expect_closed();
    let log = server.wait_ends(8);
    for (name, why) in [
        ("nosuch", "unknown user"),
        ("bob", "disabled (bob)"),
        ("carol", "disabled (carol)"),
    ] {
        let want = format!("user={name} method=scram-sha-256 result=fail reason=\"{why}\"");
        assert_eq!(lines_with(&log, &want), 1, "no {want:?}:\n{log}");
    }
    let logins = [
        (bob.name(), bob.password.as_str()),
        (carol.name(), &carol.password),
    ];
    assert_no_secrets(&log, &logins);
}

/// Started as root, ipop3d makes a missing `scram_salt_key` (32 bytes, mode 0600, root's),
/// offers SCRAM at once, and salts absent names with it, the same on the next connection.
#[test]
fn scram_salt_key_is_made_on_first_use_root() {
    if !need_root("scram_salt_key_is_made_on_first_use_root") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let mut w = World::new();
    w.user("alice");
    let key_path = w.path().join("keys").join("scram-salt-key");
    std::fs::create_dir(key_path.parent().unwrap()).unwrap();
    w.set("scram_salt_key", &key_path.display().to_string());
    let server = w.serve();
    let mut pop = server.connect();
    let sasl = mechanisms(&mut pop);
    assert_eq!(sasl, ["SASL SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN"]);
    let meta = std::fs::metadata(&key_path).expect("the salt key was not made");
    let made = (meta.mode() & 0o7777, meta.len(), meta.uid());
    assert_eq!(made, (0o600, 32, 0), "mode, size, owner");
    let key = std::fs::read(&key_path).unwrap();
    let (_, salt, _) = scram_salt_of(&server, "nosuch");
    assert_eq!(salt, absent_salt(&key, "nosuch"));
    assert_eq!(scram_salt_of(&server, "nosuch").1, salt);
    assert_eq!(std::fs::read(&key_path).unwrap(), key, "the key changed");
}

/// Under TLS: CAPA and AUTH list SCRAM-SHA-256-PLUS first, and PLAIN/LOGIN (plaintext over
/// TLS); -PLUS binds to the certificate (tls-server-end-point), a wrong binding and a
/// SCRAM-SHA-256 `y` (a downgrade) fail; before STLS, under `plaintext = tls`, PLAIN is
/// refused with the advice to use STLS, and after it works.
#[test]
fn sasl_under_tls_root() {
    if !need_root("sasl_under_tls_root") {
        return;
    }
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut w = World::new();
    let files = w.tls();
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let (a, pw) = (alice.name(), alice.password.as_str());
    let leaf = CertificateDer::from_pem_file(&files.cert).unwrap();
    let end_point = Sha256::digest(leaf.as_ref()).to_vec();
    let all = "SASL SCRAM-SHA-256-PLUS SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN";
    let plus = |cbind: &[u8]| Scram::new(a, "p=tls-server-end-point,,", cbind);

    let server = w.serve_implicit_tls(&[]);
    let mut pop = Pop::connect_tls(server.port, tls_client(&files.ca));
    assert_eq!(mechanisms(&mut pop), [all]);
    let downgrade = format!("AUTH SCRAM-SHA-256 {}", b64(format!("y,,n={a},r=abc")));
    assert_eq!(pop.cmd(&downgrade), FAILED);
    assert_eq!(plus(&[0; 32]).fail(&mut pop, pw), FAILED);
    let reply = plus(&end_point).login(&mut pop, pw, false);
    assert_eq!(reply, "+OK Mailbox open, 1 messages");
    assert_eq!(pop.ok("STAT").split(' ').nth(1), Some("1"));
    pop.ok("QUIT");
    pop.expect_closed();
    let log = server.wait_ends(1);
    for want in [
        "user=alice method=scram-sha-256-plus result=ok messages=1",
        "user=- method=scram-sha-256 result=fail reason=\"y with",
        "user=alice method=scram-sha-256-plus result=fail reason=\"c= differs",
    ] {
        assert_eq!(lines_with(&log, want), 1, "{want:?}:\n{log}");
    }
    assert_no_secrets(&log, &[(a, pw)]);

    w.set("plaintext", "tls");
    let server = w.serve_with(&[], None);
    let mut pop = server.connect();
    assert_eq!(mechanisms(&mut pop), ["SASL SCRAM-SHA-256 CRAM-MD5"]);
    let refusal = "-ERR Plaintext login needs TLS first (STLS); or use APOP";
    assert_eq!(pop.cmd(&auth_plain(a, pw)), refusal);
    assert_eq!(pop.cmd("AUTH SCRAM-SHA-256-PLUS"), UNSUPPORTED);
    pop.stls(tls_client(&files.ca)).unwrap();
    assert_eq!(mechanisms(&mut pop), [all]);
    assert_eq!(pop.cmd(&auth_plain(a, pw)), "+OK Mailbox open, 1 messages");
    pop.ok("QUIT");
    let log = server.wait_ends(1);
    let want = "user=alice method=plain result=ok messages=1";
    assert_eq!(lines_with(&log, want), 1, "{log}");
    assert_no_secrets(&log, &[(a, pw)]);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2
}

/// Failures of every mechanism and of unknown users are indistinguishable: the same text,
/// and with auth_delay = 200 ms each kind's median delay (8 tries, interleaved round robin,
/// from the last client line to the `-ERR`) within 10 % of the overall median, never under
/// the delay.
#[test]
fn failures_are_alike_in_text_and_delay() {
    let mut w = world!("failures_are_alike_in_text_and_delay");
    let alice = w.user("alice");
    w.set("auth_delay", "200");
    let server = w.serve();
    let a = alice.name();
    let bad = "wrong-password";
    let kinds = "APOP USER/PASS PLAIN LOGIN CRAM-MD5 SCRAM SCRAM-unknown PLAIN-unknown";
    let kinds: Vec<&str> = kinds.split(' ').collect();
    // Each kind's client work before its last line; that line.
    let prepare = |pop: &mut Pop, kind: &str| -> String {
        match kind {
            "APOP" => pop.apop_line(a, bad),
            "USER/PASS" => {
                pop.ok(&format!("USER {a}"));
                format!("PASS {bad}")
            }
            "PLAIN" => auth_plain(a, bad),
            "PLAIN-unknown" => auth_plain("nosuch", bad),
            "LOGIN" => {
                assert_eq!(pop.cmd("AUTH LOGIN"), ASK_USER);
                assert_eq!(pop.cmd(&b64(a)), ASK_PASSWORD);
                b64(bad)
            }
            "CRAM-MD5" => cram(pop, a, bad),
            _ => {
                let client = Scram::n(if kind == "SCRAM" { a } else { "nosuch" });
                let first = client.start(pop, true);
                client.last(&first, bad).0
            }
        }
    };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    for _round in 0..8 {
        for (k, kind) in kinds.iter().enumerate() {
            let mut pop = server.connect();
            let line = prepare(&mut pop, kind);
            let start = Instant::now();
            let reply = pop.cmd(&line);
            times[k].push(start.elapsed());
            assert_eq!(reply, FAILED, "{kind}");
            pop.drop_connection();
        }
    }
    let overall = median(times.concat());
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    let report: Vec<String> = kinds
        .iter()
        .zip(&medians)
        .map(|(k, m)| format!("{k} {m:.1?}"))
        .collect();
    let report = format!("{} (overall {overall:.1?})", report.join(", "));
    println!("failure delay medians: {report}");
    assert!(overall >= Duration::from_millis(200), "{report}");
    for m in &medians {
        let off = m.abs_diff(overall).as_secs_f64() / overall.as_secs_f64();
        assert!(off <= 0.10, "medians {report}");
    }
    server.wait_idle();
    let logins = [(a, alice.password.as_str()), (a, bad), ("nosuch", bad)];
    assert_no_secrets(&server.log(), &logins);
}
