//! A user on their own account, through --stdin: set, check, status, generate, delete,
//! extensions, and refusals that need no root (another account, bad names, policy).
//! Runs as root (as a virtual user) and as a non-root runner (as itself).

use crate::harness::World;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn stdin_set_check_status_delete() {
    let mut world = World::new();
    let alice = world.me("alice");
    let run = |args: &[&str], stdin: &str| {
        world
            .apoppasswd()
            .args(args)
            .stdin(stdin)
            .user(&alice)
            .run()
    };
    run(&["--status"], "").fails(9, "");
    run(&["--check", "--stdin"], "whatever1\n").fails(1, "no APOP password is set");

    let before = now();
    let out = run(
        &["--stdin"],
        "pass:word with spaces\r\nsecond line ignored\n",
    )
    .success();
    assert_eq!(out.stdout, "Updated APOP password successfully.\n");
    // The trailing CR LF is not part of the password; the second line is not read.
    assert!(world.verifies("alice", "pass:word with spaces"));
    assert!(!world.verifies("alice", "pass:word with space"));
    assert!(!world.verifies("alice", "second line ignored"));
    run(&["--check", "--stdin"], "pass:word with spaces\n").success();
    run(&["--check", "--stdin"], "pass:word with spaceS\n").fails(1, "does not match");

    let status = run(&["--status"], "").success().stdout;
    assert!(status.contains("address:    alice\n"), "{status}");
    assert!(status.contains("password:   set\n"), "{status}");
    assert!(status.contains(" UTC by alice\n"), "{status}");
    assert!(status.contains("disabled:   no\n"), "{status}");
    assert!(status.contains("extensions: none\n"), "{status}");
    // The changed time is this run's: GNU date reads the printed UTC time back to seconds.
    let after = now();
    let line = status.lines().find(|l| l.starts_with("changed:")).unwrap();
    let printed: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(printed[3..], ["UTC", "by", "alice"], "{line}");
    let back = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("{} {} UTC", printed[1], printed[2]),
            "+%s",
        ])
        .output()
        .unwrap();
    let back: u64 = String::from_utf8_lossy(&back.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&back),
        "{line}: {back} not in {before}..={after}"
    );
    assert!(
        !status.contains("pass:word"),
        "status shows the password: {status}"
    );

    let file = std::fs::read(alice.apop()).unwrap();
    let text = String::from_utf8_lossy(&file);
    assert!(text.starts_with("apoptools-secret 2\n"), "{text}");
    // The documented format: neither the CR nor the second line were stored; SCRAM's keys
    // follow the secret (iterations, then base64 salt, StoredKey and ServerKey).
    let (_, tail) = text
        .split_once("\nsecret pass:word with spaces\nscram-sha-256 4096 ")
        .unwrap_or_else(|| panic!("{text}"));
    let fields: Vec<&str> = tail.trim_end_matches('\n').split(' ').collect();
    assert_eq!(fields.len(), 3, "{text}");
    assert_eq!(fields[0].len(), 24, "a 16-byte salt: {text}");
    assert_eq!((fields[1].len(), fields[2].len()), (44, 44), "{text}");
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 5,
        "{text}"
    );
    let meta = std::fs::symlink_metadata(alice.apop()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.nlink()),
        (0o600, alice.uid, 1)
    );

    let deleted = run(&["--delete"], "").success().stdout;
    assert_eq!(deleted, "Deleted the APOP password of alice.\n");
    assert!(!alice.apop().exists());
    run(&["--delete"], "").fails(9, "no APOP password is set");
    run(&["--check", "--stdin"], "pass:word with spaces\n").fails(1, "");
}

#[test]
fn generate_prints_the_stored_password_once() {
    let mut world = World::new();
    let alice = world.me("alice");
    let gen = |args: &[&str]| {
        let out = world
            .apoppasswd()
            .arg("--generate")
            .args(args)
            .user(&alice)
            .run()
            .success();
        assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
        out.stdout.trim_end_matches('\n').to_string()
    };
    let first = gen(&[]);
    assert_eq!(first.len(), 16);
    assert!(first
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() && !b"0O1lI".contains(&b)));
    assert!(world.verifies("alice", &first));
    let long = gen(&["--length", "40"]);
    assert_eq!(long.len(), 40);
    assert_ne!(long[..16], first);
    assert!(world.verifies("alice", &long));
    assert!(!world.verifies("alice", &first));
    // Shorter than the policy's minimum length (8 by default).
    world
        .apoppasswd()
        .args(["--generate", "--length", "4"])
        .user(&alice)
        .run()
        .fails(7, "shorter than 8");
    assert!(world.verifies("alice", &long));
}

