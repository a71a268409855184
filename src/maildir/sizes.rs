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
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::store::atomic;
use crate::system::dir::Dir;

use super::listing::{Entry, Listing, TooLarge};
use super::maildrop::{ScanReport, CHUNK};
use super::names::decimal;

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
#[cfg(test)]
pub fn measure(r: impl Read) -> io::Result<(u64, u64)> {
    measure_with(r, &mut vec![0u8; CHUNK], None)
}

/// [`measure`] reading through `buf`: a first session measures every message, and zeroing a
/// fresh 64 KiB buffer for each (a 6 KB message, typically) cost as much as reading it. With
/// `len_hint` (the length fstat gave), the read that would only say end-of-file is not made
/// once that many octets are in: a delivered message is never written again (the Maildir
/// rule), and one that were would differ from its size whenever it changed anyway.
pub(super) fn measure_with(
    mut r: impl Read,
    buf: &mut [u8],
    len_hint: Option<u64>,
) -> io::Result<(u64, u64)> {
    let (mut len, mut bare_lf) = (0u64, 0u64);
    let mut prev = b'\n';
    while len_hint.is_none_or(|h| len < h) {
        let n = match r.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        if chunk[0] == b'\n' && prev != b'\r' {
            bare_lf += 1;
        }
        // Each byte against the one before it, with no branch and 8-bit counts of at most
        // 255: the compiler makes this a vector loop (a byte at a time, it was a fifth of a
        // first session's time).
        let bare = chunk[1..]
            .chunks(255)
            .zip(chunk.chunks(255))
            .map(|(bytes, befores)| {
                let count = bytes.iter().zip(befores).fold(0u8, |n, (&b, &before)| {
                    n.wrapping_add(u8::from(b == b'\n') & u8::from(before != b'\r'))
                });
                u64::from(count)
            })
            .sum::<u64>();
        bare_lf += bare;
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
pub(super) type Import<'a> = &'a dyn Fn(&Listing, &Entry) -> Option<Box<[u8]>>;

/// What the cache knows of the messages, found by one merge of two sorted lists.
struct Known {
    /// Whether the cache held entries for names no longer in cur/.
    stale: bool,
    /// Entries used.
    used: usize,
    /// Messages new here given `import`'s UIDL.
    imported: usize,
}

/// Reads the cache against the listing: each message's size (or [`NOT_CACHED`]) and the UIDLs
/// it recorded, or for a message it does not know (new here) `import`'s UIDL, if any, set on
/// the entries themselves (no array beside them: a 100,000-message first session's peak
/// memory is mostly the listing). A recorded UIDL that is not 1-70 characters of 0x21-0x7E is
/// not believed. The cache is keyed by each name's base (the part before `:`, which flag
/// changes keep), kept sorted and streamed, and the listing is sorted the same way first, so
/// this is one merge of two sorted lists: no hashing, no index array, no per-entry
/// allocation, and never the whole cache in memory. The listing is left in that order.
fn read_known(cache_path: &Path, listing: &mut Listing, import: Import) -> Result<Known, TooLarge> {
    listing.sort_by_base();
    let mut cache = CacheReader::open(cache_path);
    let (mut used, mut stale, mut imported) = (0usize, false, 0usize);
    for i in 0..listing.entries.len() {
        let found = {
            let key = listing.base(&listing.entries[i]);
            // Entries for names no longer in cur/ are passed over (and dropped at the
            // rewrite).
            while cache.name().is_some_and(|n| n < key) {
                cache.advance();
                stale = true;
            }
            cache.name() == Some(key)
        };
        if !found {
            listing.entries[i].size = NOT_CACHED;
            if let Some(uidl) = import(listing, &listing.entries[i]) {
                if listing.set_uid(i, &uidl)? {
                    imported += 1;
                }
            }
            continue;
        }
        listing.entries[i].size = cache.size;
        if let Some(uidl) = cache.uidl() {
            listing.set_uid(i, uidl)?;
        }
        cache.advance();
        used += 1;
    }
    stale |= cache.name().is_some();
    Ok(Known {
        stale,
        used,
        imported,
    })
}

/// Sizes every message: from the cache, else by reading the file (a file that vanished gets
/// [`VANISHED`]). Sizes never come from a name: a `,W=` field may be anyone's. A message the
/// cache knows keeps the UIDL it recorded (its own otherwise); one it does not know is new
/// here and gets `import`'s UIDL, if any. UIDLs are then made unique ([`keep_unique`]) and
/// every non-default UIDL is recorded. The cache is rewritten (streamed) when it gained or
/// lost entries. The listing is left sorted by base.
pub(super) fn fill_sizes(
    cache_path: &Path,
    cur: &Dir,
    listing: &mut Listing,
    report: &mut ScanReport,
    import: Import,
) -> Result<(), TooLarge> {
    let Known {
        stale,
        used,
        imported,
    } = read_known(cache_path, listing, import)?;
    let mut buf = vec![0u8; CHUNK];
    for i in 0..listing.entries.len() {
        if listing.entries[i].size != NOT_CACHED {
            continue;
        }
        let measured = cur
            .open_regular_len(listing.name(&listing.entries[i]))
            .and_then(|(f, len)| measure_with(f, &mut buf, Some(len)));
        listing.entries[i].size = match measured {
            Ok((_, wire)) => {
                report.measured += 1;
                wire
            }
            Err(_) => VANISHED,
        };
    }
    let reverted = keep_unique(listing)?;
    report.imported = imported.saturating_sub(reverted);
    let rewrite = report.measured > 0 || stale || used < listing.entries.len() || reverted > 0;
    let written = rewrite.then(|| {
        atomic::replace_with(cache_path, 0o600, |w| {
            w.write_all(CACHE_HEADER)?;
            let mut line = Vec::with_capacity(128);
            for e in &listing.entries {
                let key = listing.base(e);
                if e.size == VANISHED || key.contains(&b'\n') {
                    continue;
                }
                line.clear();
                push_decimal(&mut line, e.size);
                if listing.is_kept(e) {
                    line.push(b',');
                    line.extend_from_slice(listing.uid(e).as_bytes());
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
    Ok(())
}

/// The UIDLs the next session will present, without measuring, moving or writing anything
/// (for `ipop3d --uidl-report`): recorded ones from the cache, `import`'s for messages it
/// does not know, made unique as a session makes them.
pub(super) fn preview_uidls(
    cache_path: &Path,
    listing: &mut Listing,
    import: Import,
) -> Result<(), TooLarge> {
    read_known(cache_path, listing, import)?;
    keep_unique(listing)?;
    Ok(())
}

/// Makes every UIDL unique: a kept UIDL (recorded or imported) that another message's UIDL
/// equals is dropped for the message's own, until none collide (own UIDLs never collide with
/// each other: [`super::scan`] renamed such names apart). How many were dropped. The listing
/// without kept UIDLs (every Maildir never migrated) costs one pass and nothing more.
pub(super) fn keep_unique(listing: &mut Listing) -> Result<usize, TooLarge> {
    let mut reverted = 0;
    loop {
        if !listing.entries.iter().any(|e| listing.is_kept(e)) {
            return Ok(reverted);
        }
        let colliding: Vec<usize> = listing
            .shared_uids()
            .iter()
            .flatten()
            .map(|&i| i as usize)
            .filter(|&i| listing.is_kept(&listing.entries[i]))
            .collect();
        if colliding.is_empty() {
            return Ok(reverted);
        }
        for i in colliding {
            listing.set_own_uid(i)?;
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

    /// The current entry's recorded UIDL, if it has one ([`Listing::set_uid`] checks it).
    pub(super) fn uidl(&self) -> Option<&[u8]> {
        let uidl = &self.line[self.uidl_at.clone()];
        (!uidl.is_empty()).then_some(uidl)
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
