//! Hostile names: account and extension names with `/`, `..`, NUL, 300 bytes or bytes that
//! are not UTF-8, at the POP3 login and on the tools' command lines, and `.qmail-EXT` files
//! pointing outside the home. Each is refused like any unknown name, the session lives on and
//! nothing outside the world is touched.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::client::{pairs, Pop};
use crate::harness::small_message;

/// Every path under `dir` with its size (directories as `None`).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<u64>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                todo.push(e.path());
                out.insert(e.path(), None);
            } else {
                out.insert(e.path(), Some(meta.len()));
            }
        }
    }
    out
}

/// Login names that must all fail like an unknown user, as raw bytes; `true` when the line is
/// one the server may refuse as a line (NUL, bad UTF-8, over 255 octets) instead.
fn hostile_logins() -> Vec<(Vec<u8>, bool)> {
    let printable = [
        "a/b".to_string(),
        "alice/".to_string(),
        "/alice".to_string(),
        "..".to_string(),
        ".".to_string(),
        "../../etc/passwd".to_string(),
        "alice/../alice".to_string(),
        "alice-../x".to_string(),
        "alice-a/b".to_string(),
        "alice-..".to_string(),
        "alice-".to_string(),
        format!("alice-{}", "x".repeat(200)),
        "y".repeat(200),
    ];
    let mut out: Vec<(Vec<u8>, bool)> = printable
        .into_iter()
        .map(|s| (s.into_bytes(), false))
        .collect();
    out.push((b"alice\0".to_vec(), true));
    out.push((b"al\0ice".to_vec(), true));
    out.push((b"\xff\xfealice".to_vec(), true));
    out.push((b"alice-\xc3\x28".to_vec(), true));
    out.push(("z".repeat(300).into_bytes(), true));
    out.push((format!("alice-{}", "x".repeat(300)).into_bytes(), true));
    out
}

fn alive(pop: &mut Pop) {
    pop.ok("CAPA");
    pop.multiline();
}

/// At the POP3 login (USER/PASS and APOP) every hostile name fails exactly like an unknown
/// user (or, for a malformed line, with -ERR), the session lives on and the world is unchanged.
#[test]
fn hostile_login_names_fail_like_unknown_users() {
    let mut w = world!("hostile_login_names_fail_like_unknown_users");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    w.set("auth_delay", "0");
    w.set("max_auth_failures", "100");
    w.set("max_login_commands", "10000");
    let server = crate::serve(&w);
    let before = tree(w.path());
    let mut pop = server.connect();
    let user_reply = pop.ok("USER nosuchuser");
    let auth_reply = pop.err("PASS whatever");
    assert!(auth_reply.starts_with("-ERR [AUTH]"), "{auth_reply:?}");
    let digest = String::from_utf8(
        apoptools::testing::apop::digest(pop.timestamp().as_bytes(), b"whatever").to_vec(),
    )
    .unwrap();
    let mut tried = 0;
    for (name, line_error) in hostile_logins() {
        let shown = String::from_utf8_lossy(&name[..name.len().min(40)]).into_owned();
        let mut user = b"USER ".to_vec();
        user.extend_from_slice(&name);
        user.extend_from_slice(b"\r\n");
        pop.send_raw(&user);
        let r = pop.line();
        if line_error && r.starts_with("-ERR") {
            assert!(!r.contains("[AUTH]") || r == auth_reply, "{shown:?}: {r:?}");
        } else {
            assert_eq!(r, user_reply, "USER {shown:?}");
            let r = pop.cmd("PASS whatever");
            assert_eq!(r, auth_reply, "PASS after USER {shown:?}");
        }
        let mut apop = b"APOP ".to_vec();
        apop.extend_from_slice(&name);
        apop.extend_from_slice(format!(" {digest}\r\n").as_bytes());
        pop.send_raw(&apop);
        let r = pop.line();
        if line_error {
            assert!(r.starts_with("-ERR"), "APOP {shown:?}: {r:?}");
        } else {
            assert_eq!(r, auth_reply, "APOP {shown:?}");
        }
        alive(&mut pop);
        tried += 1;
    }
    // The same session still logs in.
    pop.apop(alice.name(), &alice.password);
    pop.ok("STAT");
    pop.ok("QUIT");
    pop.expect_closed();
    crate::report(&format!(
        "hostile login names: {tried} names by USER/PASS and APOP refused"
    ));
    // Nothing was created, removed or resized in the world but the moves new/ -> cur/.
    let after = tree(w.path());
    let strip = |t: &BTreeMap<PathBuf, Option<u64>>| -> Vec<PathBuf> {
        t.keys()
            .filter(|p| !p.starts_with(alice.maildir()))
            .cloned()
            .collect()
    };
    assert_eq!(strip(&before), strip(&after), "the world changed");
}

