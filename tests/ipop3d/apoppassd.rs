//! apoppassd: the poppassd protocol (issue #12) on real 127.0.0.1 sockets, one process per
//! connection as tcpserver runs it, with the dialogues of the webmail drivers that speak it
//! (Roundcube's and Horde's poppassd drivers); identical failures for every reason a login is
//! refused, the failure delay and limit, the store's policy, the line limit, out-of-order
//! commands and the log. apoppassd writes other accounts' stores, so every test needs root.
//!
//! A change is checked where it matters: the new password verifies with `apoppasswd --check`
//! (run as root for the account) and opens an ipop3d session, the old one no longer does; a
//! refusal leaves the store file byte for byte as it was.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apoptools::testing::store;

use crate::harness::{Server, User, World, PATIENCE};

const APOPPASSD: &str = env!("CARGO_BIN_EXE_apoppassd");
const APOPPASSWD: &str = env!("CARGO_BIN_EXE_apoppasswd");

const GREETING: &str = "200 apoppassd ready, who are you?";
const USER_OK: &str = "200 Your password please.";
const PASS_OK: &str = "200 Your new password please.";
const CHANGED: &str = "200 Password changed.";
const BYE: &str = "200 Bye.";
const AUTH_FAILED: &str = "500 Authentication failed.";
const USER_FIRST: &str = "500 Send user first.";
const PASS_FIRST: &str = "500 Send pass first.";
const UNKNOWN: &str = "500 Unknown command.";
const TOO_LONG: &str = "500 Line too long.";

/// One poppassd session over a raw TCP stream.
struct Session {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The greeting exactly as sent (with its line end).
    greeting: Vec<u8>,
}

impl Session {
    /// Connects and reads the greeting, which must be [`GREETING`].
    fn connect(server: &Server) -> Session {
        let tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        tcp.set_write_timeout(Some(PATIENCE)).unwrap();
        let mut s = Session {
            reader: BufReader::new(tcp.try_clone().unwrap()),
            writer: tcp,
            greeting: Vec::new(),
        };
        s.greeting = s
            .raw_line()
            .expect("apoppassd closed the connection before its greeting");
        assert_eq!(text(&s.greeting), GREETING, "greeting");
        s
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to apoppassd");
    }

