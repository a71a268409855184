//! Files a user plants in their home against root's tools. Each is refused with exit 5 and a
//! message naming the reason; nothing outside the home changes and the target is untouched.
//! Root only (root is the one being attacked).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::harness::{listing, need_root, perm, Run, User, World};

const VICTIM_BYTES: &[u8] = b"root:$6$do-not-touch:19000:0:99999:7:::\n";

/// What a path is, precisely enough to see any change to it.
fn fingerprint(path: &Path) -> String {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return "missing".into();
    };
    let t = meta.file_type();
    let what = if t.is_symlink() {
        format!("symlink -> {}", std::fs::read_link(path).unwrap().display())
    } else if t.is_fifo() {
        "fifo".into()
    } else if t.is_dir() {
        format!("dir {:?}", listing(path))
    } else {
        format!("file {:?}", std::fs::read(path).unwrap())
    };
    format!(
        "{what} uid={} mode={:o} nlink={} ino={}",
        meta.uid(),
        meta.mode() & 0o7777,
        meta.nlink(),
        meta.ino()
    )
}

/// The user runs `argv` (to plant something as themselves).
fn plant_as(_: &World, user: &User, argv: &[&str]) {
    let mut run = Run::new(argv[0]).args(&argv[1..]).user(user);
    run.command().current_dir(&user.home);
    run.run().success();
}

struct Attack {
    name: &'static str,
    /// The planted entry, relative to the home.
    planted: &'static str,
    reason: &'static str,
    plant: fn(&World, &User, &Path),
}

#[test]
fn planted_files_are_refused_and_nothing_outside_the_home_changes_root() {
    if !need_root("planted_files_are_refused_and_nothing_outside_the_home_changes_root") {
        return;
    }
    let attacks = [
        Attack {
            name: "symlink to a root-owned file",
            planted: ".apop",
            reason: "it is a symbolic link",
            plant: |w, u, victim| {
                plant_as(w, u, &["/bin/ln", "-s", victim.to_str().unwrap(), ".apop"])
            },
        },
        Attack {
            name: "symlink to a missing file outside the home",
            planted: ".apop",
            reason: "it is a symbolic link",
            plant: |w, u, _| {
                let target = w.path().join("created-by-root");
                plant_as(w, u, &["/bin/ln", "-s", target.to_str().unwrap(), ".apop"])
            },
        },
        Attack {
            name: "hard link to a root-owned file",
            planted: ".apop",
            // protected_hardlinks would stop the user; root makes the link for the test.
            reason: "it is owned by uid 0, not uid",
            plant: |_, u, victim| std::fs::hard_link(victim, u.apop()).unwrap(),
        },
        Attack {
            name: "hard link to another file of the user",
            planted: ".apop",
            reason: "it has 2 hard links, not 1",
            plant: |w, u, _| {
                plant_as(
                    w,
                    u,
                    &["/bin/sh", "-c", "umask 077; echo x > notes; ln notes .apop"],
                )
            },
        },
        Attack {
            name: "FIFO",
            planted: ".apop",
            reason: "it is a FIFO, not a regular file",
            plant: |w, u, _| plant_as(w, u, &["/usr/bin/mkfifo", "-m", "600", ".apop"]),
        },
        Attack {
            name: "directory",
            planted: ".apop",
            reason: "it is a directory, not a regular file",
            plant: |w, u, _| plant_as(w, u, &["/bin/mkdir", "-m", "700", ".apop"]),
        },
        Attack {
            name: "owned by another uid",
            planted: ".apop",
            reason: "it is owned by uid 59999, not uid",
            plant: |_, u, _| {
                std::fs::write(u.apop(), b"apoptools-secret 1\nsecret theirs\n").unwrap();
                std::fs::set_permissions(u.apop(), perm(0o600)).unwrap();
                std::os::unix::fs::chown(u.apop(), Some(59_999), Some(59_999)).unwrap();
            },
        },
        Attack {
            name: "mode 0644",
            planted: ".apop",
            reason: "its mode is 0644, not 0600",
            plant: |w, u, _| {
                plant_as(
                    w,
                    u,
                    &[
                        "/bin/sh",
                        "-c",
                        "umask 022; printf 'apoptools-secret 1\\nsecret readable\\n' > .apop",
                    ],
                )
            },
        },
        Attack {
            name: "lock file symlink",
            planted: ".apop.lock",
            reason: ".apop.lock: it is a symbolic link",
            plant: |w, u, victim| {
                plant_as(
                    w,
                    u,
                    &["/bin/ln", "-s", victim.to_str().unwrap(), ".apop.lock"],
                )
            },
        },
    ];
    for (i, attack) in attacks.iter().enumerate() {
        let mut world = World::new();
        let user = world.add_user(&format!("victim{i}"));
        let outside = world.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let victim = outside.join("shadow");
        std::fs::write(&victim, VICTIM_BYTES).unwrap();
        std::fs::set_permissions(&victim, perm(0o644)).unwrap();
        (attack.plant)(&world, &user, &victim);

        let planted = user.home.join(attack.planted);
        let before = (
            fingerprint(&victim),
            listing(world.path()),
            listing(&outside),
            fingerprint(&planted),
        );
        // Root sets (the attack's aim), and root's read-only modes refuse the same file.
        let mut runs = vec![(vec!["--stdin", &user.name], "the new password\n")];
        if attack.planted == ".apop" {
            runs.push((vec!["--check", "--stdin", &user.name], "x\n"));
            runs.push((vec!["--status", &user.name], ""));
        }
        for (args, stdin) in runs {
            let out = world.apoppasswd().args(&args).stdin(stdin).run();
            assert_eq!(out.code, 5, "{}: {args:?}: {out:#?}", attack.name);
            assert!(
                out.stderr.contains(attack.reason) && out.stderr.contains("refusing to use"),
                "{}: {args:?}: {out:#?}",
                attack.name
            );
        }
        // The user's own run is refused the same way.
        world
            .apoppasswd()
            .arg("--stdin")
            .stdin("the new password\n")
            .user(&user)
            .run()
            .fails(5, attack.reason);
        let after = (
            fingerprint(&victim),
            listing(world.path()),
            listing(&outside),
            fingerprint(&planted),
        );
        assert_eq!(before, after, "{}", attack.name);
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            VICTIM_BYTES,
            "{}",
            attack.name
        );
        assert!(
            !world.path().join("created-by-root").exists(),
            "{}",
            attack.name
        );
    }
}

