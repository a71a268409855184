//! store: one secret per address, in `~/.apop` (the account) or `~/.apop-EXT` (an extension).
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
//! The file format (documented in apoppasswd(1)), version 1, one `key value` per line:
//!
//! ```text
//! apoptools-secret 1
//! changed 1796380800
//! by root
//! secret <the secret's bytes, anything but NUL and newline>
//! ```
//!
//! Unknown keys are ignored (room for more metadata). A file whose first line is not the
//! `apoptools-secret` header is read as imapext APOPtools' format: the first line is the secret.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::accounts::{validate_ext, Account};
use crate::atomic::{self, check_regular, open_nofollow, unsafe_file, Lock};
use crate::error::{Error, Result, Unsafe};
use crate::privilege::AsAccount;

const HEADER: &[u8] = b"apoptools-secret ";
const VERSION: &[u8] = b"1";
/// Longest secret accepted.
pub const MAX_SECRET_LEN: usize = 1024;
/// Largest store file read.
const MAX_FILE_LEN: u64 = 8192;

/// A secret's bytes: never printed, wiped from memory when dropped.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference into our own buffer; the
            // volatile write only keeps the compiler from eliding the wipe.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What a store file holds.
#[derive(Debug)]
pub struct Record {
    pub secret: Secret,
    /// Unix seconds of the last change, when known.
    pub changed: Option<u64>,
    /// Who made the last change, when known.
    pub by: Option<String>,
}

/// Checks a new password against the policy: not empty, at least `min_length` characters, at
/// most [`MAX_SECRET_LEN`] bytes, no NUL, CR or LF. The error never quotes the password.
pub fn check_policy(secret: &[u8], min_length: usize) -> Result<()> {
    let chars = std::str::from_utf8(secret).map_or(secret.len(), |s| s.chars().count());
    if secret.is_empty() {
        return Err(Error::Policy("the password is empty".into()));
    }
    if secret.iter().any(|&b| b == 0 || b == b'\n' || b == b'\r') {
        return Err(Error::Policy(
            "the password contains a NUL, CR or newline".into(),
        ));
    }
    if chars < min_length {
        return Err(Error::Policy(format!(
            "the password is shorter than {min_length} characters"
        )));
    }
    if secret.len() > MAX_SECRET_LEN {
        return Err(Error::Policy(format!(
            "the password is longer than {MAX_SECRET_LEN} bytes"
        )));
    }
    Ok(())
}

/// Serialises a record in the version-1 format.
pub fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + record.secret.as_bytes().len());
    out.extend_from_slice(HEADER);
    out.extend_from_slice(VERSION);
    out.push(b'\n');
    if let Some(t) = record.changed {
        out.extend_from_slice(format!("changed {t}\n").as_bytes());
    }
    if let Some(by) = &record.by {
        out.extend_from_slice(format!("by {by}\n").as_bytes());
    }
    out.extend_from_slice(b"secret ");
    out.extend_from_slice(record.secret.as_bytes());
    out.push(b'\n');
    out
}

/// Parses a store file's bytes (either format); the error says what is wrong, never the secret.
pub fn decode(bytes: &[u8]) -> std::result::Result<Record, Unsafe> {
    if bytes.contains(&0) {
        return Err(Unsafe::Malformed("it contains a NUL byte"));
    }
    let mut lines = bytes.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let Some(version) = first.strip_prefix(HEADER) else {
        // imapext APOPtools' format: the secret alone on the first line.
        let secret = first.strip_suffix(b"\r").unwrap_or(first);
        if secret.is_empty() {
            return Err(Unsafe::Malformed("it holds no secret"));
        }
        return Ok(Record {
            secret: Secret::new(secret.to_vec()),
            changed: None,
            by: None,
        });
    };
    if version != VERSION {
        return Err(Unsafe::Malformed("unsupported format version"));
    }
    let (mut secret, mut changed, mut by) = (None, None, None);
    for line in lines {
        let (key, value) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        match key {
            b"" if value.is_empty() => {}
            b"secret" => {
                if secret.is_some() {
                    return Err(Unsafe::Malformed("two secret lines"));
                }
                if value.is_empty() {
                    return Err(Unsafe::Malformed("the secret is empty"));
                }
                secret = Some(Secret::new(value.to_vec()));
            }
            b"changed" => {
                let t = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                changed = Some(t.ok_or(Unsafe::Malformed("bad `changed` time"))?);
            }
            b"by" => by = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
    let secret = secret.ok_or(Unsafe::Malformed("no secret line"))?;
    Ok(Record {
        secret,
        changed,
        by,
    })
}

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
    bytes.iter_mut().for_each(|b| *b = 0);
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
    };
    let mut bytes = encode(&record);
    let result = atomic::replace(&path, &bytes, 0o600);
    bytes.iter_mut().for_each(|b| *b = 0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_round_trip_any_byte_but_nul_and_newline() {
        let secret: Vec<u8> = (1u8..=255).filter(|&b| b != b'\n').collect();
        let rec = Record {
            secret: Secret::new(secret.clone()),
            changed: Some(42),
            by: Some("root".into()),
        };
        let bytes = encode(&rec);
        assert!(bytes.starts_with(b"apoptools-secret 1\nchanged 42\nby root\nsecret "));
        let back = decode(&bytes).unwrap();
        assert_eq!(back.secret.as_bytes(), &secret[..]);
        assert_eq!(back.changed, Some(42));
        assert_eq!(back.by.as_deref(), Some("root"));
    }

    #[test]
    fn legacy_and_malformed() {
        assert_eq!(
            decode(b"tanstaaf\n").unwrap().secret.as_bytes(),
            b"tanstaaf"
        );
        assert_eq!(
            decode(b"tanstaaf\r\n").unwrap().secret.as_bytes(),
            b"tanstaaf"
        );
        let bad: [(&[u8], &str); 6] = [
            (b"", "it holds no secret"),
            (
                b"apoptools-secret 2\nsecret x\n",
                "unsupported format version",
            ),
            (b"apoptools-secret 1\nchanged 1\n", "no secret line"),
            (b"apoptools-secret 1\nsecret \n", "the secret is empty"),
            (
                b"apoptools-secret 1\nsecret a\nsecret b\n",
                "two secret lines",
            ),
            (
                b"apoptools-secret 1\nsecret a\0\n",
                "it contains a NUL byte",
            ),
        ];
        for (bytes, why) in bad {
            assert_eq!(
                decode(bytes).unwrap_err(),
                Unsafe::Malformed(why),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn policy() {
        check_policy(b"longenough", 8).unwrap();
        for (bad, why) in [
            (&b""[..], "empty"),
            (b"short", "shorter than 8"),
            (b"has\nnewline", "NUL, CR or newline"),
            (b"has\0nul12", "NUL, CR or newline"),
        ] {
            let err = check_policy(bad, 8).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        assert!(check_policy(&[b'x'; 1025], 8).is_err());
        // Characters, not bytes: four two-byte characters are four.
        assert!(check_policy("éééé".as_bytes(), 5).is_err());
    }
}