/// The same names against ipop3d run under strace: no file system call names a path built
/// from them (no `..`, no `a/b`, no `/x`, no /etc/passwd). Root only: ipop3d makes itself
/// non-dumpable at start, and then only a tracer with CAP_SYS_PTRACE can read its arguments.
#[test]
fn hostile_login_names_open_nothing_outside_root() {
    let test = "hostile_login_names_open_nothing_outside_root";
    if !crate::need_root(test) || !crate::need_programs(&["strace"], test) {
        return;
    }
    let mut w = crate::harness::World::new();
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let config = crate::direct::config(
        &w,
        "direct.conf",
        "auth_delay = 0\nmax_auth_failures = 100\nmax_login_commands = 10000\n",
    );
    // Which paths, and how often, a session opens whatever its client sends: here a plain
    // login (as root, the start looks up login_user, which reads /etc/passwd once).
    let traced = |name: &str| -> (crate::direct::Direct, std::path::PathBuf) {
        let trace = w.path().join(name);
        let trace_arg = trace.to_str().unwrap().to_string();
        let d = crate::direct::Direct::start(
            &config,
            &["strace", "-f", "-qq", "-e", "trace=%file", "-o", &trace_arg],
        );
        (d, trace)
    };
    let opened = |trace: &std::path::Path| -> std::collections::BTreeMap<String, usize> {
        let text = std::fs::read_to_string(trace).unwrap();
        let mut paths = std::collections::BTreeMap::new();
        for l in text.lines() {
            let Some(start) = l.find('"') else { continue };
            let Some(len) = l[start + 1..].find('"') else {
                continue;
            };
            *paths
                .entry(l[start + 1..start + 1 + len].to_string())
                .or_insert(0) += 1;
        }
        paths
    };
    let (mut plain, plain_trace) = traced("plain.strace");
    let line = plain.apop_line(alice.name(), &alice.password);
    plain.send(&line);
    plain.send("QUIT");
    assert!(plain.finish().success());
    let baseline = opened(&plain_trace);
    let (mut d, trace) = traced("strace.out");
    let digest = String::from_utf8(
        apoptools::testing::apop::digest(d.timestamp().as_bytes(), b"whatever").to_vec(),
    )
    .unwrap();
    for (name, _) in hostile_logins() {
        let mut bytes = b"USER ".to_vec();
        bytes.extend_from_slice(&name);
        bytes.extend_from_slice(b"\r\nPASS whatever\r\nAPOP ");
        bytes.extend_from_slice(&name);
        bytes.extend_from_slice(format!(" {digest}\r\nNOOP\r\n").as_bytes());
        d.send_raw(&bytes);
    }
    let line = d.apop_line(alice.name(), &alice.password);
    d.send(&line);
    d.send("QUIT");
    let status = d.finish();
    assert!(status.success(), "ipop3d: {status}");
    let counts = opened(&trace);
    let paths: std::collections::BTreeSet<String> = counts.keys().cloned().collect();
    // A path the hostile session opened more often than the plain one did.
    let bad: Vec<&String> = paths
        .iter()
        .filter(|p| counts[*p] > baseline.get(*p).copied().unwrap_or(0))
        .filter(|p| {
            p.contains("..")
                || p.contains("a/b")
                || p.ends_with("/x")
                || p.contains("etc/passwd")
                || p.contains("yyyy")
                || p.contains("zzzz")
                || p.contains("xxxx")
        })
        .collect();
    crate::report(&format!(
        "strace of ipop3d under hostile names: {} distinct paths touched",
        paths.len()
    ));
    assert!(
        bad.is_empty(),
        "paths built from hostile names: {bad:#?}\nall: {paths:#?}"
    );
    assert!(
        paths.iter().any(|p| p.contains(".apop")),
        "the trace saw the real login read its store: {paths:#?}"
    );
}

