//! atomic: the one lock-and-replace routine every writer uses (the store and the disable list).
//!
//! - [`Lock`]: an exclusive fs2 (flock) lock on a sibling lock file, never on the file being
//!   replaced (a rename would orphan it). The lock file is opened with `O_NOFOLLOW` and checked
//!   on the handle: a regular file owned by the effective uid with one link. Waiting is bounded;
//!   past the wait the caller gets [`Error::Busy`]. Lock files are never deleted (deleting one
//!   would let two writers hold "the" lock at once).
//! - [`replace`]: write a temp file created exclusively (`O_EXCL|O_NOFOLLOW`, final mode) in the
//!   same directory, fsync it, rename it over the target, fsync the directory. A crash at any
//!   instant leaves the old contents or the new, never a torn or empty file. Temp files of a
//!   writer that died are removed by the next writer, which holds the same lock.
//! - [`open_nofollow`]: open without following a final symlink and without blocking on a FIFO,
//!   and return the handle's own metadata (fstat), so checks are made on what was opened.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fs2::FileExt;
use nix::libc;

use crate::error::{Error, Result, Unsafe};

/// Prefix of temp files; it can never be a store file name (those start with `.apop`).
const TMP_PREFIX: &str = ".#apoptools.";

/// An exclusive lock held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the exclusive lock on `path` (created 0600 if missing), waiting at most `wait`.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Lock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| classify_open_error(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        let euid = nix::unistd::geteuid().as_raw();
        check_regular(path, &meta)?;
        if meta.uid() == euid && meta.mode() & 0o7777 != 0o600 {
            // Just created under a umask that took bits away (or left by an older version):
            // 0600 exactly, on the handle.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io(path, e))?;
        }
        if meta.uid() != euid {
            return Err(unsafe_file(
                path,
                Unsafe::Owner {
                    found: meta.uid(),
                    expected: euid,
                },
            ));
        }
        if meta.nlink() != 1 {
            return Err(unsafe_file(path, Unsafe::Links(meta.nlink())));
        }
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock_exclusive() {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Busy(path.to_path_buf()));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
    }
}

/// Atomically replaces `target` with `contents` (file mode `mode`). The caller holds the lock
/// that serialises writers of `target`.
pub fn replace(target: &Path, contents: &[u8], mode: u32) -> Result<()> {
    replace_with(target, mode, |w| w.write_all(contents))
}

/// [`replace`], with the contents written by `fill` through a buffered writer (for contents
/// too large to build in memory first).
pub fn replace_with(
    target: &Path,
    mode: u32,
    fill: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>,
) -> Result<()> {
    let (dir, name) = split(target)?;
    remove_stale_temps(dir, name);
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{name}.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // The mode asked for, whatever the caller's umask (fchmod on the handle).
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        let mut w = io::BufWriter::new(file);
        fill(&mut w)?;
        let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&tmp, target)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(target, e));
    }
    sync_dir(dir)
}

/// Creates `dir` and any missing parents with exactly `mode`, whatever the umask.
pub fn create_dirs(dir: &Path, mode: u32) -> Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(d, e)),
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(d, e))?;
    }
    Ok(())
}

/// Removes `target` (if present) and makes the removal durable. The caller holds the lock.
/// Returns whether there was something to remove.
pub fn remove(target: &Path) -> Result<bool> {
    let (dir, _) = split(target)?;
    match std::fs::remove_file(target) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(target, e)),
    }
}

/// fsyncs a directory so that renames and unlinks in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Opens `path` read-only without following a final symlink or blocking on a FIFO. `Ok(None)`
/// when it does not exist. The metadata is the opened handle's (fstat), not the path's.
pub fn open_nofollow(path: &Path) -> Result<Option<(File, Metadata)>> {
    open_read(path, libc::O_NOFOLLOW)
}

