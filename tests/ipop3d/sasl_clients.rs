//! SASL (RFC 5034) with real clients: mpop (GNU SASL), curl, fetchmail and the Python SCRAM
//! library `scramp` (an implementation independent of ipop3d's) driving the POP3 dialogue
//! itself. Each run fetches alice's mail, which must be the Maildir files byte for byte (once
//! the client's CRLF conversion is undone, or on the wire for the scramp script), checks the
//! exact lines the client sent for the exchange from its verbose output (every digest, proof
//! and signature recomputed here), and checks that every session logged
//! `method=<mechanism> result=ok`; two scramp runs fail on purpose (a wrong password, an
//! unknown user) and must log `result=fail`.
//!
//! Debian's mpop (GNU SASL) offers SCRAM-SHA-256, CRAM-MD5, PLAIN and LOGIN to POP3 but not
//! SCRAM-SHA-256-PLUS; curl offers PLAIN, LOGIN and CRAM-MD5 (no SCRAM); fetchmail CRAM-MD5
//! (no SCRAM). Only scramp does SCRAM-SHA-256-PLUS (tls-server-end-point; not tls-exporter).
//! As root the harness writes store records without SCRAM keys (ipop3d derives them at login),
//! as anyone else with them: the SCRAM tests without TLS cover both ways.
//!
//! The SASL exchanges without TLS run as any user: a non-root ipop3d reads the world's SCRAM
//! salt key (owned by the runner), so it offers SCRAM-SHA-256 too. SCRAM-SHA-256-PLUS needs
//! TLS, which only a root ipop3d does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::clients::{lf, output, strip_fetchmail_received, text};
use crate::harness::{large_message, retr_wire, seed_message, small_message, uniques};
use crate::harness::{Server, User, World};
use crate::tls_clients::{delivered, mda};

/// Runs `program` with `args` (and `env`) under a time limit; its output, whatever its status.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("timeout")
        .arg("120")
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// The same, failing the test unless it exits 0.
fn must(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = run(program, args, env);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}",
        out.status,
        output(&out)
    );
    out
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    B64.decode(text)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {text:?}"))
}

/// A mailbox of three messages (the seed's, a small one, a large one).
fn mailbox(w: &mut World) -> (User, Vec<Vec<u8>>, Vec<String>) {
    let alice = w.user("alice");
    let msgs = vec![seed_message(), small_message(2), large_message(200)];
    let names = msgs.iter().map(|m| w.deliver(&alice, m)).collect();
    (alice, msgs, names)
}

/// Checks what a client fetched against the messages: `got` in server order, each already
/// brought back to the file's form (or `wire`: compared with what RETR sends).
fn assert_mail(client: &str, got: &[Vec<u8>], msgs: &[Vec<u8>], wire: bool, log: &str) {
    assert_eq!(got.len(), msgs.len(), "{client} fetched:\n{log}");
    for (i, (got, m)) in got.iter().zip(msgs).enumerate() {
        let want = if wire { retr_wire(m) } else { m.clone() };
        assert!(
            *got == want,
            "{client}: message {} differs:\n{}\n---\n{log}",
            i + 1,
            text(&got[..got.len().min(2000)])
        );
    }
}

/// Waits for `sessions` sessions to end; every one must have logged exactly one login, of
/// `user` with `method`, and `result` (`ok` or `fail`), under TLS when `tls`. Returns the log.
fn assert_logins(
    server: &Server,
    sessions: usize,
    user: &str,
    method: &str,
    result: &str,
    tls: bool,
) -> String {
    let log = server.wait_ends(sessions);
    let logins: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("ipop3d: login "))
        .collect();
    assert_eq!(logins.len(), sessions, "{method}:\n{log}");
    let want = format!(" user={user} method={method} result={result}");
    for l in logins {
        assert!(
            l.starts_with("ipop3d: login remote=127.0.0.1 ") && l.contains(&format!("{want} ")),
            "not{want}: {l}\n{log}"
        );
        assert_eq!(l.contains(" tls=TLSv1."), tls, "{l}");
    }
    log
}

fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The exchange on the wire, as a client's verbose output shows it, checked against RFC 4616
// (PLAIN), the LOGIN convention, RFC 2195 (CRAM-MD5) and RFC 5802/7677 (SCRAM-SHA-256),
// computing every digest, proof and signature here, independently of ipop3d and the client.

