//! dir: file operations relative to an open directory (openat, linkat, unlinkat).
//!
//! - A [`Dir`] is an open handle on a directory, checked to be one (`O_DIRECTORY`) and never
//!   followed through a symbolic link at its last component; every name given to its methods
//!   is one entry of it, never a path: a name holding `/` is refused (`InvalidInput`).
//! - Operations on a 100,000-message Maildir resolve each name in that directory alone, not
//!   the whole path from `/` again for every message, and a directory renamed meanwhile is
//!   still the one the session opened.
//! - [`Dir::open_regular`] never blocks (a FIFO planted in a Maildir cannot hang the session)
//!   and opens only a regular file: anything else counts as gone (`NotFound`), decided on the
//!   opened handle (fstat), not on the name.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};

/// An open directory (see the module comment).
#[derive(Debug)]
pub struct Dir {
    fd: File,
}

impl Dir {
    /// Opens the directory at `path`.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)?;
        Ok(Dir { fd })
    }

    /// Opens the regular file `name` for reading (see the module comment).
    pub fn open_regular(&self, name: &OsStr) -> io::Result<File> {
        Ok(self.open_regular_len(name)?.0)
    }

    /// [`Dir::open_regular`], with the file's length from the same fstat.
    pub fn open_regular_len(&self, name: &OsStr) -> io::Result<(File, u64)> {
        let name = entry(name)?;
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(Some(self.fd.as_raw_fd()), name, flags, Mode::empty())?;
        // SAFETY: `openat` just returned `fd`, a new descriptor that nothing else owns or will
        // close; the File takes sole ownership and closes it once.
        let file = unsafe { File::from_raw_fd(fd) };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok((file, meta.len()))
    }

    /// Makes `to` in `dest` a new link to the file `name` here (a symbolic link itself, not
    /// what it points to); fails with `AlreadyExists` rather than replace anything.
    pub fn link_to(&self, name: &OsStr, dest: &Dir, to: &OsStr) -> io::Result<()> {
        let (name, to) = (entry(name)?, entry(to)?);
        linkat(
            Some(self.fd.as_raw_fd()),
            name,
            Some(dest.fd.as_raw_fd()),
            to,
            AtFlags::empty(),
        )?;
        Ok(())
    }

    /// Removes the entry `name` (not a directory).
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        unlinkat(
            Some(self.fd.as_raw_fd()),
            entry(name)?,
            UnlinkatFlags::NoRemoveDir,
        )?;
        Ok(())
    }

    /// The status of the entry `name` itself (a symbolic link is not followed).
    pub fn entry_status(&self, name: &OsStr) -> io::Result<nix::sys::stat::FileStat> {
        Ok(nix::sys::stat::fstatat(
            Some(self.fd.as_raw_fd()),
            entry(name)?,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?)
    }

    /// Makes the directory's entries durable (fsync on the directory itself).
    pub fn sync(&self) -> io::Result<()> {
        self.fd.sync_all()
    }
}

/// `name` if it is one entry: not empty, no `/`, not `.` or `..`.
fn entry(name: &OsStr) -> io::Result<&OsStr> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn names_are_entries_of_the_directory_only() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        std::fs::write(t.path().join("sub/f"), b"x").unwrap();
        let d = Dir::open(t.path()).unwrap();
        for bad in ["sub/f", "", ".", "..", "../x"] {
            let e = d.open_regular(OsStr::new(bad)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        let sub = Dir::open(&t.path().join("sub")).unwrap();
        let mut text = String::new();
        sub.open_regular(OsStr::new("f"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "x");
    }

    #[test]
    fn only_regular_files_open_and_links_never_replace() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        nix::unistd::mkfifo(&t.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("link")).unwrap();
        std::fs::create_dir(t.path().join("dir")).unwrap();
        for name in ["fifo", "dir", "missing"] {
            let e = d.open_regular(OsStr::new(name)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{name}");
        }
        std::fs::write(t.path().join("a"), b"a").unwrap();
        std::fs::write(t.path().join("b"), b"b").unwrap();
        let e = d.link_to(OsStr::new("a"), &d, OsStr::new("b")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(t.path().join("b")).unwrap(), b"b");
        d.link_to(OsStr::new("a"), &d, OsStr::new("c")).unwrap();
        d.unlink(OsStr::new("a")).unwrap();
        assert_eq!(std::fs::read(t.path().join("c")).unwrap(), b"a");
        let st = d.entry_status(OsStr::new("link")).unwrap();
        assert_eq!(st.st_mode & nix::libc::S_IFMT, nix::libc::S_IFLNK);
        assert!(Dir::open(&t.path().join("link")).is_err());
        assert!(Dir::open(&t.path().join("c")).is_err());
    }
}
