//! import: what an old POP3 server's own files say about the UIDLs it presented (config key
//! `uidl_compat`), so that a client leaving mail on the server sees the same UIDLs, in the same
//! order, after the switch to ipop3d. Read only: nothing is ever written to another server's
//! files.
//!
//! Guarantees:
//! - [`read_old`] reads the old server's file as the current euid (the account): opened with
//!   `O_NOFOLLOW|O_NONBLOCK`, checked on the handle (fstat): a regular file owned by the euid, at
//!   most [`MAX_OLD_FILE`] bytes. Absent: `Ok(None)`; anything else is the store's own
//!   [`Error`] (`Unsafe`, a header that does not parse as `Unsafe::Malformed`, or `Io`)
//!   naming the file, for the caller to log and act on. Only the file in the Maildir itself is
//!   read (Dovecot's default control directory); a Dovecot whose `CONTROL=` put it elsewhere
//!   needs it copied in first.
//! - [`OldUidls::get`] never returns a UIDL that is not 1-70 characters of 0x21-0x7E (RFC 1939
//!   §7), and never one that two messages claim: such entries are left out (and counted:
//!   `OldUidls::ignored`, for tests and logs), so those messages get ours. An imported UIDL is
//!   never rewritten (hashed, truncated): the client never saw the rewritten one, so it is no
//!   better than ours.
//! - One entry per base name (the name before `:`, which flag changes keep). Duplicates: in a
//!   `dovecot-uidlist` the later line wins, as Dovecot's own reader does (`maildir_uidlist_next`
//!   replaces the earlier record); in a `courierpop3dsizelist` Courier's pick is unspecified (an
//!   unstable `std::sort` before its merge), so two lines that disagree are both left out.
//! - The order key of [`OldUidls::get`] is a rank: sorting the known messages by it reproduces
//!   the order the old server listed them in (ranks are distinct).
//! - Lines are LF-terminated (one CR before the LF is dropped too). A last line without LF is
//!   ignored, as both servers' readers ignore it (it is a write cut short). A line neither server
//!   would have understood is ignored (counted), the rest of the file still counts; a header
//!   that does not parse makes the whole file [`Malformed`], since every UIDL depends on it.
//!
//! The formats, from the servers' sources:
//! - Dovecot, `dovecot-uidlist` (src/lib-storage/index/maildir/maildir-uidlist.c, 2.3.21:
//!   `maildir_uidlist_read_header`, `maildir_uidlist_read_v3_header`, `maildir_uidlist_next`,
//!   `maildir_uidlist_read_extended`; written by `maildir_uidlist_write_fd`). Version 1 (also
//!   Courier IMAP's `courierimapuiddb`): header `1 <uidvalidity> <next uid>`, lines `<uid>
//!   <filename>`. Version 3: header `3 V<uidvalidity> N<next uid> G<guid> ...`, lines `<uid>
//!   [<key><value> ...] :<filename>`. Version 2 Dovecot 2.3 refuses, and so do we. UIDs are
//!   1..2^32-2, UIDVALIDITY and next UID non-zero. The UIDL (src/pop3/pop3-commands.c
//!   `pop3_get_uid`, src/lib-storage/index/maildir/maildir-mail.c `MAIL_FETCH_UIDL_BACKEND`):
//!   the record's first `P<uidl>` field; an empty `P` means the base file name; else the
//!   default `pop3_uidl_format` `%08Xu%08Xv` (src/lib-storage/mail-storage-settings.c), whose
//!   `X` modifier prints `%llx`, lowercase hex (src/lib/var-expand.c `m_str_hex`; Dovecot 2.4's
//!   `%{uid | hex(8)}%{uidvalidity | hex(8)}` prints `%jx`, lowercase too). Only that default is
//!   read: a Dovecot configured with `%f` is `uidl_compat = qmail`. The order
//!   (src/pop3/pop3-client.c sorts by `MAIL_SORT_POP3_ORDER`; src/lib-storage/index/index-sort.c
//!   `index_sort_get_pop3_order`): by the record's first `O<n>` as a 64-bit number, a missing or
//!   unparsable one counting as 2^32-1, so numbered messages come first, then by UID.
//! - Courier, `courierpop3dsizelist` (courier-libs imap/pop3dserver.C: `readpop3dlist`,
//!   `savepop3dlist`, `print_uidl`, `msglist::operator<`; its 2013 C version, and Dovecot's
//!   courier-dovecot-migrate.pl `read_courier_pop3`, for the older versions): header
//!   `/<version> <next uid> [<uidvalidity>]` (versions 1, 2, 3; `/1 <next uid>`), or no header
//!   at all (version 0: the first line is already an entry). Lines `<filename> <size>` (version
//!   0), `<filename> <size> <uid>` (1), `<filename> <size> <uid>:<uidv>` (2), `<filename> <size>
//!   <uid>:<uidv>:<utf8>` (3), split at the last two spaces. UIDL: `UID<uid>-<uidv>`, or
//!   `UID<uid>` when uidv is 0; with uid 0 (version 0) the base file name with every byte outside
//!   0x21-0x7E and `'`, `"`, `+` written `+XX` (uppercase hex). Order: Courier's pop3d sorts by
//!   the number the name starts with (`atol`), then byte by byte (signed `char`, as on x86) up to
//!   the `:`.
//! - qmail-pop3d (notqmail qmail-pop3d.c `printfn`): the UIDL is the file name before the first
//!   `:` ([`qmail_uidl`]: `None` for one outside RFC 1939's characters, which qmail-pop3d
//!   sends unchecked); it keeps no file. Its order is by mtime (maildir.c `maildir_scan`
//!   into a prioq, qmail-pop3d.c `getlist`), new/ and cur/ together, ties in no set order: that
//!   is for the caller, who has the files.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Unsafe};
use crate::store::atomic;

use super::names::{base_of, uid_is_name};

/// Dovecot's file of IMAP UIDs and POP3 UIDLs, in the Maildir (Dovecot's default control dir).
pub const DOVECOT_UIDLIST: &str = "dovecot-uidlist";
/// Courier's pop3d file of sizes and UIDs, in the Maildir.
pub const COURIER_SIZELIST: &str = "courierpop3dsizelist";
/// The largest old-server file [`read_old`] reads (about a million messages' lines).
pub const MAX_OLD_FILE: u64 = 64 << 20;
/// Courier's 2013 reader kept at most this many bytes of a line (a 1024-byte buffer); no line
/// it wrote is longer (a name is at most 255 bytes), so a longer one is not Courier's.
const COURIER_LINE_MAX: usize = 1020;
/// Dovecot's order key of a record without a usable `O` field.
const DOVECOT_NO_ORDER: u64 = u32::MAX as u64;