/// Who sent a line.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Client,
    Server,
}

/// The lines of a verbose client log (lines starting with `client` are the ones it sent,
/// `server` the ones it read; one space after the mark is taken off) from its AUTH command
/// through the server's first reply that is not a `+` challenge.
fn dialogue(log: &str, client: &str, server: &str) -> Vec<(Side, String)> {
    let mut lines = Vec::new();
    for l in log.lines() {
        let (side, rest) = match (l.strip_prefix(client), l.strip_prefix(server)) {
            (Some(rest), _) => (Side::Client, rest),
            (None, Some(rest)) => (Side::Server, rest),
            (None, None) => continue,
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        if lines.is_empty() && !(side == Side::Client && rest.starts_with("AUTH ")) {
            continue;
        }
        lines.push((side, rest.to_string()));
        if side == Side::Server && rest != "+" && !rest.starts_with("+ ") {
            break;
        }
    }
    lines
}

/// A login as the exchange must show it.
struct Expect<'a> {
    /// The mechanism as the client names it on the AUTH line.
    mechanism: &'a str,
    /// Whether the AUTH line carries the initial response.
    initial_response: bool,
    name: &'a str,
    /// The password the client used (for SCRAM, its proof is checked against this one).
    password: &'a str,
    /// For SCRAM-SHA-256-PLUS: the tls-server-end-point binding data (the hash of the server's
    /// certificate).
    binding: Option<&'a [u8]>,
    /// Whether the server must grant the login.
    granted: bool,
}

/// Walks a dialogue step by step, failing the test (with the whole dialogue) on any mismatch.
struct Steps<'a> {
    lines: std::slice::Iter<'a, (Side, String)>,
    shown: String,
}

impl Steps<'_> {
    fn next(&mut self, side: Side) -> &str {
        match self.lines.next() {
            Some((s, line)) if *s == side => line,
            other => panic!("expected a {side:?} line, got {other:?} in\n{}", self.shown),
        }
    }

    /// A client line, decoded from base64 (an empty line is the empty response).
    fn response(&mut self) -> Vec<u8> {
        let line = self.next(Side::Client).to_string();
        unb64(&line)
    }

    /// A server challenge (`+ base64`), decoded.
    fn challenge(&mut self) -> Vec<u8> {
        let line = self.next(Side::Server).to_string();
        let Some(payload) = line.strip_prefix('+') else {
            panic!("expected a challenge, got {line:?} in\n{}", self.shown)
        };
        unb64(payload.trim_start())
    }

    fn assert(&self, ok: bool, what: &str) {
        assert!(ok, "{what} in\n{}", self.shown);
    }

    /// A challenge that must be `want`.
    fn challenge_is(&mut self, want: &[u8], what: &str) {
        let got = self.challenge();
        self.assert(got == want, what);
    }

    /// A response that must be `want`.
    fn response_is(&mut self, want: &[u8], what: &str) {
        let got = self.response();
        self.assert(got == want, what);
    }
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// Checks a dialogue (see [`dialogue`]) against what `want` says, down to the last byte of
/// every message; for SCRAM returns the salt the server sent.
fn check_exchange(lines: &[(Side, String)], want: &Expect) -> Option<Vec<u8>> {
    let mut steps = Steps {
        lines: lines.iter(),
        shown: format!("{lines:#?}"),
    };
    let auth = steps.next(Side::Client).to_string();
    let Some(arg) = auth.strip_prefix(&format!("AUTH {}", want.mechanism)) else {
        panic!("not AUTH {}: {auth:?}", want.mechanism)
    };
    let initial = match arg {
        "" => None,
        arg => Some(unb64(
            arg.strip_prefix(' ').expect("a space before the response"),
        )),
    };
    steps.assert(
        initial.is_some() == want.initial_response,
        &format!("initial response expected: {}", want.initial_response),
    );
    // Without an initial response, the first client message answers an empty challenge.
    let first = |steps: &mut Steps| {
        initial.clone().unwrap_or_else(|| {
            steps.challenge_is(b"", "an empty challenge first");
            steps.response()
        })
    };
    let (name, password) = (want.name, want.password);
    let mut salt = None;
    match want.mechanism {
        "PLAIN" => {
            let message = first(&mut steps);
            steps.assert(
                message == format!("\0{name}\0{password}").as_bytes(),
                "PLAIN",
            );
        }
        "LOGIN" => {
            let login = initial.clone().unwrap_or_else(|| {
                steps.challenge_is(b"Username:", "Username: prompt");
                steps.response()
            });
            steps.assert(login == name.as_bytes(), "LOGIN user name");
            steps.challenge_is(b"Password:", "Password: prompt");
            steps.response_is(password.as_bytes(), "LOGIN password");
        }
        "CRAM-MD5" => {
            use hmac::Mac;
            let challenge = steps.challenge();
            let shape = challenge.starts_with(b"<")
                && challenge.ends_with(b">")
                && challenge.contains(&b'@');
            steps.assert(shape, "a <...@...> challenge (RFC 2195 §2)");
            let mut mac = hmac::Hmac::<md5::Md5>::new_from_slice(password.as_bytes()).unwrap();
            mac.update(&challenge);
            let digest: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let answer = utf8(steps.response());
            steps.assert(answer == format!("{name} {digest}"), "CRAM-MD5 answer");
        }
        "SCRAM-SHA-256" | "SCRAM-SHA-256-PLUS" => {
            let first = utf8(first(&mut steps));
            salt = Some(check_scram(&mut steps, &first, want));
        }
        other => panic!("no check for {other}"),
    }
    let reply = steps.next(Side::Server).to_string();
    if want.granted {
        steps.assert(reply.starts_with("+OK Mailbox open, "), "the login's +OK");
    } else {
        steps.assert(reply == "-ERR [AUTH] Authentication failed.", "the failure");
    }
    let rest = steps.lines.next();
    steps.assert(rest.is_none(), "nothing after the reply");
    salt
}

