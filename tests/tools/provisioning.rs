//! Root provisions virtual users (uids >= 60000, homes chowned to them); then the users run the
//! same tool on their own accounts, and cannot touch each other's. Root only.

use std::os::unix::fs::MetadataExt;

use crate::harness::{need_root, World};

#[test]
fn root_provisions_then_users_serve_themselves_root() {
    if !need_root("root_provisions_then_users_serve_themselves_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    let bob = world.add_user("bob");

    // Root sets, checks, shows and deletes another account's password.
    world
        .apoppasswd()
        .args(["--stdin", "alice"])
        .stdin("root chose this\n")
        .run()
        .success();
    let meta = std::fs::metadata(alice.apop()).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (alice.uid, alice.gid, 0o600),
        "root's write is made as the account"
    );
    let lock = std::fs::metadata(alice.home.join(".apop.lock")).unwrap();
    assert_eq!(lock.uid(), alice.uid);
    assert!(world.verifies("alice", "root chose this"));
    let status = world
        .apoppasswd()
        .args(["--status", "alice"])
        .run()
        .success()
        .stdout;
    assert!(status.contains("account:    alice (uid 60001)"), "{status}");
    assert!(status.contains(" UTC by root\n"), "{status}");
    let generated = world
        .apoppasswd()
        .args(["--generate", "--ext", "imap", "alice"])
        .run()
        .success()
        .stdout;
    assert!(world.verifies("alice-imap", generated.trim_end()));
    world
        .apoppasswd()
        .args(["--delete", "alice"])
        .run()
        .success();
    world
        .apoppasswd()
        .args(["--status", "alice"])
        .run()
        .fails(9, "");
    world
        .apoppasswd()
        .args(["--stdin", "bob"])
        .stdin("bob's first one\n")
        .run()
        .success();

    // Now as the users themselves.
    world
        .apoppasswd()
        .arg("--stdin")
        .stdin("alice picked this\n")
        .user(&alice)
        .run()
        .success();
    world
        .apoppasswd()
        .args(["--check", "--stdin"])
        .stdin("alice picked this\n")
        .user(&alice)
        .run()
        .success();
    world
        .apoppasswd()
        .args(["--check", "--stdin"])
        .stdin("alice picked that\n")
        .user(&alice)
        .run()
        .fails(1, "does not match");
    let status = world
        .apoppasswd()
        .arg("--status")
        .user(&alice)
        .run()
        .success()
        .stdout;
    assert!(status.contains(" UTC by alice\n"), "{status}");
    assert!(status.contains("extensions: imap\n"), "{status}");

    // Alice may not touch bob's, by name or by address.
    let bob_before = std::fs::read(bob.apop()).unwrap();
    for args in [
        &["--stdin", "bob"][..],
        &["--stdin", "--ext", "x", "bob"],
        &["--delete", "bob"],
        &["--check", "--stdin", "bob"],
        &["--status", "bob"],
        &["--generate", "bob"],
    ] {
        world
            .apoppasswd()
            .args(args)
            .stdin("alice attacks bob\n")
            .user(&alice)
            .run()
            .fails(3, "only root may act on the APOP password of bob");
    }
    assert_eq!(std::fs::read(bob.apop()).unwrap(), bob_before);
    assert!(!bob.home.join(".apop-x").exists());
    assert!(world.verifies("bob", "bob's first one"));
    assert!(world.verifies("alice", "alice picked this"));
}

#[test]
fn a_disabled_user_cannot_set_a_password_but_root_can() {
    if !need_root("a_disabled_user_cannot_set_a_password_but_root_can") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    world
        .apoppasswd()
        .arg("--stdin")
        .stdin("before disable\n")
        .user(&alice)
        .run()
        .success();
    world.deapop().arg("alice").run().success();
    for args in [
        &["--stdin"][..],
        &["--generate"],
        &["--stdin", "--ext", "x"],
    ] {
        world
            .apoppasswd()
            .args(args)
            .stdin("while disabled\n")
            .user(&alice)
            .run()
            .fails(
                3,
                "POP access for \"alice\" is disabled by the administrator",
            );
    }
    assert!(world.verifies("alice", "before disable"));
    let status = world
        .apoppasswd()
        .arg("--status")
        .user(&alice)
        .run()
        .success()
        .stdout;
    assert!(status.contains("disabled:   yes, since "), "{status}");
    assert!(status.contains(" UTC by root\n"), "{status}");
    // Root still can; then the mark is lifted and the user can again.
    world
        .apoppasswd()
        .args(["--stdin", "alice"])
        .stdin("root while disabled\n")
        .run()
        .success();
    assert!(world.verifies("alice", "root while disabled"));
    world.deapop().args(["--enable", "alice"]).run().success();
    world
        .apoppasswd()
        .arg("--stdin")
        .stdin("after enable\n")
        .user(&alice)
        .run()
        .success();
    assert!(world.verifies("alice", "after enable"));
}