/// Which server's UIDLs a Maildir keeps (config key `uidl_compat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UidlCompat {
    /// Ours only.
    #[default]
    None,
    /// Dovecot's `dovecot-uidlist`.
    Dovecot,
    /// Courier's `courierpop3dsizelist`.
    Courier,
    /// qmail-pop3d's: the file name before `:`.
    Qmail,
}

impl UidlCompat {
    /// Every value, in the order the documentation lists them.
    pub const ALL: [UidlCompat; 4] = [
        UidlCompat::None,
        UidlCompat::Dovecot,
        UidlCompat::Courier,
        UidlCompat::Qmail,
    ];

    /// The value of a config word (exactly as [`UidlCompat::name`] spells it).
    pub fn parse(s: &str) -> Option<UidlCompat> {
        UidlCompat::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The config word.
    pub fn name(self) -> &'static str {
        match self {
            UidlCompat::None => "none",
            UidlCompat::Dovecot => "dovecot",
            UidlCompat::Courier => "courier",
            UidlCompat::Qmail => "qmail",
        }
    }

    /// The old server's file in the Maildir, if it keeps one.
    pub fn file_name(self) -> Option<&'static str> {
        match self {
            UidlCompat::Dovecot => Some(DOVECOT_UIDLIST),
            UidlCompat::Courier => Some(COURIER_SIZELIST),
            UidlCompat::None | UidlCompat::Qmail => None,
        }
    }
}

/// Why an old server's file cannot be read at all: its header (line 1) does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// From 1.
    pub line: usize,
    pub why: &'static str,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for Malformed {}

/// What an old server's file says about the messages it knew, keyed by the message file's base
/// name (the part before ':'). Only usable entries are kept (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OldUidls {
    /// Every entry's base name, then its UIDL, back to back.
    bytes: Vec<u8>,
    /// Sorted by base name, so a lookup is a binary search.
    entries: Vec<Entry>,
    ignored: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    at: usize,
    base_len: usize,
    uidl_len: usize,
    order: u64,
}

impl OldUidls {
    /// The UIDL the old server presented for the message whose base name is `base`, and its
    /// position key: sorting known messages by that key reproduces the order the old server
    /// showed. Never an invalid UIDL, never one another entry has (see the module comment).
    pub fn get(&self, base: &[u8]) -> Option<(&[u8], u64)> {
        let i = self
            .entries
            .binary_search_by(|e| self.base(e).cmp(base))
            .ok()?;
        let e = &self.entries[i];
        Some((self.uidl(e), e.order))
    }

    /// How many messages have a UIDL here.
    #[cfg(any(test, feature = "testing"))]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry as (base name, UIDL, order key), by base name.
    #[cfg(any(test, feature = "testing"))]
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8], u64)> {
        self.entries
            .iter()
            .map(|e| (self.base(e), self.uidl(e), e.order))
    }

    /// Lines and entries left out: lines neither server would have understood, a last line
    /// without LF, duplicates that lost, UIDLs invalid or claimed twice. For the caller's log.
    #[cfg(any(test, feature = "testing"))]
    pub fn ignored(&self) -> usize {
        self.ignored
    }

    fn base(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.at..e.at + e.base_len]
    }

    fn uidl(&self, e: &Entry) -> &[u8] {
        let at = e.at + e.base_len;
        &self.bytes[at..at + e.uidl_len]
    }
}

/// qmail-pop3d's UIDL for a cur/ or new/ name: the whole name before ':' (`,S=`/`,W=` fields
/// included); `None` when that is not 1-70 characters of 0x21-0x7E (qmail-pop3d sends it
/// whatever it holds; we never do).
pub fn qmail_uidl(name: &[u8]) -> Option<&[u8]> {
    let base = base_of(name);
    uid_is_name(base).then_some(base)
}

/// Reads the old server's file in `maildir` (`dovecot-uidlist`, `courierpop3dsizelist`) as the
/// current euid: opened `O_NOFOLLOW|O_NONBLOCK`, then checked on the handle (fstat): a regular
/// file owned by the euid, at most [`MAX_OLD_FILE`] bytes. Absent, or `compat` names no file
/// (`none`, `qmail`): `Ok(None)`.
pub fn read_old(maildir: &Path, compat: UidlCompat) -> crate::error::Result<Option<OldUidls>> {
    let parse = match compat {
        UidlCompat::Dovecot => parse_dovecot_uidlist,
        UidlCompat::Courier => parse_courier_sizelist,
        UidlCompat::None | UidlCompat::Qmail => return Ok(None),
    };
    let Some(name) = compat.file_name() else {
        return Ok(None);
    };
    let path = maildir.join(name);
    let Some(bytes) = read_own_file(&path)? else {
        return Ok(None);
    };
    parse(&bytes)
        .map(Some)
        .map_err(|malformed| atomic::unsafe_file(&path, Unsafe::Malformed(malformed.why)))
}

