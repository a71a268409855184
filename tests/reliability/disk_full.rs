//! A full file system: a store write and a disable-list edit on a full tmpfs fail with a clear
//! error (exit 10, "No space left on device"), and the old secret and list stay intact with no
//! temp file left behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{listing, need_root, World};

/// A small tmpfs mounted over `dir` for the life of the guard.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str, uid: u32) -> Tmpfs {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755,uid={uid},gid={uid}"))
            .arg("tmpfs")
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Fills the file system with a root-owned file until it reports ENOSPC.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = [0u8; 4096];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
        let _ = f.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn store_write_on_full_disk_keeps_old_secret_root() {
    if !need_root("store_write_on_full_disk_keeps_old_secret_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    let fs = Tmpfs::mount(&alice.home, "64k", alice.uid);
    world
        .apoppasswd()
        .args(["--stdin", "alice"])
        .stdin("old password\n")
        .run()
        .success();
    fs.fill();
    let out = world
        .apoppasswd()
        .args(["--stdin", "alice"])
        .stdin("new password that does not fit\n")
        .run();
    assert_eq!(out.code, 10, "{out:#?}");
    assert!(out.stderr.contains("No space left on device"), "{out:#?}");
    assert!(
        !out.stderr.contains("does not fit"),
        "the password leaked into the error"
    );
    assert!(world.verifies("alice", "old password"));
    assert_eq!(listing(&alice.home), [".apop", ".apop.lock", "filler"]);
}

#[test]
fn disable_list_edit_on_full_disk_keeps_old_list_root() {
    if !need_root("disable_list_edit_on_full_disk_keeps_old_list_root") {
        return;
    }
    let mut world = World::new();
    let names: Vec<String> = (0..40).map(|i| format!("user{i:02}")).collect();
    world.add_users(&names);
    let etc = world.disabled.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&etc).unwrap();
    let fs = Tmpfs::mount(&etc, "16k", 0);
    world.deapop().arg("user00").run().success();
    fs.fill();
    let before = std::fs::read(&world.disabled).unwrap();
    let out = world.deapop().args(&names[1..]).run();
    assert_eq!(out.code, 10, "{out:#?}");
    assert!(out.stderr.contains("No space left on device"), "{out:#?}");
    assert_eq!(std::fs::read(&world.disabled).unwrap(), before);
    assert_eq!(listing(&etc), ["disabled", "disabled.lock", "filler"]);
}
