//! `apoppasswd --batch`: every line validated first, nothing written if any is bad, errors name
//! the line and never quote a password; then all written. Root only.

use crate::harness::{need_root, User, World};

const USERS: usize = 1000;

fn password(i: usize) -> String {
    format!("batch secret #{i:04}:with colon")
}

fn world_of(n: usize) -> (World, Vec<User>) {
    let mut world = World::new();
    let names: Vec<String> = (0..n).map(|i| format!("user{i:05}")).collect();
    let users = world.add_users(&names);
    (world, users)
}

fn input(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("user{i:05}:{}", password(i)))
        .collect()
}

fn nothing_written(users: &[User]) {
    for u in users {
        assert!(!u.apop().exists(), "{} was written", u.name);
    }
}

#[test]
fn one_bad_line_in_a_thousand_writes_nothing_root() {
    if !need_root("one_bad_line_in_a_thousand_writes_nothing_root") {
        return;
    }
    let (world, users) = world_of(USERS);
    let cases: [(usize, &str, i32, &str); 5] = [
        (
            517,
            "user00516:tiny7",
            7,
            "line 517: password rejected: the password is shorter than 8 characters",
        ),
        (
            17,
            "ghost:a long password",
            4,
            "line 17: unknown user \"ghost\"",
        ),
        (
            900,
            "this line has no colon in it",
            7,
            "line 900: password rejected: expected user:password",
        ),
        (
            3,
            "user00000:the same user twice",
            7,
            "line 3: password rejected: user00000 is also on line 1",
        ),
        (
            1000,
            "../etc:a long password",
            4,
            "line 1000: bad name: user name \"../etc\"",
        ),
    ];
    for (line, bad, code, message) in cases {
        let mut lines = input(USERS);
        lines[line - 1] = bad.to_string();
        let out = world
            .apoppasswd()
            .arg("--batch")
            .stdin(lines.join("\n"))
            .run()
            .fails(code, message);
        assert!(out.stderr.contains("nothing was written"), "{out:#?}");
        assert!(out.stdout.is_empty(), "{out:#?}");
        for secret in ["tiny7", "no colon", "same user twice", "batch secret"] {
            assert!(!out.stderr.contains(secret), "password echoed: {out:#?}");
        }
        nothing_written(&users);
    }
    // Every bad line is reported, each by its number.
    let mut lines = input(USERS);
    lines[9] = "user00009:short".into();
    lines[99] = "nobody:a long password".into();
    let out = world
        .apoppasswd()
        .arg("--batch")
        .stdin(lines.join("\r\n"))
        .run()
        .fails(7, "line 10: password rejected");
    assert!(out.stderr.contains("line 100: unknown user"), "{out:#?}");
    assert!(out.stderr.contains("2 bad line(s)"), "{out:#?}");
    nothing_written(&users);
}

#[test]
fn a_thousand_good_lines_all_verify_root() {
    if !need_root("a_thousand_good_lines_all_verify_root") {
        return;
    }
    let (world, users) = world_of(USERS);
    let mut lines = input(USERS);
    lines.insert(500, String::new()); // blank lines are skipped
    lines.push("user00002-work:the work address".into());
    let out = world
        .apoppasswd()
        .arg("--batch")
        .stdin(lines.join("\n") + "\n")
        .run()
        .success();
    assert_eq!(
        out.stdout,
        format!("Updated {} APOP password(s).\n", USERS + 1)
    );
    for (i, u) in users.iter().enumerate() {
        assert!(world.verifies(&u.name, &password(i)), "{}", u.name);
    }
    assert!(world.verifies("user00002-work", "the work address"));
    assert!(!world.verifies("user00003", &password(4)));
    let status = world
        .apoppasswd()
        .args(["--status", "user00999"])
        .run()
        .success()
        .stdout;
    assert!(status.contains(" UTC by root\n"), "{status}");
}

#[test]
fn batch_refuses_an_unsafe_store_before_writing_anything_root() {
    if !need_root("batch_refuses_an_unsafe_store_before_writing_anything_root") {
        return;
    }
    let (world, users) = world_of(10);
    std::os::unix::fs::symlink("/etc/passwd", users[7].apop()).unwrap();
    std::os::unix::fs::lchown(users[7].apop(), Some(users[7].uid), Some(users[7].gid)).unwrap();
    let out = world
        .apoppasswd()
        .arg("--batch")
        .stdin(input(10).join("\n"))
        .run()
        .fails(5, "line 8: refusing to use");
    assert!(out.stderr.contains("symbolic link"), "{out:#?}");
    for u in users.iter().filter(|u| u.name != "user00007") {
        assert!(!u.apop().exists(), "{} was written", u.name);
    }
}

#[test]
fn write_failures_after_validation_are_reported_by_line_root() {
    if !need_root("write_failures_after_validation_are_reported_by_line_root") {
        return;
    }
    let (world, users) = world_of(USERS);
    // Homes their accounts cannot write: validation passes (no store file yet), writing fails.
    let broken = [4usize, 333, 998];
    for &i in &broken {
        std::os::unix::fs::chown(&users[i].home, Some(0), Some(0)).unwrap();
    }
    let out = world
        .apoppasswd()
        .arg("--batch")
        .stdin(input(USERS).join("\n"))
        .run()
        .fails(10, "line 5: ");
    assert_eq!(
        out.stdout,
        format!("Updated {} APOP password(s).\n", USERS - 3)
    );
    let reported: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("Permission denied"))
        .collect();
    assert_eq!(reported.len(), 3, "{out:#?}");
    for (&i, line) in broken.iter().zip(&reported) {
        assert!(
            line.starts_with(&format!("apoppasswd: line {}: ", i + 1)),
            "{line}"
        );
    }
    assert!(out.stderr.contains("3 line(s) failed"), "{out:#?}");
    for (i, u) in users.iter().enumerate() {
        assert_eq!(
            world.verifies(&u.name, &password(i)),
            !broken.contains(&i),
            "{}",
            u.name
        );
    }
}

#[test]
fn ten_thousand_accounts_in_one_batch_root() {
    if !need_root("ten_thousand_accounts_in_one_batch_root") {
        return;
    }
    const MANY: usize = 10_000;
    let (world, users) = world_of(MANY);
    let out = world
        .apoppasswd()
        .arg("--batch")
        .stdin(input(MANY).join("\n"))
        .run()
        .success();
    assert_eq!(out.stdout, format!("Updated {MANY} APOP password(s).\n"));
    for u in &users {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(u.apop()).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o7777),
            (u.uid, 0o600),
            "{}",
            u.name
        );
    }
    for i in (0..MANY).step_by(97) {
        assert!(
            world.verifies(&users[i].name, &password(i)),
            "{}",
            users[i].name
        );
        assert!(!world.verifies(&users[i].name, &password(i + 1)));
    }
}