fn read_own_file(path: &Path) -> crate::error::Result<Option<Vec<u8>>> {
    let Some((file, meta)) = atomic::open_nofollow(path)? else {
        return Ok(None);
    };
    atomic::check_regular(path, &meta)?;
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(atomic::unsafe_file(
            path,
            Unsafe::Owner {
                found: meta.uid(),
                expected: euid,
            },
        ));
    }
    if meta.len() > MAX_OLD_FILE {
        return Err(atomic::unsafe_file(path, Unsafe::TooLarge(meta.len())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Bounded again while reading: the file may grow after the fstat.
    file.take(MAX_OLD_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_OLD_FILE {
        return Err(atomic::unsafe_file(
            path,
            Unsafe::TooLarge(bytes.len() as u64),
        ));
    }
    Ok(Some(bytes))
}

/// Reads a `dovecot-uidlist`, version 1 or 3 (see the module comment).
pub fn parse_dovecot_uidlist(bytes: &[u8]) -> Result<OldUidls, Malformed> {
    let (mut lines, unterminated) = lines(bytes);
    let Some((_, header)) = lines.next() else {
        return Err(Malformed {
            line: 1,
            why: "no complete header line",
        });
    };
    let (version, uid_validity) =
        dovecot_header(header).map_err(|why| Malformed { line: 1, why })?;
    let mut found = Vec::new();
    let mut ignored = usize::from(unterminated);
    for (line, text) in lines {
        match dovecot_record(text, version, uid_validity) {
            Some(f) => found.push(Found { line, ..f }),
            None => ignored += 1,
        }
    }
    Ok(finish(found, ignored, Rules::Dovecot))
}

/// The version (1 or 3) and UIDVALIDITY of a `dovecot-uidlist` header, which must also carry a
/// non-zero next UID (`maildir_uidlist_read_header`).
fn dovecot_header(header: &[u8]) -> Result<(u8, u32), &'static str> {
    let (version, rest) = match header {
        [v, b' ', rest @ ..] if v.is_ascii_digit() => (*v - b'0', rest),
        _ => return Err("the header does not start with a version number"),
    };
    let (validity, next) = match version {
        1 => {
            let mut t = words(rest);
            (t.next().and_then(number32), t.next().and_then(number32))
        }
        3 => {
            let (mut validity, mut next) = (None, None);
            for word in words(rest) {
                match word.split_first() {
                    Some((b'V', v)) => {
                        validity = Some(number32(v).ok_or("invalid V (UIDVALIDITY)")?)
                    }
                    Some((b'N', n)) => next = Some(number32(n).ok_or("invalid N (next UID)")?),
                    _ => {}
                }
            }
            (validity, next)
        }
        _ => return Err("unsupported version (Dovecot reads versions 1 and 3)"),
    };
    match (validity, next) {
        (Some(v), Some(n)) if v != 0 && n != 0 => Ok((version, v)),
        _ => Err("no non-zero UIDVALIDITY and next UID"),
    }
}

/// One `dovecot-uidlist` record (`maildir_uidlist_next`, `maildir_uidlist_read_extended`).
fn dovecot_record(text: &[u8], version: u8, uid_validity: u32) -> Option<Found<'_>> {
    if text.contains(&0) {
        return None;
    }
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    let uid = number32(&text[..digits]).filter(|&u| u != 0 && u != u32::MAX)?;
    let mut rest = &text[digits..];
    if rest.first() != Some(&b' ') {
        return None;
    }
    rest = skip_spaces(rest);
    let (mut pop3_uidl, mut pop3_order) = (None, None);
    if version == 3 {
        loop {
            match rest.split_first() {
                None => return None,
                Some((b':', file)) => {
                    rest = file;
                    break;
                }
                Some((&key, _)) => {
                    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
                    let value = &rest[1..end];
                    // Dovecot looks up the first field of a key.
                    match key {
                        b'P' => _ = pop3_uidl.get_or_insert(value),
                        b'O' => _ = pop3_order.get_or_insert(value),
                        _ => {}
                    }
                    rest = skip_spaces(&rest[end..]);
                }
            }
        }
    }
    let base = base_of(rest);
    if base.is_empty() || rest.contains(&b'/') {
        return None;
    }
    let uidl = match pop3_uidl {
        Some(b"") => Cow::Borrowed(base),
        Some(p) => Cow::Borrowed(p),
        None => Cow::Owned(format!("{uid:08x}{uid_validity:08x}").into_bytes()),
    };
    let order = pop3_order.and_then(number).unwrap_or(DOVECOT_NO_ORDER);
    Some(Found {
        base,
        uidl,
        line: 0,
        order: (order, uid),
    })
}

/// Reads a `courierpop3dsizelist`, any version (see the module comment).
pub fn parse_courier_sizelist(bytes: &[u8]) -> Result<OldUidls, Malformed> {
    let (mut lines, unterminated) = lines(bytes);
    let mut found = Vec::new();
    let mut ignored = usize::from(unterminated);
    let mut version = 0;
    let mut first = lines.next();
    if let Some((_, header)) = first.filter(|(_, h)| h.starts_with(b"/")) {
        version = courier_header(&header[1..]).map_err(|why| Malformed { line: 1, why })?;
        first = None;
    }
    for (line, text) in first.into_iter().chain(lines) {
        match courier_record(text, version) {
            Some(f) => found.push(Found { line, ..f }),
            None => ignored += 1,
        }
    }
    Ok(finish(found, ignored, Rules::Courier))
}

/// The version of a `/<version> <next uid> [<uidvalidity>]` header (after the `/`).
fn courier_header(header: &[u8]) -> Result<u8, &'static str> {
    let mut w = words(header);
    let version = w.next().and_then(number).ok_or("invalid version")?;
    if w.next().and_then(number).is_none() {
        return Err("invalid next UID");
    }
    match version {
        1..=3 => Ok(version as u8),
        _ => Err("unsupported version (Courier wrote versions 1 to 3)"),
    }
}

/// One `courierpop3dsizelist` line of a file of `version` (0: no header).
fn courier_record(text: &[u8], version: u8) -> Option<Found<'_>> {
    if text.len() > COURIER_LINE_MAX || text.contains(&0) {
        return None;
    }
    let (name, uid, uidv) = if version == 0 {
        let (name, size) = split_last_space(text)?;
        number(size)?;
        (name, 0, 0)
    } else {
        let (rest, ids) = split_last_space(text)?;
        let (name, size) = split_last_space(rest)?;
        number(size)?;
        let mut ids = ids.split(|&b| b == b':');
        let uid = ids.next().and_then(number)?;
        let uidv = match ids.next() {
            Some(v) => number(v)?,
            None => 0,
        };
        if let Some(utf8) = ids.next() {
            number(utf8)?;
        }
        if ids.next().is_some() {
            return None;
        }
        (name, uid, uidv)
    };
    let base = base_of(name);
    if base.is_empty() || name.contains(&b'/') {
        return None;
    }
    let uidl = match (uid, uidv) {
        (0, _) => Cow::Owned(courier_name_uidl(base)),
        (n, 0) => Cow::Owned(format!("UID{n}").into_bytes()),
        (n, v) => Cow::Owned(format!("UID{n}-{v}").into_bytes()),
    };
    Some(Found {
        base,
        uidl,
        line: 0,
        order: (courier_time(base), 0),
    })
}

/// Courier's "version 0" UIDL: the base name, bytes outside 0x21-0x7E and `'"+` as `+XX`.
fn courier_name_uidl(base: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(base.len());
    for &b in base {
        if (0x21..=0x7e).contains(&b) && !b"'\"+".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("+{b:02X}").as_bytes());
        }
    }
    out
}

