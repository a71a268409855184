//! Authentication: APOP and USER/PASS against the store; identical failures for wrong
//! passwords, unknown or odd names, disabled accounts and unsafe store files; the failure limit
//! and delay; plaintext policy and CAPA; passwords with spaces and UTF-8; malformed APOP; the
//! disable list (also for extensions, and failing closed when unsafe); extension logins; the
//! per-maildrop lock; the log.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::client::pairs;
use crate::harness::{crlf, retr_wire, small_message, uniques};

#[test]
fn apop_login_with_the_stored_secret() {
    let mut w = world!("apop_login_with_the_stored_secret");
    let alice = w.user("alice");
    let m = small_message(1);
    w.deliver(&alice, &m);
    let server = w.serve();
    let mut pop = server.connect();
    pop.apop(alice.name(), &alice.password);
    assert_eq!(pop.ok("STAT"), format!("+OK 1 {}", crlf(&m).len()));
    pop.ok("QUIT");
    pop.expect_closed();

    // The digest of another session's timestamp does not open this one.
    let first = server.connect();
    let stale = first.apop_line(alice.name(), &alice.password);
    drop(first);
    let mut pop = server.connect();
    let reply = pop.err(&stale);
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply:?}");
    // Upper-case hex is the same digest.
    let line = pop.apop_line(alice.name(), &alice.password);
    let (cmd, digest) = line.rsplit_once(' ').unwrap();
    pop.ok(&format!("{cmd} {}", digest.to_ascii_uppercase()));
    pop.ok("QUIT");
}

/// Wrong password, unknown user, disabled account, by APOP and by USER/PASS: one and the same
/// `-ERR [AUTH]` line, and USER itself does not tell who exists.
#[test]
fn every_auth_failure_looks_the_same() {
    let mut w = world!("every_auth_failure_looks_the_same");
    let alice = w.user("alice");
    let bob = w.user("bob");
    w.disable(&bob);
    let server = w.serve();

    let mut replies = Vec::new();
    let mut user_replies = Vec::new();
    for (user, pass) in [
        (alice.name(), "wrong-password"),
        ("nosuchuser", "whatever-password"),
        (bob.name(), bob.password.as_str()),
    ] {
        let mut pop = server.connect();
        user_replies.push(pop.ok(&format!("USER {user}")));
        replies.push(pop.err(&format!("PASS {pass}")));
        let mut pop = server.connect();
        let line = pop.apop_line(user, pass);
        replies.push(pop.err(&line));
    }
    assert!(replies[0].starts_with("-ERR [AUTH]"), "{:?}", replies[0]);
    for r in &replies {
        assert_eq!(r, &replies[0], "all failures: {replies:#?}");
    }
    for r in &user_replies {
        assert_eq!(r, &user_replies[0], "USER replies: {user_replies:#?}");
    }
    // The right password of the disabled account is what failed above; alice still works.
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("QUIT");
    // The log names no password.
    server.wait_idle();
    let log = server.wait_ends(7);
    for secret in [&alice.password, &bob.password, "wrong-password"] {
        assert!(!log.contains(secret), "secret in the log:\n{log}");
    }
}

#[test]
fn connection_closes_after_three_failures() {
    let mut w = world!("connection_closes_after_three_failures");
    let alice = w.user("alice");
    let server = w.serve();
    let mut pop = server.connect();
    pop.ok(&format!("USER {}", alice.name()));
    pop.err("PASS wrong-1");
    let line = pop.apop_line(alice.name(), "wrong-2");
    pop.err(&line);
    pop.ok(&format!("USER {}", alice.name()));
    let third = pop.cmd("PASS wrong-3");
    assert!(third.starts_with("-ERR [AUTH]"), "{third:?}");
    pop.expect_closed();
}

/// A failure is answered only after `auth_delay` (a lower bound; nothing here measures speed).
#[test]
fn failures_wait_auth_delay() {
    let mut w = world!("failures_wait_auth_delay");
    let alice = w.user("alice");
    w.set("auth_delay", "800");
    let server = w.serve();
    let mut pop = server.connect();
    pop.ok(&format!("USER {}", alice.name()));
    let start = Instant::now();
    pop.err("PASS wrong-password");
    assert!(
        start.elapsed() >= Duration::from_millis(750),
        "failure answered after {:?}",
        start.elapsed()
    );
}

