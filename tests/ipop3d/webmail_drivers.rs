//! The webmail drivers themselves against apoppassd (issue #12): Roundcube's poppassd password
//! driver (Debian roundcube-plugins, plugins/password/drivers/poppassd.php, on PEAR's
//! Net_Socket) and Horde's (php-horde-passwd, passwd/lib/Driver/Poppassd.php), run by `php`
//! from the packages as `.ci/run` unpacks them into `target/webmail` (or `$APOPTOOLS_WEBMAIL`).
//! tests/ipop3d/apoppassd.rs replays their dialogues; here their own code speaks.
//!
//! A small PHP script per driver (tests/ipop3d/webmail/) loads the driver's files as the
//! webmail does, with stand-ins for the framework's plumbing only (config lookup, hook lookup;
//! see the scripts), calls it once with (user, old, new) and prints what the driver returned
//! or threw. Between the driver and apoppassd a relay records both directions, so each test
//! checks the exact bytes the driver sent and got. A change is checked where it matters: the
//! new password verifies with `apoppasswd --check` and opens an ipop3d session, the old one no
//! longer does; a refusal leaves the store file byte for byte as it was. apoppassd writes other
//! accounts' stores, so every test needs root.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::apoppassd::{apoppasswd_accepts, assert_changed, assert_no_secrets, lines_with, stored};
use crate::harness::{Server, World, PATIENCE};

const APOPPASSD: &str = env!("CARGO_BIN_EXE_apoppassd");

const GREETING: &str = "200 apoppassd ready, who are you?\r\n";
const USER_OK: &str = "200 Your password please.\r\n";
const PASS_OK: &str = "200 Your new password please.\r\n";
const CHANGED: &str = "200 Password changed.\r\n";
const BYE: &str = "200 Bye.\r\n";
const AUTH_FAILED: &str = "500 Authentication failed.\r\n";
const TOO_SHORT: &str = "500 the password is shorter than 8 characters\r\n";

#[derive(Clone, Copy, Debug)]
enum Driver {
    Roundcube,
    Horde,
}

impl Driver {
    /// The PHP script (tests/ipop3d/webmail/) that runs the driver.
    fn script(self) -> PathBuf {
        let name = match self {
            Driver::Roundcube => "roundcube.php",
            Driver::Horde => "horde.php",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/ipop3d/webmail")
            .join(name)
    }

    /// The unpacked files the script loads, each with the Debian package that ships it.
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Driver::Roundcube => &[
                (
                    "usr/share/roundcube/plugins/password/drivers/poppassd.php",
                    "roundcube-plugins",
                ),
                (
                    "usr/share/roundcube/plugins/password/password.php",
                    "roundcube-plugins",
                ),
                ("usr/share/php/Net/Socket.php", "php-net-socket"),
                ("usr/share/php/PEAR.php", "php-pear"),
            ],
            Driver::Horde => &[
                (
                    "usr/share/horde/passwd/lib/Driver/Poppassd.php",
                    "php-horde-passwd",
                ),
                ("usr/share/horde/passwd/lib/Driver.php", "php-horde-passwd"),
                (
                    "usr/share/horde/passwd/lib/Exception.php",
                    "php-horde-passwd",
                ),
                ("usr/share/php/Horde/Exception.php", "php-horde-exception"),
                (
                    "usr/share/php/Horde/Exception/Wrapped.php",
                    "php-horde-exception",
                ),
            ],
        }
    }

    /// A command line as the driver sends it: Net_Socket's `writeLine` ends it CRLF,
    /// Horde's `fputs` with a bare LF.
    fn line(self, line: &str) -> String {
        match self {
            Driver::Roundcube => format!("{line}\r\n"),
            Driver::Horde => format!("{line}\n"),
        }
    }
}

/// Where `.ci/run` unpacked the packages: `$APOPTOOLS_WEBMAIL`, else `target/webmail`.
fn webmail_root() -> PathBuf {
    std::env::var_os("APOPTOOLS_WEBMAIL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/webmail"))
}

