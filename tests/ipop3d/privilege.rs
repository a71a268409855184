//! Privilege: the serving process becomes the account for good before it touches mail; uid 0
//! never logs in; a non-root ipop3d serves only its own uid.

use crate::harness::{fresh_uid, is_root, need_root, proc_ids, small_message, uniques};

/// While a session is open after login, the ipop3d process's real, effective, saved (and fs)
/// uids and gids are the account's, and its only group is the account's.
#[test]
fn session_runs_as_the_account_root() {
    if !need_root("session_runs_as_the_account_root") {
        return;
    }
    let mut w = world!("session_runs_as_the_account_root");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("STAT");

    let sessions = server.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let (uids, gids, groups) = proc_ids(sessions[0]);
    let a = &alice.account;
    assert_eq!(uids, vec![a.uid; 4], "Uid: real, effective, saved, fs");
    assert_eq!(gids, vec![a.gid; 4], "Gid: real, effective, saved, fs");
    assert!(
        groups.iter().all(|&g| g == a.gid),
        "supplementary groups {groups:?}"
    );
    pop.ok("QUIT");

    pop.expect_closed();
    server.wait_idle();

    // APOP sessions drop too, and to the account's own gid when it differs from the uid.
    let uid = fresh_uid();
    let carol = w.user_with_ids("carol", uid, uid + 1000);
    let server = w.serve();
    let mut pop = server.connect();
    pop.apop(carol.name(), &carol.password);
    let (uids, gids, groups) = proc_ids(server.sessions()[0]);
    assert_eq!((uids, gids), (vec![uid; 4], vec![uid + 1000; 4]));
    assert!(groups.iter().all(|&g| g == uid + 1000), "{groups:?}");
    pop.ok("QUIT");
}

/// An account with uid 0 never logs in, even with the right secret.
#[test]
fn uid0_account_never_logs_in_root() {
    if !need_root("uid0_account_never_logs_in_root") {
        return;
    }
    let mut w = world!("uid0_account_never_logs_in_root");
    let toor = w.user_with_ids("toor", 0, 0);
    let alice = w.user("alice");
    let server = w.serve();
    let mut pop = server.connect();
    let reply = pop.cmd(&pop.apop_line(toor.name(), &toor.password));
    assert!(reply.starts_with("-ERR"), "{reply:?}");
    pop.ok(&format!("USER {}", toor.name()));
    pop.err(&format!("PASS {}", toor.password));
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("QUIT");
}

/// Run as a non-root uid (as root: tcpserver started as alice; otherwise: the runner), ipop3d
/// serves the accounts with that uid and refuses the others without touching their mail.
#[test]
fn non_root_server_serves_only_its_own_uid() {
    let mut w = world!("non_root_server_serves_only_its_own_uid");
    let alice = w.user("alice");
    let a = alice.account.clone();
    let bob = w.user_with_ids("bob", a.uid + 7, a.gid + 7);
    let m = small_message(1);
    w.deliver(&alice, &m);
    let bob_name = w.deliver(&bob, &small_message(2));
    let server = if is_root() {
        w.serve_with(&[("INTRANET", "1")], Some(&a))
    } else {
        w.serve()
    };
    let mut pop = server.connect();
    let line = pop.apop_line(bob.name(), &bob.password);
    pop.err(&line);
    pop.ok("QUIT");
    let mut pop = server.connect();
    pop.ok(&format!("USER {}", bob.name()));
    pop.err(&format!("PASS {}", bob.password));
    pop.ok("QUIT");

    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("RETR 1");
    assert_eq!(pop.multiline_raw(), crate::harness::retr_wire(&m));
    pop.ok("QUIT");
    server.wait_idle();
    assert_eq!(uniques(&bob.maildir()), [bob_name].into_iter().collect());
    let bob_new = std::fs::read_dir(bob.maildir().join("new"))
        .unwrap()
        .count();
    assert_eq!(bob_new, 1, "bob's new/ untouched");
}

/// What the server creates in a Maildir (its session lock, its size cache) belongs to the
/// account: it was made after the drop, never as root.
#[test]
fn files_the_server_creates_belong_to_the_account_root() {
    if !need_root("files_the_server_creates_belong_to_the_account_root") {
        return;
    }
    let mut w = world!("files_the_server_creates_belong_to_the_account_root");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    // A message in cur/ whose name carries no size makes the server measure and cache it.
    w.place(
        &alice,
        &alice.maildir(),
        "cur",
        "1600000000.M1P1.elsewhere:2,S",
        &small_message(2),
    );
    let before: std::collections::BTreeSet<_> = std::fs::read_dir(alice.maildir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("STAT");
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();

    use std::os::unix::fs::MetadataExt;
    let mut created = Vec::new();
    for dir in [alice.maildir(), alice.maildir().join("cur")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid()),
                (alice.account.uid, alice.account.gid),
                "{} is not the account's",
                entry.path().display()
            );
            if dir == alice.maildir() && !before.contains(&entry.file_name()) {
                created.push(entry.file_name());
            }
        }
    }
    assert!(!created.is_empty(), "the server created nothing to check");
}