/// Courier pop3d's message order (`msglist::operator<`): by the number the name starts with
/// (`atol`, see [`courier_time`]), then byte by byte as signed `char`s, the `:` that follows
/// every name in cur/ included (it decides when one name is a prefix of the other).
fn courier_order(a: &Found<'_>, b: &Found<'_>) -> Ordering {
    fn signed(name: &[u8]) -> impl Iterator<Item = i8> + '_ {
        name.iter().chain(b":").map(|&c| c as i8)
    }
    a.order
        .0
        .cmp(&b.order.0)
        .then_with(|| signed(a.base).cmp(signed(b.base)))
}

/// [`atol`] of a name, as an unsigned key in the same order.
fn courier_time(name: &[u8]) -> u64 {
    atol(name).cast_unsigned() ^ (1 << 63)
}

/// C's `atol` as glibc has it: leading white space, a sign, digits, saturating.
fn atol(s: &[u8]) -> i64 {
    let s = &s[s
        .iter()
        .take_while(|&&c| c == b' ' || (b'\t'..=b'\r').contains(&c))
        .count()..];
    let (negative, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    let magnitude = s
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
    if negative {
        0i64.checked_sub_unsigned(magnitude).unwrap_or(i64::MIN)
    } else {
        i64::try_from(magnitude).unwrap_or(i64::MAX)
    }
}

/// An entry as read, before the rules of [`finish`].
#[derive(Clone)]
struct Found<'a> {
    base: &'a [u8],
    uidl: Cow<'a, [u8]>,
    /// From 1; later lines win Dovecot's duplicates.
    line: usize,
    /// Dovecot's POP3 order: (`O` or 2^32-1, UID); Courier's: ([`courier_time`], 0).
    order: (u64, u32),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rules {
    Dovecot,
    Courier,
}

/// One entry per base (duplicates as the module comment says), valid and unshared UIDLs only,
/// each ranked in the old server's order.
fn finish(mut found: Vec<Found<'_>>, mut ignored: usize, rules: Rules) -> OldUidls {
    found.sort_unstable_by(|a, b| a.base.cmp(b.base).then(a.line.cmp(&b.line)));
    let mut keep = vec![true; found.len()];
    let mut start = 0;
    while start < found.len() {
        let end = start
            + found[start..]
                .iter()
                .take_while(|f| f.base == found[start].base)
                .count();
        let group = &found[start..end];
        match rules {
            // The last line of the group, as Dovecot's reader replaces earlier records.
            Rules::Dovecot => keep[start..end - 1].fill(false),
            Rules::Courier if group.iter().all(|f| f.uidl == group[0].uidl) => {
                keep[start + 1..end].fill(false)
            }
            Rules::Courier => keep[start..end].fill(false),
        }
        start = end;
    }
    for (k, f) in keep.iter_mut().zip(&found) {
        *k &= uid_is_name(&f.uidl);
    }
    // A UIDL two messages claim identifies neither.
    let mut by_uidl: Vec<usize> = (0..found.len()).filter(|&i| keep[i]).collect();
    by_uidl.sort_unstable_by(|&a, &b| found[a].uidl.cmp(&found[b].uidl));
    for group in by_uidl.chunk_by(|&a, &b| found[a].uidl == found[b].uidl) {
        if group.len() > 1 {
            for &i in group {
                keep[i] = false;
            }
        }
    }
    let before = found.len();
    let mut keep = keep.into_iter();
    found.retain(|_| keep.next().unwrap_or(false));
    ignored += before - found.len();

    let mut ranked: Vec<usize> = (0..found.len()).collect();
    ranked.sort_unstable_by(|&a, &b| {
        let (a, b) = (&found[a], &found[b]);
        match rules {
            Rules::Dovecot => a.order.cmp(&b.order),
            Rules::Courier => courier_order(a, b),
        }
        .then(a.line.cmp(&b.line))
    });
    let mut rank = vec![0u64; found.len()];
    for (r, &i) in ranked.iter().enumerate() {
        rank[i] = r as u64;
    }

    let mut old = OldUidls {
        bytes: Vec::with_capacity(found.iter().map(|f| f.base.len() + f.uidl.len()).sum()),
        entries: Vec::with_capacity(found.len()),
        ignored,
    };
    // Still sorted by base: the binary search of `get` relies on it.
    for (f, order) in found.iter().zip(rank) {
        old.entries.push(Entry {
            at: old.bytes.len(),
            base_len: f.base.len(),
            uidl_len: f.uidl.len(),
            order,
        });
        old.bytes.extend_from_slice(f.base);
        old.bytes.extend_from_slice(&f.uidl);
    }
    old
}

/// The LF-terminated lines of `bytes` numbered from 1, each without its LF and one CR before
/// it, and whether a last line had no LF (it is not among them).
fn lines(bytes: &[u8]) -> (impl Iterator<Item = (usize, &[u8])>, bool) {
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines = bytes[..end]
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| {
            let line = &line[..line.len() - 1];
            (i + 1, line.strip_suffix(b"\r").unwrap_or(line))
        });
    (lines, end < bytes.len())
}

/// The words of `s` between spaces.
fn words(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| b == b' ').filter(|w| !w.is_empty())
}

fn skip_spaces(s: &[u8]) -> &[u8] {
    &s[s.iter().take_while(|&&b| b == b' ').count()..]
}

/// `s` split at its last space (Courier's `strrchr(line, ' ')`).
fn split_last_space(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().rposition(|&b| b == b' ')?;
    Some((&s[..i], &s[i + 1..]))
}

/// A decimal number of any number of digits (leading zeros too) that fits 64 bits.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn number32(digits: &[u8]) -> Option<u32> {
    number(digits).and_then(|n| u32::try_from(n).ok())
}