/// Opens `path` read-only without blocking on a FIFO, with extra `flags`; `Ok(None)` when it
/// does not exist. The metadata is the opened handle's.
fn open_read(path: &Path, flags: i32) -> Result<Option<(File, Metadata)>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(classify_open_error(path, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    Ok(Some((file, meta)))
}

/// Refuses anything but a regular file, naming what it is.
pub fn check_regular(path: &Path, meta: &Metadata) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else {
        "special file"
    };
    Err(unsafe_file(path, Unsafe::NotRegular(kind)))
}

/// Refuses an administrator's file (configuration, account file, disable list) that someone
/// other than root could have written: it must be a regular file owned by root (or by the
/// running uid, so an unprivileged user can run the tools on files of their own) and not
/// writable by group or others. Checked on the opened handle's metadata.
pub fn check_admin_file(path: &Path, meta: &Metadata) -> Result<()> {
    check_regular(path, meta)?;
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(unsafe_file(
            path,
            Unsafe::Owner {
                found: meta.uid(),
                expected: 0,
            },
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_file(path, Unsafe::Writable(meta.mode() & 0o7777)));
    }
    Ok(())
}

/// Whether an administrator's file may be reached through a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Followed, as /etc files often are (the configuration, the passwd_file).
    Follow,
    /// Refused (the disable list, which deapop replaces in place).
    Refuse,
}

/// Reads an administrator's file at `path` after [`check_admin_file`] on the opened handle;
/// `Ok(None)` when it does not exist. At most `limit` bytes.
pub fn read_admin_file(path: &Path, limit: u64, symlinks: Symlinks) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let flags = match symlinks {
        Symlinks::Follow => 0,
        Symlinks::Refuse => libc::O_NOFOLLOW,
    };
    let Some((file, meta)) = open_read(path, flags)? else {
        return Ok(None);
    };
    check_admin_file(path, &meta)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(unsafe_file(path, Unsafe::TooLarge(bytes.len() as u64)));
    }
    Ok(Some(bytes))
}

pub(crate) fn unsafe_file(path: &Path, why: Unsafe) -> Error {
    Error::Unsafe {
        path: path.to_path_buf(),
        why,
    }
}

fn classify_open_error(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => unsafe_file(path, Unsafe::Symlink),
        Some(libc::EISDIR) => unsafe_file(path, Unsafe::NotRegular("directory")),
        Some(libc::ENXIO) => unsafe_file(path, Unsafe::NotRegular("FIFO")),
        _ => Error::io(path, e),
    }
}

fn split(target: &Path) -> Result<(&Path, &str)> {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::BadName(format!("{} has no file name", target.display())))?;
    Ok((dir, name))
}

fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!("{TMP_PREFIX}{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The temp files [`replace`] would leave for `target` if a writer died (for tests and checks).
#[cfg(any(test, feature = "testing"))]
pub fn stale_temps(target: &Path) -> Vec<std::path::PathBuf> {
    let Ok((dir, name)) = split(target) else {
        return Vec::new();
    };
    let prefix = format!("{TMP_PREFIX}{name}.");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replace_writes_whole_file_with_mode_and_cleans_stale_temps() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(dir.path().join(".#apoptools.f.999.0"), b"torn").unwrap();
        replace(&target, b"one\n", 0o600).unwrap();
        replace(&target, b"two\n", 0o600).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two\n");
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert!(stale_temps(&target).is_empty());
    }

    #[test]
    fn lock_is_exclusive_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.lock");
        let held = Lock::acquire(&path, Duration::ZERO).unwrap();
        let err = Lock::acquire(&path, Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err}");
        drop(held);
        Lock::acquire(&path, Duration::ZERO).unwrap();
    }

    #[test]
    fn lock_refuses_symlink_and_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link.lock");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        let err = Lock::acquire(&link, Duration::ZERO).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unsafe {
                    why: Unsafe::Symlink,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!dir.path().join("elsewhere").exists());
        let fifo = dir.path().join("fifo.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = Lock::acquire(&fifo, Duration::ZERO).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unsafe {
                    why: Unsafe::NotRegular("FIFO"),
                    ..
                }
            ),
            "{err}"
        );
    }
}