fn capa(pop: &mut crate::client::Pop) -> Vec<String> {
    pop.ok_lines("CAPA")
}

fn assert_base_capabilities(caps: &[String]) {
    for want in [
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "EXPIRE NEVER",
    ] {
        assert!(caps.iter().any(|c| c == want), "{want} missing: {caps:?}");
    }
    assert!(
        caps.iter().any(|c| c.starts_with("IMPLEMENTATION ")),
        "IMPLEMENTATION missing: {caps:?}"
    );
}

#[test]
fn capa_with_plaintext_allowed() {
    let mut w = world!("capa_with_plaintext_allowed");
    let alice = w.user("alice");
    let server = w.serve(); // default plaintext = intranet, INTRANET=1
    let mut pop = server.connect();
    let caps = capa(&mut pop);
    assert_base_capabilities(&caps);
    assert!(caps.iter().any(|c| c == "USER"), "{caps:?}");
    pop.login(alice.name(), &alice.password);
    assert_base_capabilities(&capa(&mut pop));
    pop.ok("QUIT");
}

fn assert_plaintext_refused(server: &crate::harness::Server, alice: &crate::harness::User) {
    let mut pop = server.connect();
    let caps = capa(&mut pop);
    assert_base_capabilities(&caps);
    assert!(!caps.iter().any(|c| c == "USER"), "{caps:?}");
    pop.err(&format!("USER {}", alice.name()));
    pop.err(&format!("PASS {}", alice.password));
    // APOP still works.
    pop.apop(alice.name(), &alice.password);
    pop.ok("QUIT");
}

#[test]
fn plaintext_never_refuses_user() {
    let mut w = world!("plaintext_never_refuses_user");
    let alice = w.user("alice");
    w.set("plaintext", "never");
    let server = w.serve(); // INTRANET=1 does not matter
    assert_plaintext_refused(&server, &alice);
}

#[test]
fn plaintext_intranet_needs_intranet_env() {
    let mut w = world!("plaintext_intranet_needs_intranet_env");
    let alice = w.user("alice");
    let server = w.serve_with(&[], None);
    assert_plaintext_refused(&server, &alice);
    let server = w.serve_with(&[("INTRANET", "")], None);
    assert_plaintext_refused(&server, &alice);
}

#[test]
fn plaintext_always_without_intranet_env() {
    let mut w = world!("plaintext_always_without_intranet_env");
    let alice = w.user("alice");
    w.set("plaintext", "always");
    let server = w.serve_with(&[], None);
    let mut pop = server.connect();
    assert!(capa(&mut pop).iter().any(|c| c == "USER"));
    pop.login(alice.name(), &alice.password);
    pop.ok("QUIT");
}

