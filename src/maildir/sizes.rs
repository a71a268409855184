//! sizes: a message's size as RETR sends it, and the cache of sizes names do not carry.
//!
//! - A size is exactly the number of octets RETR sends for the message before dot-stuffing: LF
//!   becomes CRLF (an existing CRLF stays two octets) and a message not ending in LF gets a
//!   final CRLF ([`measure`]).
//! - Every message is measured once and remembered in `apoptools-sizes` (replaced atomically,
//!   keyed by the name's base, so a change of flags keeps the entry). A size field in a name
//!   (`,W=`) is never believed. The cache is only a cache:
//!   missing, unsafe or malformed, it is ignored and sizes are measured again; it never gives a
//!   wrong size.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::store::atomic;

use super::maildrop::{Message, ScanReport, CHUNK};
use super::names::{base_of, decimal};
use super::scan::open_regular;

/// The size cache file in the Maildir.
pub const SIZE_CACHE: &str = "apoptools-sizes";
/// Version 2 keys sizes by base name; version 1 (keyed by whole names) is not read (its
/// sizes are measured again, once).
pub(super) const CACHE_HEADER: &[u8] = b"apoptools-sizes 2\n";
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

/// Sizes every message: from the cache, else by reading the file (a file that vanished gets
/// [`VANISHED`]). Sizes never come from a name: a `,W=` field may be anyone's. The cache is
/// keyed by each name's base (the part before `:`, which flag changes keep), kept sorted and
/// streamed, so this is one merge of two sorted lists: no hashing, no per-entry allocation,
/// and never the whole cache in memory. It is rewritten (streamed too) when it gained or lost
/// entries.
pub(super) fn fill_sizes(
    cache_path: &Path,
    cur: &Path,
    messages: &mut [Message],
    report: &mut ScanReport,
) {
    // Each base found once; the merge order is an index sorted by base (plain byte compares).
    let base_len: Vec<u32> = messages
        .iter()
        .map(|m| base_of(m.name.as_bytes()).len() as u32)
        .collect();
    let key_of = |i: usize| &messages[i].name.as_bytes()[..base_len[i] as usize];
    let mut order: Vec<u32> = (0..messages.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| key_of(a as usize).cmp(key_of(b as usize)));
    let mut sizes = vec![0u64; messages.len()];
    let mut cache = CacheReader::open(cache_path);
    let (mut used, mut stale) = (0usize, false);
    for &i in &order {
        let i = i as usize;
        let key = key_of(i);
        // Entries for names no longer in cur/ are passed over (and dropped at the rewrite).
        while cache.name().is_some_and(|n| n < key) {
            cache.advance();
            stale = true;
        }
        if cache.name() == Some(key) {
            sizes[i] = cache.size;
            cache.advance();
            used += 1;
            continue;
        }
        sizes[i] = match open_regular(&cur.join(&*messages[i].name)).and_then(measure) {
            Ok((_, wire)) => {
                report.measured += 1;
                wire
            }
            Err(_) => VANISHED,
        };
    }
    stale |= cache.name().is_some();
    drop(cache);
    let rewrite = report.measured > 0 || stale || used < messages.len();
    let written = rewrite.then(|| {
        atomic::replace_with(cache_path, 0o600, |w| {
            w.write_all(CACHE_HEADER)?;
            let mut line = Vec::with_capacity(128);
            for &i in &order {
                let (i, key) = (i as usize, key_of(i as usize));
                if sizes[i] == VANISHED || key.contains(&b'\n') {
                    continue;
                }
                line.clear();
                push_decimal(&mut line, sizes[i]);
                line.push(b' ');
                line.extend_from_slice(key);
                line.push(b'\n');
                w.write_all(&line)?;
            }
            Ok(())
        })
    });
    report.cache_written = written.is_some_and(|w| w.is_ok());
    for (m, size) in messages.iter_mut().zip(sizes) {
        m.size = size;
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
    size: u64,
}

impl CacheReader {
    pub(super) fn open(path: &Path) -> CacheReader {
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
    pub(super) fn name(&self) -> Option<&[u8]> {
        self.name_at.map(|at| &self.line[at..])
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
            if let Some(size) = decimal(&self.line[..space]) {
                self.size = size;
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
