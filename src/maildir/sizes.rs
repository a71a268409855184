//! sizes: a message's size as RETR sends it, and the cache of sizes names do not carry.
//!
//! - A size is exactly the number of octets RETR sends for the message before dot-stuffing: LF
//!   becomes CRLF (an existing CRLF stays two octets) and a message not ending in LF gets a
//!   final CRLF ([`measure`]).
//! - Every message is measured once and remembered in `apoptools-sizes` (replaced atomically,
//!   keyed by the name's base, so a change of flags keeps the entry). A size field in a name
//!   (`,W=`) is never believed. For sizes the cache is only a cache: missing, unsafe or
//!   malformed, it is ignored and sizes are measured again; it never gives a wrong size.
//! - The cache also records every UIDL presented that is not the one the name gives (one
//!   imported from another server's list, [`super::import`]), so a message keeps the UIDL it
//!   was first presented with whatever `uidl_compat` says later. A message the cache knows
//!   without a recorded UIDL keeps its own. UIDLs are unique in a listing: a kept UIDL that
//!   another message's equals gives way to the message's own ([`keep_unique`]).

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::store::atomic;

use super::maildrop::{Message, ScanReport, Uid, CHUNK};
use super::names::{base_of, decimal, uid_is_name};
use super::scan::{open_regular, own_uid};

/// The size cache file in the Maildir.
pub const SIZE_CACHE: &str = "apoptools-sizes";
/// Version 3 lines are `SIZE[,UIDL] BASE`: the size, the UIDL presented for the message when
/// it is not the one its name gives (imported from another server's list), and the name's
/// base. Version 2 (no UIDLs) is read as version 3; version 1 (keyed by whole names) is not
/// read (its sizes are measured again, once).
pub(super) const CACHE_HEADER: &[u8] = b"apoptools-sizes 3\n";
const CACHE_HEADER_V2: &[u8] = b"apoptools-sizes 2\n";
const MAX_CACHE_LEN: u64 = 256 << 20;

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

/// The size given to a message whose file vanished before it could be measured.
pub(super) const VANISHED: u64 = u64::MAX;
/// The size of a message the cache does not know (yet to be measured).
const NOT_CACHED: u64 = u64::MAX - 1;

/// A UIDL given to a message that has none recorded: the old server's (see
/// [`super::import`]), or `None` for ours.
pub(super) type Import<'a> = &'a dyn Fn(&Message) -> Option<Box<str>>;

/// What the cache knows of the messages, found by one merge of two sorted lists.
struct Known {
    /// Indexes into the messages, sorted by base (the cache's order).
    order: Vec<u32>,
    /// Whether the cache held entries for names no longer in cur/.
    stale: bool,
    /// Entries used.
    used: usize,
    /// Messages new here given `import`'s UIDL.
    imported: usize,
}

/// Reads the cache against `messages`: each message's size (or [`NOT_CACHED`]) and the UIDLs
/// it recorded, or for a message it does not know (new here) `import`'s UIDL, if any, set on
/// the messages themselves (no array beside them: a 100,000-message
/// first session's peak memory is mostly the listing). A recorded UIDL that is not 1-70
/// characters of 0x21-0x7E is not believed. The cache is keyed by each name's base (the part
/// before `:`, which flag changes keep), kept sorted and streamed, so this is one merge of two
/// sorted lists: no hashing, no per-entry allocation, and never the whole cache in memory.
fn read_known(cache_path: &Path, messages: &mut [Message], import: Import) -> Known {
    let base_len: Vec<u32> = messages
        .iter()
        .map(|m| base_of(m.name.as_bytes()).len() as u32)
        .collect();
    let mut order: Vec<u32> = (0..messages.len() as u32).collect();
    {
        let key_of = |i: usize| &messages[i].name.as_bytes()[..base_len[i] as usize];
        order.sort_unstable_by(|&a, &b| key_of(a as usize).cmp(key_of(b as usize)));
    }
    let mut cache = CacheReader::open(cache_path);
    let (mut used, mut stale, mut imported) = (0usize, false, 0usize);
    for &i in &order {
        let i = i as usize;
        let found = {
            let key = &messages[i].name.as_bytes()[..base_len[i] as usize];
            // Entries for names no longer in cur/ are passed over (and dropped at the
            // rewrite).
            while cache.name().is_some_and(|n| n < key) {
                cache.advance();
                stale = true;
            }
            cache.name() == Some(key)
        };
        let m = &mut messages[i];
        if !found {
            m.size = NOT_CACHED;
            if let Some(uidl) = import(m) {
                m.uid = Uid::Text(uidl);
                imported += 1;
            }
            continue;
        }
        m.size = cache.size;
        if let Some(uidl) = cache.uidl() {
            m.uid = Uid::Text(uidl.into());
        }
        cache.advance();
        used += 1;
    }
    stale |= cache.name().is_some();
    Known {
        order,
        stale,
        used,
        imported,
    }
}