/// Whether root-only `test` of `driver` can run: root, `php`, and the driver's unpacked files;
/// if not, says it is skipped and what it needs.
fn need_driver(driver: Driver, test: &str) -> bool {
    if !crate::harness::need_root(test) || !crate::harness::need_programs(&["php"], test) {
        return false;
    }
    let root = webmail_root();
    match driver.files().iter().find(|(f, _)| !root.join(f).is_file()) {
        Some((_, package)) => {
            crate::skip::skipped(&format!("needs {package}"), test);
            false
        }
        None => true,
    }
}

/// What went over one connection through a [`Relay`].
struct Dialogue {
    /// Everything the driver sent.
    client: Vec<u8>,
    /// Everything apoppassd sent.
    server: Vec<u8>,
    /// Both, in the order they were read: `C: ` and `S: ` lines, line ends shown escaped.
    transcript: String,
}

/// Accepts one connection on 127.0.0.1, passes it through to the server's port and records
/// what each side sends.
struct Relay {
    port: u16,
    thread: JoinHandle<Dialogue>,
}

impl Relay {
    fn start(server: &Server) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().unwrap().port();
        let upstream = server.port;
        let thread = std::thread::spawn(move || relay_one(&listener, upstream));
        Relay { port, thread }
    }

    /// Waits until both directions have ended; what went over the connection.
    fn finish(self) -> Dialogue {
        self.thread.join().expect("the relay panicked")
    }
}

fn relay_one(listener: &TcpListener, upstream: u16) -> Dialogue {
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let client = loop {
        match listener.accept() {
            Ok((client, _)) => break client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    start.elapsed() < PATIENCE,
                    "the driver did not connect in {PATIENCE:?}"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("relay accept: {e}"),
        }
    };
    client.set_nonblocking(false).unwrap();
    let server = TcpStream::connect(("127.0.0.1", upstream)).expect("relay to apoppassd");
    let chunks = Arc::new(Mutex::new(Vec::new()));
    let pumps = [
        (
            'C',
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
        ),
        ('S', server, client),
    ]
    .map(|(side, from, to)| {
        let chunks = chunks.clone();
        std::thread::spawn(move || pump(side, from, to, &chunks))
    });
    for pump in pumps {
        pump.join().expect("a relay pump panicked");
    }
    let chunks = chunks.lock().unwrap();
    let side = |want: char| -> Vec<u8> {
        chunks
            .iter()
            .filter(|(s, _)| *s == want)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    };
    let transcript = chunks
        .iter()
        .map(|(s, b)| format!("{s}: {}\n", String::from_utf8_lossy(b).escape_debug()))
        .collect();
    Dialogue {
        client: side('C'),
        server: side('S'),
        transcript,
    }
}

