//! Concurrent writers: the store file ends valid and equal to one of the written passwords,
//! no temp file is left, and concurrent disable-list edits lose no mark. Root only (root
//! writes a disabled account's password; deapop is root's).

use crate::harness::{listing, need_root, World};

const WRITERS: usize = 50;

#[test]
fn fifty_concurrent_writers_and_a_deapop_root() {
    if !need_root("fifty_concurrent_writers_and_a_deapop_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    let passwords: Vec<String> = (0..WRITERS)
        .map(|i| format!("concurrent password {i:02}"))
        .collect();
    let mut running: Vec<_> = passwords
        .iter()
        .map(|pw| {
            world
                .apoppasswd()
                .args(["--stdin", "alice"])
                .stdin(format!("{pw}\n"))
                .spawn()
        })
        .collect();
    running.insert(WRITERS / 2, world.deapop().arg("alice").spawn());
    for run in running {
        run.wait().success();
    }

    // Valid: it reads back, with its metadata.
    let status = world
        .apoppasswd()
        .args(["--status", "alice"])
        .run()
        .success()
        .stdout;
    assert!(status.contains("password:   set\n"), "{status}");
    let matching: Vec<&String> = passwords
        .iter()
        .filter(|pw| world.verifies("alice", pw))
        .collect();
    assert_eq!(matching.len(), 1, "matching: {matching:?}");
    assert_eq!(listing(&alice.home), [".apop", ".apop.lock"]);
    assert!(world.is_disabled("alice"), "the deapop mark was lost");
    assert_eq!(
        listing(world.disabled.parent().unwrap()),
        ["disabled", "disabled.lock"]
    );
}

#[test]
fn concurrent_deapops_lose_no_mark_root() {
    if !need_root("concurrent_deapops_lose_no_mark_root") {
        return;
    }
    let mut world = World::new();
    let names: Vec<String> = (0..20).map(|i| format!("user{i:02}")).collect();
    world.add_users(&names);
    let running: Vec<_> = names
        .iter()
        .map(|n| world.deapop().arg(n).spawn())
        .collect();
    for run in running {
        run.wait().success();
    }
    for n in &names {
        assert!(world.is_disabled(n), "{n} lost its mark");
    }
    // Half of them enabled again, concurrently.
    let running: Vec<_> = names
        .iter()
        .step_by(2)
        .map(|n| world.deapop().args(["--enable", n]).spawn())
        .collect();
    for run in running {
        run.wait().success();
    }
    for (i, n) in names.iter().enumerate() {
        assert_eq!(world.is_disabled(n), i % 2 == 1, "{n}");
    }
}
