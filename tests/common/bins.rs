//! bins: the built binaries, at a path every user of a test world can execute.
//!
//! Tests run the tools and ipop3d as virtual users. Cargo builds them under `target/`, which
//! such users cannot reach when the checkout lives in a private directory (root's home is
//! 0700 on Debian). So a test world runs each binary from where it was built when every
//! directory above it is searchable by others, and otherwise from a hard link (or, across
//! file systems, a copy) inside the world's own directory, removed with the world.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Whether any user may execute `exe`: it and every directory above it grant others access.
pub fn reachable_by_all(exe: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(exe) else {
        return false;
    };
    if meta.permissions().mode() & 0o005 != 0o005 {
        return false;
    }
    exe.ancestors().skip(1).all(|dir| {
        dir.as_os_str().is_empty()
            || std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

/// `exe` if every user can execute it, else a link or copy named like it in `dir` (which must
/// itself be reachable by all).
pub fn runnable_by_all(exe: &str, dir: &Path) -> PathBuf {
    let exe = Path::new(exe);
    if reachable_by_all(exe) {
        return exe.to_path_buf();
    }
    let local = dir.join(exe.file_name().expect("a binary's file name"));
    if !local.exists() {
        if std::fs::hard_link(exe, &local).is_err() {
            std::fs::copy(exe, &local)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", exe.display(), local.display()));
        }
        std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    local
}