#[test]
fn extensions_are_separate_addresses() {
    let mut world = World::new();
    let alice = world.me("alice");
    let set = |args: &[&str], pw: &str| world.set_by(&alice, args, pw);
    set(&[], "main password").success();
    set(&["--ext", "work"], "work password").success();
    set(&["alice-list"], "list password").success();
    set(&["--ext", "x", "alice-list"], "list password").fails(4, "not both");
    set(&["--ext", "../evil"], "evil password").fails(4, "bad name");
    assert!(world.verifies("alice", "main password"));
    assert!(world.verifies("alice-work", "work password"));
    assert!(world.verifies("alice-list", "list password"));
    assert!(!world.verifies("alice-work", "main password"));
    let status = world
        .apoppasswd()
        .args(["--status", "--ext", "work"])
        .user(&alice)
        .run()
        .success()
        .stdout;
    assert!(status.contains("address:    alice-work\n"), "{status}");
    assert!(status.contains("extensions: list work\n"), "{status}");
    assert!(!world.path().join("evil").exists());
}

#[test]
fn policy_and_names() {
    let mut world = World::with_config("min_length = 10\n");
    let alice = world.me("alice");
    let set = |args: &[&str], stdin: &str| {
        world
            .apoppasswd()
            .arg("--stdin")
            .args(args)
            .stdin(stdin)
            .user(&alice)
            .run()
    };
    set(&[], "ninechars\n").fails(7, "shorter than 10");
    set(&[], "\n").fails(7, "empty");
    set(&[], "").fails(7, "empty");
    set(&[], "has\0a NUL byte\n").fails(7, "NUL");
    set(&[], &"x".repeat(5000)).fails(7, "longer than 248");
    set(&["nobody-here"], "long enough password\n").fails(4, "unknown user");
    set(&["../../etc"], "long enough password\n").fails(4, "bad name");
    assert!(!alice.apop().exists());
    // Passwords never come from argv: there is no option taking one.
    let out = world.apoppasswd().args(["--password", "long enough"]).run();
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn another_account_needs_root() {
    let mut world = World::new();
    let alice = world.me("alice");
    let bob = world.add_user_with_uid("bob", 60_999);
    for args in [
        &["--stdin", "bob"][..],
        &["--check", "--stdin", "bob"],
        &["--status", "bob"],
        &["--delete", "bob"],
        &["--generate", "bob"],
        &["--stdin", "--ext", "x", "bob"],
        &["--stdin", "bob-x"],
    ] {
        world
            .apoppasswd()
            .args(args)
            .stdin("a long password\n")
            .user(&alice)
            .run()
            .fails(
                3,
                "not permitted: only root may act on the APOP password of bob",
            );
    }
    world
        .apoppasswd()
        .arg("--batch")
        .stdin("alice:a long password\n")
        .user(&alice)
        .run()
        .fails(3, "only root may");
    assert!(!bob.apop().exists());
    assert!(!alice.apop().exists());
}

#[test]
fn usage_errors_exit_2() {
    let world = World::new();
    for args in [
        &["--check", "--status"][..],
        &["--batch", "alice"],
        &["--length", "20"],
        &["--generate", "--stdin"],
        &["--generate", "--length", "0"],
        &["alice", "bob"],
    ] {
        let out = world.apoppasswd().args(args).run();
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
    let help = world.apoppasswd().arg("--help").run().success().stdout;
    assert!(help.contains("Exit status:"), "{help}");
}

#[test]
fn without_a_terminal_the_prompt_fails_cleanly() {
    let mut world = World::new();
    let alice = world.me("alice");
    // The harness runs every child in a new session: no controlling terminal.
    world
        .apoppasswd()
        .user(&alice)
        .run()
        .fails(10, "cannot read a password from the terminal (use --stdin");
    assert!(!alice.apop().exists());
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let mut world = World::new();
    let alice = world.me("alice");
    world
        .apoppasswd()
        .arg("--stdin")
        .stdin("a long password\n")
        .user(&alice)
        .run()
        .success();
    for args in [&["--status"][..], &["--status", "--ext", "none"]] {
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        drop(read_end);
        let mut run = world.apoppasswd().args(args).user(&alice);
        run.command().stdout(std::process::Stdio::from(write_end));
        let mut child = run.command().spawn().unwrap();
        let status = crate::harness::wait_deadline(&mut child);
        // --status exits 9 when no password is set: its own status, not an EPIPE failure (10).
        let want = if args.len() == 1 { 0 } else { 9 };
        assert_eq!(status.code(), Some(want), "{args:?}");
    }
}

#[test]
fn a_held_lock_means_busy() {
    use fs2::FileExt;
    let mut world = World::with_config("");
    let alice = world.me("alice");
    // A short wait for this world only (the harness's config sets 20 s).
    let config = std::fs::read_to_string(&world.config)
        .unwrap()
        .replace("lock_wait = 20000", "lock_wait = 100");
    std::fs::write(&world.config, config).unwrap();
    world
        .apoppasswd()
        .arg("--stdin")
        .stdin("the first password\n")
        .user(&alice)
        .run()
        .success();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(alice.home.join(".apop.lock"))
        .unwrap();
    lock.lock_exclusive().unwrap();
    world
        .apoppasswd()
        .arg("--stdin")
        .stdin("the second password\n")
        .user(&alice)
        .run()
        .fails(6, ".apop.lock is locked by another writer; try again");
    drop(lock);
    assert!(world.verifies("alice", "the first password"));
    world
        .apoppasswd()
        .arg("--stdin")
        .stdin("the second password\n")
        .user(&alice)
        .run()
        .success();
    assert!(world.verifies("alice", "the second password"));
}

#[test]
fn the_configured_delimiter_names_extensions() {
    let mut world = World::with_config("ext_delimiter = +\n");
    let alice = world.me("alice");
    let set = |address: &str, pw: &str| {
        world
            .apoppasswd()
            .args(["--stdin", address])
            .stdin(format!("{pw}\n"))
            .user(&alice)
            .run()
    };
    set("alice+tag", "tagged password").success();
    set("alice-tag", "dashed password").fails(4, "unknown user \"alice-tag\"");
    assert!(alice.home.join(".apop-tag").exists());
    assert!(world.verifies("alice+tag", "tagged password"));
    let status = world
        .apoppasswd()
        .args(["--status", "alice+tag"])
        .user(&alice)
        .run()
        .success()
        .stdout;
    assert!(status.starts_with("address:    alice+tag\n"), "{status}");
}

#[test]
fn a_legacy_apoptools_file_still_works() {
    let mut world = World::new();
    let alice = world.me("alice");
    // imapext APOPtools kept the secret alone on the first line.
    std::fs::write(alice.apop(), "tanstaafl\n").unwrap();
    std::fs::set_permissions(alice.apop(), crate::harness::perm(0o600)).unwrap();
    if crate::harness::is_root() {
        std::os::unix::fs::chown(alice.apop(), Some(alice.uid), Some(alice.gid)).unwrap();
    }
    assert!(world.verifies("alice", "tanstaafl"));
    let status = world
        .apoppasswd()
        .arg("--status")
        .user(&alice)
        .run()
        .success()
        .stdout;
    assert!(status.contains("password:   set\n"), "{status}");
    assert!(
        status.contains("changed:    unknown time by unknown\n"),
        "{status}"
    );
    // Setting a new one rewrites it in the current format.
    world
        .apoppasswd()
        .arg("--stdin")
        .stdin("a new password\n")
        .user(&alice)
        .run()
        .success();
    assert!(std::fs::read(alice.apop())
        .unwrap()
        .starts_with(b"apoptools-secret 2\n"));
    assert!(world.verifies("alice", "a new password"));
}