#[cfg(any(test, feature = "testing"))]
impl OldUidls {
    /// Panics unless every promise of [`OldUidls::get`] holds for every entry: a valid UIDL no
    /// other entry has, a distinct rank below [`OldUidls::len`], and `get` finding the entry by
    /// its base (for the unit tests and the fuzz target).
    pub fn assert_invariants(&self) {
        let mut uidls = std::collections::HashSet::new();
        let mut ranks = std::collections::HashSet::new();
        let mut previous: Option<&[u8]> = None;
        for (base, uidl, order) in self.iter() {
            assert!(uid_is_name(uidl), "invalid UIDL {uidl:?}");
            assert!(uidls.insert(uidl), "UIDL {uidl:?} given twice");
            assert!(order < self.len() as u64, "rank {order} of {}", self.len());
            assert!(ranks.insert(order), "rank {order} given twice");
            assert!(!base.is_empty() && !base.contains(&b':') && !base.contains(&b'/'));
            assert!(previous.is_none_or(|p| p < base), "bases out of order");
            previous = Some(base);
            assert_eq!(self.get(base), Some((uidl, order)));
        }
        assert_eq!(self.iter().count(), self.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dovecot(text: &str) -> OldUidls {
        let old = parse_dovecot_uidlist(text.as_bytes()).unwrap();
        old.assert_invariants();
        old
    }

    fn courier(text: &[u8]) -> OldUidls {
        let old = parse_courier_sizelist(text).unwrap();
        old.assert_invariants();
        old
    }

    fn uidl<'a>(old: &'a OldUidls, base: &str) -> Option<&'a str> {
        old.get(base.as_bytes())
            .map(|(u, _)| std::str::from_utf8(u).unwrap())
    }

