//! maildir: one POP3 session's view of a Maildir (the "maildrop"), opened as the account.
//!
//! Guarantees:
//! - One session per maildrop: an exclusive, non-blocking flock on `apoptools-pop3.lock` in the
//!   Maildir, held for the life of the [`Maildrop`]; a second session gets [`Error::Busy`].
//! - At open, every message in `new/` moves to `cur/` (link, fsync `cur/`, then unlink: never
//!   over an existing name, never lost in a crash) as
//!   `<unique>,S=<file size>,W=<wire size>:2,<flags>` (the Maildir++/Dovecot convention), so
//!   later scans need only `readdir`: no stat, no read. Messages already in
//!   `cur/` without `W=` are measured once and remembered in `apoptools-sizes` (replaced
//!   atomically, keyed by file name).
//! - Messages are numbered in delivery order: by the Unix time that starts a qmail file name,
//!   then by name.
//! - The unique-id (UIDL) of a message is the unique part of its file name (before `:` and
//!   before any `,S=`/`,W=` field) when that is 1-70 characters of 0x21-0x7E, else the hex MD5
//!   of it; it never changes when flags or size fields are added to the name.
//! - A size is exactly the number of octets RETR sends for the message before dot-stuffing: LF
//!   becomes CRLF (an existing CRLF stays two octets) and a message not ending in LF gets a
//!   final CRLF.
//! - DELE only marks; [`Maildrop::commit`] (the UPDATE state) unlinks the marked files and
//!   fsyncs `cur/`. Dropping a `Maildrop` without `commit` deletes nothing.
//! - A message removed or renamed by another program after the scan is looked up again by its
//!   unique part; if it is gone, the caller gets `None` and the session goes on.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::config::Config;
use crate::error::{Error, Result, Unsafe};
use crate::store::atomic::{self, Lock};
use crate::system::accounts::Account;

/// The session lock file in the Maildir.
pub const LOCK_FILE: &str = "apoptools-pop3.lock";
/// The size cache file in the Maildir.
pub const SIZE_CACHE: &str = "apoptools-sizes";
const CACHE_HEADER: &[u8] = b"apoptools-sizes 1\n";
const MAX_CACHE_LEN: u64 = 256 << 20;
/// Read size for measuring and sending messages.
pub const CHUNK: usize = 64 * 1024;
/// Largest `.qmail-EXT` file read.
const MAX_DOTQMAIL_LEN: u64 = 64 * 1024;

/// One message of the maildrop.
#[derive(Debug, Clone)]
pub struct Message {
    /// The file name in `cur/` (updated if another program renames it).
    name: Box<OsStr>,
    /// The UIDL: the first `n` bytes of the name (the unique part, which a rename keeps), or a
    /// digest. Kept this way a 100,000-message listing needs no second string per message.
    uid: Uid,
    /// Octets RETR sends before dot-stuffing.
    pub size: u64,
    pub deleted: bool,
    /// The delivery time the name starts with (sort key).
    delivered: u64,
}

#[derive(Debug, Clone)]
enum Uid {
    Prefix(u8),
    Digest(Box<str>),
}

impl Message {
    /// The unique-id listing's id for this message (see the module comment).
    pub fn uid(&self) -> &str {
        match &self.uid {
            Uid::Prefix(n) => {
                let bytes = self.name.as_bytes();
                std::str::from_utf8(&bytes[..usize::from(*n).min(bytes.len())]).unwrap_or("")
            }
            Uid::Digest(d) => d,
        }
    }
}

/// What [`Maildrop::open`] did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Messages moved from `new/` to `cur/`.
    pub moved: usize,
    /// Messages in `cur/` whose size was not in the name or the cache and had to be read.
    pub measured: usize,
    /// Whether the size cache was rewritten.
    pub cache_written: bool,
}

/// What [`Maildrop::commit`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpdateReport {
    pub deleted: usize,
    /// Marked messages that could not be removed (other than already gone).
    pub failed: usize,
}

/// Why a message number cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    NoSuchMessage,
    Deleted,
}

