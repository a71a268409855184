//! Fail closed (issue #9): files root would trust without looking, modes that followed the
//! caller's umask, a generated password stored before anyone saw it, passwords too long for a
//! PASS line, and disable marks on one extension alone.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;

use crate::harness::{need_root, perm, World};

/// Root refuses a configuration file that others could have written, naming it and why.
#[test]
fn root_refuses_a_config_writable_by_others_root() {
    if !need_root("root_refuses_a_config_writable_by_others_root") {
        return;
    }
    let mut world = World::new();
    world.add_user("alice");
    let config = world.config.display().to_string();
    for mode in [0o666, 0o664, 0o646] {
        std::fs::set_permissions(&world.config, perm(mode)).unwrap();
        let want = format!(
            "refusing to use {config}: it is writable by group or others (mode {mode:04o})"
        );
        world
            .apoppasswd()
            .args(["--stdin", "alice"])
            .stdin("a long password\n")
            .run()
            .fails(5, &want);
        world.deapop().arg("--list").run().fails(5, &want);
    }
    std::fs::set_permissions(&world.config, perm(0o644)).unwrap();
    nix::unistd::chown(&world.config, Some(nix::unistd::Uid::from_raw(60001)), None).unwrap();
    world.deapop().arg("--list").run().fails(
        5,
        &format!("refusing to use {config}: it is owned by uid 60001, not uid 0"),
    );
    assert!(!world.path().join("home/alice/.apop").exists());
}

/// Root refuses a passwd_file that others could have written (it names every account's
/// uid and home), naming it and why.
#[test]
fn root_refuses_a_passwd_file_writable_by_others_root() {
    if !need_root("root_refuses_a_passwd_file_writable_by_others_root") {
        return;
    }
    let mut world = World::new();
    world.add_user("alice");
    let passwd = world.path().join("passwd");
    std::fs::set_permissions(&passwd, perm(0o666)).unwrap();
    let want = format!(
        "refusing to use {}: it is writable by group or others (mode 0666)",
        passwd.display()
    );
    world
        .apoppasswd()
        .args(["--stdin", "alice"])
        .stdin("a long password\n")
        .run()
        .fails(5, &want);
    std::fs::set_permissions(&passwd, perm(0o644)).unwrap();
    nix::unistd::chown(&passwd, Some(nix::unistd::Uid::from_raw(60001)), None).unwrap();
    world
        .deapop()
        .arg("--list")
        .run()
        .fails(5, "it is owned by uid 60001, not uid 0");
    assert!(!world.path().join("home/alice/.apop").exists());
}

/// `maildir` is relative to each home: an absolute value would make every account share one.
#[test]
fn an_absolute_maildir_is_a_config_error() {
    let mut world = World::with_config("maildir = /var/mail/shared\n");
    let alice = world.me("alice");
    let config = world.config.display().to_string();
    world.apoppasswd().arg("--status").user(&alice).run().fails(
        8,
        &format!("{config}:5: maildir must be a path relative to the home"),
    );
}

/// Modes of what the tools create do not follow the caller's umask: under `umask 077` root's
/// disable list is still 0644 (users' apoppasswd must read it), and under `umask 000` no lock
/// or store file becomes writable by others.
#[test]
fn modes_do_not_follow_the_umask_root() {
    if !need_root("modes_do_not_follow_the_umask_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    world.add_user("bob");
    let with_umask = |run: crate::harness::Run, mask: u32| {
        let mut run = run;
        // SAFETY: umask(2) in the forked child before exec is async-signal-safe.
        unsafe {
            run.command().pre_exec(move || {
                nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
                Ok(())
            });
        }
        run
    };
    with_umask(world.deapop().arg("bob"), 0o077).run().success();
    let list = std::fs::metadata(&world.disabled).unwrap();
    assert_eq!(list.mode() & 0o7777, 0o644);
    let dir = std::fs::metadata(world.disabled.parent().unwrap()).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o755);
    with_umask(world.apoppasswd().arg("--stdin"), 0o000)
        .stdin("alice's long password\n")
        .user(&alice)
        .run()
        .success();
    for name in [".apop", ".apop.lock"] {
        let meta = std::fs::metadata(alice.home.join(name)).unwrap();
        assert_eq!(meta.mode() & 0o022, 0, "{name}: {:o}", meta.mode());
    }
    assert_eq!(
        std::fs::metadata(alice.apop()).unwrap().mode() & 0o7777,
        0o600
    );
    assert!(world.verifies("alice", "alice's long password"));
}

