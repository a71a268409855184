//! dotqmail: which Maildir an extension address delivers to.
//!
//! For `U-EXT`, the first maildir delivery line (`./path/` or `/path/`) of
//! `~U/<dotqmail><delimiter>EXT` names the Maildir. Paths with `..` or outside the home are
//! refused (accounts sharing a uid must not reach each other's mail), and so is one that a
//! symlink leads outside: the check is made on the opened directory, whose real path is then
//! served. An extension's Maildir must be owned by the account. Read as the account.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result, Unsafe};
use crate::system::accounts::Account;

/// Largest `.qmail-EXT` file read.
const MAX_DOTQMAIL_LEN: u64 = 64 * 1024;

/// The Maildir of `account` (no extension) or of its extension address: for `U-EXT`, the first
/// maildir delivery line (`./path/` or `/path/`) of `~U/<dotqmail><delimiter>EXT`. Paths with
/// `..` or outside the home are refused, and an extension's Maildir must be owned by the
/// account. Call as the account.
pub fn locate(account: &Account, ext: Option<&str>, config: &Config) -> Result<PathBuf> {
    let Some(ext) = ext else {
        return Ok(account.home.join(&config.maildir));
    };
    let dotqmail = account
        .home
        .join(format!("{}{}{ext}", config.dotqmail, config.ext_delimiter));
    let mut bytes = Vec::new();
    File::open(&dotqmail)
        .and_then(|f| f.take(MAX_DOTQMAIL_LEN).read_to_end(&mut bytes))
        .map_err(|e| Error::io(&dotqmail, e))?;
    let line = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .find(|l| (l.starts_with(b".") || l.starts_with(b"/")) && l.ends_with(b"/"))
        .ok_or_else(|| Error::Unsafe {
            path: dotqmail.clone(),
            why: Unsafe::Malformed("no maildir delivery line"),
        })?;
    let target = Path::new(OsStr::from_bytes(line));
    if target.components().any(|c| c == Component::ParentDir) {
        return Err(Error::Unsafe {
            path: dotqmail,
            why: Unsafe::Malformed("the maildir path contains `..`"),
        });
    }
    let path = account.home.join(target);
    // An absolute line must stay inside the home too: accounts that share a uid (virtual
    // users under one mail uid) must not reach each other's mail through a .qmail file.
    if !path.starts_with(&account.home) {
        return Err(Error::Unsafe {
            path: dotqmail,
            why: Unsafe::Malformed("the maildir is outside the home directory"),
        });
    }
    // The text is inside the home, but a symlink on the way (`./Maildir-x/` linked to another
    // account's Maildir) could lead anywhere: open the directory and check where the opened
    // one really is, then serve that real path.
    let dir = File::open(&path).map_err(|e| Error::io(&path, e))?;
    let meta = dir.metadata().map_err(|e| Error::io(&path, e))?;
    if !meta.is_dir() {
        return Err(Error::Unsafe {
            path,
            why: Unsafe::NotRegular("file, not a directory"),
        });
    }
    if meta.uid() != account.uid {
        return Err(Error::Unsafe {
            path,
            why: Unsafe::Owner {
                found: meta.uid(),
                expected: account.uid,
            },
        });
    }
    let real = opened_path(&dir).map_err(|e| Error::io(&path, e))?;
    let home = std::fs::canonicalize(&account.home).map_err(|e| Error::io(&account.home, e))?;
    if !real.starts_with(&home) {
        return Err(Error::Unsafe {
            path: dotqmail,
            why: Unsafe::Malformed("the maildir leads outside the home directory"),
        });
    }
    Ok(real)
}

/// Where an opened file really is: the kernel's name for the descriptor.
fn opened_path(file: &File) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}
