//! Fail closed (issue #9), the server's side: outages are not wrong passwords, AUTHORIZATION
//! is bounded, virtual users get exactly their own gid, an alias is not a way around a mark,
//! a `.qmail-EXT` symlink cannot lead elsewhere, and the Maildir reads as other readers expect
//! (unique parts kept, UIDLs unique, sizes from the files).

use std::time::{Duration, Instant};

use crate::client::pairs;
use crate::harness::{crlf, small_message, uniques, World};

/// A disable list that cannot be read is an outage: `[SYS/TEMP]`, logged with the reason, and
/// never counted as a failed login (a fourth try on the connection is still answered).
#[test]
fn an_unreadable_disable_list_is_an_outage() {
    let mut w = world!("an_unreadable_disable_list_is_an_outage");
    let alice = w.user("alice");
    std::fs::create_dir(w.disabled_path()).unwrap();
    let server = w.serve();
    let mut pop = server.connect();
    for _ in 0..4 {
        let reply = pop.err(&pop.apop_line(alice.name(), &alice.password));
        assert!(reply.starts_with("-ERR [SYS/TEMP]"), "{reply:?}");
    }
    pop.ok("QUIT");
    let log = server.wait_ends(1);
    assert!(log.contains("result=unavailable"), "{log}");
    assert!(
        log.contains(&w.disabled_path().display().to_string()),
        "{log}"
    );
    assert!(!log.contains(&alice.password), "{log}");
}

/// An account source that cannot be read (here the passwd_file is a directory) is an outage
/// too: the greeting says `[SYS/TEMP]`, and the log names the file.
#[test]
fn an_unreadable_account_source_is_an_outage() {
    let mut w = world!("an_unreadable_account_source_is_an_outage");
    w.user("alice");
    w.write_config();
    std::fs::remove_file(w.path().join("passwd")).unwrap();
    std::fs::create_dir(w.path().join("passwd")).unwrap();
    let server = w.serve();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut greeting = String::new();
    std::io::Read::read_to_string(&mut stream, &mut greeting).unwrap();
    assert!(greeting.starts_with("-ERR [SYS/TEMP]"), "{greeting:?}");
    let log = server.wait_ends(1);
    assert!(
        log.contains(&w.path().join("passwd").display().to_string()),
        "{log}"
    );
}

/// At most `max_login_commands` commands before login: 1,000 bad commands in one write get that
/// many replies, then a goodbye, then the connection closes.
#[test]
fn commands_before_login_are_capped() {
    let mut w = world!("commands_before_login_are_capped");
    w.user("alice");
    w.set("max_login_commands", "25");
    let server = w.serve();
    let mut pop = server.connect();
    pop.send_raw("BOGUS\r\n".repeat(1000).as_bytes());
    let mut replies = Vec::new();
    while let Some(line) = pop.try_line() {
        replies.push(line);
    }
    assert!(
        (25..=26).contains(&replies.len()),
        "{} replies: {:?}",
        replies.len(),
        &replies[replies.len().saturating_sub(3)..]
    );
    assert!(replies.iter().all(|r| r.starts_with("-ERR")), "{replies:?}");
}