/// apoppasswd and deapop with hostile USER arguments (and --ext values): exit 4 with a
/// message naming the problem, nothing written anywhere in the world.
#[test]
fn hostile_names_on_tool_command_lines_root() {
    if !crate::need_root("hostile_names_on_tool_command_lines_root") {
        return;
    }
    let mut world = crate::tools_harness::World::new();
    world.add_user("alice");
    world.add_user("bob");
    world
        .apoppasswd()
        .args(["--stdin", "alice"])
        .stdin("alice-initial-pw\n")
        .run()
        .success();
    let before = tree(world.path());
    let users: Vec<OsString> = [
        "a/b".to_string(),
        "..".to_string(),
        "../../etc/passwd".to_string(),
        "alice/../bob".to_string(),
        "/alice".to_string(),
        "x".repeat(300),
        "alice-../x".to_string(),
        "alice-a/b".to_string(),
        format!("alice-{}", "x".repeat(300)),
    ]
    .into_iter()
    .map(OsString::from)
    .chain([OsString::from_vec(b"\xff\xfealice".to_vec())])
    .collect();
    let exts: Vec<OsString> = ["../x", "a/b", "..", "/x", &"x".repeat(300)]
        .into_iter()
        .map(OsString::from)
        .chain([OsString::from_vec(b"\xff\xfe".to_vec())])
        .collect();
    let mut runs = 0;
    // A name that is not UTF-8 never reaches the name check: clap refuses the argument as a
    // usage error (exit 2, "invalid UTF-8"), which refuses it just as well.
    let check = |what: &str, out: crate::tools_harness::Output, runs: &mut usize| {
        *runs += 1;
        if what.contains('\u{fffd}') {
            assert_eq!(out.code, 2, "{what}: {out:#?}");
            assert!(out.stderr.contains("invalid UTF-8"), "{what}: {out:#?}");
        } else {
            assert_eq!(out.code, 4, "{what}: {out:#?}");
            assert!(out.stderr.contains("name"), "{what}: {out:#?}");
        }
    };
    for user in &users {
        let shown = String::from_utf8_lossy(user.as_bytes())
            .chars()
            .take(40)
            .collect::<String>();
        let args: [&[&str]; 5] = [
            &["--stdin"],
            &["--status"],
            &["--delete"],
            &["--check", "--stdin"],
            &["--generate"],
        ];
        for a in args {
            let out = world
                .apoppasswd()
                .args(a)
                .args([user])
                .stdin("some-new-password\n")
                .run();
            check(&format!("apoppasswd {a:?} {shown:?}"), out, &mut runs);
        }
        for a in [&[][..], &["--purge"][..]] {
            let out = world.deapop().args(a).args([user]).run();
            check(&format!("deapop {a:?} {shown:?}"), out, &mut runs);
        }
    }
    for ext in &exts {
        let shown = String::from_utf8_lossy(ext.as_bytes())
            .chars()
            .take(40)
            .collect::<String>();
        let out = world
            .apoppasswd()
            .args([OsString::from("--ext"), ext.clone()])
            .args(["--stdin", "alice"])
            .stdin("some-new-password\n")
            .run();
        check(&format!("apoppasswd --ext {shown:?}"), out, &mut runs);
    }
    // A batch with one hostile name writes nothing at all.
    let out = world
        .apoppasswd()
        .arg("--batch")
        .stdin("bob:bob-password-1\nalice-../x:evil-password-1\n")
        .run();
    assert_ne!(out.code, 0, "{out:#?}");
    crate::report(&format!(
        "hostile names on tool command lines: {runs} runs refused"
    ));
    assert_eq!(before, tree(world.path()), "something was written");
    assert!(world.verifies("alice", "alice-initial-pw"));
    // deapop --enable refuses them too (and writes nothing: the test below).
    for user in &users {
        let out = world.deapop().arg("--enable").args([user]).run();
        let shown = String::from_utf8_lossy(user.as_bytes())
            .chars()
            .take(40)
            .collect::<String>();
        check(&format!("deapop --enable {shown:?}"), out, &mut runs);
    }
}