#[test]
fn delete_removes_a_planted_link_not_its_target_root() {
    if !need_root("delete_removes_a_planted_link_not_its_target_root") {
        return;
    }
    let mut world = World::new();
    let user = world.add_user("alice");
    let victim = world.path().join("victim");
    std::fs::write(&victim, VICTIM_BYTES).unwrap();
    plant_as(
        &world,
        &user,
        &["/bin/ln", "-s", victim.to_str().unwrap(), ".apop"],
    );
    world
        .apoppasswd()
        .args(["--delete", "alice"])
        .run()
        .success();
    assert!(std::fs::symlink_metadata(user.apop()).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), VICTIM_BYTES);
    // With the link gone, the account is usable again.
    world
        .apoppasswd()
        .args(["--stdin", "alice"])
        .stdin("a fresh password\n")
        .run()
        .success();
    assert!(world.verifies("alice", "a fresh password"));
}

#[test]
fn purge_removes_planted_links_only_and_refuses_a_planted_lock_root() {
    if !need_root("purge_removes_planted_links_only_and_refuses_a_planted_lock_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    let bob = world.add_user("bob");
    let victim = world.path().join("victim");
    std::fs::write(&victim, VICTIM_BYTES).unwrap();
    let v = victim.to_str().unwrap();
    plant_as(&world, &alice, &["/bin/ln", "-s", v, ".apop"]);
    plant_as(&world, &alice, &["/bin/ln", "-s", v, ".apop-work"]);
    plant_as(&world, &bob, &["/bin/ln", "-s", v, ".apop.lock"]);
    world
        .apoppasswd()
        .arg("--generate")
        .arg("alice")
        .run()
        .fails(5, "symbolic link");

    let out = world
        .deapop()
        .args(["--purge", "alice", "bob"])
        .run()
        .fails(5, "cannot purge bob: refusing to use");
    assert!(out.stdout.contains("alice: removed "), "{out:#?}");
    assert_eq!(listing(&alice.home), [".apop.lock"]);
    assert_eq!(listing(&bob.home), [".apop.lock"]);
    assert!(std::fs::symlink_metadata(bob.home.join(".apop.lock"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), VICTIM_BYTES);
    // Both are disabled even so: the marks come first.
    assert!(world.is_disabled("alice") && world.is_disabled("bob"));
}