/// At most `login_timeout` seconds in AUTHORIZATION, however busy the client keeps it.
#[test]
fn time_before_login_is_capped() {
    let mut w = world!("time_before_login_is_capped");
    w.user("alice");
    w.set("login_timeout", "2");
    let server = w.serve();
    let mut pop = server.connect();
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(20) {
        pop.send("CAPA");
        match pop.try_line() {
            None => {
                closed = true;
                break;
            }
            Some(l) if l.starts_with("+OK") => {
                let _ = pop.multiline();
            }
            Some(_) => {
                // The goodbye line; the close follows.
                closed = pop.try_line().is_none();
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let took = start.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

/// With plaintext off, a refused `USER` costs the client what a failed login does (the delay,
/// one count) so it cannot cost the log more than it costs the client.
#[test]
fn refused_user_commands_cost_like_failures() {
    let mut w = world!("refused_user_commands_cost_like_failures");
    w.user("alice");
    w.set("plaintext", "never");
    w.set("auth_delay", "200");
    let server = w.serve();
    let mut pop = server.connect();
    let start = Instant::now();
    pop.send_raw("USER x\r\n".repeat(200).as_bytes());
    let mut replies = 0;
    while pop.try_line().is_some() {
        replies += 1;
    }
    assert!(replies <= 4, "{replies} replies");
    assert!(start.elapsed() >= Duration::from_millis(600));
    let log = server.wait_ends(1);
    let lines = log.lines().filter(|l| l.starts_with("ipop3d: ")).count();
    assert!(lines <= 6, "{lines} log lines:\n{log}");
}

/// A `passwd_file` account gets exactly its primary gid, even when named like a system user
/// who belongs to other groups; an account whose primary gid is 0 never logs in.
#[test]
fn virtual_users_get_only_their_own_gid_root() {
    if !crate::harness::need_root("virtual_users_get_only_their_own_gid_root") {
        return;
    }
    // A system user with supplementary groups (Debian: postgres in ssl-cert, or another).
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    let Some(member) = groups
        .lines()
        .filter_map(|l| l.split(':').nth(3))
        .flat_map(|m| m.split(','))
        .find(|m| !m.is_empty() && m.len() <= 32)
        .map(str::to_string)
    else {
        crate::skip::skipped(
            "needs a group with members in /etc/group",
            "virtual_users_get_only_their_own_gid_root",
        );
        return;
    };
    let mut w = World::new();
    let user = w.user(&member);
    let server = w.serve();
    let mut pop = server.connect();
    pop.apop(user.name(), &user.password);
    let pid = server.sessions()[0];
    let (_, gids, groups) = crate::harness::proc_ids(pid);
    assert_eq!(gids, vec![user.account.gid; 4]);
    assert_eq!(groups, vec![user.account.gid], "{member}'s groups leaked");
    pop.ok("QUIT");

    let rooty = w.user_with_ids("rooty", crate::harness::fresh_uid(), 0);
    let mut pop = server.connect();
    let reply = pop.err(&pop.apop_line(rooty.name(), &rooty.password));
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply:?}");
}

/// An alias is not the account: after `alice` is disabled, `alice.smith` (the same uid and
/// home) cannot log in either.
#[test]
fn a_mark_follows_the_uid_and_home_root() {
    if !crate::harness::need_root("a_mark_follows_the_uid_and_home_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    w.alias(&alice, "alice.smith");
    w.disable(&alice);
    let server = w.serve();
    let mut pop = server.connect();
    let reply = pop.err(&pop.apop_line("alice.smith", &alice.password));
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply:?}");
    pop.ok("QUIT");
}

/// `.qmail-EXT` naming `./Maildir-x/` that is a symlink to another account's Maildir (same
/// uid) is not served: the check is made on the opened directory, not on the text.
#[test]
fn a_dot_qmail_maildir_symlinked_elsewhere_is_not_served_root() {
    if !crate::harness::need_root("a_dot_qmail_maildir_symlinked_elsewhere_is_not_served_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    let bob = w.user_with_ids("bob", alice.account.uid, alice.account.gid);
    let bobs = w.deliver(&bob, &small_message(1));
    let home = alice.account.home.clone();
    std::os::unix::fs::symlink(bob.maildir(), home.join("Maildir-x")).unwrap();
    w.write_as(
        &alice.account,
        &home.join(".qmail-x"),
        b"./Maildir-x/\n",
        0o644,
    );
    w.set_secret(&alice, Some("x"), "pw-alice-x-secret");
    let server = w.serve();
    let mut pop = server.connect();
    let reply = pop.cmd(&pop.apop_line("alice-x", "pw-alice-x-secret"));
    if reply.starts_with("+OK") {
        let uidls = pairs(&pop.ok_lines("UIDL"));
        panic!("alice-x was served bob's Maildir: {uidls:?}");
    }
    assert!(reply.starts_with("-ERR"), "{reply:?}");
    assert!(bob.maildir().join("new").join(&bobs).exists());
}

/// new/ to cur/ keeps the whole unique part (`cur/UNIQUE:2,`), so other readers of the Maildir
/// see the same message; a name near the 255-byte limit is still served.
#[test]
fn new_to_cur_keeps_the_unique_part() {
    let mut w = world!("new_to_cur_keeps_the_unique_part");
    let alice = w.user("alice");
    let first = w.deliver(&alice, &small_message(1));
    let long = format!("1700000999.M1P1Q1.{}", "h".repeat(230));
    w.place(&alice, &alice.maildir(), "new", &long, &small_message(2));
    let server = w.serve();
    let mut pop = server.connect();
    pop.apop(alice.name(), &alice.password);
    let uidls = pairs(&pop.ok_lines("UIDL"));
    assert_eq!(uidls.len(), 2, "{uidls:?}");
    let list = pairs(&pop.ok_lines("LIST"));
    assert_eq!(list[1].1, crlf(&small_message(2)).len().to_string());
    pop.ok("QUIT");
    let mut cur: Vec<String> = std::fs::read_dir(alice.maildir().join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    cur.sort();
    let mut want = vec![format!("{first}:2,"), format!("{long}:2,")];
    want.sort();
    assert_eq!(cur, want);
    // The second session lists the same UIDLs.
    let mut pop = server.connect();
    pop.apop(alice.name(), &alice.password);
    assert_eq!(pairs(&pop.ok_lines("UIDL")), uidls);
    pop.ok("QUIT");
}

/// Distinct messages never share a UIDL: `new/X` beside `cur/X:2,S`, and names whose unique
/// part is empty (`cur/:2,S`, `cur/:2,RS`); the UIDLs are the same in the next session.
#[test]
fn uidls_are_unique_and_stable() {
    let mut w = world!("uidls_are_unique_and_stable");
    let alice = w.user("alice");
    let md = alice.maildir();
    w.place(
        &alice,
        &md,
        "cur",
        "1700000001.M1P1.x:2,S",
        &small_message(1),
    );
    w.place(&alice, &md, "new", "1700000001.M1P1.x", &small_message(2));
    w.place(&alice, &md, "cur", ":2,S", &small_message(3));
    w.place(&alice, &md, "cur", ":2,RS", &small_message(4));
    let server = w.serve();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut pop = server.connect();
        pop.apop(alice.name(), &alice.password);
        let uidls = pairs(&pop.ok_lines("UIDL"));
        assert_eq!(uidls.len(), 4, "{uidls:?}");
        let distinct: std::collections::BTreeSet<&String> = uidls.iter().map(|(_, u)| u).collect();
        assert_eq!(distinct.len(), 4, "shared UIDLs: {uidls:?}");
        for (_, u) in &uidls {
            assert!(
                (1..=70).contains(&u.len()) && u.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "{u:?}"
            );
        }
        let mut set: Vec<String> = uidls.into_iter().map(|(_, u)| u).collect();
        set.sort();
        seen.push(set);
        pop.ok("QUIT");
    }
    assert_eq!(seen[0], seen[1], "UIDLs changed between sessions");
    // Each message has a unique part of its own on disk now (two were renamed apart once).
    assert_eq!(uniques(&md).len(), 4, "{:?}", uniques(&md));
}

/// Sizes come from the files, never from a size field in a name: a huge `,W=` cannot make
/// STAT's total wrap or lie.
#[test]
fn sizes_come_from_the_files_not_the_names() {
    let mut w = world!("sizes_come_from_the_files_not_the_names");
    let alice = w.user("alice");
    let md = alice.maildir();
    let (a, b) = (small_message(1), small_message(2));
    w.place(
        &alice,
        &md,
        "cur",
        "1700000001.M1P1.x,S=1,W=9999999999999999999:2,S",
        &a,
    );
    w.place(
        &alice,
        &md,
        "cur",
        "1700000002.M2P2.x,S=1,W=9999999999999999999:2,S",
        &b,
    );
    let server = w.serve();
    let mut pop = server.connect();
    pop.apop(alice.name(), &alice.password);
    let total = crlf(&a).len() + crlf(&b).len();
    assert_eq!(pop.ok("STAT"), format!("+OK 2 {total}"));
    let list = pairs(&pop.ok_lines("LIST"));
    assert_eq!(list[0].1, crlf(&a).len().to_string());
    assert_eq!(list[1].1, crlf(&b).len().to_string());
    pop.ok("QUIT");
}

/// Without tcpserver's variables (inetd, `systemd-socket-activate --inetd`), the log names the
/// client from getpeername(2) on the socket.
#[test]
fn the_log_names_the_peer_without_tcpremoteip() {
    let mut w = world!("the_log_names_the_peer_without_tcpremoteip");
    let alice = w.user("alice");
    // The spawner sets TCPREMOTEIP; run one session by hand without it.
    w.write_config();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let name = alice.name().to_string();
    let client = std::thread::spawn(move || {
        let mut pop = crate::client::Pop::connect(port);
        let line = pop.apop_line(&name, "wrong password");
        pop.err(&line);
        pop.ok("QUIT");
    });
    let (socket, _) = listener.accept().unwrap();
    let socket = std::os::fd::OwnedFd::from(socket);
    let log = w.path().join("inetd.log");
    let status = std::process::Command::new(w.ipop3d())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("--config")
        .arg(w.config_path())
        .stdin(std::process::Stdio::from(socket.try_clone().unwrap()))
        .stdout(std::process::Stdio::from(socket))
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    client.join().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}\n{text}");
    assert!(text.contains("remote=127.0.0.1 "), "{text}");
    assert!(!text.contains("remote=- "), "{text}");
}