/// Sizes every message: from the cache, else by reading the file (a file that vanished gets
/// [`VANISHED`]). Sizes never come from a name: a `,W=` field may be anyone's. A message the
/// cache knows keeps the UIDL it recorded (its own otherwise); one it does not know is new
/// here and gets `import`'s UIDL, if any. UIDLs are then made unique ([`keep_unique`]) and
/// every non-default UIDL is recorded. The cache is rewritten (streamed) when it gained or
/// lost entries.
pub(super) fn fill_sizes(
    cache_path: &Path,
    cur: &Path,
    messages: &mut [Message],
    report: &mut ScanReport,
    import: Import,
) {
    let known = read_known(cache_path, messages, import);
    for m in messages.iter_mut().filter(|m| m.size == NOT_CACHED) {
        m.size = match open_regular(&cur.join(&*m.name)).and_then(measure) {
            Ok((_, wire)) => {
                report.measured += 1;
                wire
            }
            Err(_) => VANISHED,
        };
    }
    let Known {
        order,
        stale,
        used,
        imported,
    } = known;
    let reverted = keep_unique(messages);
    report.imported = imported.saturating_sub(reverted);
    let rewrite = report.measured > 0 || stale || used < messages.len() || reverted > 0;
    let written = rewrite.then(|| {
        atomic::replace_with(cache_path, 0o600, |w| {
            w.write_all(CACHE_HEADER)?;
            let mut line = Vec::with_capacity(128);
            for &i in &order {
                let i = i as usize;
                let key = base_of(messages[i].name.as_bytes());
                if messages[i].size == VANISHED || key.contains(&b'\n') {
                    continue;
                }
                line.clear();
                push_decimal(&mut line, messages[i].size);
                if messages[i].is_kept() {
                    line.push(b',');
                    line.extend_from_slice(messages[i].uid().as_bytes());
                }
                line.push(b' ');
                line.extend_from_slice(key);
                line.push(b'\n');
                w.write_all(&line)?;
            }
            Ok(())
        })
    });
    report.cache_written = written.is_some_and(|w| w.is_ok());
}

/// The UIDLs the next session will present, without measuring, moving or writing anything
/// (for `ipop3d --uidl-report`): recorded ones from the cache, `import`'s for messages it
/// does not know, made unique as a session makes them.
pub(super) fn preview_uidls(cache_path: &Path, messages: &mut [Message], import: Import) {
    read_known(cache_path, messages, import);
    keep_unique(messages);
}

/// Makes every UIDL unique: a kept UIDL (recorded or imported) that another message's UIDL
/// equals is dropped for the message's own, until none collide (own UIDLs never collide with
/// each other: [`super::scan`] renamed such names apart). How many were dropped.
pub(super) fn keep_unique(messages: &mut [Message]) -> usize {
    let mut reverted = 0;
    loop {
        if !messages.iter().any(Message::is_kept) {
            return reverted;
        }
        let mut count: std::collections::HashMap<&str, u32> =
            std::collections::HashMap::with_capacity(messages.len());
        for m in messages.iter() {
            *count.entry(m.uid()).or_default() += 1;
        }
        let colliding: Vec<usize> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| count[m.uid()] > 1 && m.is_kept())
            .map(|(i, _)| i)
            .collect();
        drop(count);
        if colliding.is_empty() {
            return reverted;
        }
        for i in colliding {
            messages[i].uid = own_uid(&messages[i].name);
            reverted += 1;
        }
    }
}

/// The size cache read one `size name` line at a time, in file order. Missing, not the
/// account's own regular file, or not in the expected format: empty (it is only a cache:
/// sizes are measured again). Malformed lines are skipped.
pub(super) struct CacheReader {
    reader: Option<io::BufReader<io::Take<File>>>,
    line: Vec<u8>,
    /// Where the name starts in `line`, if there is a current entry.
    name_at: Option<usize>,
    /// Where the recorded UIDL lies in `line` (empty if none).
    uidl_at: std::ops::Range<usize>,
    size: u64,
}

impl CacheReader {
    pub(super) fn open(path: &Path) -> CacheReader {
        let mut cache = CacheReader {
            reader: None,
            line: Vec::with_capacity(128),
            name_at: None,
            uidl_at: 0..0,
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
        if reader.read_until(b'\n', &mut header).is_ok()
            && (header == CACHE_HEADER || header == CACHE_HEADER_V2)
        {
            cache.reader = Some(reader);
            cache.advance();
        }
        cache
    }

    /// The current entry's name, `None` at the end.
    pub(super) fn name(&self) -> Option<&[u8]> {
        self.name_at.map(|at| &self.line[at..])
    }

    /// The current entry's recorded UIDL, if it has one that RFC 1939 allows.
    pub(super) fn uidl(&self) -> Option<&str> {
        let uidl = &self.line[self.uidl_at.clone()];
        if !uid_is_name(uidl) {
            return None;
        }
        std::str::from_utf8(uidl).ok()
    }

    /// Moves to the next well-formed entry.
    pub(super) fn advance(&mut self) {
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
            let head = &self.line[..space];
            let (digits, uidl_at) = match head.iter().position(|&b| b == b',') {
                Some(comma) => (&head[..comma], comma + 1..space),
                None => (head, 0..0),
            };
            if let Some(size) = decimal(digits) {
                self.size = size;
                self.uidl_at = uidl_at;
                self.name_at = Some(space + 1);
                return;
            }
        }
    }
}

/// Appends `n` in decimal, without the formatting machinery.
pub(super) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::pop3::wire::decimal(n, &mut [0; 20]));
}