/// `deapop --enable` with only a bad name must write nothing: names are checked before the
/// disable list's directory and lock file are created.
#[test]
fn deapop_enable_with_a_bad_name_writes_nothing_root() {
    if !crate::need_root("deapop_enable_with_a_bad_name_writes_nothing_root") {
        return;
    }
    let mut world = crate::tools_harness::World::new();
    world.add_user("alice");
    let before = tree(world.path());
    let out = world.deapop().args(["--enable", "a/b"]).run();
    assert_eq!(out.code, 4, "{out:#?}");
    assert_eq!(
        before,
        tree(world.path()),
        "deapop --enable a/b wrote something"
    );
}

/// `.qmail-EXT` naming another account's Maildir, by absolute path and by `./../`: the login
/// does not serve that Maildir; its messages are never listed and stay where they are. Root
/// only: the accounts have their own uids here.
#[test]
fn dot_qmail_pointing_outside_the_home_is_not_served_root() {
    let test = "dot_qmail_pointing_outside_the_home_is_not_served_root";
    if !crate::need_root(test) {
        return;
    }
    let w = world!("dot_qmail_pointing_outside_the_home_is_not_served_root");
    outside_maildir_not_served(w, false);
}

/// The same when both accounts carry one uid (virtual mail hosting under one `vmail` uid, or
/// any non-root run): only the server's own check can refuse the absolute path then.
#[test]
fn dot_qmail_absolute_path_to_a_same_uid_account_is_not_served() {
    let w = world!("dot_qmail_absolute_path_to_a_same_uid_account_is_not_served");
    outside_maildir_not_served(w, true);
}

fn outside_maildir_not_served(mut w: crate::harness::World, same_uid: bool) {
    let alice = w.user("alice");
    let bob = if same_uid && crate::harness::is_root() {
        w.user_with_ids("bob", alice.account.uid, alice.account.gid)
    } else {
        w.user("bob")
    };
    let bob_mail = w.deliver(&bob, &small_message(7));
    let home = alice.account.home.clone();
    let targets = [
        ("abs", format!("{}/\n", bob.maildir().display())),
        ("rel", "./../bob/Maildir/\n".to_string()),
        (
            "dotdot",
            format!("{}/../../bob/Maildir/\n", home.join("Maildir").display()),
        ),
    ];
    for (ext, line) in &targets {
        w.write_as(
            &alice.account,
            &home.join(format!(".qmail-{ext}")),
            line.as_bytes(),
            0o644,
        );
        w.set_secret(&alice, Some(ext), &format!("pw-alice-{ext}-secret"));
    }
    let server = crate::serve(&w);
    let mut outcomes = Vec::new();
    for (ext, _) in &targets {
        let mut pop = server.connect();
        let line = pop.apop_line(&format!("alice-{ext}"), &format!("pw-alice-{ext}-secret"));
        let reply = pop.cmd(&line);
        if reply.starts_with("+OK") {
            let uidls = pairs(&pop.ok_lines("UIDL"));
            assert!(
                uidls.iter().all(|(_, u)| !u.contains(&bob_mail)),
                "alice-{ext} was served bob's Maildir: {uidls:?}"
            );
            assert!(pop.ok("STAT").starts_with("+OK 0 "), "alice-{ext}");
            pop.ok("QUIT");
        } else {
            assert!(reply.starts_with("-ERR"), "{reply:?}");
        }
        outcomes.push(format!("alice-{ext}: {reply}"));
    }
    crate::report(&format!(".qmail-EXT outside the home: {outcomes:?}"));
    let new: Vec<_> = std::fs::read_dir(bob.maildir().join("new"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(new, vec![bob_mail], "bob's mail moved or went");
    // Bob is still served his own mail.
    let mut pop = server.connect();
    pop.apop(bob.name(), &bob.password);
    assert!(pop.ok("STAT").starts_with("+OK 1 "));
    pop.ok("QUIT");
}