    /// The bases, in the order the old server listed them.
    fn listed(old: &OldUidls) -> Vec<String> {
        let mut all: Vec<(u64, &[u8])> = old.iter().map(|(b, _, o)| (o, b)).collect();
        all.sort();
        all.iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn uidl_compat_words_round_trip() {
        for c in UidlCompat::ALL {
            assert_eq!(UidlCompat::parse(c.name()), Some(c));
        }
        assert_eq!(UidlCompat::default(), UidlCompat::None);
        assert_eq!(UidlCompat::parse("Dovecot"), None);
        assert_eq!(UidlCompat::parse(""), None);
        assert_eq!(UidlCompat::Dovecot.file_name(), Some("dovecot-uidlist"));
        assert_eq!(
            UidlCompat::Courier.file_name(),
            Some("courierpop3dsizelist")
        );
        assert_eq!(UidlCompat::Qmail.file_name(), None);
    }

    /// Lines shaped as maildir-uidlist.c `maildir_uidlist_write_fd` writes them (header `3 V N
    /// G`, `<uid> [<ext> ...] :<base>`), and as courier-dovecot-migrate.pl
    /// `write_dovecot_uidlist` does (`O`, `P`, `W`, the full name with its flags).
    #[test]
    fn dovecot_v3_default_uidl_is_lowercase_hex_uid_then_uidvalidity() {
        let old = dovecot(
            "3 V1700000000 N4 G2d1f0e1c9a8b7c6d5e4f3a2b1c0d9e8f\n\
             1 :1700000001.M148290P2342.mail.example.org,S=1532,W=1571\n\
             2 W2044 :1700000002.M1P2.mail.example.org\n\
             3 O1 PUID7-1600000000 W1234 :1600000001.M1P2.host:2,S\n",
        );
        // 1700000000 = 0x6553F100: %08Xu%08Xv, and Dovecot's X is printf's %llx.
        assert_eq!(
            uidl(
                &old,
                "1700000001.M148290P2342.mail.example.org,S=1532,W=1571"
            ),
            Some("000000016553f100")
        );
        assert_eq!(
            uidl(&old, "1700000002.M1P2.mail.example.org"),
            Some("000000026553f100")
        );
        assert_eq!(uidl(&old, "1600000001.M1P2.host"), Some("UID7-1600000000"));
        assert_eq!(
            uidl(&old, "1600000001.M1P2.host:2,S"),
            None,
            "keyed by base"
        );
        assert_eq!((old.len(), old.ignored()), (3, 0));
    }

    /// maildir-mail.c `maildir_update_pop3_uidl` stores an empty `P` for a UIDL equal to the
    /// base name; `MAIL_FETCH_UIDL_BACKEND` reads it back as the base name. The first `P` of a
    /// record counts (`maildir_uidlist_lookup_ext`).
    #[test]
    fn dovecot_p_overrides_and_an_empty_p_is_the_base_name() {
        let old = dovecot(
            "3 V1234567890 N9\n\
             4 P :1700000004.M4P4.host,S=10\n\
             5 PXYZ PABC :1700000005.M5P5.host\n\
             6 pLOWER Q1 :1700000006.M6P6.host\n",
        );
        assert_eq!(
            uidl(&old, "1700000004.M4P4.host,S=10"),
            Some("1700000004.M4P4.host,S=10")
        );
        assert_eq!(uidl(&old, "1700000005.M5P5.host"), Some("XYZ"));
        // A field Dovecot does not know (or an invalid key) is passed over.
        assert_eq!(uidl(&old, "1700000006.M6P6.host"), Some("00000006499602d2"));
    }

    /// index-sort.c `index_sort_get_pop3_order`: `O` as a 64-bit number, missing or unparsable
    /// = 2^32-1; ties by UID (the sequence).
    #[test]
    fn dovecot_order_is_o_first_then_uid() {
        let old = dovecot(
            "3 V1 N9\n\
             1 O3 :a\n\
             2 :b\n\
             3 O1 :c\n\
             4 Ox :d\n\
             5 O4294967295 :e\n\
             6 O18446744073709551615 :f\n\
             7 O0 :g\n\
             8 O18446744073709551616 :h\n",
        );
        assert_eq!(listed(&old), ["g", "c", "a", "b", "d", "e", "h", "f"]);
    }

    /// Version 1 (maildir-uidlist.c's header comment; also Courier IMAP's courierimapuiddb):
    /// `1 <uidvalidity> <next uid>`, `<uid> <filename>`, the name possibly with its flags.
    #[test]
    fn dovecot_v1_header_and_lines() {
        let old = dovecot(
            "1 1234567890 4\n\
             1 1234567891.M1P1.host:2,S\n\
             3 1234567892.M2P2.host\n",
        );
        assert_eq!(uidl(&old, "1234567891.M1P1.host"), Some("00000001499602d2"));
        assert_eq!(uidl(&old, "1234567892.M2P2.host"), Some("00000003499602d2"));
        assert_eq!(
            listed(&old),
            ["1234567891.M1P1.host", "1234567892.M2P2.host"]
        );
        // Version 1 has no fields: a P there is part of the name.
        let old = dovecot("1 7 9\n2 PX :name\n");
        assert_eq!(uidl(&old, "PX "), Some("0000000200000007"));
    }

    /// Headers `maildir_uidlist_read_header` refuses (the file is then "broken" to Dovecot).
    #[test]
    fn dovecot_bad_headers_are_malformed() {
        for bad in [
            "",
            "3 V1 N2",
            "\n1 :a\n",
            "3\n",
            "31 V1 N1\n",
            "2 1 2\n1 0 a\n",
            "9 V1 N1\n",
            "3 N5\n",
            "3 V5\n",
            "3 V0 N5\n",
            "3 V5 N0\n",
            "3 Vx N5\n",
            "3 V4294967296 N5\n",
            "1 123\n",
            "1 0 5\n",
            "x 1 2\n",
        ] {
            let err = parse_dovecot_uidlist(bad.as_bytes()).unwrap_err();
            assert_eq!(err.line, 1, "{bad:?}");
        }
        // Unknown header fields and a GUID are no concern of ours.
        assert!(parse_dovecot_uidlist(b"3 V5 N6 Gnot-a-guid X1\n").is_ok());
        assert!(parse_dovecot_uidlist(b"3  V5   N6\n").is_ok());
    }

    /// Records `maildir_uidlist_next` and `maildir_uidlist_read_extended` refuse are passed
    /// over; the rest of the file still counts.
    #[test]
    fn dovecot_malformed_records_are_ignored() {
        let old = dovecot(
            "3 V1 N99\n\
             0 :zero\n\
             4294967295 :too-high\n\
             99999999999999999999 :overflow\n\
             5:no-space\n\
             6 Pxx no-colon\n\
             7 :dir/name\n\
             8 :\n\
             9 P\n\
             10 :nul\0byte\n\
             \n\
             abc\n\
             -1 :negative\n\
             4294967294 :highest\n\
             11 :good\n",
        );
        assert_eq!(old.len(), 2);
        assert_eq!(old.ignored(), 12);
        assert_eq!(uidl(&old, "highest"), Some("fffffffe00000001"));
        assert_eq!(uidl(&old, "good"), Some("0000000b00000001"));
    }

    /// maildir-uidlist.c `maildir_uidlist_next`: a second record for a name replaces the
    /// first ("Duplicate file entry"), so the later line wins, its UID and fields too.
    #[test]
    fn dovecot_duplicate_base_later_line_wins() {
        let old = dovecot("3 V1 N9\n1 POLD O1 :a\n2 :b\n3 PNEW :a:2,S\n");
        assert_eq!(uidl(&old, "a"), Some("NEW"));
        assert_eq!(listed(&old), ["b", "a"]);
        assert_eq!((old.len(), old.ignored()), (2, 1));
    }

    /// Dovecot's istream drops a CR before LF and never returns a last line without LF.
    #[test]
    fn crlf_and_unterminated_last_lines() {
        let lf = "3 V1 N9\n1 PX :a\n2 :b\n";
        let crlf = lf.replace('\n', "\r\n");
        assert_eq!(dovecot(lf), dovecot(&crlf));
        let cut = dovecot("3 V1 N9\n1 PX :a\n2 :b");
        assert_eq!((uidl(&cut, "a"), uidl(&cut, "b")), (Some("X"), None));
        assert_eq!(cut.ignored(), 1);
        // Only one CR goes: a P value ending in CR would be invalid anyway.
        let two = dovecot("3 V1 N9\r\n1 PX\r :a\r\r\n");
        assert_eq!(uidl(&two, "a\r"), None);

        let lf = b"/3 3 1700000000\n1700000001.M1P1.h:2,S 10 1:1700000000:0\n";
        let crlf = b"/3 3 1700000000\r\n1700000001.M1P1.h:2,S 10 1:1700000000:0\r\n";
        assert_eq!(courier(lf), courier(crlf));
        let cut = courier(b"/3 3 5\na 10 1:5:0\nb 10 2:5:0");
        assert_eq!((uidl(&cut, "a"), uidl(&cut, "b")), (Some("UID1-5"), None));
    }

    /// pop3dserver.C `savepop3dlist` (version 3: `/3 <next uid> <uidv>`, `%s %lu %lu:%lu:%d`)
    /// and `print_uidl` (`UID%lu-%lu`, `UID%lu` when uidv is 0); the 2013 pop3dserver.c wrote
    /// version 2 (`%s %lu %lu:%lu`); courier-dovecot-migrate.pl `read_courier_pop3` reads
    /// version 1 (`/1 <next uid>`, `<name> <size> <uid>`) and version 0 (no header, `<name>
    /// <size>`, the name as UIDL).
    #[test]
    fn courier_every_version_and_its_uidl_form() {
        let v3 = courier(
            b"/3 4 1700000000\n\
              1700000001.M1P1.mail.example.org:2,S 1532 1:1700000000:0\n\
              1700000002.M2P2.mail.example.org:2, 2044 2:1700000000:1\n",
        );
        assert_eq!(
            uidl(&v3, "1700000001.M1P1.mail.example.org"),
            Some("UID1-1700000000")
        );
        assert_eq!(
            uidl(&v3, "1700000002.M2P2.mail.example.org"),
            Some("UID2-1700000000")
        );
        let v2 = courier(b"/2 3 1200000000\n1200000001.1234.host:2,S 1532 1:1200000000\n");
        assert_eq!(uidl(&v2, "1200000001.1234.host"), Some("UID1-1200000000"));
        let v1 = courier(b"/1 3\n1100000001.1234.host:2,S 1532 1\n1100000002.5.host 9 2:0\n");
        assert_eq!(uidl(&v1, "1100000001.1234.host"), Some("UID1"));
        assert_eq!(uidl(&v1, "1100000002.5.host"), Some("UID2"));
        let v0 = courier(b"1000000001.1234.host:2,S 1532\n1000000002.99.host 7\n");
        assert_eq!(
            uidl(&v0, "1000000001.1234.host"),
            Some("1000000001.1234.host")
        );
        assert_eq!(uidl(&v0, "1000000002.99.host"), Some("1000000002.99.host"));
        assert_eq!(v0.len(), 2);
        // An empty file: nothing known (Courier starts afresh).
        assert!(courier(b"").is_empty());
    }

    /// `print_uidl`'s "VERSION 0 UIDL" for uid 0 (the 2013 `convert_v0` wrote such lines into
    /// version 2 files): bytes outside 0x21-0x7E and `'"+` as `+%02X`; the name may hold
    /// spaces, since `readpop3dlist` splits at the last two.
    #[test]
    fn courier_uid_zero_is_the_encoded_name() {
        let old = courier(
            b"/2 3 1200000000\n\
              1200000003.a'b\"c+d.host:2, 10 0:1200000000\n\
              1200000004.x y\xe9.host:2,S 10 0:1200000000\n",
        );
        assert_eq!(
            uidl(&old, "1200000003.a'b\"c+d.host"),
            Some("1200000003.a+27b+22c+2Bd.host")
        );
        assert_eq!(
            old.get(b"1200000004.x y\xe9.host").map(|(u, _)| u),
            Some(&b"1200000004.x+20y+E9.host"[..])
        );
    }

    /// `msglist::operator<`: `atol` of the name, then bytes as (x86's signed) `char` up to
    /// the `:` every cur/ name has.
    #[test]
    fn courier_order_is_arrival_time_then_name() {
        let old = courier(
            b"/3 9 5\n\
              1000.b:2, 1 1:5:0\n\
              999.z:2, 1 2:5:0\n\
              abc:2, 1 3:5:0\n\
              1000.a:2, 1 4:5:0\n\
              1000.a.x:2, 1 5:5:0\n\
              1000.\xc3\xa9:2, 1 6:5:0\n\
              0999.y:2, 1 7:5:0\n",
        );
        assert_eq!(
            listed(&old),
            ["abc", "0999.y", "999.z", "1000.é", "1000.a.x", "1000.a", "1000.b"]
        );
        assert_eq!(atol(b"  -12x"), -12);
        assert_eq!(atol(b"99999999999999999999"), i64::MAX);
        assert_eq!(atol(b"-99999999999999999999"), i64::MIN);
        assert_eq!(atol(b"+7"), 7);
        assert_eq!(atol(b"x1"), 0);
    }

    #[test]
    fn courier_bad_headers_are_malformed() {
        for bad in [
            &b"/\n"[..],
            b"/x 1 2\n",
            b"/4 1 2\n",
            b"/0 1 2\n",
            b"/3\n",
            b"/3 x 5\n",
        ] {
            let err = parse_courier_sizelist(bad).unwrap_err();
            assert_eq!(err.line, 1, "{bad:?}");
        }
        // sscanf's %d skips white space, and so do we.
        assert!(parse_courier_sizelist(b"/ 3 1 5\n").is_ok());
        // A header without LF is no header: the file then has nothing complete.
        assert!(courier(b"/3 1 5").is_empty());
    }

    #[test]
    fn courier_malformed_lines_are_ignored() {
        let long = format!("{} 1 9:5\n", "n".repeat(1100));
        let mut text = b"/3 9 5\n\
            justaname\n\
            name 10\n\
            name x 1:5\n\
            name 10 1:5:0:9\n\
            name 10 a:5\n\
            name 10 1:5x\n\
            name 10 1::0\n\
             10 1:5\n\
            :2,S 10 1:5\n\
            dir/name 10 1:5\n\
            name 10 99999999999999999999:5\n\
            nul\0 10 1:5\n"
            .to_vec();
        text.extend_from_slice(long.as_bytes());
        text.extend_from_slice(b"good:2,S 10 3:5:0\n");
        let old = courier(&text);
        assert_eq!((old.len(), old.ignored()), (1, 13));
        assert_eq!(uidl(&old, "good"), Some("UID3-5"));
    }

    /// `sortmsgs` merges Courier's list after an unstable `std::sort`: of two lines for one
    /// name it takes either. Two that agree are one entry; two that disagree say nothing.
    #[test]
    fn courier_duplicates_that_disagree_are_dropped() {
        let old = courier(b"/3 9 5\na:2,S 1 1:5:0\na:2, 1 1:5:0\nb 1 2:5:0\nb:2,S 1 3:5:0\n");
        assert_eq!(uidl(&old, "a"), Some("UID1-5"));
        assert_eq!(uidl(&old, "b"), None);
        assert_eq!((old.len(), old.ignored()), (1, 3));
    }

    #[test]
    fn huge_numbers() {
        let old = courier(
            b"/3 1 1\nn 18446744073709551615 18446744073709551615:18446744073709551615:0\n",
        );
        assert_eq!(
            uidl(&old, "n"),
            Some("UID18446744073709551615-18446744073709551615")
        );
        let err = parse_courier_sizelist(b"/3 99999999999999999999 1\nn 1 1:1:0\n");
        assert!(err.is_err(), "a next UID past 64 bits");
        let old = dovecot("3 V4294967295 N4294967295\n4294967294 :n\n00000000000000000001 :m\n");
        assert_eq!(uidl(&old, "n"), Some("fffffffeffffffff"));
        assert_eq!(uidl(&old, "m"), Some("00000001ffffffff"));
    }

    /// RFC 1939 §7: 1 to 70 characters of 0x21-0x7E. Others are never returned; the message
    /// gets ours.
    #[test]
    fn invalid_uidls_are_never_returned() {
        let p71 = "P".repeat(72);
        let p70 = "P".repeat(71);
        let long_name = "n".repeat(71);
        let text = format!(
            "3 V1 N99\n\
             1 {p71} :too-long\n\
             2 {p70} :seventy\n\
             3 Pa\x7fb :del\n\
             4 Pa\u{e9}b :high\n\
             5 Pa\tb :tab\n\
             6 P :{long_name}\n"
        );
        let old = dovecot(&text);
        assert_eq!(uidl(&old, "seventy"), Some(&p70[1..]));
        assert_eq!(old.len(), 1);
        assert_eq!(old.ignored(), 5);
        // Courier's version-0 encoding can make a short name a long UIDL.
        let old = courier(format!("{} 1\nshort 1\n", "+".repeat(30)).as_bytes());
        assert_eq!(
            (uidl(&old, &"+".repeat(30)), uidl(&old, "short")),
            (None, Some("short"))
        );
        assert_eq!(qmail_uidl(long_name.as_bytes()), None);
        assert_eq!(qmail_uidl(b"a b:2,S"), None);
        assert_eq!(qmail_uidl(b":2,S"), None);
    }

    /// Two messages the old server showed under one UIDL cannot both keep it, and neither
    /// can be told apart by the client: both get ours.
    #[test]
    fn a_uidl_two_messages_claim_is_dropped_for_both() {
        let old = dovecot("3 V1 N9\n1 PX :a\n2 PX :b\n3 :c\n4 P00000003 :d\n5 P :00000005\n");
        assert_eq!((uidl(&old, "a"), uidl(&old, "b")), (None, None));
        assert_eq!(uidl(&old, "c"), Some("0000000300000001"));
        assert_eq!(uidl(&old, "d"), Some("00000003"));
        assert_eq!(uidl(&old, "00000005"), Some("00000005"));
        assert_eq!((old.len(), old.ignored()), (3, 2));
        let old = courier(b"/3 9 5\na 1 1:5:0\nb 1 1:5:0\n");
        assert!(old.is_empty());
    }

    /// qmail-pop3d.c `printfn`: the name after `new/` or `cur/`, up to the first `:`.
    #[test]
    fn qmail_uidl_is_the_name_before_the_colon() {
        assert_eq!(
            qmail_uidl(b"1700000001.M1P2.host,S=123:2,S"),
            Some(&b"1700000001.M1P2.host,S=123"[..])
        );
        assert_eq!(
            qmail_uidl(b"1700000001.12345.host"),
            Some(&b"1700000001.12345.host"[..])
        );
        assert_eq!(qmail_uidl(b"a:b:c"), Some(&b"a"[..]));
    }

    /// Random files from fragments of both formats: whatever parses keeps every promise of
    /// `get`, and reads the same with CRLF line ends.
    #[test]
    fn get_never_breaks_its_promises_on_random_files() {
        const PIECES: &[&[u8]] = &[
            b"3 V1 N9",
            b"1 17 9",
            b"/3 9 5",
            b"/1 3",
            b"/2 4 7",
            b"1",
            b"2",
            b"4294967294",
            b"0",
            b" ",
            b"  ",
            b":",
            b":2,S",
            b"P",
            b"PX",
            b"PUID1-5",
            b"O1",
            b"O",
            b"W12",
            b"a",
            b"b",
            b"a.b",
            b"1000.x",
            b"999",
            b"10",
            b"1:5",
            b"0:5",
            b"2:5:0",
            b"\xe9",
            b"+",
            b"'",
            b"/",
            b"\t",
            b"\0",
            b"\r",
            b"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..3000 {
            let mut file = Vec::new();
            for _ in 0..next(12) {
                for _ in 0..next(6) + 1 {
                    file.extend_from_slice(PIECES[next(PIECES.len())]);
                }
                if next(10) != 0 {
                    file.push(b'\n');
                }
            }
            let mut crlf = Vec::with_capacity(file.len() * 2);
            for &b in &file {
                if b == b'\n' {
                    crlf.push(b'\r');
                }
                crlf.push(b);
            }
            for parse in [parse_dovecot_uidlist, parse_courier_sizelist] {
                let parsed = parse(&file);
                if let Ok(old) = &parsed {
                    old.assert_invariants();
                    for token in file.split(|&b| b == b' ' || b == b'\n') {
                        if let Some((u, _)) = old.get(token) {
                            assert!(uid_is_name(u));
                        }
                    }
                }
                if !file.contains(&b'\r') {
                    assert_eq!(parse(&crlf), parsed, "{:?}", String::from_utf8_lossy(&file));
                }
            }
        }
    }

    fn maildir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn read_old_reads_the_accounts_own_file() {
        let d = maildir();
        assert!(read_old(d.path(), UidlCompat::Dovecot).unwrap().is_none());
        assert!(read_old(d.path(), UidlCompat::Courier).unwrap().is_none());
        std::fs::write(d.path().join(DOVECOT_UIDLIST), "3 V1 N2\n1 PX :a\n").unwrap();
        std::fs::write(d.path().join(COURIER_SIZELIST), "/3 2 5\na:2,S 1 1:5:0\n").unwrap();
        let old = read_old(d.path(), UidlCompat::Dovecot).unwrap().unwrap();
        assert_eq!(uidl(&old, "a"), Some("X"));
        let old = read_old(d.path(), UidlCompat::Courier).unwrap().unwrap();
        assert_eq!(uidl(&old, "a"), Some("UID1-5"));
        assert!(read_old(d.path(), UidlCompat::Qmail).unwrap().is_none());
        assert!(read_old(d.path(), UidlCompat::None).unwrap().is_none());
        std::fs::write(d.path().join(DOVECOT_UIDLIST), "2 1 2\n").unwrap();
        let malformed = parse_dovecot_uidlist(b"2 1 2\n").unwrap_err();
        assert_eq!(malformed.line, 1);
        let err = read_old(d.path(), UidlCompat::Dovecot).unwrap_err();
        assert!(
            matches!(&err, Error::Unsafe { path, why: Unsafe::Malformed(why) }
                if path.ends_with(DOVECOT_UIDLIST) && *why == malformed.why),
            "{err}"
        );
        assert!(err.to_string().contains("unsupported version"), "{err}");
    }

    #[test]
    fn read_old_refuses_links_fifos_directories_and_huge_files() {
        let d = maildir();
        let path = d.path().join(DOVECOT_UIDLIST);
        let elsewhere = d.path().join("elsewhere");
        std::fs::write(&elsewhere, "3 V1 N2\n1 PX :a\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let refused = |why: fn(&Unsafe) -> bool| match read_old(d.path(), UidlCompat::Dovecot) {
            Err(Error::Unsafe { why: w, path: p }) => {
                assert_eq!(p, path);
                assert!(why(&w), "{w}");
            }
            other => panic!("{other:?}"),
        };
        refused(|w| *w == Unsafe::Symlink);
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        refused(|w| *w == Unsafe::NotRegular("FIFO"));
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        refused(|w| matches!(w, Unsafe::NotRegular(_)));
        std::fs::remove_dir(&path).unwrap();
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_OLD_FILE + 1).unwrap();
        refused(|w| *w == Unsafe::TooLarge(MAX_OLD_FILE + 1));
        f.set_len(MAX_OLD_FILE).unwrap();
        // At the limit it is read (and, all NULs, has no header).
        assert!(matches!(
            read_old(d.path(), UidlCompat::Dovecot),
            Err(Error::Unsafe {
                why: Unsafe::Malformed(_),
                ..
            })
        ));
    }

    #[test]
    fn read_old_refuses_a_file_of_another_owner_as_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped read_old_refuses_a_file_of_another_owner_as_root: needs root");
            return;
        }
        let d = maildir();
        let path = d.path().join(COURIER_SIZELIST);
        std::fs::write(&path, "/3 2 5\na:2,S 1 1:5:0\n").unwrap();
        std::os::unix::fs::chown(&path, Some(60123), None).unwrap();
        match read_old(d.path(), UidlCompat::Courier) {
            Err(Error::Unsafe {
                why:
                    Unsafe::Owner {
                        found: 60123,
                        expected: 0,
                    },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}