/// The SCRAM part of [`check_exchange`] after the client-first message `first`: RFC 5802 §5
/// and §7 message by message, the proof recomputed from the password (§3) and, for a granted
/// login, the server's signature and the client's empty answer to it (RFC 5034 §4).
fn check_scram(steps: &mut Steps, first: &str, want: &Expect) -> Vec<u8> {
    let gs2 = match want.binding {
        None => "n,,",
        Some(_) => "p=tls-server-end-point,,",
    };
    let Some(bare) = first.strip_prefix(gs2) else {
        panic!("client-first {first:?} does not start with {gs2:?}")
    };
    let Some(client_nonce) = bare.strip_prefix(&format!("n={},r=", want.name)) else {
        panic!("client-first-bare {bare:?}")
    };
    assert!(
        !client_nonce.is_empty() && !client_nonce.contains(','),
        "{bare:?}"
    );
    let server_first = utf8(steps.challenge());
    let fields: Vec<&str> = server_first.split(',').collect();
    let (nonce, salt_b64, count) = match fields[..] {
        [r, s, i] => (r.strip_prefix("r="), s.strip_prefix("s="), i),
        _ => panic!("server-first {server_first:?} is not r=,s=,i="),
    };
    let nonce = nonce.expect("r=");
    let server_nonce = nonce
        .strip_prefix(client_nonce)
        .expect("r= extends the nonce");
    // ipop3d's nonce part: 18 random bytes in base64.
    assert_eq!(server_nonce.len(), 24, "{server_first:?}");
    assert_eq!(unb64(server_nonce).len(), 18, "{server_first:?}");
    let salt = unb64(salt_b64.expect("s="));
    assert_eq!(salt.len(), 16, "{server_first:?}");
    assert_eq!(count, "i=4096", "{server_first:?}");
    let client_final = utf8(steps.response());
    let Some((without_proof, proof)) = client_final.rsplit_once(",p=") else {
        panic!("client-final {client_final:?} has no proof")
    };
    let cbind = [gs2.as_bytes(), want.binding.unwrap_or_default()].concat();
    let expected = format!("c={},r={nonce}", b64(&cbind));
    assert_eq!(without_proof, expected, "client-final");
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(want.password.as_bytes(), &salt, 4096, &mut salted);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = hmac_sha256(&sha256(&client_key), auth_message.as_bytes());
    let want_proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    assert_eq!(unb64(proof), want_proof, "the client's proof (RFC 5802 §3)");
    if want.granted {
        let server_key = hmac_sha256(&salted, b"Server Key");
        let verifier = hmac_sha256(&server_key, auth_message.as_bytes());
        let server_final = utf8(steps.challenge());
        assert_eq!(
            server_final,
            format!("v={}", b64(&verifier)),
            "server-final"
        );
        steps.response_is(b"", "the empty answer to v=");
    }
    salt
}