/// `alice-lists` logs in with `~alice/.apop-lists` and reads the Maildir named by the first
/// maildir line of `~alice/.qmail-lists`.
#[test]
fn extension_login_uses_apop_ext_and_dot_qmail() {
    let mut w = world!("extension_login_uses_apop_ext_and_dot_qmail");
    let alice = w.user("alice");
    let home_msg = small_message(1);
    w.deliver(&alice, &home_msg);

    let ext_dir = alice.account.home.join("Lists");
    for sub in ["", "/new", "/cur", "/tmp"] {
        w.mkdir_as(
            &alice.account,
            &ext_dir.join(sub.trim_start_matches('/')),
            0o700,
        );
    }
    let other_dir = alice.account.home.join("Other");
    for sub in ["", "/new", "/cur", "/tmp"] {
        w.mkdir_as(
            &alice.account,
            &other_dir.join(sub.trim_start_matches('/')),
            0o700,
        );
    }
    let ext_msgs = [small_message(10), small_message(11)];
    let ext_names: Vec<String> = ext_msgs
        .iter()
        .map(|m| w.deliver_to(&alice, &ext_dir, m))
        .collect();
    w.deliver_to(&alice, &other_dir, &small_message(12));
    w.write_as(
        &alice.account,
        &alice.account.home.join(".qmail-lists"),
        b"# lists go to their own Maildir\n|true\n./Lists/\n./Other/\n",
        0o644,
    );
    let ext_secret = "pw-alice-lists-secret";
    w.set_secret(&alice, Some("lists"), ext_secret);
    let server = w.serve();

    let mut pop = server.connect();
    pop.apop("alice-lists", ext_secret);
    let uidl = pairs(&pop.ok_lines("UIDL"));
    assert_eq!(
        uidl.into_iter().map(|(_, u)| u).collect::<Vec<_>>(),
        ext_names
    );
    pop.ok("RETR 2");
    assert_eq!(pop.multiline_raw(), retr_wire(&ext_msgs[1]));
    pop.ok("DELE 1");
    pop.ok("QUIT");
    pop.expect_closed();

    let mut pop = server.connect();
    pop.login("alice-lists", ext_secret);
    assert_eq!(pop.ok("STAT").split(' ').nth(1), Some("1"));
    pop.ok("QUIT");

    // The account's own password does not open the extension, nor the reverse.
    let mut pop = server.connect();
    let line = pop.apop_line("alice-lists", &alice.password);
    pop.err(&line);
    let line = pop.apop_line(alice.name(), ext_secret);
    pop.err(&line);
    pop.apop(alice.name(), &alice.password);
    assert_eq!(pop.ok("STAT"), format!("+OK 1 {}", crlf(&home_msg).len()));
    pop.ok("QUIT");
    server.wait_idle();

    assert_eq!(
        uniques(&ext_dir),
        [ext_names[1].clone()].into_iter().collect()
    );
    assert_eq!(
        uniques(&other_dir).len(),
        1,
        "the second maildir line is not used"
    );
}

/// While one session holds the maildrop, a second gets `-ERR [IN-USE]`; after QUIT it is free.
#[test]
fn second_session_gets_in_use() {
    let mut w = world!("second_session_gets_in_use");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let server = w.serve();
    let mut first = server.connect();
    first.login(alice.name(), &alice.password);

    let mut second = server.connect();
    second.ok(&format!("USER {}", alice.name()));
    let reply = second.cmd(&format!("PASS {}", alice.password));
    assert!(reply.starts_with("-ERR [IN-USE]"), "{reply:?}");
    let mut third = server.connect();
    let line = third.apop_line(alice.name(), &alice.password);
    let reply = third.cmd(&line);
    assert!(reply.starts_with("-ERR [IN-USE]"), "{reply:?}");

    first.ok("NOOP");
    first.ok("QUIT");
    first.expect_closed();
    drop((second, third));
    server.wait_idle();
    let mut again = server.connect();
    again.login(alice.name(), &alice.password);
    again.ok("QUIT");
}

/// stderr: one `ipop3d: login` line per login attempt and one `ipop3d: end` line per session,
/// never a password or a digest; the exit status says how the session ended.
#[test]
fn log_lines_one_per_event_without_secrets() {
    let mut w = world!("log_lines_one_per_event_without_secrets");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let server = w.serve();

    let mut pop = server.connect();
    let good = pop.apop_line(alice.name(), &alice.password);
    pop.ok(&good);
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();

    let mut pop = server.connect();
    let bad = pop.apop_line(alice.name(), "wrong-password");
    for _ in 0..3 {
        pop.err(&bad);
    }
    pop.expect_closed();
    server.wait_idle();

    let log = server.wait_ends(2);
    let count = |prefix: &str| log.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("ipop3d: login "), 4, "{log}");
    assert_eq!(count("ipop3d: end "), 2, "{log}");
    for secret in [
        alice.password.as_str(),
        "wrong-password",
        good.rsplit_once(' ').unwrap().1,
        bad.rsplit_once(' ').unwrap().1,
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    // The raw wait statuses, as tcpserver prints them: exit 1 (too many failures) is 256.
    assert_eq!(server.end_statuses(), vec!["0", "256"], "{log}");
}

