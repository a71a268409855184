//! file: the store file, one secret per address, in `~/.apop` (the account) or `~/.apop-EXT` (an extension).
//!
//! Guarantees:
//! - Every file operation in a home runs *as the account* ([`AsAccount`]), so a link or odd file
//!   planted by the user cannot make root read or write anywhere the user could not.
//! - A secret is used only from a file that, checked on the opened handle (`O_NOFOLLOW`, fstat),
//!   is a regular file owned by the account, mode 0600, with one link and a sane size. Anything
//!   else is [`Error::Unsafe`] with the reason, never silently used or overwritten.
//! - Writers serialise on `~/.apop.lock` and replace files with [`atomic::replace`]: readers see
//!   the old secret or the new one, never a torn file, and no concurrent update is lost.
//!
//! The format of the file is in [`super::record`].

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::sasl::{ScramKeys, SCRAM_ITERATIONS};
use crate::error::{Error, Result, Unsafe};
use crate::store::atomic::{self, check_regular, open_nofollow, unsafe_file, Lock};
use crate::system::accounts::{validate_ext, Account};
use crate::system::privilege::AsAccount;
use crate::system::wipe::wipe;

use super::record::{decode, encode, Record, Secret};

/// Bytes of a new SCRAM salt (RFC 5802 asks for a random one per password).
const SALT_LEN: usize = 16;

/// Largest store file read.
const MAX_FILE_LEN: u64 = 8192;

/// The store file of `account` (no extension) or of its extension `ext`.
pub fn path(account: &Account, ext: Option<&str>) -> PathBuf {
    match ext {
        None => account.home.join(".apop"),
        Some(ext) => account.home.join(format!(".apop-{ext}")),
    }
}

fn lock_path(account: &Account) -> PathBuf {
    account.home.join(".apop.lock")
}

/// Reads and checks the secret of `account`/`ext`, as the account.
pub fn read(account: &Account, ext: Option<&str>) -> Result<Record> {
    if let Some(ext) = ext {
        validate_ext(ext)?;
    }
    let _as = AsAccount::enter(account)?;
    let path = path(account, ext);
    let (mut file, meta) =
        open_store_file(&path, account)?.ok_or_else(|| Error::NoSecret(path.clone()))?;
    check_safe(&path, &meta, account, true)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.by_ref()
        .take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(&path, e))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(unsafe_file(&path, Unsafe::TooLarge(bytes.len() as u64)));
    }
    let record = decode(&bytes).map_err(|why| unsafe_file(&path, why));
    wipe(&mut bytes);
    record
}

/// [`open_nofollow`], as the account. A file the account may not even open is not its own: that
/// refusal is reported with its owner, as [`check_safe`] would (the lstat only names the reason;
/// the refusal itself is the kernel's).
fn open_store_file(
    path: &Path,
    account: &Account,
) -> Result<Option<(std::fs::File, std::fs::Metadata)>> {
    match open_nofollow(path) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.uid() != account.uid => Err(unsafe_file(
                    path,
                    Unsafe::Owner {
                        found: meta.uid(),
                        expected: account.uid,
                    },
                )),
                _ => Err(Error::io(path, source)),
            }
        }
        other => other,
    }
}

/// The checks a store file must pass, on its opened handle. `mode` also checks 0600 (reads);
/// a writer replacing the file checks only what could redirect the write.
fn check_safe(path: &Path, meta: &std::fs::Metadata, account: &Account, mode: bool) -> Result<()> {
    check_regular(path, meta)?;
    if meta.uid() != account.uid {
        return Err(unsafe_file(
            path,
            Unsafe::Owner {
                found: meta.uid(),
                expected: account.uid,
            },
        ));
    }
    if meta.nlink() != 1 {
        return Err(unsafe_file(path, Unsafe::Links(meta.nlink())));
    }
    if mode && meta.mode() & 0o7777 != 0o600 {
        return Err(unsafe_file(path, Unsafe::Mode(meta.mode() & 0o7777)));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(unsafe_file(path, Unsafe::TooLarge(meta.len())));
    }
    Ok(())
}

/// Stores `secret` for `account`/`ext`, as the account, under the home's lock. An existing file
/// that is not a safe store file is refused (and left alone), never overwritten.
pub fn write(
    account: &Account,
    ext: Option<&str>,
    secret: &[u8],
    by: &str,
    lock_wait: Duration,
) -> Result<()> {
    if let Some(ext) = ext {
        validate_ext(ext)?;
    }
    // SCRAM's keys first, outside the lock: PBKDF2 is the slow part of a write.
    let mut salt = vec![0u8; SALT_LEN];
    crate::system::random::fill(&mut salt).map_err(|e| Error::io(Path::new("getrandom"), e))?;
    let keys = ScramKeys::derive(secret, &salt, SCRAM_ITERATIONS);
    let _as = AsAccount::enter(account)?;
    let _lock = Lock::acquire(&lock_path(account), lock_wait)?;
    let path = path(account, ext);
    if let Some((_file, meta)) = open_store_file(&path, account)? {
        check_safe(&path, &meta, account, true)?;
    }
    let changed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record = Record {
        secret: Secret::new(secret.to_vec()),
        changed: Some(changed),
        by: Some(by.to_string()),
        scram: Some(keys),
    };
    let mut bytes = encode(&record);
    let result = atomic::replace(&path, &bytes, 0o600);
    wipe(&mut bytes);
    result
}

/// Removes the store file of `account`/`ext`, as the account, under the lock. Whatever the
/// entry is (a planted link included), only the directory entry goes. `Ok(false)`: none.
pub fn delete(account: &Account, ext: Option<&str>, lock_wait: Duration) -> Result<bool> {
    if let Some(ext) = ext {
        validate_ext(ext)?;
    }
    let _as = AsAccount::enter(account)?;
    let _lock = Lock::acquire(&lock_path(account), lock_wait)?;
    atomic::remove(&path(account, ext))
}

/// Removes `~/.apop` and every `~/.apop-*`, as the account, under the lock. Returns what went.
pub fn purge(account: &Account, lock_wait: Duration) -> Result<Vec<PathBuf>> {
    let _as = AsAccount::enter(account)?;
    let _lock = Lock::acquire(&lock_path(account), lock_wait)?;
    let mut removed = Vec::new();
    for ext in exts_in(account)? {
        let p = path(account, ext.as_deref());
        if atomic::remove(&p)? {
            removed.push(p);
        }
    }
    Ok(removed)
}

/// Which store files exist for `account`: `None` for `~/.apop`, `Some(ext)` for each
/// `~/.apop-EXT`, sorted. Read as the account; a missing home has none.
pub fn list(account: &Account) -> Result<Vec<Option<String>>> {
    let _as = AsAccount::enter(account)?;
    exts_in(account)
}

fn exts_in(account: &Account) -> Result<Vec<Option<String>>> {
    let entries = match std::fs::read_dir(&account.home) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&account.home, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&account.home, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == ".apop" {
            found.push(None);
        } else if let Some(ext) = name.strip_prefix(".apop-") {
            found.push(Some(ext.to_string()));
        }
    }
    found.sort();
    Ok(found)
}