// ---------------------------------------------------------------------------------------------
// mpop

/// mpop (`auth <auth>`, every message kept and delivered to an MDA without its Received
/// field) fetches alice's mail in one session, in the clear or, with `tls`, over implicit TLS
/// trusting only the world's CA; `mpop --debug` shows the dialogue, checked as
/// [`check_exchange`] does (mpop never sends an initial response in POP3). The session must
/// log `method=<method> result=ok`.
fn mpop_round(mut w: World, auth: &str, mechanism: &str, method: &str, tls: bool) {
    let ca = tls.then(|| w.tls().ca);
    let (alice, msgs, names) = mailbox(&mut w);
    let server = match tls {
        true => w.serve_implicit_tls(&[]),
        false => w.serve(),
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let tls_lines = match &ca {
        Some(ca) => format!(
            "tls on\ntls_starttls off\ntls_trust_file {}\n",
            ca.display()
        ),
        None => "tls off\n".to_string(),
    };
    let config = format!(
        "account default\nhost 127.0.0.1\nport {}\ntimeout 60\nauth {auth}\nuser {}\n\
         password {}\n{tls_lines}keep on\nonly_new off\nreceived_header off\n\
         uidls_file {d}/uidls\ndelivery mda {}\n",
        server.port,
        alice.name(),
        alice.password,
        mda(dir.path())
    );
    write_private(&dir.path().join("mpoprc"), &config);
    let rc = format!("{d}/mpoprc");
    let log = output(&must("mpop", &["--debug", "-C", &rc], &[]));
    let mail: Vec<Vec<u8>> = delivered(dir.path()).iter().map(|m| lf(m)).collect();
    assert_mail("mpop", &mail, &msgs, false, &log);
    let want = Expect {
        mechanism,
        initial_response: false,
        name: alice.name(),
        password: &alice.password,
        binding: None,
        granted: true,
    };
    // mpop --debug: "--> line" for what it sends, "<-- line" for what it reads.
    check_exchange(&dialogue(&log, "-->", "<--"), &want);
    assert_logins(&server, 1, "alice", method, "ok", tls);
    assert_eq!(uniques(&alice.maildir()), names.into_iter().collect());
}

/// mpop `auth scram-sha-256` (GNU SASL's client) logs in with SCRAM-SHA-256: its client-first
/// `n,,n=alice,r=...`, a proof that is right for the salt and count ipop3d sent, and the empty
/// answer to a server signature that is right too (GNU SASL checks it); then the mail.
#[test]
fn mpop_scram_sha_256() {
    let w = world!("mpop_scram_sha_256", "mpop");
    mpop_round(w, "scram-sha-256", "SCRAM-SHA-256", "scram-sha-256", false);
}

/// mpop `auth scram-sha-256` over implicit TLS, where ipop3d offers SCRAM-SHA-256-PLUS too
/// (which mpop does not do): GNU SASL sends the GS2 header `n,,` (no binding, none claimed),
/// which ipop3d accepts as no downgrade; the exchange and the mail as in the clear, the login
/// logged under TLS.
#[test]
fn mpop_scram_sha_256_implicit_tls_root() {
    let test = "mpop_scram_sha_256_implicit_tls_root";
    if crate::harness::need_programs(&["mpop"], test) && crate::harness::need_root(test) {
        mpop_round(
            World::new(),
            "scram-sha-256",
            "SCRAM-SHA-256",
            "scram-sha-256",
            true,
        );
    }
}

/// mpop `auth cram-md5` answers ipop3d's `<...@...>` challenge with `alice <HMAC-MD5>`.
#[test]
fn mpop_cram_md5() {
    let w = world!("mpop_cram_md5", "mpop");
    mpop_round(w, "cram-md5", "CRAM-MD5", "cram-md5", false);
}

/// mpop `auth plain` (allowed: INTRANET is set) answers the empty challenge with
/// `\0alice\0password`.
#[test]
fn mpop_plain() {
    let w = world!("mpop_plain", "mpop");
    mpop_round(w, "plain", "PLAIN", "plain", false);
}

/// mpop `auth login` answers the `Username:` and `Password:` prompts.
#[test]
fn mpop_login() {
    let w = world!("mpop_login", "mpop");
    mpop_round(w, "login", "LOGIN", "login", false);
}

// ---------------------------------------------------------------------------------------------
// curl

/// curl `--login-options AUTH=<mechanism>`, without and then with `--sasl-ir`, fetches each of
/// alice's messages in a session of its own; `curl -v` shows the dialogue, whose AUTH line
/// must carry the initial response exactly when `--sasl-ir` was given and the mechanism is
/// client-first (CRAM-MD5 is server-first: never). Every session logs `method=... result=ok`.
fn curl_round(mut w: World, mechanism: &str, method: &str) {
    let (alice, msgs, names) = mailbox(&mut w);
    let server = w.serve();
    let login = format!("{}:{}", alice.name(), alice.password);
    let options = format!("AUTH={mechanism}");
    for sasl_ir in [false, true] {
        let mut mail = Vec::new();
        for i in 1..=msgs.len() {
            let url = format!("pop3://127.0.0.1:{}/{i}", server.port);
            let mut args = vec!["-sS", "-v", "--max-time", "60", "--login-options", &options];
            if sasl_ir {
                args.push("--sasl-ir");
            }
            args.extend(["-u", &login, &url]);
            let out = must("curl", &args, &[]);
            let log = text(&out.stderr);
            let want = Expect {
                mechanism,
                initial_response: sasl_ir && mechanism != "CRAM-MD5",
                name: alice.name(),
                password: &alice.password,
                binding: None,
                granted: true,
            };
            check_exchange(&dialogue(&log, ">", "<"), &want);
            let retr = format!("> RETR {i}");
            assert!(log.lines().any(|l| l.trim_end() == retr), "{log}");
            mail.push(lf(&out.stdout));
        }
        let client = format!("curl AUTH={mechanism} sasl-ir={sasl_ir}");
        assert_mail(&client, &mail, &msgs, false, "");
    }
    assert_logins(&server, 2 * msgs.len(), "alice", method, "ok", false);
    assert_eq!(uniques(&alice.maildir()), names.into_iter().collect());
}

/// curl `AUTH=PLAIN`: `AUTH PLAIN`, the empty challenge, the response; with `--sasl-ir`, the
/// response on the AUTH line.
#[test]
fn curl_auth_plain() {
    let w = world!("curl_auth_plain", "curl");
    curl_round(w, "PLAIN", "plain");
}

/// curl `AUTH=LOGIN`: both prompts; with `--sasl-ir` the user name on the AUTH line and only
/// the `Password:` prompt.
#[test]
fn curl_auth_login() {
    let w = world!("curl_auth_login", "curl");
    curl_round(w, "LOGIN", "login");
}

/// curl `AUTH=CRAM-MD5`: the challenge and the digest, with or without `--sasl-ir` (a
/// server-first mechanism has no initial response, and curl sends none).
#[test]
fn curl_auth_cram_md5() {
    let w = world!("curl_auth_cram_md5", "curl");
    curl_round(w, "CRAM-MD5", "cram-md5");
}

// ---------------------------------------------------------------------------------------------
// fetchmail

/// fetchmail's poll option `auth cram-md5`: AUTH CRAM-MD5 and the right digest for ipop3d's
/// challenge (`fetchmail -v` shows the dialogue), then every message, kept.
#[test]
fn fetchmail_cram_md5() {
    let mut w = world!("fetchmail_cram_md5", "fetchmail");
    let (alice, msgs, names) = mailbox(&mut w);
    let server = w.serve();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let config = format!(
        "set no syslog\npoll 127.0.0.1 service {} protocol POP3 timeout 60 auth cram-md5\n\
         \tuser \"{}\" there with password \"{}\"\n\
         \toptions no rewrite fetchall keep sslproto '' mda \"{}\"\n",
        server.port,
        alice.name(),
        alice.password,
        mda(dir.path())
    );
    write_private(&dir.path().join("fetchmailrc"), &config);
    let home = dir.path().to_str().unwrap();
    let (rc, pid) = (format!("{d}/fetchmailrc"), format!("{d}/pid"));
    // Root's default pid file is /var/run/fetchmail.pid, shared by parallel tests.
    let args = [
        "--nodetach",
        "--nosyslog",
        "-v",
        "--pidfile",
        &pid,
        "-f",
        &rc,
    ];
    let env = [("HOME", home), ("FETCHMAILHOME", home), ("LC_ALL", "C")];
    let log = output(&must("fetchmail", &args, &env));
    let mail: Vec<Vec<u8>> = delivered(dir.path())
        .iter()
        .map(|m| strip_fetchmail_received(&lf(m)))
        .collect();
    assert_mail("fetchmail", &mail, &msgs, false, &log);
    let want = Expect {
        mechanism: "CRAM-MD5",
        initial_response: false,
        name: alice.name(),
        password: &alice.password,
        binding: None,
        granted: true,
    };
    check_exchange(
        &dialogue(&log, "fetchmail: POP3>", "fetchmail: POP3<"),
        &want,
    );
    assert_logins(&server, 1, "alice", "cram-md5", "ok", false);
    assert_eq!(uniques(&alice.maildir()), names.into_iter().collect());
}

// ---------------------------------------------------------------------------------------------
// scramp

/// A POP3 client around scramp's `ScramClient`, on a raw socket (under TLS, trusting only the
/// CA, for `localhost`, with scramp's tls-server-end-point binding of that socket): greeting,
/// CAPA, `AUTH <mechanism> <client-first>` (`ir`) or `AUTH <mechanism>` and the client-first
/// after the empty challenge, the client-final, then either the server-final (which scramp
/// verifies) answered with an empty line, STAT and every RETR's wire bytes into
/// `out/NNNN`, or the refusal; QUIT. Every line is printed (`C: ` sent, `S: ` read); the last
/// line printed is `RESULT ok` or `RESULT refused`. The password comes in `POP_SECRET`.
const SCRAMP_SCRIPT: &str = r#"
import base64, os, socket, ssl, sys
import scramp

host, port, ca, user, mech, ir, out = sys.argv[1:8]
sock = socket.create_connection((host, int(port)), timeout=60)
binding = None
if ca != "-":
    ctx = ssl.create_default_context(cafile=ca)
    sock = ctx.wrap_socket(sock, server_hostname="localhost")
    print("TLS", sock.version())
    binding = ("tls-server-end-point", sock)
f = sock.makefile("rb")

def say(line):
    print("C:", line)
    sock.sendall(line.encode() + b"\r\n")

def hear():
    raw = f.readline()
    if not raw.endswith(b"\r\n"):
        sys.exit("no CRLF line end: %r" % raw)
    line = raw[:-2].decode()
    print("S:", line)
    return line

def expect(prefix):
    line = hear()
    if not line.startswith(prefix):
        sys.exit("expected %r, got %r" % (prefix, line))
    return line

def b64(text):
    return base64.b64encode(text.encode()).decode()

def challenge():
    return base64.b64decode(expect("+ ")[2:], validate=True).decode()

expect("+OK")
say("CAPA")
expect("+OK")
while hear() != ".":
    pass
client = scramp.ScramClient([mech], user, os.environ["POP_SECRET"], channel_binding=binding)
first = client.get_client_first()
if ir == "ir":
    say("AUTH %s %s" % (mech, b64(first)))
else:
    say("AUTH " + mech)
    if challenge() != "":
        sys.exit("the first challenge is not empty")
    say(b64(first))
client.set_server_first(challenge())
say(b64(client.get_client_final()))
line = hear()
if line.startswith("-ERR"):
    say("QUIT")
    expect("+OK")
    print("RESULT refused")
    sys.exit(0)
if not line.startswith("+ "):
    sys.exit("neither the server-final nor a refusal: %r" % line)
client.set_server_final(base64.b64decode(line[2:], validate=True).decode())
say("")
expect("+OK")
say("STAT")
count = int(expect("+OK ").split()[1])
for i in range(1, count + 1):
    say("RETR %d" % i)
    expect("+OK")
    wire = b""
    while not wire.endswith(b"\r\n.\r\n"):
        line = f.readline()
        if not line:
            sys.exit("connection closed in RETR %d" % i)
        wire += line
    open(os.path.join(out, "%04d" % i), "wb").write(wire)
say("QUIT")
expect("+OK")
print("RESULT ok")
"#;

/// A Python that has scramp: `$APOPTOOLS_PYTHON`, or the venv `.ci/run` makes in
/// `target/ci-venv`. None when neither has it: then `test` is skipped (`needs scramp`), which
/// fails under `APOPTOOLS_REQUIRE_ALL`.
fn scramp_python(test: &str) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/python3");
    let given = std::env::var_os("APOPTOOLS_PYTHON").map(PathBuf::from);
    let found = given.into_iter().chain([venv]).find(|python| {
        Command::new(python)
            .args(["-c", "import scramp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        crate::skip::skipped("needs scramp", test);
    }
    found
}

/// What one run of [`SCRAMP_SCRIPT`] printed and fetched.
struct ScrampRun {
    log: String,
    /// The wire bytes of each RETR (after its `+OK` line, through the `.` line).
    mail: Vec<Vec<u8>>,
}

/// Runs [`SCRAMP_SCRIPT`] with `python` against 127.0.0.1:`port` (under TLS when `ca` is
/// given) as `name` with `password`; `ir`: the client-first message on the AUTH line.
fn scramp_run(
    python: &Path,
    port: u16,
    ca: Option<&Path>,
    (name, password): (&str, &str),
    mechanism: &str,
    ir: bool,
) -> ScrampRun {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("scramp_pop3.py");
    std::fs::write(&script, SCRAMP_SCRIPT).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let ca = ca.map_or("-".to_string(), |p| p.display().to_string());
    let port = port.to_string();
    let args = [
        script.to_str().unwrap(),
        "127.0.0.1",
        &port,
        &ca,
        name,
        mechanism,
        if ir { "ir" } else { "prompt" },
        out.to_str().unwrap(),
    ];
    let python = python.to_str().unwrap();
    let result = must(python, &args, &[("POP_SECRET", password)]);
    ScrampRun {
        log: output(&result),
        mail: delivered(dir.path()),
    }
}

/// The CAPA `SASL` line a script run read.
fn sasl_line(log: &str) -> &str {
    log.lines()
        .find_map(|l| l.strip_prefix("S: SASL"))
        .unwrap_or_else(|| panic!("no SASL capability:\n{log}"))
}

/// The SHA-256 of the server certificate's DER (its signature is ECDSA with SHA-256): the
/// tls-server-end-point binding data (RFC 5929 §4.1).
fn server_end_point(cert_pem: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::pem_file_iter(cert_pem)
        .unwrap()
        .next()
        .expect("a certificate")
        .unwrap();
    sha256(&cert).to_vec()
}

/// scramp's SCRAM-SHA-256 over plain TCP, with the client-first on the AUTH line and after the
/// empty challenge: CAPA offers `SASL SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN` (no -PLUS without
/// TLS), every message checked here (nonce, 16-byte salt, 4096 iterations, the proof and the
/// server signature recomputed), scramp accepts the server's signature, the mail is byte for
/// byte what RETR must send, and both sessions log `method=scram-sha-256 result=ok`.
#[test]
fn scramp_scram_sha_256() {
    let test = "scramp_scram_sha_256";
    let Some(python) = scramp_python(test) else {
        return;
    };
    let mut w = World::new();
    let (alice, msgs, names) = mailbox(&mut w);
    let server = w.serve();
    let login = (alice.name(), alice.password.as_str());
    let mut salts = Vec::new();
    for ir in [true, false] {
        let run = scramp_run(&python, server.port, None, login, "SCRAM-SHA-256", ir);
        let log = &run.log;
        assert_eq!(
            sasl_line(log),
            " SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN",
            "{log}"
        );
        assert!(log.ends_with("RESULT ok\n"), "{log}");
        let want = Expect {
            mechanism: "SCRAM-SHA-256",
            initial_response: ir,
            name: alice.name(),
            password: &alice.password,
            binding: None,
            granted: true,
        };
        salts.push(check_exchange(&dialogue(log, "C:", "S:"), &want));
        assert_mail("scramp", &run.mail, &msgs, true, log);
    }
    assert_eq!(
        salts[0], salts[1],
        "an account's salt is the same each time"
    );
    assert_logins(&server, 2, "alice", "scram-sha-256", "ok", false);
    assert_eq!(uniques(&alice.maildir()), names.into_iter().collect());
}

/// scramp's SCRAM-SHA-256-PLUS with tls-server-end-point over implicit TLS (Python's ssl,
/// trusting only the test CA): CAPA offers `SASL SCRAM-SHA-256-PLUS SCRAM-SHA-256 CRAM-MD5
/// PLAIN LOGIN`; the GS2 header is `p=tls-server-end-point,,` and `c=` carries the SHA-256 of
/// the server's certificate (computed here from the file), which ipop3d checked against its
/// own; the signature, the mail and the logs (`method=scram-sha-256-plus result=ok`, under
/// TLS) as for SCRAM-SHA-256; with and without the initial response.
#[test]
fn scramp_scram_sha_256_plus_tls_server_end_point_root() {
    let test = "scramp_scram_sha_256_plus_tls_server_end_point_root";
    if !crate::harness::need_root(test) {
        return;
    }
    let Some(python) = scramp_python(test) else {
        return;
    };
    let mut w = World::new();
    let files = w.tls();
    let binding = server_end_point(&files.cert);
    let (alice, msgs, names) = mailbox(&mut w);
    let server = w.serve_implicit_tls(&[]);
    let login = (alice.name(), alice.password.as_str());
    for ir in [true, false] {
        let mechanism = "SCRAM-SHA-256-PLUS";
        let run = scramp_run(&python, server.port, Some(&files.ca), login, mechanism, ir);
        let log = &run.log;
        assert!(log.starts_with("TLS TLSv1."), "{log}");
        let offered = " SCRAM-SHA-256-PLUS SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN";
        assert_eq!(sasl_line(log), offered, "{log}");
        assert!(log.ends_with("RESULT ok\n"), "{log}");
        let want = Expect {
            mechanism,
            initial_response: ir,
            name: alice.name(),
            password: &alice.password,
            binding: Some(&binding),
            granted: true,
        };
        check_exchange(&dialogue(log, "C:", "S:"), &want);
        assert_mail("scramp -PLUS", &run.mail, &msgs, true, log);
    }
    assert_logins(&server, 2, "alice", "scram-sha-256-plus", "ok", true);
    assert_eq!(uniques(&alice.maildir()), names.into_iter().collect());
}

/// scramp with a wrong password: the exchange goes as far as the client-final (whose proof is
/// right for the wrong password), then `-ERR [AUTH] Authentication failed.` and no server
/// signature; the session logs `user=alice method=scram-sha-256 result=fail` and no mail moves.
#[test]
fn scramp_wrong_password_fails() {
    let test = "scramp_wrong_password_fails";
    let Some(python) = scramp_python(test) else {
        return;
    };
    let mut w = World::new();
    let (alice, _, names) = mailbox(&mut w);
    let server = w.serve();
    let login = (alice.name(), "wrong-password");
    let run = scramp_run(&python, server.port, None, login, "SCRAM-SHA-256", true);
    assert!(run.log.ends_with("RESULT refused\n"), "{}", run.log);
    let want = Expect {
        mechanism: "SCRAM-SHA-256",
        initial_response: true,
        name: alice.name(),
        password: "wrong-password",
        binding: None,
        granted: false,
    };
    check_exchange(&dialogue(&run.log, "C:", "S:"), &want);
    assert!(run.mail.is_empty());
    assert_logins(&server, 1, "alice", "scram-sha-256", "fail", false);
    assert_eq!(uniques(&alice.maildir()), names.into_iter().collect());
}

/// scramp as a user with no account: the server-first message has the shape a real account's
/// has (the client's nonce extended by 24 characters, a 16-byte salt, `i=4096`) and the same
/// salt on every try, as a real account's salt is; the exchange fails only after the
/// client-final, with the same reply as a wrong password, and both sessions log
/// `user=nobody-here method=scram-sha-256 result=fail`.
#[test]
fn scramp_unknown_user_fails_at_the_end() {
    let test = "scramp_unknown_user_fails_at_the_end";
    let Some(python) = scramp_python(test) else {
        return;
    };
    let mut w = World::new();
    let (alice, _, names) = mailbox(&mut w);
    let server = w.serve();
    let login = ("nobody-here", alice.password.as_str());
    let mut salts = Vec::new();
    for ir in [true, false] {
        let run = scramp_run(&python, server.port, None, login, "SCRAM-SHA-256", ir);
        assert!(run.log.ends_with("RESULT refused\n"), "{}", run.log);
        let want = Expect {
            mechanism: "SCRAM-SHA-256",
            initial_response: ir,
            name: "nobody-here",
            password: &alice.password,
            binding: None,
            granted: false,
        };
        salts.push(check_exchange(&dialogue(&run.log, "C:", "S:"), &want));
    }
    assert_eq!(salts[0], salts[1], "an absent account's salt is stable too");
    assert_logins(&server, 2, "nobody-here", "scram-sha-256", "fail", false);
    assert_eq!(uniques(&alice.maildir()), names.into_iter().collect());
}
