//! Real POP3 clients against ipop3d under tcpserver: curl, fetchmail and Python's poplib. The
//! mail each one fetches must be the Maildir file byte for byte once the client's CRLF
//! conversion is undone (fetchmail also adds its own Received header, which is taken off).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{crlf, find_tool, large_message, seed_message, small_message, uniques};
use crate::harness::{User, World};

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn must(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// CRLF line ends back to LF.
pub fn lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// A command's standard output and error, as text.
pub fn output(out: &Output) -> String {
    text(&out.stdout) + &text(&out.stderr)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A mailbox of three messages (the seed's, a small one, a large one).
fn mailbox(w: &mut World) -> (User, Vec<Vec<u8>>, Vec<String>) {
    let alice = w.user("alice");
    let msgs = vec![seed_message(), small_message(2), large_message(200)];
    let names = msgs.iter().map(|m| w.deliver(&alice, m)).collect();
    (alice, msgs, names)
}

fn curl(port: u16, user: &User, path: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-v", "--max-time", "60", "-u"])
        .arg(format!("{}:{}", user.name(), user.password))
        .args(extra)
        .arg(format!("pop3://127.0.0.1:{port}/{path}"));
    must(&mut cmd)
}

#[test]
fn curl_retrieves_and_lists() {
    let mut w = world!("curl_retrieves_and_lists", "curl");
    let (alice, msgs, names) = mailbox(&mut w);
    let server = w.serve();

    // Plain -u: curl picks its own login (APOP when the greeting has a timestamp).
    for (i, m) in msgs.iter().enumerate() {
        let out = curl(server.port, &alice, &(i + 1).to_string(), &[]);
        assert!(lf(&out.stdout) == *m, "message {} via curl differs", i + 1);
    }
    // Forced APOP.
    let out = curl(server.port, &alice, "1", &["--login-options", "AUTH=+APOP"]);
    assert!(
        text(&out.stderr).contains("> APOP alice "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(lf(&out.stdout), msgs[0]);

    // LIST.
    let out = curl(server.port, &alice, "", &[]);
    let want: String = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}\r\n", i + 1, crlf(m).len()))
        .collect();
    assert_eq!(text(&out.stdout), want);

    // A wrong password is a login failure for curl (exit 67).
    let mut bad = alice.clone();
    bad.password = "wrong-password".into();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "-u"])
        .arg(format!("{}:{}", bad.name(), bad.password))
        .arg(format!("pop3://127.0.0.1:{}/1", server.port));
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(67), "{}", text(&out.stderr));

    server.wait_idle();
    assert_eq!(uniques(&alice.maildir()), names.iter().cloned().collect());
}

/// Writes a fetchmail setup in `dir` (a temp HOME): rcfile 0600 and an MDA script that puts
/// each message into its own numbered file in `dir/out`. `poll` are fetchmail server options
/// (such as `uidl`), `options` user options (such as `fetchall keep`).
fn fetchmail_setup(
    dir: &Path,
    port: u16,
    proto: &str,
    user: &User,
    poll: &str,
    options: &str,
) -> PathBuf {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mda = dir.join("mda.sh");
    std::fs::write(
        &mda,
        "#!/bin/sh\nset -e\nn=$(ls \"$1\" | wc -l)\ncat > \"$1/$(printf %04d $((n + 1)))\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&mda, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rc = dir.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no syslog\n\
             poll 127.0.0.1 service {port} protocol {proto} timeout 60 {poll}\n\
             \tuser \"{}\" there with password \"{}\"\n\
             \toptions no rewrite sslproto '' {options} mda \"sh {} {}\"\n",
            user.name(),
            user.password,
            mda.display(),
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    rc
}

/// Takes fetchmail's own `Received:` header field (with its continuation lines) out; fetchmail
/// puts it after any leading Return-Path/Delivered-To lines.
pub fn strip_fetchmail_received(mail: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(mail);
    let header_end = text.find("\n\n").unwrap_or(text.len());
    // The poll line names 127.0.0.1, or localhost in the TLS tests (fetchmail checks the
    // certificate's name, not its address).
    let start = ["Received: from 127.0.0.1", "Received: from localhost"]
        .iter()
        .flat_map(|mark| text[..header_end].match_indices(mark).map(|(i, _)| i))
        .find(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
        .unwrap_or_else(|| {
            panic!(
                "no Received header from fetchmail:\n{}",
                &text[..header_end]
            )
        });
    let mut end = start;
    loop {
        end += text[end..].find('\n').unwrap() + 1;
        if !text[end..].starts_with([' ', '\t']) {
            break;
        }
    }
    assert!(
        text[start..end].contains("(fetchmail-"),
        "not fetchmail's: {}",
        &text[start..end]
    );
    [&mail[..start], &mail[end..]].concat()
}

/// Runs fetchmail with the setup in `home` (its exit status is the caller's to judge).
fn fetchmail(home: &Path, rc: &Path) -> Output {
    let mut cmd = Command::new(find_tool("fetchmail").unwrap());
    cmd.env("HOME", home)
        .env("FETCHMAILHOME", home)
        .env("LC_ALL", "C")
        .args(["--nodetach", "--nosyslog", "-v", "--pidfile"])
        // Root's default pid file is /var/run/fetchmail.pid, shared by parallel tests.
        .arg(home.join("fetchmail.pid"))
        .arg("-f")
        .arg(rc);
    run(&mut cmd)
}

/// The files fetchmail's MDA wrote into `home/out`, in delivery order.
fn fetched(home: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(home.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn fetchmail_round(mut w: World, proto: &str) {
    let (alice, msgs, names) = mailbox(&mut w);
    let server = w.serve();
    for keep in [true, false] {
        let home = tempfile::tempdir().unwrap();
        let options = if keep {
            "fetchall keep"
        } else {
            "fetchall no keep"
        };
        // fetchmail would pick CRAM-MD5 from CAPA's SASL line; `auth password` keeps this
        // the USER/PASS test (the SASL tests drive CRAM-MD5).
        let poll = if proto == "POP3" { "auth password" } else { "" };
        let rc = fetchmail_setup(home.path(), server.port, proto, &alice, poll, options);
        let out = fetchmail(home.path(), &rc);
        let log = text(&out.stderr) + &text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "fetchmail got no mail:\n{log}");
        let login = if proto == "APOP" { "APOP" } else { "USER" };
        assert!(
            log.contains(&format!("POP3> {login} {}", alice.name())),
            "fetchmail did not log in with {login}:\n{log}"
        );
        let got = fetched(home.path());
        assert_eq!(got.len(), msgs.len(), "fetchmail delivered:\n{log}");
        for (i, (mail, m)) in got.iter().zip(&msgs).enumerate() {
            let body = strip_fetchmail_received(&lf(mail));
            assert!(
                body == *m,
                "{proto} message {} differs:\n{}\n---\n{log}",
                i + 1,
                text(&body[..body.len().min(2000)])
            );
        }
        server.wait_idle();
        if keep {
            assert_eq!(uniques(&alice.maildir()), names.iter().cloned().collect());
        } else {
            assert!(uniques(&alice.maildir()).is_empty(), "{log}");
        }
    }
}

#[test]
fn fetchmail_apop_keep_and_no_keep() {
    fetchmail_round(
        world!("fetchmail_apop_keep_and_no_keep", "fetchmail"),
        "APOP",
    );
}

#[test]
fn fetchmail_pop3_keep_and_no_keep() {
    fetchmail_round(
        world!("fetchmail_pop3_keep_and_no_keep", "fetchmail"),
        "POP3",
    );
}

/// fetchmail's `uidl` mode keeps mail on the server and remembers UIDLs: a second run fetches
/// nothing, and after a new delivery only the new message comes.
#[test]
fn fetchmail_uidl_fetches_only_new_mail() {
    let mut w = world!("fetchmail_uidl_fetches_only_new_mail", "fetchmail");
    let (alice, msgs, _) = mailbox(&mut w);
    let server = w.serve();
    let home = tempfile::tempdir().unwrap();
    let rc = fetchmail_setup(home.path(), server.port, "POP3", &alice, "uidl", "keep");

    let out = fetchmail(home.path(), &rc);
    let log = text(&out.stderr) + &text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(fetched(home.path()).len(), msgs.len(), "{log}");

    let out = fetchmail(home.path(), &rc);
    let log = text(&out.stderr) + &text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a second run finds no new mail:\n{log}"
    );
    assert_eq!(fetched(home.path()).len(), msgs.len(), "{log}");

    let late = small_message(9);
    w.deliver(&alice, &late);
    let out = fetchmail(home.path(), &rc);
    let log = text(&out.stderr) + &text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let got = fetched(home.path());
    assert_eq!(got.len(), msgs.len() + 1, "only the new message:\n{log}");
    assert_eq!(strip_fetchmail_received(&lf(got.last().unwrap())), late);
}

/// Python's poplib: APOP or USER/PASS, STAT, LIST, UIDL, TOP, RETR of every message, DELE 1,
/// QUIT. The script writes what it got into files for the test to compare.
const POPLIB_SCRIPT: &str = r#"
import os, poplib, sys
host, port, user, mode, out = sys.argv[1:6]
secret = os.environ["POP_SECRET"]
p = poplib.POP3(host, int(port), timeout=60)
if mode == "apop":
    p.apop(user, secret)
else:
    p.user(user)
    p.pass_(secret)
count, size = p.stat()
open(os.path.join(out, "stat"), "w").write("%d %d\n" % (count, size))
resp, lines, _ = p.list()
open(os.path.join(out, "list"), "wb").write(b"\n".join(lines) + b"\n")
resp, lines, _ = p.uidl()
open(os.path.join(out, "uidl"), "wb").write(b"\n".join(lines) + b"\n")
resp, lines, _ = p.top(1, 0)
open(os.path.join(out, "top-1"), "wb").write(b"\n".join(lines) + b"\n")
for i in range(1, count + 1):
    resp, lines, _ = p.retr(i)
    open(os.path.join(out, "retr-%d" % i), "wb").write(b"\n".join(lines) + b"\n")
p.dele(1)
print(p.quit().decode())
"#;

fn poplib_round(mut w: World, mode: &str) {
    let (alice, msgs, names) = mailbox(&mut w);
    let server = w.serve();
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("python3");
    cmd.env("POP_SECRET", &alice.password)
        .args(["-c", POPLIB_SCRIPT, "127.0.0.1"])
        .arg(server.port.to_string())
        .args([alice.name(), mode])
        .arg(out.path());
    let result = must(&mut cmd);
    assert!(text(&result.stdout).starts_with("+OK"), "{result:?}");
    let read = |name: &str| std::fs::read(out.path().join(name)).unwrap();

    let total: usize = msgs.iter().map(|m| crlf(m).len()).sum();
    assert_eq!(text(&read("stat")), format!("{} {total}\n", msgs.len()));
    let list: String = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}\n", i + 1, crlf(m).len()))
        .collect();
    assert_eq!(text(&read("list")), list);
    let uidl: String = names
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{} {u}\n", i + 1))
        .collect();
    assert_eq!(text(&read("uidl")), uidl);
    let seed = String::from_utf8(msgs[0].clone()).unwrap();
    let header = seed.split_once("\n\n").unwrap().0;
    assert_eq!(text(&read("top-1")), format!("{header}\n\n"));
    for (i, m) in msgs.iter().enumerate() {
        let got = read(&format!("retr-{}", i + 1));
        assert!(got == *m, "poplib {mode} message {} differs", i + 1);
    }
    server.wait_idle();
    assert_eq!(
        uniques(&alice.maildir()),
        names[1..].iter().cloned().collect(),
        "DELE 1 + QUIT removed exactly message 1"
    );
}

#[test]
fn poplib_apop() {
    poplib_round(world!("poplib_apop", "python3"), "apop");
}

#[test]
fn poplib_user_pass() {
    poplib_round(world!("poplib_user_pass", "python3"), "user");
}