/// An open, locked maildrop.
#[derive(Debug)]
pub struct Maildrop {
    cur: PathBuf,
    messages: Vec<Message>,
    pub report: ScanReport,
    _lock: Lock,
}

impl Maildrop {
    /// Locks the Maildir at `root`, moves `new/` to `cur/` and lists the messages. Runs as the
    /// account (the caller has dropped privileges).
    pub fn open(root: &Path) -> Result<Maildrop> {
        let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
        if !meta.is_dir() {
            return Err(Error::Unsafe {
                path: root.to_path_buf(),
                why: Unsafe::NotRegular("file, not a directory"),
            });
        }
        let lock = Lock::acquire(&root.join(LOCK_FILE), Duration::ZERO)?;
        let cur = root.join("cur");
        let new = root.join("new");
        let mut report = ScanReport {
            moved: move_new(&new, &cur)?,
            ..ScanReport::default()
        };
        let mut messages = Vec::new();
        // Messages whose names carry no `W=`: sized from the cache or measured, below.
        let mut unmeasured: Vec<usize> = Vec::new();
        let entries = std::fs::read_dir(&cur).map_err(|e| Error::io(&cur, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&cur, e))?;
            let name = entry.file_name();
            if name.as_bytes().starts_with(b".") {
                continue;
            }
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(true) {
                continue;
            }
            let fields = NameFields::parse(name.as_bytes());
            let uid = match u8::try_from(fields.unique.len()) {
                Ok(n) if uid_is_name(fields.unique) => Uid::Prefix(n),
                _ => Uid::Digest(uidl(fields.unique).into_boxed_str()),
            };
            let size = fields.wire_size;
            if size.is_none() {
                unmeasured.push(messages.len());
            }
            messages.push(Message {
                delivered: delivery_time(&name),
                name: name.into_boxed_os_str(),
                uid,
                size: size.unwrap_or(0),
                deleted: false,
            });
        }
        let cache_path = root.join(SIZE_CACHE);
        if !unmeasured.is_empty() || cache_path.exists() {
            fill_sizes(&cache_path, &cur, &mut messages, unmeasured, &mut report);
            // A file that vanished while being measured is not listed.
            messages.retain(|m| m.size != VANISHED);
        }
        messages.sort_unstable_by(|a, b| (a.delivered, &a.name).cmp(&(b.delivered, &b.name)));
        Ok(Maildrop {
            cur,
            messages,
            report,
            _lock: lock,
        })
    }

    /// Every message, deleted or not, in order (message n is index n-1).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The message numbered `msg` (1-based), unless it does not exist or is marked deleted.
    pub fn get(&self, msg: u32) -> std::result::Result<&Message, Refused> {
        let index = (msg as usize)
            .checked_sub(1)
            .ok_or(Refused::NoSuchMessage)?;
        let m = self.messages.get(index).ok_or(Refused::NoSuchMessage)?;
        if m.deleted {
            return Err(Refused::Deleted);
        }
        Ok(m)
    }

    /// Messages not marked deleted, and their total size.
    pub fn stat(&self) -> (usize, u64) {
        self.messages
            .iter()
            .filter(|m| !m.deleted)
            .fold((0, 0), |(n, s), m| (n + 1, s + m.size))
    }

    /// Marks message `msg` deleted.
    pub fn delete(&mut self, msg: u32) -> std::result::Result<(), Refused> {
        self.get(msg)?;
        self.messages[msg as usize - 1].deleted = true;
        Ok(())
    }

    /// Unmarks every message (RSET).
    pub fn reset(&mut self) {
        self.messages.iter_mut().for_each(|m| m.deleted = false);
    }

    /// Opens message `msg` for reading. `Ok(None)` when its file is gone (removed by another
    /// program since the scan).
    pub fn open_message(&mut self, msg: u32) -> io::Result<Option<File>> {
        let index = msg as usize - 1;
        let path = self.cur.join(&*self.messages[index].name);
        match open_regular(&path) {
            Ok(f) => return Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let Some(name) = self.find_renamed(index)? else {
            return Ok(None);
        };
        self.messages[index].name = name.into_boxed_os_str();
        match open_regular(&self.cur.join(&*self.messages[index].name)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The current name of message `index` if another program renamed it (new flags).
    fn find_renamed(&self, index: usize) -> io::Result<Option<OsString>> {
        let old = self.messages[index].name.as_bytes();
        let base = base_of(old);
        for entry in std::fs::read_dir(&self.cur)? {
            let name = entry?.file_name();
            if name.as_bytes() != old && base_of(name.as_bytes()) == base {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// The UPDATE state: removes every marked message and makes the removals durable. Files
    /// already gone count as deleted.
    pub fn commit(self) -> UpdateReport {
        let mut report = UpdateReport::default();
        // Current names by base, read once if some marked file was renamed meanwhile.
        let mut renamed: Option<HashMap<Vec<u8>, OsString>> = None;
        for index in 0..self.messages.len() {
            if !self.messages[index].deleted {
                continue;
            }
            let mut result = std::fs::remove_file(self.cur.join(&*self.messages[index].name));
            if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                if renamed.is_none() {
                    renamed = Some(names_by_base(&self.cur));
                }
                let base = base_of(self.messages[index].name.as_bytes());
                result = match renamed.as_ref().and_then(|m| m.get(base)) {
                    Some(name) => std::fs::remove_file(self.cur.join(name)),
                    None => Ok(()),
                };
            }
            match result {
                Ok(()) => report.deleted += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => report.deleted += 1,
                Err(_) => report.failed += 1,
            }
        }
        if report.deleted > 0 && atomic::sync_dir(&self.cur).is_err() {
            report.failed += report.deleted;
            report.deleted = 0;
        }
        report
    }
}

/// Every name in `dir` keyed by its base (the part before `:`); empty if unreadable.
fn names_by_base(dir: &Path) -> HashMap<Vec<u8>, OsString> {
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
struct NameFields<'a> {
    /// Before `:` and before any `,S=` / `,W=` field.
    unique: &'a [u8],
    wire_size: Option<u64>,
    /// After `:2,` (empty if none).
    flags: &'a [u8],
}

impl<'a> NameFields<'a> {
    fn parse(name: &'a [u8]) -> NameFields<'a> {
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

fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The name before `:` (what stays when flags change).
fn base_of(name: &[u8]) -> &[u8] {
    name.split(|&b| b == b':').next().unwrap_or(name)
}

/// The delivery time a qmail file name starts with; names without one sort last.
fn delivery_time(name: &OsStr) -> u64 {
    let b = name.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    decimal(&b[..digits]).unwrap_or(u64::MAX)
}

/// Whether a unique part can be its own UIDL: 1-70 characters of 0x21-0x7E (RFC 1939 §7).
fn uid_is_name(unique: &[u8]) -> bool {
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

/// Counts the wire size of a message (see the module comment) and its file size.
pub fn measure(mut r: impl Read) -> io::Result<(u64, u64)> {
    let mut buf = vec![0u8; CHUNK];
    let (mut len, mut bare_lf) = (0u64, 0u64);
    let mut prev = b'\n';
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'\n' {
                let before = if i == 0 { prev } else { chunk[i - 1] };
                if before != b'\r' {
                    bare_lf += 1;
                }
            }
        }
        len += n as u64;
        prev = chunk[n - 1];
    }
    let unterminated = if len > 0 && prev != b'\n' { 2 } else { 0 };
    Ok((len, len + bare_lf + unterminated))
}

/// Opens a message file for reading. A FIFO or device planted in the Maildir must not hang
/// the session, so the open does not block and anything but a regular file counts as gone
/// (`NotFound`).
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY | nix::libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok(file)
}

/// Moves every message in `new/` to `cur/` with its sizes in the name; returns how many.
fn move_new(new: &Path, cur: &Path) -> Result<usize> {
    let mut moved = 0;
    // Linked into cur/, to unlink from new/ once the links are durable.
    let mut linked = Vec::new();
    // Whether a rename (no hard links here) still needs its directory fsync.
    let mut renamed = false;
    let entries = std::fs::read_dir(new).map_err(|e| Error::io(new, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(new, e))?;
        let name = entry.file_name();
        if name.as_bytes().starts_with(b".") {
            continue;
        }
        let from = new.join(&name);
        // A file that vanished, cannot be read or is not a regular file stays where it is
        // and is not listed; the rest of the maildrop is still served.
        let Ok(file) = open_regular(&from) else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        let Ok((len, wire)) = measure(file) else {
            continue;
        };
        let fields = NameFields::parse(name.as_bytes());
        let mut to_name = fields.unique.to_vec();
        to_name.extend_from_slice(format!(",S={len},W={wire}:2,").as_bytes());
        to_name.extend_from_slice(fields.flags);
        let to = cur.join(OsString::from_vec(to_name));
        match std::fs::hard_link(&from, &to) {
            Ok(()) => linked.push(from),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // An earlier session linked it and died before the unlink: same file, so
                // finish the move; a different file of the same name stays in new/.
                let same = std::fs::symlink_metadata(&to)
                    .is_ok_and(|t| t.dev() == meta.dev() && t.ino() == meta.ino());
                if same {
                    let _ = std::fs::remove_file(&from);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            // File systems without hard links: rename, but never over an existing name.
            Err(_) if !to.exists() => match std::fs::rename(&from, &to) {
                Ok(()) => renamed = true,
                Err(_) => continue,
            },
            Err(_) => continue,
        }
        moved += 1;
        if linked.len() >= MOVE_BATCH {
            finish_moves(cur, &mut linked)?;
        }
    }
    if renamed && linked.is_empty() {
        atomic::sync_dir(cur)?;
    }
    finish_moves(cur, &mut linked)?;
    Ok(moved)
}

/// Messages linked into `cur/` before their old names in `new/` are unlinked: in batches, so
/// a 100,000-message `new/` never holds every path in memory.
const MOVE_BATCH: usize = 4096;

/// Makes the new names durable, then removes the old ones: a crash can leave a message in
/// both places (the next session finishes the move) but never in neither.
fn finish_moves(cur: &Path, linked: &mut Vec<PathBuf>) -> Result<()> {
    if linked.is_empty() {
        return Ok(());
    }
    atomic::sync_dir(cur)?;
    for from in linked.drain(..) {
        // A failed unlink only leaves a duplicate the next session removes.
        let _ = std::fs::remove_file(from);
    }
    Ok(())
}

/// The size given to a message whose file vanished before it could be measured.
const VANISHED: u64 = u64::MAX;

/// Sizes the messages at `unmeasured` (names in `cur/` without `W=`): from the cache, else by
/// reading the file (a file that vanished gets [`VANISHED`]). The cache is kept sorted by
/// name and streamed, so this is one merge of two sorted lists: no hashing, no per-entry
/// allocation, and never the whole cache in memory. It is rewritten (streamed too) when it
/// gained or lost entries.
fn fill_sizes(
    cache_path: &Path,
    cur: &Path,
    messages: &mut [Message],
    mut unmeasured: Vec<usize>,
    report: &mut ScanReport,
) {
    unmeasured.sort_unstable_by(|&a, &b| messages[a].name.cmp(&messages[b].name));
    let mut cache = CacheReader::open(cache_path);
    let (mut used, mut stale) = (0usize, false);
    for &i in &unmeasured {
        let name = messages[i].name.as_bytes();
        // Entries for names no longer in cur/ are passed over (and dropped at the rewrite).
        while cache.name().is_some_and(|n| n < name) {
            cache.advance();
            stale = true;
        }
        if cache.name() == Some(name) {
            messages[i].size = cache.size;
            cache.advance();
            used += 1;
            continue;
        }
        messages[i].size = match open_regular(&cur.join(&*messages[i].name)).and_then(measure) {
            Ok((_, wire)) => {
                report.measured += 1;
                wire
            }
            Err(_) => VANISHED,
        };
    }
    stale |= cache.name().is_some();
    drop(cache);
    if report.measured == 0 && !stale && used == unmeasured.len() {
        return;
    }
    let written = atomic::replace_with(cache_path, 0o600, |w| {
        w.write_all(CACHE_HEADER)?;
        let mut line = Vec::with_capacity(128);
        for &i in &unmeasured {
            let m = &messages[i];
            if m.size == VANISHED || m.name.as_bytes().contains(&b'\n') {
                continue;
            }
            line.clear();
            push_decimal(&mut line, m.size);
            line.push(b' ');
            line.extend_from_slice(m.name.as_bytes());
            line.push(b'\n');
            w.write_all(&line)?;
        }
        Ok(())
    });
    report.cache_written = written.is_ok();
}

/// The size cache read one `size name` line at a time, in file order. Missing, not the
/// account's own regular file, or not in the expected format: empty (it is only a cache:
/// sizes are measured again). Malformed lines are skipped.
struct CacheReader {
    reader: Option<io::BufReader<io::Take<File>>>,
    line: Vec<u8>,
    /// Where the name starts in `line`, if there is a current entry.
    name_at: Option<usize>,
    size: u64,
}

impl CacheReader {
    fn open(path: &Path) -> CacheReader {
        let mut cache = CacheReader {
            reader: None,
            line: Vec::with_capacity(128),
            name_at: None,
            size: 0,
        };
        let Ok(Some((file, meta))) = atomic::open_nofollow(path) else {
            return cache;
        };
        if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
            return cache;
        }
        let mut reader = io::BufReader::with_capacity(CHUNK, file.take(MAX_CACHE_LEN));
        let mut header = Vec::new();
        if reader.read_until(b'\n', &mut header).is_ok() && header == CACHE_HEADER {
            cache.reader = Some(reader);
            cache.advance();
        }
        cache
    }

    /// The current entry's name, `None` at the end.
    fn name(&self) -> Option<&[u8]> {
        self.name_at.map(|at| &self.line[at..])
    }

    /// Moves to the next well-formed entry.
    fn advance(&mut self) {
        self.name_at = None;
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        loop {
            self.line.clear();
            match reader.read_until(b'\n', &mut self.line) {
                Ok(0) | Err(_) => {
                    self.reader = None;
                    return;
                }
                Ok(_) => {}
            }
            if self.line.last() == Some(&b'\n') {
                self.line.pop();
            }
            let Some(space) = self.line.iter().position(|&b| b == b' ') else {
                continue;
            };
            if let Some(size) = decimal(&self.line[..space]) {
                self.size = size;
                self.name_at = Some(space + 1);
                return;
            }
        }
    }
}

/// Appends `n` in decimal, without the formatting machinery.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::pop3::wire::decimal(n, &mut [0; 20]));
}

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
    let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
    if meta.uid() != account.uid {
        return Err(Error::Unsafe {
            path,
            why: Unsafe::Owner {
                found: meta.uid(),
                expected: account.uid,
            },
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn maildir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        dir
    }

    fn names(dir: &Path, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn name_fields() {
        let f = NameFields::parse(b"1700000000.M1P2.host,S=1234,W=1260:2,RS");
        assert_eq!(f.unique, b"1700000000.M1P2.host");
        assert_eq!(f.wire_size, Some(1260));
        assert_eq!(f.flags, b"RS");
        let f = NameFields::parse(b"1700000000.123.host:2,");
        assert_eq!(f.unique, b"1700000000.123.host");
        assert_eq!(f.wire_size, None);
        let f = NameFields::parse(b"a,S=5");
        assert_eq!((f.unique, f.wire_size), (&b"a"[..], None));
        let f = NameFields::parse(b"a,X=1,W=99999999999999999999");
        assert_eq!((f.unique, f.wire_size), (&b"a,X=1"[..], None));
    }

    #[test]
    fn uidl_rules() {
        assert_eq!(uidl(b"1700000000.M1P2.host"), "1700000000.M1P2.host");
        let long = [b'x'; 71];
        let hashed = uidl(&long);
        assert_eq!(hashed.len(), 32);
        assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(hashed, uidl(&long), "stable");
        assert_eq!(uidl(&[b'x'; 70]).len(), 70);
        assert_eq!(uidl(b"with space").len(), 32);
        assert_eq!(uidl(b"caf\xc3\xa9").len(), 32);
        assert_eq!(uidl(b"").len(), 32);
    }

    #[test]
    fn uid_survives_renames_and_odd_names_are_hashed() {
        let dir = maildir();
        let d = dir.path();
        let odd = "1700000001.caf\u{e9} \u{1}.h";
        std::fs::write(d.join("new/1700000000.1.h"), b"m\n").unwrap();
        std::fs::write(d.join("new").join(odd), b"m\n").unwrap();
        let mut md = Maildrop::open(d).unwrap();
        assert_eq!(md.messages()[0].uid(), "1700000000.1.h");
        assert_eq!(md.messages()[1].uid(), uidl(odd.as_bytes()));
        let cur = names(d, "cur");
        let first = cur.iter().find(|n| n.starts_with("1700000000")).unwrap();
        std::fs::rename(
            d.join("cur").join(first),
            d.join("cur").join(format!("{first}RS")),
        )
        .unwrap();
        assert!(md.open_message(1).unwrap().is_some());
        assert_eq!(md.messages()[0].uid(), "1700000000.1.h");
    }

    #[test]
    fn measure_counts_what_retr_sends() {
        let cases: [(&[u8], u64); 9] = [
            (b"", 0),
            (b"a\n", 3),
            (b"a\r\n", 3),
            (b"a\nb\r\nc\n", 9),
            (b"no newline", 12),
            (b"\n\n", 4),
            (b"\r\n", 2),
            (b"x\r", 4),
            (b".\n..\n", 7),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                measure(bytes).unwrap(),
                (bytes.len() as u64, want),
                "{bytes:?}"
            );
        }
        // A CRLF split across read chunks still counts two.
        let mut big = vec![b'y'; CHUNK - 1];
        big.extend_from_slice(b"\r\nz\n");
        assert_eq!(measure(Cursor::new(&big)).unwrap().1, big.len() as u64 + 1);
    }

    #[test]
    fn scan_moves_new_orders_and_sizes() {
        let dir = maildir();
        let d = dir.path();
        std::fs::write(d.join("new/1700000200.2.host"), b"b\nb\n").unwrap();
        std::fs::write(d.join("new/1700000100.9.host"), b"aa\r\n").unwrap();
        std::fs::write(d.join("new/.hidden"), b"x").unwrap();
        std::fs::write(d.join("cur/999999999.1.host:2,S"), b"old\n").unwrap();
        std::fs::write(d.join("cur/1700000100.10.host:2,"), b"same time\n").unwrap();
        std::fs::write(d.join("tmp/1700000300.1.host"), b"not yet").unwrap();
        let md = Maildrop::open(d).unwrap();
        assert_eq!(md.report.moved, 2);
        assert_eq!(md.report.measured, 2);
        assert!(md.report.cache_written);
        let got: Vec<(&str, u64)> = md.messages().iter().map(|m| (m.uid(), m.size)).collect();
        assert_eq!(
            got,
            [
                ("999999999.1.host", 5),
                ("1700000100.10.host", 11),
                ("1700000100.9.host", 4),
                ("1700000200.2.host", 6),
            ]
        );
        assert_eq!(md.stat(), (4, 26));
        assert_eq!(names(d, "new"), [".hidden"]);
        assert!(names(d, "cur").contains(&"1700000200.2.host,S=4,W=6:2,".to_string()));
        drop(md);
        // The second scan takes every size from a name or the cache: nothing is measured.
        let cache = std::fs::read(d.join(SIZE_CACHE)).unwrap();
        assert!(cache.starts_with(CACHE_HEADER));
        // Growing every file proves it: the sizes reported are still the recorded ones.
        for name in names(d, "cur") {
            std::fs::write(d.join("cur").join(name), [b'x'; 100]).unwrap();
        }
        let again = Maildrop::open(d).unwrap();
        assert_eq!(again.report, ScanReport::default());
        assert_eq!(again.stat(), (4, 26));
        drop(again);
        // A cache entry for a file that is gone is dropped, and a damaged cache is only a
        // cache: the sizes are measured again.
        std::fs::remove_file(d.join("cur/999999999.1.host:2,S")).unwrap();
        let third = Maildrop::open(d).unwrap();
        assert!(third.report.cache_written);
        assert_eq!(third.report.measured, 0);
        drop(third);
        std::fs::write(d.join(SIZE_CACHE), b"garbage\n").unwrap();
        let fourth = Maildrop::open(d).unwrap();
        assert_eq!(fourth.report.measured, 1);
        assert_eq!(fourth.stat(), (3, 4 + 102 + 6));
    }

    #[test]
    fn new_mail_moves_in_batches_and_all_arrives() {
        let dir = maildir();
        let d = dir.path();
        let n = MOVE_BATCH + 5;
        for i in 0..n {
            std::fs::write(d.join(format!("new/{}.{i}.h", 1_700_000_000 + i)), b"m\n").unwrap();
        }
        let md = Maildrop::open(d).unwrap();
        assert_eq!(md.report.moved, n);
        assert_eq!(md.stat(), (n, 3 * n as u64));
        assert!(names(d, "new").is_empty());
        assert_eq!(
            md.messages()[n - 1].uid(),
            format!("{}.{}.h", 1_700_000_000 + n - 1, n - 1)
        );
    }

    #[test]
    fn unsorted_cache_costs_a_measurement_never_a_wrong_size() {
        let dir = maildir();
        let d = dir.path();
        for (name, body) in [
            ("1.a:2,", &b"aa\n"[..]),
            ("2.b:2,", b"b\nb\n"),
            ("3.c:2,", b"c"),
        ] {
            std::fs::write(d.join("cur").join(name), body).unwrap();
        }
        // Hand-edited: out of order, one stale entry, one wrong size for a name not present.
        std::fs::write(
            d.join(SIZE_CACHE),
            b"apoptools-sizes 1\n3 3.c:2,\n99 0.gone:2,\n4 1.a:2,\n",
        )
        .unwrap();
        let md = Maildrop::open(d).unwrap();
        let sizes: Vec<(&str, u64)> = md.messages().iter().map(|m| (m.uid(), m.size)).collect();
        assert_eq!(sizes, [("1.a", 4), ("2.b", 6), ("3.c", 3)]);
        assert!(md.report.cache_written);
        drop(md);
        let cache = std::fs::read(d.join(SIZE_CACHE)).unwrap();
        assert_eq!(cache, b"apoptools-sizes 1\n4 1.a:2,\n6 2.b:2,\n3 3.c:2,\n");
        assert_eq!(Maildrop::open(d).unwrap().report, ScanReport::default());
    }

    #[test]
    fn fifos_and_directories_are_not_messages() {
        let dir = maildir();
        let d = dir.path();
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
        nix::unistd::mkfifo(&d.join("new/1700000000.fifo.h"), mode).unwrap();
        nix::unistd::mkfifo(&d.join("cur/1700000001.fifo.h:2,"), mode).unwrap();
        std::fs::create_dir(d.join("cur/1700000002.dir.h:2,")).unwrap();
        std::fs::write(d.join("new/1700000003.ok.h"), b"ok\n").unwrap();
        let md = Maildrop::open(d).unwrap();
        let uids: Vec<&str> = md.messages().iter().map(|m| m.uid()).collect();
        assert_eq!(uids, ["1700000003.ok.h"]);
    }

    #[test]
    fn interrupted_move_is_finished_once() {
        let dir = maildir();
        let d = dir.path();
        std::fs::write(d.join("new/1700000000.1.h"), b"m\n").unwrap();
        // As if an earlier session linked the file into cur/ and died before the unlink.
        std::fs::hard_link(
            d.join("new/1700000000.1.h"),
            d.join("cur/1700000000.1.h,S=2,W=3:2,"),
        )
        .unwrap();
        let md = Maildrop::open(d).unwrap();
        assert_eq!(md.stat(), (1, 3));
        assert!(names(d, "new").is_empty());
    }

    #[test]
    fn session_lock_is_exclusive() {
        let dir = maildir();
        let first = Maildrop::open(dir.path()).unwrap();
        let err = Maildrop::open(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err}");
        drop(first);
        Maildrop::open(dir.path()).unwrap();
    }

    #[test]
    fn dele_marks_rset_unmarks_commit_deletes() {
        let dir = maildir();
        let d = dir.path();
        for i in 1..=3 {
            std::fs::write(d.join(format!("new/17000000{i}0.{i}.h")), b"m\n").unwrap();
        }
        let mut md = Maildrop::open(d).unwrap();
        assert_eq!(md.get(0).unwrap_err(), Refused::NoSuchMessage);
        assert_eq!(md.get(4).unwrap_err(), Refused::NoSuchMessage);
        md.delete(2).unwrap();
        assert_eq!(md.delete(2).unwrap_err(), Refused::Deleted);
        assert_eq!(md.get(2).unwrap_err(), Refused::Deleted);
        assert_eq!(md.stat(), (2, 6));
        md.reset();
        assert_eq!(md.stat(), (3, 9));
        md.delete(1).unwrap();
        md.delete(3).unwrap();
        // Without commit (a dropped connection), nothing goes.
        let before = names(d, "cur");
        drop(md);
        assert_eq!(names(d, "cur"), before);
        let mut md = Maildrop::open(d).unwrap();
        md.delete(1).unwrap();
        md.delete(3).unwrap();
        // Another program renames message 3 (a new flag) and removes message 1 meanwhile.
        let m3 = before[2].clone();
        std::fs::rename(
            d.join("cur").join(&m3),
            d.join("cur").join(format!("{m3}S")),
        )
        .unwrap();
        assert_eq!(
            md.commit(),
            UpdateReport {
                deleted: 2,
                failed: 0
            }
        );
        assert_eq!(names(d, "cur"), [before[1].clone()]);
    }

    #[test]
    fn renamed_or_removed_message() {
        let dir = maildir();
        let d = dir.path();
        std::fs::write(d.join("new/1700000000.1.h"), b"body\n").unwrap();
        std::fs::write(d.join("new/1700000001.1.h"), b"body\n").unwrap();
        let mut md = Maildrop::open(d).unwrap();
        let cur = names(d, "cur");
        std::fs::rename(
            d.join("cur").join(&cur[0]),
            d.join("cur").join(format!("{}S", cur[0])),
        )
        .unwrap();
        std::fs::remove_file(d.join("cur").join(&cur[1])).unwrap();
        let mut body = String::new();
        md.open_message(1)
            .unwrap()
            .unwrap()
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "body\n");
        assert!(md.open_message(2).unwrap().is_none());
    }

    #[test]
    fn locate_extension_maildir() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let me = nix::unistd::geteuid().as_raw();
        let account = Account {
            name: "u".into(),
            uid: me,
            gid: nix::unistd::getegid().as_raw(),
            home: h.to_path_buf(),
        };
        let config = Config::default();
        assert_eq!(locate(&account, None, &config).unwrap(), h.join("Maildir"));
        std::fs::create_dir(h.join("Maildir-ml")).unwrap();
        std::fs::write(
            h.join(".qmail-ml"),
            "# list\n|preline x\n./mbox\n./Maildir-ml/\n./other/\n",
        )
        .unwrap();
        assert_eq!(
            locate(&account, Some("ml"), &config).unwrap(),
            h.join("./Maildir-ml/")
        );
        let abs = format!("{}/Maildir-ml/\n", h.display());
        std::fs::write(h.join(".qmail-abs"), abs).unwrap();
        assert_eq!(
            locate(&account, Some("abs"), &config).unwrap(),
            h.join("Maildir-ml/")
        );
        std::fs::write(h.join(".qmail-up"), "./../elsewhere/\n").unwrap();
        assert!(matches!(
            locate(&account, Some("up"), &config),
            Err(Error::Unsafe { .. })
        ));
        std::fs::write(h.join(".qmail-none"), "&forward@example.org\n").unwrap();
        assert!(locate(&account, Some("none"), &config).is_err());
        assert!(locate(&account, Some("missing"), &config).is_err());
        // An absolute line outside the home is refused, whoever owns the target.
        std::fs::write(h.join(".qmail-root"), "/\n").unwrap();
        assert!(matches!(
            locate(&account, Some("root"), &config),
            Err(Error::Unsafe {
                why: Unsafe::Malformed("the maildir is outside the home directory"),
                ..
            })
        ));
    }
}