/// Login names that are not accounts, and accounts whose store file is not safe to use, fail
/// with the very line a wrong password gets.
#[test]
fn odd_names_and_unsafe_store_files_fail_alike() {
    let mut w = world!("odd_names_and_unsafe_store_files_fail_alike");
    let alice = w.user("alice");
    let carol = w.user("carol"); // .apop mode 0644
    let dave = w.user("dave"); // .apop a symlink to alice's
    let erin = w.user("erin"); // no .apop
    let frank = w.user("frank"); // .apop hard-linked (two links)
    let carol_apop = carol.account.home.join(".apop");
    std::fs::set_permissions(&carol_apop, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dave_apop = dave.account.home.join(".apop");
    std::fs::remove_file(&dave_apop).unwrap();
    std::os::unix::fs::symlink(alice.account.home.join(".apop"), &dave_apop).unwrap();
    std::fs::remove_file(erin.account.home.join(".apop")).unwrap();
    let frank_apop = frank.account.home.join(".apop");
    std::fs::hard_link(&frank_apop, frank.account.home.join("apop-copy")).unwrap();
    let server = w.serve();

    let canonical = {
        let mut pop = server.connect();
        pop.ok(&format!("USER {}", alice.name()));
        pop.err("PASS wrong-password")
    };
    assert!(canonical.starts_with("-ERR [AUTH]"), "{canonical:?}");

    let long = "a".repeat(200); // longer than any account name, within the line limit
    let cases: Vec<(String, String)> = vec![
        ("../alice".into(), alice.password.clone()),
        ("alice/..".into(), alice.password.clone()),
        ("ALICE".into(), alice.password.clone()),
        ("alice-".into(), alice.password.clone()),
        ("alice-nosuchext".into(), alice.password.clone()),
        ("-alice".into(), alice.password.clone()),
        ("root".into(), alice.password.clone()),
        (long, alice.password.clone()),
        (carol.name().into(), carol.password.clone()),
        (dave.name().into(), alice.password.clone()),
        (dave.name().into(), dave.password.clone()),
        (erin.name().into(), erin.password.clone()),
        (frank.name().into(), frank.password.clone()),
    ];
    for (name, pass) in &cases {
        // USER/PASS: whichever of the two fails says exactly the canonical line.
        let mut pop = server.connect();
        let user = pop.cmd(&format!("USER {name}"));
        let failure = if user.starts_with("-ERR") {
            user
        } else {
            pop.cmd(&format!("PASS {pass}"))
        };
        assert_eq!(failure, canonical, "USER/PASS as {name:?}");
        pop.ok("QUIT");
        // APOP.
        let mut pop = server.connect();
        let line = pop.apop_line(name, pass);
        assert_eq!(pop.cmd(&line), canonical, "APOP as {name:?}");
        pop.ok("QUIT");
    }
    // The store files were left as they were.
    assert!(std::fs::symlink_metadata(&dave_apop)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::metadata(&carol_apop).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

/// A store file owned by another uid is not used (root only: it needs a second uid).
#[test]
fn store_file_owned_by_another_uid_is_refused_root() {
    if !crate::harness::need_root("store_file_owned_by_another_uid_is_refused_root") {
        return;
    }
    let mut w = world!("store_file_owned_by_another_uid_is_refused_root");
    let alice = w.user("alice");
    let bob = w.user("bob");
    let apop = alice.account.home.join(".apop");
    std::os::unix::fs::chown(&apop, Some(bob.account.uid), Some(bob.account.gid)).unwrap();
    let server = w.serve();
    let mut pop = server.connect();
    let line = pop.apop_line(alice.name(), &alice.password);
    let reply = pop.err(&line);
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply:?}");
}

#[test]
fn max_auth_failures_is_configurable() {
    for (limit, open_after) in [(1u32, 0u32), (5, 4)] {
        let mut w = world!("max_auth_failures_is_configurable");
        let alice = w.user("alice");
        w.set("max_auth_failures", &limit.to_string());
        let server = w.serve();
        let mut pop = server.connect();
        for _ in 0..open_after {
            let line = pop.apop_line(alice.name(), "wrong-password");
            pop.err(&line);
        }
        // Still open: one more failure is the last.
        pop.ok("CAPA");
        pop.multiline();
        let line = pop.apop_line(alice.name(), "wrong-password");
        pop.err(&line);
        pop.expect_closed();
    }
}

/// Passwords with inner, leading or trailing spaces and non-ASCII bytes work by PASS (the
/// whole rest of the line after one space) and by APOP.
#[test]
fn passwords_with_spaces_and_utf8() {
    let mut w = world!("passwords_with_spaces_and_utf8");
    let alice = w.user("alice");
    let bob = w.user("bob");
    let carol = w.user("carol");
    let spaced = "correct horse  battery staple";
    let unicode = "pässwörd-ünïcödé-密码";
    let padded = " leading and trailing spaces ";
    w.set_secret(&alice, None, spaced);
    w.set_secret(&bob, None, unicode);
    w.set_secret(&carol, None, padded);
    let server = w.serve();
    for (user, secret) in [(&alice, spaced), (&bob, unicode), (&carol, padded)] {
        let mut pop = server.connect();
        pop.login(user.name(), secret);
        pop.ok("QUIT");
        let mut pop = server.connect();
        pop.apop(user.name(), secret);
        pop.ok("QUIT");
    }
    let mut pop = server.connect();
    pop.ok(&format!("USER {}", alice.name()));
    pop.err("PASS correct horse battery staple"); // one space fewer
}

/// APOP lines with a malformed digest or missing arguments fail, the session goes on.
#[test]
fn malformed_apop() {
    let mut w = world!("malformed_apop");
    let alice = w.user("alice");
    w.set("max_auth_failures", "100");
    let server = w.serve();
    let mut pop = server.connect();
    let good = pop.apop_line(alice.name(), &alice.password);
    let digest = good.rsplit_once(' ').unwrap().1.to_string();
    for line in [
        "APOP".to_string(),
        format!("APOP {}", alice.name()),
        format!("APOP {} {}", alice.name(), &digest[..31]),
        format!("APOP {} {}0", alice.name(), digest),
        format!("APOP {} {}", alice.name(), "zz".repeat(16)),
        format!("APOP {} {} extra", alice.name(), digest),
        format!("APOP  {}", digest),
    ] {
        pop.err(&line);
        pop.ok("CAPA");
        pop.multiline();
    }
    pop.ok(&good);
    pop.ok("QUIT");
}

/// Disabling an account also disables its extension addresses.
#[test]
fn disabled_account_extensions_fail_too() {
    let mut w = world!("disabled_account_extensions_fail_too");
    let alice = w.user("alice");
    let home = alice.account.home.clone();
    w.write_as(
        &alice.account,
        &home.join(".qmail-same"),
        b"./Maildir/\n",
        0o644,
    );
    w.set_secret(&alice, Some("same"), "pw-alice-same-secret");
    w.disable(&alice);
    let server = w.serve();
    let mut pop = server.connect();
    let canonical = pop.err(&pop.apop_line(alice.name(), &alice.password));
    assert!(canonical.starts_with("-ERR [AUTH]"), "{canonical:?}");
    assert_eq!(
        pop.cmd(&pop.apop_line("alice-same", "pw-alice-same-secret")),
        canonical
    );
}

/// A disable list anyone may write is not trusted: every login fails (closed, not open).
#[test]
fn unsafe_disable_list_fails_closed() {
    let mut w = world!("unsafe_disable_list_fails_closed");
    let alice = w.user("alice");
    let bob = w.user("bob");
    w.disable(&bob);
    std::fs::set_permissions(w.disabled_path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let server = w.serve();
    let mut pop = server.connect();
    let reply = pop.cmd(&pop.apop_line(alice.name(), &alice.password));
    assert!(reply.starts_with("-ERR"), "{reply:?}");
}

/// An extension address can be disabled alone: `alice-lists` fails, `alice` still works.
#[test]
fn one_extension_disabled_alone() {
    let mut w = world!("one_extension_disabled_alone");
    let alice = w.user("alice");
    let home = alice.account.home.clone();
    w.write_as(
        &alice.account,
        &home.join(".qmail-lists"),
        b"./Maildir/\n",
        0o644,
    );
    w.set_secret(&alice, Some("lists"), "pw-alice-lists-secret");
    w.disable_address("alice-lists");
    let server = w.serve();
    let mut pop = server.connect();
    let reply = pop.cmd(&pop.apop_line("alice-lists", "pw-alice-lists-secret"));
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply:?}");
    pop.apop(alice.name(), &alice.password);
    pop.ok("QUIT");
}
