//! bins: the built binaries, at a path every user of a test world can execute.
//!
//! Tests run the tools and ipop3d as virtual users. Cargo builds them under `target/`, which
//! such users cannot reach when the checkout lives in a private directory (root's home is
//! 0700 on Debian). So a test world runs each binary from where it was built when every
//! directory above it is searchable by others, and otherwise from a hard link (or, across
//! file systems, a copy) in a [`BinDir`] of the world's, beside (not inside) the world's own
//! directory so that tests which compare the world's files see nothing new, and removed with
//! the world.

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

/// A temp directory every user can traverse, for links to the binaries; made when first needed.
#[derive(Default)]
pub struct BinDir(std::sync::OnceLock<tempfile::TempDir>);

impl BinDir {
    /// `exe` if every user can execute it, else a link or copy named like it in this directory.
    pub fn runnable_by_all(&self, exe: &str) -> PathBuf {
        let exe = Path::new(exe);
        if reachable_by_all(exe) {
            return exe.to_path_buf();
        }
        let dir = self.0.get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("apoptools-bin.")
                .tempdir()
                .expect("temp dir");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            dir
        });
        link_or_copy(exe, dir.path())
    }
}

/// A link (or copy) of `exe` named like it in `dir`.
fn link_or_copy(exe: &Path, dir: &Path) -> PathBuf {
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