    /// The next reply line as sent, with its line end; `None` at end of stream.
    fn raw_line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert!(
                    line.ends_with(b"\n"),
                    "reply cut off by the end of the stream: {:?}",
                    String::from_utf8_lossy(&line)
                );
                Some(line)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("reading from apoppassd: {e}"),
        }
    }

    /// The next reply line without its line end (CRLF or LF); the connection must be open.
    fn line(&mut self) -> String {
        let raw = self
            .raw_line()
            .expect("apoppassd closed the connection unexpectedly");
        text(&raw).to_string()
    }

    /// Sends `line` with CRLF; the reply without its line end.
    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// Sends `line` with a bare LF; the reply without its line end.
    fn cmd_lf(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        self.line()
    }

    /// Sends `line` with CRLF; the reply exactly as sent (line end included).
    fn cmd_raw(&mut self, line: &str) -> Vec<u8> {
        self.send(format!("{line}\r\n").as_bytes());
        self.raw_line()
            .expect("apoppassd closed the connection unexpectedly")
    }

    /// Reads to the end of the stream: the server must close with nothing more to say.
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("waiting for apoppassd to close: {e}"),
        }
        assert!(
            rest.is_empty(),
            "expected the connection closed, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Drops the connection without `quit`, as Roundcube's driver does.
    fn disconnect(self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

/// A reply line without its CRLF or LF.
fn text(line: &[u8]) -> &str {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    std::str::from_utf8(line).expect("reply lines are UTF-8")
}

/// The reply's status code, as the webmail drivers match it.
fn code(reply: &str) -> u16 {
    reply
        .get(..3)
        .and_then(|c| c.parse().ok())
        .filter(|_| reply.as_bytes().get(3).is_none_or(|&b| b == b' '))
        .unwrap_or_else(|| panic!("no three-digit code: {reply:?}"))
}

/// Serves apoppassd from `w`.
fn serve(w: &World) -> Server {
    w.serve_program(APOPPASSD, &[])
}

/// The store file of `user` as it is now (`None` if there is none).
pub(crate) fn stored(user: &User) -> Option<Vec<u8>> {
    std::fs::read(store::path(&user.account, None)).ok()
}

/// Whether `apoppasswd --check --stdin USER` (as root) says `password` is the stored one.
pub(crate) fn apoppasswd_accepts(w: &World, user: &User, password: &str) -> bool {
    let mut child = Command::new(APOPPASSWD)
        .arg("--config")
        .arg(w.config_path())
        .args(["--check", "--stdin", user.name()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run apoppasswd");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!(
            "apoppasswd --check {}: {other:?}\n{}",
            user.name(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Whether ipop3d lets `user` in with `password` (USER/PASS).
pub(crate) fn ipop3d_accepts(w: &World, user: &User, password: &str) -> bool {
    let server = w.serve();
    let mut pop = server.connect();
    pop.ok(&format!("USER {}", user.name()));
    let reply = pop.cmd(&format!("PASS {password}"));
    let _ = pop.cmd("QUIT");
    reply.starts_with("+OK")
}

/// `password` is `user`'s password now, and `old` is not: by apoppasswd and by ipop3d.
pub(crate) fn assert_changed(w: &World, user: &User, old: &str, password: &str) {
    assert!(
        apoppasswd_accepts(w, user, password),
        "apoppasswd --check refuses the new password"
    );
    assert!(
        !apoppasswd_accepts(w, user, old),
        "apoppasswd --check still accepts the old password"
    );
    assert!(
        ipop3d_accepts(w, user, password),
        "ipop3d refuses the new password"
    );
    assert!(
        !ipop3d_accepts(w, user, old),
        "ipop3d still accepts the old password"
    );
}

/// The lines of `log` that start with `prefix`.
pub(crate) fn lines_with<'a>(log: &'a str, prefix: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// No secret of `secrets` appears anywhere in `log`.
pub(crate) fn assert_no_secrets(log: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !log.contains(secret),
            "the password {secret:?} is in the log:\n{log}"
        );
    }
}

/// Roundcube's poppassd driver: greeting matched by `^2\d\d`, then CRLF lines `user`, `pass`
/// (each matched by `^[23]\d\d`) and `newpass` (`^2\d\d`), then a disconnect without `quit`.
/// The new password is then the account's (a version-2 record with SCRAM keys, owned by the
/// account, mode 0600, as apoppasswd writes it: apoppasswd --check and ipop3d accept it) and
/// the old one is not; the log names the login, the change and the end.
#[test]
fn roundcube_dialogue_changes_the_password_root() {
    if !crate::harness::need_root("roundcube_dialogue_changes_the_password_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    let new = "Roundcube-new-9";
    let server = serve(&w);
    let mut s = Session::connect(&server);
    assert_eq!(
        s.greeting,
        format!("{GREETING}\r\n").as_bytes(),
        "the greeting ends CRLF"
    );
    assert!((200..300).contains(&code(text(&s.greeting))));
    let reply = s.cmd(&format!("user {}", alice.name()));
    assert!((200..400).contains(&code(&reply)), "user: {reply:?}");
    assert_eq!(reply, USER_OK);
    let reply = s.cmd(&format!("pass {}", alice.password));
    assert!((200..400).contains(&code(&reply)), "pass: {reply:?}");
    assert_eq!(reply, PASS_OK);
    let reply = s.cmd(&format!("newpass {new}"));
    assert!((200..300).contains(&code(&reply)), "newpass: {reply:?}");
    assert_eq!(reply, CHANGED);
    s.disconnect();
    let log = server.wait_ends(1);

    let path = store::path(&alice.account, None);
    let meta = std::fs::metadata(&path).expect("the store file");
    assert_eq!(meta.uid(), alice.account.uid, "the store's owner");
    assert_eq!(meta.mode() & 0o7777, 0o600, "the store's mode");
    let record = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    assert!(
        record.starts_with("apoptools-secret 2\n") && record.contains("\nscram-sha-256 4096 "),
        "not a version-2 record with SCRAM keys (as apoppasswd writes):\n{record}"
    );
    assert_changed(&w, &alice, &alice.password, new);

    for want in [
        "apoppassd: login remote=127.0.0.1 user=alice result=ok",
        "apoppassd: change remote=127.0.0.1 user=alice result=ok",
        "apoppassd: end remote=127.0.0.1 user=alice result=closed",
    ] {
        assert_eq!(lines_with(&log, want).len(), 1, "{want}\n{log}");
    }
    assert_no_secrets(&log, &[&alice.password, new]);
}

/// Horde's driver: bare-LF lines, an upper-case `USER`, an old and a new password holding
/// spaces (the rest of the line is the password), then `quit`: `200 Bye.` and the server
/// closes. The change took.
#[test]
fn horde_dialogue_with_bare_lf_and_quit_root() {
    if !crate::harness::need_root("horde_dialogue_with_bare_lf_and_quit_root") {
        return;
    }
    let mut w = World::new();
    let mut alice = w.user("alice");
    alice.password = "old horde pass 1".into();
    w.set_secret(&alice, None, &alice.password);
    let new = "new horde pass 2";
    let server = serve(&w);
    let mut s = Session::connect(&server);
    assert_eq!(s.cmd_lf(&format!("USER {}", alice.name())), USER_OK);
    assert_eq!(s.cmd_lf(&format!("pass {}", alice.password)), PASS_OK);
    assert_eq!(s.cmd_lf(&format!("newpass {new}")), CHANGED);
    assert_eq!(s.cmd_lf("quit"), BYE);
    s.expect_closed();
    let log = server.wait_ends(1);
    assert_changed(&w, &alice, &alice.password, new);
    let want = "apoppassd: end remote=127.0.0.1 user=alice result=quit";
    assert_eq!(lines_with(&log, want).len(), 1, "{want}\n{log}");
    assert_no_secrets(&log, &[&alice.password, new]);
}

/// A wrong old password: `500 Authentication failed.`, answered no sooner than `auth_delay`
/// after the command, and `newpass` is then refused; the store is untouched and the old
/// password still works. Failures count across `user` commands: the third closes the
/// connection, right after its reply.
#[test]
fn wrong_old_password_fails_slowly_and_three_close_root() {
    if !crate::harness::need_root("wrong_old_password_fails_slowly_and_three_close_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    w.set("auth_delay", "400");
    let delay = Duration::from_millis(400);
    let before = stored(&alice);
    let server = serve(&w);
    let mut s = Session::connect(&server);
    for n in 1..=3 {
        assert_eq!(s.cmd(&format!("user {}", alice.name())), USER_OK, "try {n}");
        let start = Instant::now();
        let reply = s.cmd(&format!("pass wrong-old-{n}"));
        let took = start.elapsed();
        assert_eq!(reply, AUTH_FAILED, "try {n}");
        assert!(took >= delay, "failure {n} answered after {took:?}");
        if n < 3 {
            assert_eq!(s.cmd("newpass Never-written-1"), PASS_FIRST, "try {n}");
        }
    }
    s.expect_closed();
    let log = server.wait_ends(1);
    assert_eq!(stored(&alice), before, "the store changed");
    assert!(apoppasswd_accepts(&w, &alice, &alice.password));
    assert!(ipop3d_accepts(&w, &alice, &alice.password));
    let fails = lines_with(
        &log,
        "apoppassd: login remote=127.0.0.1 user=alice result=fail reason=\"",
    );
    assert_eq!(fails.len(), 3, "{log}");
    assert!(
        lines_with(&log, "apoppassd: change ").is_empty(),
        "a change was logged:\n{log}"
    );
    assert_no_secrets(
        &log,
        &[
            "wrong-old-1",
            "wrong-old-2",
            "wrong-old-3",
            "Never-written-1",
        ],
    );
}

/// A new password the store's policy refuses gets `500 ` and the policy's own message, and
/// nothing is written: too short for the default `min_length` (8), holding a NUL, and too
/// short for a configured `min_length` (12). The old password still works.
#[test]
fn policy_refusal_quotes_the_policy_and_writes_nothing_root() {
    if !crate::harness::need_root("policy_refusal_quotes_the_policy_and_writes_nothing_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    let before = stored(&alice);
    let cases: [(Option<&str>, &[u8], &str); 3] = [
        (
            None,
            b"newpass short",
            "500 the password is shorter than 8 characters",
        ),
        (
            None,
            b"newpass long-enough\0but-NUL",
            "500 the password contains a NUL, CR or newline",
        ),
        (
            Some("12"),
            b"newpass eleven-char",
            "500 the password is shorter than 12 characters",
        ),
    ];
    for (min_length, line, want) in cases {
        if let Some(n) = min_length {
            w.set("min_length", n);
        }
        let server = serve(&w);
        let mut s = Session::connect(&server);
        assert_eq!(s.cmd(&format!("user {}", alice.name())), USER_OK);
        assert_eq!(s.cmd(&format!("pass {}", alice.password)), PASS_OK);
        s.send(&[line, b"\r\n"].concat());
        assert_eq!(s.line(), want, "{:?}", String::from_utf8_lossy(line));
        assert_eq!(s.cmd("quit"), BYE);
        s.expect_closed();
        let log = server.wait_ends(1);
        assert_eq!(stored(&alice), before, "the store changed");
        let want = "apoppassd: change remote=127.0.0.1 user=alice result=refused reason=\"";
        assert_eq!(lines_with(&log, want).len(), 1, "{want}\n{log}");
    }
    assert!(apoppasswd_accepts(&w, &alice, &alice.password));
    assert!(ipop3d_accepts(&w, &alice, &alice.password));
}

/// Every reason a login is refused looks the same, and takes no less than `auth_delay`: a
/// wrong password, a disabled account (with its right password), a uid-0 account (with its
/// right password), an unknown user and an account without a store all get `500
/// Authentication failed.`; none may then change anything.
#[test]
fn every_refused_login_looks_the_same_root() {
    if !crate::harness::need_root("every_refused_login_looks_the_same_root") {
        return;
    }
    let mut w = World::new();
    w.set("auth_delay", "300");
    let delay = Duration::from_millis(300);
    let alice = w.user("alice");
    let bob = w.user("bob");
    w.disable(&bob);
    let mut toor = w.user_with_ids("toor", 0, 0);
    toor.password = "pw-toor-secret".into();
    w.set_secret(&toor, None, &toor.password);
    let carol = w.user("carol");
    std::fs::remove_file(store::path(&carol.account, None)).unwrap();
    let stores: Vec<_> = [&alice, &bob, &toor].iter().map(|u| stored(u)).collect();
    let server = serve(&w);
    let cases = [
        ("wrong password", "alice", "wrong-password-1"),
        ("disabled", "bob", bob.password.as_str()),
        ("uid 0", "toor", toor.password.as_str()),
        ("unknown user", "nosuchuser", "whatever-pass-1"),
        ("no store", "carol", carol.password.as_str()),
    ];
    for (why, name, pass) in cases {
        let mut s = Session::connect(&server);
        assert_eq!(s.cmd(&format!("user {name}")), USER_OK, "{why}");
        let start = Instant::now();
        let reply = s.cmd(&format!("pass {pass}"));
        let took = start.elapsed();
        assert_eq!(reply, AUTH_FAILED, "{why}");
        assert!(took >= delay, "{why}: answered after {took:?}");
        assert_eq!(s.cmd("newpass Never-written-2"), PASS_FIRST, "{why}");
        assert_eq!(s.cmd("quit"), BYE, "{why}");
        s.expect_closed();
    }
    let log = server.wait_ends(cases.len());
    let now: Vec<_> = [&alice, &bob, &toor].iter().map(|u| stored(u)).collect();
    assert_eq!(now, stores, "a store changed");
    assert!(stored(&carol).is_none(), "carol got a store");
    for (why, name, _) in cases {
        let want = format!("apoppassd: login remote=127.0.0.1 user={name} result=fail ");
        assert_eq!(lines_with(&log, &want).len(), 1, "{why}: {want}\n{log}");
    }
    assert!(lines_with(&log, "apoppassd: change ").is_empty(), "{log}");
    let secrets: Vec<&str> = cases.iter().map(|c| c.2).collect();
    assert_no_secrets(&log, &secrets);
    assert_no_secrets(&log, &["Never-written-2"]);
}

/// Lines are at most 255 octets, LF included: a `pass` line of exactly 255 is read (a wrong
/// password); one of 256, the brief's `pass ` and 300 x's, and an over-long `newpass` after a
/// good `pass` all get `500 Line too long.` and the connection closes; nothing is written and
/// the long password is not logged.
#[test]
fn over_long_lines_close_the_connection_root() {
    if !crate::harness::need_root("over_long_lines_close_the_connection_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    let before = stored(&alice);
    let server = serve(&w);

    // The boundary, with bare LF: 5 + 249 + 1 = 255 octets is a line, 256 is too long.
    let mut s = Session::connect(&server);
    assert_eq!(s.cmd_lf(&format!("user {}", alice.name())), USER_OK);
    let fits = format!("pass {}", "y".repeat(249));
    assert_eq!(fits.len() + 1, 255);
    assert_eq!(s.cmd_lf(&fits), AUTH_FAILED, "a 255-octet line");
    assert_eq!(s.cmd_lf(&format!("user {}", alice.name())), USER_OK);
    let over = format!("pass {}", "z".repeat(250));
    assert_eq!(over.len() + 1, 256);
    assert_eq!(s.cmd_lf(&over), TOO_LONG, "a 256-octet line");
    s.expect_closed();

    // The brief's case, CRLF.
    let mut s = Session::connect(&server);
    assert_eq!(s.cmd(&format!("user {}", alice.name())), USER_OK);
    assert_eq!(s.cmd(&format!("pass {}", "x".repeat(300))), TOO_LONG);
    s.expect_closed();

    // A new password on an over-long line, after a good pass.
    let mut s = Session::connect(&server);
    assert_eq!(s.cmd(&format!("user {}", alice.name())), USER_OK);
    assert_eq!(s.cmd(&format!("pass {}", alice.password)), PASS_OK);
    assert_eq!(s.cmd(&format!("newpass {}", "w".repeat(300))), TOO_LONG);
    s.expect_closed();

    let log = server.wait_ends(3);
    assert_eq!(stored(&alice), before, "the store changed");
    assert!(apoppasswd_accepts(&w, &alice, &alice.password));
    assert!(lines_with(&log, "apoppassd: change ").is_empty(), "{log}");
    assert_no_secrets(&log, &["yyyyyyyy", "zzzzzzzz", "xxxxxxxx", "wwwwwwww"]);
}

/// Commands out of order and unknown ones, byte for byte (CRLF line ends): `pass` before
/// `user`, `newpass` before any `pass`, after a failed one and after a `user` that reset a good
/// one; an unknown command; commands in any case. Nothing is written.
#[test]
fn out_of_order_and_unknown_commands_root() {
    if !crate::harness::need_root("out_of_order_and_unknown_commands_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    let before = stored(&alice);
    let server = serve(&w);
    let mut s = Session::connect(&server);
    let user = format!("user {}", alice.name());
    let pass = format!("pass {}", alice.password);
    let steps: Vec<(String, &str)> = vec![
        (pass.clone(), USER_FIRST),
        ("newpass Never-written-3".into(), PASS_FIRST),
        ("frobnicate".into(), UNKNOWN),
        ("frobnicate with arguments".into(), UNKNOWN),
        (user.clone(), USER_OK),
        ("newpass Never-written-3".into(), PASS_FIRST),
        ("pass wrong-password-3".into(), AUTH_FAILED),
        ("newpass Never-written-3".into(), PASS_FIRST),
        (format!("USER {}", alice.name()), USER_OK),
        (format!("Pass {}", alice.password), PASS_OK),
        // `user` resets a good `pass`.
        (user.clone(), USER_OK),
        ("NEWPASS Never-written-3".into(), PASS_FIRST),
        ("QuIt".into(), BYE),
    ];
    for (line, want) in steps {
        let reply = s.cmd_raw(&line);
        assert_eq!(
            String::from_utf8_lossy(&reply),
            format!("{want}\r\n"),
            "after {line:?}"
        );
    }
    s.expect_closed();
    server.wait_ends(1);
    assert_eq!(stored(&alice), before, "the store changed");
}

/// The log names every event (a failed and a good login, a refused and a good change, ends by
/// `quit` and by a dropped connection) and holds no password: not the old one, a wrong one,
/// a refused one or the new one.
#[test]
fn log_names_events_and_no_password_root() {
    if !crate::harness::need_root("log_names_events_and_no_password_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    let (wrong, refused, new) = ("Wrong-Qx81-pw", "sH0rt!x", "Fresh-Kv27-pw");
    let server = serve(&w);

    let mut s = Session::connect(&server);
    assert_eq!(s.cmd("user alice"), USER_OK);
    assert_eq!(s.cmd(&format!("pass {wrong}")), AUTH_FAILED);
    assert_eq!(s.cmd("quit"), BYE);
    s.expect_closed();
    server.wait_ends(1);

    let mut s = Session::connect(&server);
    assert_eq!(s.cmd("user alice"), USER_OK);
    assert_eq!(s.cmd(&format!("pass {}", alice.password)), PASS_OK);
    assert_eq!(
        s.cmd(&format!("newpass {refused}")),
        "500 the password is shorter than 8 characters"
    );
    s.disconnect();
    server.wait_ends(2);

    let mut s = Session::connect(&server);
    assert_eq!(s.cmd("user alice"), USER_OK);
    assert_eq!(s.cmd(&format!("pass {}", alice.password)), PASS_OK);
    assert_eq!(s.cmd(&format!("newpass {new}")), CHANGED);
    assert_eq!(s.cmd("quit"), BYE);
    s.expect_closed();
    let log = server.wait_ends(3);

    let p = "apoppassd: ";
    let r = "remote=127.0.0.1 user=alice";
    for (want, n) in [
        (format!("{p}login {r} result=fail reason=\""), 1),
        (format!("{p}login {r} result=ok"), 2),
        (format!("{p}change {r} result=refused reason=\""), 1),
        (format!("{p}change {r} result=ok"), 1),
        (format!("{p}end {r} result=quit"), 2),
        (format!("{p}end {r} result=closed"), 1),
    ] {
        assert_eq!(lines_with(&log, &want).len(), n, "{want}\n{log}");
    }
    assert_no_secrets(&log, &[&alice.password, wrong, refused, new]);
    assert!(apoppasswd_accepts(&w, &alice, new));
}

/// Issue #14: a system account's login password (a real account made with `useradd -m` and
/// `chpasswd`, removed with `userdel -r` even if the test fails) is refused as its new mail
/// password, in the privileged back, through PAM (`login_password_check`'s default): `500`
/// and the rule, no sooner than `auth_delay`, nothing written, nothing about it in the log but
/// the refusal; a second newpass on that connection is not checked again; another password on
/// a new connection is written.
#[test]
fn newpass_that_is_the_login_password_is_refused_root() {
    use std::os::unix::fs::PermissionsExt;
    if !crate::harness::need_root("newpass_that_is_the_login_password_is_refused_root") {
        return;
    }
    let run = |program: &str, args: &[&str], stdin: &str| {
        crate::system_account::run_with_input(Path::new(program), args, stdin)
    };
    let account = crate::system_account::SystemAccount::new("apoplpd");
    let (name, login, home) = (
        account.name.clone(),
        account.login_password.clone(),
        account.home.clone(),
    );

    // A config of the system's accounts (no passwd_file), with the default PAM check.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("apoptools.conf");
    let delay = Duration::from_millis(400);
    std::fs::write(
        &config,
        format!(
            "disabled_file = {}\nlogin_chroot = {}\nauth_delay = {}\n",
            dir.path().join("disabled").display(),
            empty.display(),
            delay.as_millis()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conf = config.to_str().unwrap();
    let out = run(
        APOPPASSWD,
        &["--config", conf, "--stdin", &name],
        "Mail-old-1\n",
    );
    assert!(out.status.success(), "apoppasswd: {out:?}");
    let check = |password: &str| {
        let args = ["--config", conf, "--check", "--stdin", &name];
        run(APOPPASSWD, &args, &format!("{password}\n"))
            .status
            .code()
    };
    let stored = || std::fs::read(home.join(".apop")).unwrap();
    let before = stored();

    // One connection, as tcpserver would start it (stdin and stdout the client's).
    let dialogue = |lines: &[&str]| -> (Vec<(String, Duration)>, String) {
        let mut child = Command::new(APOPPASSD)
            .args(["--config", conf])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TCPREMOTEIP", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let mut read = || {
            let mut line = String::new();
            output.read_line(&mut line).unwrap();
            line.trim_end().to_string()
        };
        assert_eq!(read(), GREETING);
        let mut replies = Vec::new();
        for line in lines {
            let sent = Instant::now();
            input.write_all(format!("{line}\r\n").as_bytes()).unwrap();
            replies.push((read(), sent.elapsed()));
        }
        drop(input);
        let mut log = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        child.wait().unwrap();
        (replies, log)
    };

    let refused = "500 the password is not allowed: a mail password must differ from your \
                   login password";
    let (replies, log) = dialogue(&[
        &format!("user {name}"),
        "pass Mail-old-1",
        &format!("newpass {login}"),
        "newpass Mail-new-2",
        "quit",
    ]);
    let texts: Vec<&str> = replies.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        texts,
        [
            USER_OK,
            PASS_OK,
            refused,
            "500 one new password per connection; connect again",
            BYE
        ],
        "{log}"
    );
    assert!(replies[2].1 >= delay, "refused after {:?}", replies[2].1);
    assert!(replies[3].1 >= delay, "refused after {:?}", replies[3].1);
    assert_eq!(stored(), before, "the store changed");
    let want = format!("apoppassd: change remote=127.0.0.1 user={name} result=refused reason=\"");
    assert_eq!(lines_with(&log, &want).len(), 2, "{log}");
    assert_no_secrets(&log, &[&login, "Mail-old-1", "Mail-new-2"]);
    assert_eq!(check(&login), Some(1));
    assert_eq!(check("Mail-old-1"), Some(0));

    let (replies, log) = dialogue(&[
        &format!("user {name}"),
        "pass Mail-old-1",
        "newpass Mail-new-2",
        "quit",
    ]);
    assert_eq!(replies[2].0, CHANGED, "{log}");
    assert!(replies[2].1 >= delay, "changed after {:?}", replies[2].1);
    assert_eq!(check("Mail-new-2"), Some(0));
}