/// `apoppasswd --generate` for a user whose password is "the old password", with stdout sent
/// to `stdout`.
fn generate_to(stdout: std::process::Stdio) -> crate::harness::Output {
    let mut world = World::new();
    let alice = world.me("alice");
    world.set_by(&alice, &[], "the old password").success();
    let out = world
        .apoppasswd()
        .arg("--generate")
        .user(&alice)
        .stdout_to(stdout)
        .run();
    assert!(world.verifies("alice", "the old password"), "{out:#?}");
    out
}

/// A generated password nobody could see is not stored: stdout on /dev/full fails the run and
/// leaves the old password in place.
#[test]
fn generate_stores_nothing_it_could_not_print() {
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = generate_to(full.into());
    assert_eq!(out.code, 10, "{out:#?}");
    assert!(out.stderr.contains("No space left on device"), "{out:#?}");
}

/// A reader that went away before the password was printed: the same.
#[test]
fn generate_stores_nothing_when_the_reader_is_gone() {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = generate_to(write.into());
    assert_eq!(out.code, 10, "{out:#?}");
}

/// The tools' limit and the server's agree: a PASS line is at most 255 octets with its CRLF,
/// so a password is at most 248 bytes; longer ones are refused before anything is written.
#[test]
fn a_password_too_long_for_a_pass_line_is_refused() {
    let mut world = World::new();
    let alice = world.me("alice");
    let longest = "p".repeat(248);
    world.set_by(&alice, &[], &longest).success();
    assert!(world.verifies("alice", &longest));
    let too_long = "q".repeat(249);
    world
        .set_by(&alice, &[], &too_long)
        .fails(7, "longer than 248 bytes");
    assert!(world.verifies("alice", &longest));
    world
        .apoppasswd()
        .args(["--generate", "--length", "249"])
        .user(&alice)
        .run()
        .fails(2, "249");
}

/// `deapop user-EXT` marks that extension alone, `--enable user-EXT` lifts it; the user's own
/// apoppasswd honours the mark for that extension only.
#[test]
fn deapop_marks_one_extension_alone_root() {
    if !need_root("deapop_marks_one_extension_alone_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    let set = |args: &[&str], pw: &str| world.set_by(&alice, args, pw);
    set(&[], "alice's password").success();
    set(&["--ext", "work"], "alice's work password").success();
    let out = world.deapop().arg("alice-work").run().success();
    assert_eq!(out.stdout, "alice-work: disabled\n");
    assert!(world.is_disabled("alice-work"));
    assert!(!world.is_disabled("alice"));
    set(&["--ext", "work"], "another work password").fails(3, "disabled");
    set(&[], "another password").success();
    let status = world
        .apoppasswd()
        .args(["--status", "--ext", "work"])
        .user(&alice)
        .run();
    assert!(status.stdout.contains("disabled"), "{status:#?}");
    world
        .deapop()
        .args(["--enable", "alice-work"])
        .run()
        .success();
    assert!(!world.is_disabled("alice-work"));
    set(&["--ext", "work"], "another work password").success();
    // A bad extension name is refused before anything is written.
    world.deapop().arg("alice-../x").run().fails(4, "bad name");
}

/// An alias is not the account: after `deapop alice`, `alice.smith` (the same uid and home)
/// cannot set the shared `~/.apop` either, and `--status` says which mark applies.
#[test]
fn a_mark_follows_the_uid_and_home_root() {
    if !need_root("a_mark_follows_the_uid_and_home_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    let alias = world.alias(&alice, "alice.smith");
    world.deapop().arg("alice").run().success();
    world
        .apoppasswd()
        .args(["--stdin", "alice.smith"])
        .stdin("a new long password\n")
        .user(&alias)
        .run()
        .fails(3, "disabled");
    assert!(!alice.apop().exists());
    let status = world
        .apoppasswd()
        .args(["--status", "alice.smith"])
        .user(&alias)
        .run();
    assert!(
        status.stdout.contains("disabled:   yes, as alice since"),
        "{status:#?}"
    );
}
