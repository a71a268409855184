//! deapop: disable, enable, purge, list (table and JSON), refusal of non-root, unknown users.

use std::os::unix::fs::MetadataExt;

use crate::harness::{listing, need_root, World};

fn set(world: &World, address: &str, password: &str) {
    world
        .apoppasswd()
        .args(["--stdin", address])
        .stdin(format!("{password}\n"))
        .run()
        .success();
}

fn json(world: &World) -> Vec<serde_json::Value> {
    let out = world.deapop().args(["--list", "--json"]).run().success();
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn disable_enable_purge_and_list_root() {
    if !need_root("disable_enable_purge_and_list_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    world.add_user("bob");
    world.add_user("carol");
    world.add_user("dave");
    set(&world, "alice", "alice's password");
    set(&world, "alice-work", "alice's work one");
    set(&world, "bob", "bob's password");

    assert!(json(&world).len() == 2);
    let out = world.deapop().args(["bob", "carol"]).run().success();
    assert_eq!(out.stdout, "bob: disabled\ncarol: disabled\n");
    let again = world.deapop().arg("bob").run().success().stdout;
    assert!(again.starts_with("bob: already disabled since "), "{again}");
    assert!(again.ends_with(" UTC by root\n"), "{again}");
    let meta = std::fs::metadata(&world.disabled).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o644));

    let table = world.deapop().arg("--list").run().success().stdout;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["USER", "UID", "STATE", "SECRETS"], "{table}");
    assert_eq!(
        rows[1],
        ["alice", "60001", "enabled", ".apop", ".apop-work"]
    );
    assert_eq!(rows[2], ["bob", "60002", "disabled", ".apop"]);
    assert_eq!(rows[3], ["carol", "60003", "disabled", "-"]);
    assert_eq!(rows.len(), 4, "{table}");

    let rows = json(&world);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["user"], "alice");
    assert_eq!(rows[0]["uid"], 60001);
    assert_eq!(rows[0]["state"], "enabled");
    assert_eq!(rows[0]["main"], true);
    assert_eq!(rows[0]["extensions"], serde_json::json!(["work"]));
    assert!(rows[0]["disabled_since"].is_null());
    assert_eq!(rows[1]["state"], "disabled");
    assert_eq!(rows[1]["disabled_by"], "root");
    assert!(rows[1]["disabled_since"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(rows[2]["main"], false);

    // Enable: bob's mark goes, carol's stays.
    let out = world.deapop().args(["--enable", "bob", "dave"]).run();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "bob: enabled\ndave: was not disabled\n");
    assert!(!world.is_disabled("bob"));
    assert!(world.is_disabled("carol"));

    // Purge: disabled, and every secret file gone (only the lock file stays).
    let out = world.deapop().args(["--purge", "alice"]).run().success();
    assert!(out.stdout.starts_with("alice: disabled\n"), "{out:#?}");
    assert!(out.stdout.contains("alice: removed "), "{out:#?}");
    assert_eq!(listing(&alice.home), [".apop.lock"]);
    assert!(world.is_disabled("alice"));
    assert!(!world.verifies("alice", "alice's password"));
    assert!(!world.verifies("alice-work", "alice's work one"));
    assert!(world.verifies("bob", "bob's password"));
    let out = world.deapop().args(["--purge", "carol"]).run().success();
    assert!(
        out.stdout.contains("carol: no stored password to purge"),
        "{out:#?}"
    );
}

#[test]
fn unknown_user_changes_nothing_root() {
    if !need_root("unknown_user_changes_nothing_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    set(&world, "alice", "alice's password");
    for args in [
        &["alice", "ghost"][..],
        &["--purge", "alice", "ghost"],
        &["--enable", "ghost"],
    ] {
        world
            .deapop()
            .args(args)
            .run()
            .fails(4, "deapop: unknown user \"ghost\"");
    }
    world
        .deapop()
        .args(["alice", "../x"])
        .run()
        .fails(4, "bad name");
    assert!(!world.is_disabled("alice"));
    assert!(alice.apop().exists());
    assert!(!world.disabled.exists());
}

#[test]
fn a_mark_outlives_its_account_and_can_be_lifted_root() {
    if !need_root("a_mark_outlives_its_account_and_can_be_lifted_root") {
        return;
    }
    let mut world = World::new();
    world.add_user("alice");
    std::fs::create_dir_all(world.disabled.parent().unwrap()).unwrap();
    std::fs::write(&world.disabled, "gone 1700000000 root\n").unwrap();
    let rows = json(&world);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["user"], "gone");
    assert!(rows[0]["uid"].is_null());
    assert_eq!(rows[0]["disabled_since"], 1_700_000_000u64);
    let table = world.deapop().arg("--list").run().success().stdout;
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["gone", "-", "disabled", "-"]),
        "{table}"
    );
    world.deapop().args(["--enable", "gone"]).run().success();
    assert_eq!(json(&world).len(), 0);
    assert_eq!(
        world.deapop().arg("--list").run().success().stdout,
        "USER  UID  STATE  SECRETS\n"
    );
}

#[test]
fn only_root_may_run_deapop() {
    if !need_root("only_root_may_run_deapop") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    world.add_user("bob");
    for args in [
        &["bob"][..],
        &["--enable", "alice"],
        &["--purge", "bob"],
        &["--list"],
    ] {
        world
            .deapop()
            .args(args)
            .user(&alice)
            .run()
            .fails(3, "deapop: not permitted: only root may");
    }
    assert!(!world.disabled.exists());
}

/// Any caller but root is refused before deapop reads anything: the runner itself, or as
/// root a virtual user.
#[test]
fn deapop_refuses_a_non_root_runner() {
    let mut world = World::new();
    let me = world.me("alice");
    world
        .deapop()
        .arg("--list")
        .user(&me)
        .run()
        .fails(3, "deapop: not permitted: only root may");
}

#[test]
fn deapop_usage_errors_exit_2() {
    let world = World::new();
    for args in [
        &[][..],
        &["--json"],
        &["--list", "alice"],
        &["--enable", "--purge", "a"],
    ] {
        let out = world.deapop().args(args).run();
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
    }
}

#[test]
fn an_unsafe_disable_list_is_refused_root() {
    if !need_root("an_unsafe_disable_list_is_refused_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    let etc = world.disabled.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&etc).unwrap();
    let elsewhere = world.path().join("elsewhere");
    std::fs::write(&elsewhere, "").unwrap();
    std::os::unix::fs::symlink(&elsewhere, &world.disabled).unwrap();
    world
        .deapop()
        .arg("alice")
        .run()
        .fails(5, "it is a symbolic link");
    world
        .apoppasswd()
        .arg("--stdin")
        .stdin("a long password\n")
        .user(&alice)
        .run()
        .fails(5, "it is a symbolic link");
    assert_eq!(std::fs::read(&elsewhere).unwrap(), b"");
    // A list its users could write is not trusted either.
    std::fs::remove_file(&world.disabled).unwrap();
    std::fs::write(&world.disabled, "").unwrap();
    std::fs::set_permissions(&world.disabled, crate::harness::perm(0o666)).unwrap();
    world
        .deapop()
        .arg("--list")
        .run()
        .fails(5, "it is writable by group or others (mode 0666)");
    world
        .apoppasswd()
        .arg("--generate")
        .user(&alice)
        .run()
        .fails(5, "it is writable by group or others (mode 0666)");
    assert!(!alice.apop().exists());
}
