//! A compromised pre-login front (root only: only a root ipop3d splits): the back, started as
//! ipop3d would be, faces a scripted front in place of the confined one. Every breach of the
//! pipe's contract — a malformed, oversized or cut frame, a message out of turn, a USER/PASS
//! or an AUTH PLAIN the plaintext rule forbids, one attempt more than `max_auth_failures` —
//! ends the connection with a log line naming it and a non-zero exit, never a login. A
//! well-formed USER/PASS from the same fake front is granted: the scripts reach the real back.
//!
//! Each case runs in a process of its own (this test binary again, running only
//! [`fake_front_child`]), whose standard error is the back's log.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use apoptools::testing::pipe::{Request, Verdict};
use apoptools::testing::store::Secret;

use crate::harness::World;

const CASE: &str = "APOPTOOLS_FAKE_FRONT_CASE";
const CONFIG: &str = "APOPTOOLS_FAKE_FRONT_CONFIG";

/// A frame of `kind` with raw `fields` (each with its 2-byte length), as the pipe writes them.
fn frame(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut body = vec![kind];
    for f in fields {
        body.extend_from_slice(&(f.len() as u16).to_be_bytes());
        body.extend_from_slice(f);
    }
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn send(pipe: &mut UnixStream, request: Request) {
    request.write_to(pipe).unwrap();
}

fn verdict(pipe: &mut UnixStream) -> Option<Verdict> {
    Verdict::read_from(pipe).ok()?.ok()
}

fn plain(login: &str, password: &str) -> Request {
    Request::Plain {
        login: login.into(),
        password: Secret::new(password.as_bytes().to_vec()),
    }
}

/// The scripted fronts, by name: each writes its frames and reads what the back answers.
fn script(case: &str, mut pipe: UnixStream) -> bool {
    match case {
        "garbage" => pipe.write_all(&frame(0x99, &[b"abcd"])).is_ok(),
        "oversized" => pipe.write_all(&[0, 1, 0, 0, 0x10]).is_ok(),
        "cut-short" => pipe.write_all(&[0, 0, 0, 10, 0x10, 0, 5, b'a']).is_ok(),
        "forbidden-plain" | "granted" => {
            send(&mut pipe, plain("alice", "pw-alice-secret"));
            verdict(&mut pipe) == Some(Verdict::Granted)
        }
        "forbidden-auth-plain" => {
            send(
                &mut pipe,
                Request::SaslStart {
                    mechanism: "PLAIN".into(),
                    initial: Some(Secret::new(b"\0alice\0pw-alice-secret".to_vec())),
                },
            );
            verdict(&mut pipe).is_some()
        }
        "respond-unasked" => {
            send(
                &mut pipe,
                Request::SaslRespond {
                    response: Secret::new(b"anything".to_vec()),
                },
            );
            verdict(&mut pipe).is_some()
        }
        "tls-out-of-turn" => {
            send(
                &mut pipe,
                Request::Tls {
                    what: "TLSv1.3/TLS13_AES_128_GCM_SHA256".into(),
                    end_point: vec![0; 32],
                    exporter: vec![],
                },
            );
            send(&mut pipe, plain("alice", "pw-alice-secret"));
            verdict(&mut pipe).is_some()
        }
        "log-out-of-bounds" => {
            send(
                &mut pipe,
                Request::Log {
                    event: "granted".into(),
                    fields: "user=alice result=ok".into(),
                },
            );
            verdict(&mut pipe).is_some()
        }
        "one-attempt-too-many" => {
            for _ in 0..3 {
                send(&mut pipe, plain("alice", "wrong"));
                if verdict(&mut pipe) != Some(Verdict::Wrong) {
                    return false;
                }
            }
            send(&mut pipe, plain("alice", "pw-alice-secret"));
            verdict(&mut pipe).is_some()
        }
        other => panic!("no fake front {other}"),
    }
}

/// In a process of its own: the back of one connection, with the scripted front.
#[test]
fn fake_front_child() {
    let (Some(case), Some(config)) = (std::env::var_os(CASE), std::env::var_os(CONFIG)) else {
        return;
    };
    let case = case.to_string_lossy().into_owned();
    let front = Box::new(move |pipe: UnixStream| script(&case, pipe));
    let code = apoptools::testing::ipop3d::serve_with_fake_front(config.into(), front);
    std::process::exit(i32::from(code));
}

/// Runs one case: the back's exit code, its log, and how long it took.
fn run_case(w: &World, case: &str) -> (Option<i32>, String, Duration) {
    w.write_config();
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fake_front::fake_front_child",
            "--test-threads=1",
        ])
        .env(CASE, case)
        .env(CONFIG, w.config_path())
        .env("TCPREMOTEIP", "127.0.0.9")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let mut log = String::from_utf8_lossy(&out.stderr).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status.code(), log, started.elapsed())
}

#[test]
fn the_back_refuses_every_breach_of_a_fake_front_root() {
    if !crate::need_root("the_back_refuses_every_breach_of_a_fake_front_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    assert_eq!(alice.password, "pw-alice-secret");
    w.set("auth_delay", "100");
    w.set("plaintext", "never");
    let breaches = [
        ("garbage", "the login process sent not a request type"),
        (
            "oversized",
            "the login process sent frame length out of range",
        ),
        ("cut-short", "the login process sent frame cut short"),
        ("forbidden-plain", "relayed a forbidden USER/PASS"),
        ("forbidden-auth-plain", "started SASL out of turn"),
        ("respond-unasked", "answered no challenge"),
        ("tls-out-of-turn", "reported TLS out of turn"),
        ("log-out-of-bounds", "logged out of bounds"),
    ];
    for (case, why) in breaches {
        let (code, log, _) = run_case(&w, case);
        assert_eq!(code, Some(1), "{case}: {log}");
        assert!(
            log.contains("ipop3d: fatal remote=127.0.0.9") && log.contains(why),
            "{case}: {log}"
        );
        assert!(!log.contains("result=ok"), "{case}: {log}");
    }
    // The failure count is the back's: three wrong passwords, each after the back's delay,
    // then a fourth attempt (with the right password) ends it all.
    w.set("plaintext", "always");
    let (code, log, took) = run_case(&w, "one-attempt-too-many");
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("tried again after the last attempt"), "{log}");
    assert_eq!(log.matches("result=fail").count(), 3, "{log}");
    assert!(!log.contains("result=ok"), "{log}");
    assert!(
        took >= Duration::from_millis(300),
        "{took:?}: the delays were skipped"
    );
    // The control: the same fake front, well-formed, is let in by the real back.
    let (code, log, _) = run_case(&w, "granted");
    assert!(
        log.contains("ipop3d: login remote=127.0.0.9 user=alice method=user result=ok"),
        "{log}"
    );
    assert_eq!(code, Some(0), "{log}");
}

/// The pipe's reader never trusts a length: a frame claiming 65,536 bytes is refused before
/// anything is allocated for it (checked here on the library's own reader).
#[test]
fn a_frame_length_is_checked_before_it_is_read() {
    let mut bytes: &[u8] = &[0, 1, 0, 0, 0x10, 1, 2, 3];
    let got = Request::read_from(&mut bytes).unwrap();
    assert!(got.is_err(), "{got:?}");
    let mut rest = Vec::new();
    bytes.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, [0x10, 1, 2, 3], "the reader went past the length");
}
