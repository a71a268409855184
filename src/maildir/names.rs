//! names: what a Maildir file name says, and the UIDL made from it.
//!
//! - A name is `<unique>[,S=<file size>][,W=<wire size>][:2,<flags>]` (the Maildir++/Dovecot
//!   convention); [`NameFields::parse`] never fails, a field it cannot read is absent.
//! - The unique-id (UIDL) of a message is the unique part of its file name (before `:` and
//!   before any `,S=`/`,W=` field) when that is 1-70 characters of 0x21-0x7E, else the hex MD5
//!   of it; it never changes when flags or size fields are added to the name.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use md5::{Digest, Md5};

/// Every name in `dir` keyed by its base (the part before `:`); empty if unreadable.
pub(super) fn names_by_base(dir: &Path) -> HashMap<Vec<u8>, OsString> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let name = e.file_name();
            (base_of(name.as_bytes()).to_vec(), name)
        })
        .collect()
}

/// The parts of a Maildir file name that matter here.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NameFields<'a> {
    /// Before `:` and before any `,S=` / `,W=` field.
    pub(super) unique: &'a [u8],
    pub(super) wire_size: Option<u64>,
    /// After `:2,` (empty if none).
    pub(super) flags: &'a [u8],
}

impl<'a> NameFields<'a> {
    pub(super) fn parse(name: &'a [u8]) -> NameFields<'a> {
        let (base, info) = match name.iter().position(|&b| b == b':') {
            Some(i) => (&name[..i], &name[i + 1..]),
            None => (name, &b""[..]),
        };
        let flags = info.strip_prefix(b"2,").unwrap_or(b"");
        let mut unique = base;
        let mut wire_size = None;
        let mut pos = 0;
        while let Some(off) = base[pos..].iter().position(|&b| b == b',') {
            let at = pos + off;
            let field = &base[at + 1..];
            let end = field.iter().position(|&b| b == b',').unwrap_or(field.len());
            let field = &field[..end];
            if field.starts_with(b"S=") || field.starts_with(b"W=") {
                if unique.len() == base.len() {
                    unique = &base[..at];
                }
                if let Some(w) = field.strip_prefix(b"W=") {
                    wire_size = decimal(w);
                }
            }
            pos = at + 1;
        }
        NameFields {
            unique,
            wire_size,
            flags,
        }
    }
}

pub(super) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The name before `:` (what stays when flags change).
pub(super) fn base_of(name: &[u8]) -> &[u8] {
    name.split(|&b| b == b':').next().unwrap_or(name)
}

/// The delivery time a qmail file name starts with; names without one sort last.
pub(super) fn delivery_time(name: &OsStr) -> u64 {
    let b = name.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    decimal(&b[..digits]).unwrap_or(u64::MAX)
}

/// Whether a unique part can be its own UIDL: 1-70 characters of 0x21-0x7E (RFC 1939 §7).
pub(super) fn uid_is_name(unique: &[u8]) -> bool {
    (1..=70).contains(&unique.len()) && unique.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The UIDL of a unique part (see the module comment).
pub fn uidl(unique: &[u8]) -> String {
    if uid_is_name(unique) {
        // All ASCII, checked just above.
        return String::from_utf8_lossy(unique).into_owned();
    }
    let sum = Md5::digest(unique);
    sum.iter().map(|b| format!("{b:02x}")).collect()
}