/// Copies `from` to `to` until `from` ends, recording each read; then ends `to`'s writing
/// half. What `to` no longer takes (the driver has gone) is still recorded.
fn pump(side: char, mut from: TcpStream, mut to: TcpStream, chunks: &Mutex<Vec<(char, Vec<u8>)>>) {
    from.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                chunks.lock().unwrap().push((side, buf[..n].to_vec()));
                let _ = to.write_all(&buf[..n]);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Runs `driver` against 127.0.0.1:`port` for (`user`, `old`, `new`): the `key=value` lines
/// its script printed (`result`, and `code`/`class` and `message` on failure).
fn run_driver(
    driver: Driver,
    port: u16,
    user: &str,
    old: &str,
    new: &str,
) -> BTreeMap<String, String> {
    let out = Command::new("timeout")
        .arg("120")
        .arg("php")
        .arg(driver.script())
        .env("WEBMAIL_ROOT", webmail_root())
        .env("WEBMAIL_PORT", port.to_string())
        .env("WEBMAIL_USER", user)
        .env("WEBMAIL_OLD", old)
        .env("WEBMAIL_NEW", new)
        .stdin(Stdio::null())
        .output()
        .expect("run php");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{driver:?} driver script failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{driver:?} script printed {l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The `key=value` pairs a test expects from a driver script.
fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The driver changes alice's password (old and new holding spaces, as webmail users type
/// them) and reports success; what it sent is `user`, `pass OLD`, `newpass NEW` in its own
/// line ends and then it leaves without `quit` (neither driver says `quit` after a change).
/// The new password then verifies and opens an ipop3d session, the old one does neither.
fn driver_changes_the_password(driver: Driver, test: &str) {
    if !need_driver(driver, test) {
        return;
    }
    let mut w = World::new();
    let mut alice = w.user("alice");
    alice.password = format!("old {driver:?} pass 1");
    w.set_secret(&alice, None, &alice.password);
    let new = format!("new {driver:?} pass 2");
    let server = w.serve_program(APOPPASSD, &[]);
    let relay = Relay::start(&server);
    let result = run_driver(driver, relay.port, alice.name(), &alice.password, &new);
    let dialogue = relay.finish();
    let log = server.wait_ends(1);
    eprintln!("{driver:?} driver dialogue:\n{}", dialogue.transcript);
    assert_eq!(
        result,
        fields(&[("result", "success")]),
        "{}",
        dialogue.transcript
    );
    let sent = [
        driver.line("user alice"),
        driver.line(&format!("pass {}", alice.password)),
        driver.line(&format!("newpass {new}")),
    ]
    .concat();
    assert_eq!(
        String::from_utf8_lossy(&dialogue.client),
        sent,
        "what the driver sent"
    );
    assert_eq!(
        String::from_utf8_lossy(&dialogue.server),
        [GREETING, USER_OK, PASS_OK, CHANGED].concat(),
        "what apoppassd answered"
    );
    for want in [
        "apoppassd: login remote=127.0.0.1 user=alice result=ok",
        "apoppassd: change remote=127.0.0.1 user=alice result=ok",
        "apoppassd: end remote=127.0.0.1 user=alice result=closed",
    ] {
        assert_eq!(lines_with(&log, want).len(), 1, "{want}\n{log}");
    }
    assert_no_secrets(&log, &[&alice.password, &new]);

    assert_changed(&w, &alice, &alice.password, &new);
}

/// How a driver reports refusals: what its script prints for a wrong old password and for a
/// new password too short for the policy, and the `quit` it sends after a refusal, if any.
struct Refusal {
    wrong_old: BTreeMap<String, String>,
    too_short: BTreeMap<String, String>,
    quit: Option<&'static str>,
}

/// A wrong old password and a new password too short for the policy: the driver reports each
/// as a failure quoting apoppassd's reason, sends nothing past the refused command but its
/// `quit` (Horde's), and the store is byte for byte as it was; the old password still
/// verifies, neither new one does.
fn driver_reports_refusals(driver: Driver, refusal: Refusal, test: &str) {
    if !need_driver(driver, test) {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    let before = stored(&alice);
    assert!(before.is_some(), "alice has a store");
    let server = w.serve_program(APOPPASSD, &[]);
    let (wrong, never) = ("wrong old pass 3", "Never-written-4");
    let short = "short";
    let quit = refusal.quit.map(|q| driver.line(q)).unwrap_or_default();

    // A wrong old password: refused at `pass`, so no `newpass` is sent.
    let relay = Relay::start(&server);
    let result = run_driver(driver, relay.port, alice.name(), wrong, never);
    let dialogue = relay.finish();
    server.wait_ends(1);
    eprintln!(
        "{driver:?} driver dialogue, wrong old password:\n{}",
        dialogue.transcript
    );
    assert_eq!(result, refusal.wrong_old, "{}", dialogue.transcript);
    let sent = [
        driver.line("user alice"),
        driver.line(&format!("pass {wrong}")),
        quit.clone(),
    ]
    .concat();
    assert_eq!(String::from_utf8_lossy(&dialogue.client), sent);
    let bye = if refusal.quit.is_some() { BYE } else { "" };
    assert_eq!(
        String::from_utf8_lossy(&dialogue.server),
        [GREETING, USER_OK, AUTH_FAILED, bye].concat()
    );
    assert_eq!(stored(&alice), before, "the store changed");

    // The right old password, a new one the policy refuses.
    let relay = Relay::start(&server);
    let result = run_driver(driver, relay.port, alice.name(), &alice.password, short);
    let dialogue = relay.finish();
    let log = server.wait_ends(2);
    eprintln!(
        "{driver:?} driver dialogue, refused new password:\n{}",
        dialogue.transcript
    );
    assert_eq!(result, refusal.too_short, "{}", dialogue.transcript);
    let sent = [
        driver.line("user alice"),
        driver.line(&format!("pass {}", alice.password)),
        driver.line(&format!("newpass {short}")),
        quit,
    ]
    .concat();
    assert_eq!(String::from_utf8_lossy(&dialogue.client), sent);
    assert_eq!(
        String::from_utf8_lossy(&dialogue.server),
        [GREETING, USER_OK, PASS_OK, TOO_SHORT, bye].concat()
    );
    assert_eq!(stored(&alice), before, "the store changed");

    let p = "apoppassd: ";
    let r = "remote=127.0.0.1 user=alice";
    for (want, n) in [
        (format!("{p}login {r} result=fail reason=\""), 1),
        (format!("{p}login {r} result=ok"), 1),
        (format!("{p}change {r} result=refused reason=\""), 1),
        (format!("{p}change {r} result=ok"), 0),
    ] {
        assert_eq!(lines_with(&log, &want).len(), n, "{want}\n{log}");
    }
    assert_no_secrets(&log, &[&alice.password, wrong, never]);
    assert!(apoppasswd_accepts(&w, &alice, &alice.password));
    assert!(!apoppasswd_accepts(&w, &alice, never));
    assert!(!apoppasswd_accepts(&w, &alice, short));
}

/// Roundcube's driver (plugins/password/drivers/poppassd.php): CRLF lines, success is
/// PASSWORD_SUCCESS, and it drops the connection without `quit`.
#[test]
fn roundcube_poppassd_driver_changes_the_password_root() {
    driver_changes_the_password(
        Driver::Roundcube,
        "roundcube_poppassd_driver_changes_the_password_root",
    );
}

/// Roundcube's driver on refusals: PASSWORD_ERROR (2) with the reply's text after its code,
/// which the plugin shows the user after its "internal error"; no `quit`.
#[test]
fn roundcube_poppassd_driver_reports_refusals_root() {
    driver_reports_refusals(
        Driver::Roundcube,
        Refusal {
            wrong_old: fields(&[
                ("result", "failure"),
                ("code", "2"),
                ("message", r#""Authentication failed.""#),
            ]),
            too_short: fields(&[
                ("result", "failure"),
                ("code", "2"),
                ("message", r#""the password is shorter than 8 characters""#),
            ]),
            quit: None,
        },
        "roundcube_poppassd_driver_reports_refusals_root",
    );
}

/// Horde's driver (passwd/lib/Driver/Poppassd.php): bare-LF lines, success is no exception,
/// and it leaves the connection open until PHP exits (no `quit` after a change).
#[test]
fn horde_poppassd_driver_changes_the_password_root() {
    driver_changes_the_password(
        Driver::Horde,
        "horde_poppassd_driver_changes_the_password_root",
    );
}

/// Horde's driver on refusals: a Passwd_Exception quoting the whole reply line (CRLF
/// included), prefixed "Incorrect old password.: " for a refused `pass`; it then sends `quit`.
#[test]
fn horde_poppassd_driver_reports_refusals_root() {
    driver_reports_refusals(
        Driver::Horde,
        Refusal {
            wrong_old: fields(&[
                ("result", "exception"),
                ("class", "Passwd_Exception"),
                (
                    "message",
                    r#""Incorrect old password.: 500 Authentication failed.\r\n""#,
                ),
            ]),
            too_short: fields(&[
                ("result", "exception"),
                ("class", "Passwd_Exception"),
                (
                    "message",
                    r#""500 the password is shorter than 8 characters\r\n""#,
                ),
            ]),
            quit: Some("quit"),
        },
        "horde_poppassd_driver_reports_refusals_root",
    );
}
