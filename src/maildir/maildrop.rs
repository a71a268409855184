//! maildrop: one POP3 session's view of a Maildir, opened as the account.
//!
//! Guarantees:
//! - One session per maildrop: an exclusive, non-blocking flock on `apoptools-pop3.lock` in the
//!   Maildir, held for the life of the [`Maildrop`]; a second session gets [`Error::Busy`].
//! - At open, `new/` is moved to `cur/` ([`super::scan`]) and the messages are sized from the
//!   cache or the files, never from their names ([`super::sizes`]), then numbered in delivery
//!   order: by the Unix time that starts a qmail file name, then by name. STAT's total
//!   saturates rather than wrap.
//! - DELE only marks; [`Maildrop::commit`] (the UPDATE state) unlinks the marked files and
//!   fsyncs `cur/`. Dropping a `Maildrop` without `commit` deletes nothing.
//! - A message removed or renamed by another program after the scan is looked up again by its
//!   unique part; if it is gone, the caller gets `None` and the session goes on.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result, Unsafe};
use crate::store::atomic::Lock;
use crate::system::dir::Dir;

use super::import::{self, OldUidls, UidlCompat};
use super::listing::{Entry, Listing};
use super::sizes::SIZE_CACHE;
use super::{names, scan, sizes};

/// The session lock file in the Maildir.
pub const LOCK_FILE: &str = "apoptools-pop3.lock";
/// Read size for measuring and sending messages.
pub const CHUNK: usize = 64 * 1024;

/// One message of the maildrop, as the session sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Octets RETR sends before dot-stuffing.
    pub size: u64,
    pub deleted: bool,
    uid: &'a str,
}

impl<'a> Message<'a> {
    /// The unique-id listing's id for this message (see [`super::listing`]).
    pub fn uid(&self) -> &'a str {
        self.uid
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
    /// Messages new here that were given the old server's UIDL (`uidl_compat`).
    pub imported: usize,
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
    /// `cur/`, open: each message name is resolved in it alone.
    cur_dir: Dir,
    listing: Listing,
    pub report: ScanReport,
    _lock: Lock,
}

impl Maildrop {
    /// [`Maildrop::open_compat`] with no other server's UIDLs.
    #[cfg(test)]
    pub fn open(root: &Path) -> Result<Maildrop> {
        Maildrop::open_compat(root, UidlCompat::None)
    }

    /// Locks the Maildir at `root`, moves `new/` to `cur/` and lists the messages; messages
    /// new here get the UIDLs (and the order) `compat`'s server showed ([`super::import`]).
    /// Runs as the account (the caller has dropped privileges). The other server's list is
    /// read, never written; if it is there but cannot be used, the maildrop is not opened
    /// ([`Error::Unsafe`] or I/O): UIDLs made up instead would be recorded for good.
    pub fn open_compat(root: &Path, compat: UidlCompat) -> Result<Maildrop> {
        let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
        if !meta.is_dir() {
            return Err(Error::Unsafe {
                path: root.to_path_buf(),
                why: Unsafe::NotRegular("file, not a directory"),
            });
        }
        let lock = Lock::acquire(&root.join(LOCK_FILE), Duration::ZERO)?;
        // Before anything changes: an old list that cannot be used leaves the Maildir as it is.
        let old = import::read_old(root, compat)?;
        let cur = root.join("cur");
        let new = root.join("new");
        let cur_dir = Dir::open(&cur).map_err(|e| Error::io(&cur, e))?;
        let mut report = ScanReport {
            moved: scan::move_new(&new, &cur, &cur_dir)?,
            ..ScanReport::default()
        };
        let mut listing = scan::list_cur(&cur)?;
        sizes::fill_sizes(
            &root.join(SIZE_CACHE),
            &cur_dir,
            &mut listing,
            &mut report,
            &|l, e| imported_uidl(compat, old.as_ref(), l, e),
        )
        .map_err(|e| scan::too_large(&cur, e))?;
        // A file that vanished while being measured is not listed.
        listing.entries.retain(|e| e.size != sizes::VANISHED);
        sort(&mut listing, old.as_ref());
        Ok(Maildrop {
            cur,
            cur_dir,
            listing,
            report,
            _lock: lock,
        })
    }

    /// The UIDLs a session on the Maildir at `root` would present now, in its order, without
    /// taking the lock, moving, renaming, measuring or writing anything (`ipop3d
    /// --uidl-report`). Runs as the account.
    pub fn preview_uidls(root: &Path, compat: UidlCompat) -> Result<Vec<String>> {
        let old = import::read_old(root, compat)?;
        let cur = root.join("cur");
        let mut listing = scan::list_unchanged(&cur, &root.join("new"))?;
        sizes::preview_uidls(&root.join(SIZE_CACHE), &mut listing, &|l, e| {
            imported_uidl(compat, old.as_ref(), l, e)
        })
        .map_err(|e| scan::too_large(&cur, e))?;
        sort(&mut listing, old.as_ref());
        Ok(listing
            .entries
            .iter()
            .map(|e| listing.uid(e).to_string())
            .collect())
    }

    /// Every message, deleted or not, in order (message n is the n-th).
    pub fn messages(&self) -> impl ExactSizeIterator<Item = Message<'_>> + '_ {
        self.listing.entries.iter().map(|e| self.view(e))
    }

    fn view<'a>(&'a self, e: &Entry) -> Message<'a> {
        Message {
            size: e.size,
            deleted: e.deleted,
            uid: self.listing.uid(e),
        }
    }

    /// The message numbered `msg` (1-based), unless it does not exist or is marked deleted.
    pub fn get(&self, msg: u32) -> std::result::Result<Message<'_>, Refused> {
        let index = (msg as usize)
            .checked_sub(1)
            .ok_or(Refused::NoSuchMessage)?;
        let e = self
            .listing
            .entries
            .get(index)
            .ok_or(Refused::NoSuchMessage)?;
        if e.deleted {
            return Err(Refused::Deleted);
        }
        Ok(self.view(e))
    }

    /// Messages not marked deleted, and their total size.
    pub fn stat(&self) -> (usize, u64) {
        self.listing
            .entries
            .iter()
            .filter(|e| !e.deleted)
            .fold((0, 0u64), |(n, s), e| (n + 1, s.saturating_add(e.size)))
    }

    /// Marks message `msg` deleted.
    pub fn delete(&mut self, msg: u32) -> std::result::Result<(), Refused> {
        self.get(msg)?;
        self.listing.entries[msg as usize - 1].deleted = true;
        Ok(())
    }

    /// Unmarks every message (RSET).
    pub fn reset(&mut self) {
        self.listing
            .entries
            .iter_mut()
            .for_each(|e| e.deleted = false);
    }

    /// Opens message `msg` for reading. `Ok(None)` when its file is gone (removed by another
    /// program since the scan).
    pub fn open_message(&mut self, msg: u32) -> io::Result<Option<File>> {
        let index = msg as usize - 1;
        match self.cur_dir.open_regular(self.name(index)) {
            Ok(f) => return Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let Some(name) = self.find_renamed(index)? else {
            return Ok(None);
        };
        if self.listing.rename(index, name.as_bytes()).is_err() {
            return Ok(None);
        }
        match self.cur_dir.open_regular(self.name(index)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn name(&self, index: usize) -> &OsStr {
        self.listing.name(&self.listing.entries[index])
    }

    /// The current name of message `index` if another program renamed it (new flags).
    fn find_renamed(&self, index: usize) -> io::Result<Option<OsString>> {
        let old = self.name(index).as_bytes();
        let base = names::base_of(old);
        for entry in std::fs::read_dir(&self.cur)? {
            let name = entry?.file_name();
            if name.as_bytes() != old && names::base_of(name.as_bytes()) == base {
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
        for e in self.listing.entries.iter().filter(|e| e.deleted) {
            let name = self.listing.name(e);
            let mut result = self.cur_dir.unlink(name);
            if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                if renamed.is_none() {
                    renamed = Some(names::names_by_base(&self.cur));
                }
                result = match renamed.as_ref().and_then(|m| m.get(self.listing.base(e))) {
                    Some(name) => self.cur_dir.unlink(name),
                    None => Ok(()),
                };
            }
            match result {
                Ok(()) => report.deleted += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => report.deleted += 1,
                Err(_) => report.failed += 1,
            }
        }
        if report.deleted > 0 && self.cur_dir.sync().is_err() {
            report.failed += report.deleted;
            report.deleted = 0;
        }
        report
    }
}

/// The UIDL `compat`'s server showed for a message new here, if any and if it differs from
/// the message's own (whether RFC 1939 allows it, [`Listing::set_uid`] decides).
fn imported_uidl(
    compat: UidlCompat,
    old: Option<&OldUidls>,
    listing: &Listing,
    e: &Entry,
) -> Option<Box<[u8]>> {
    let uidl = match compat {
        UidlCompat::None => return None,
        UidlCompat::Qmail => import::qmail_uidl(listing.name(e).as_bytes())?,
        UidlCompat::Dovecot | UidlCompat::Courier => old?.get(listing.base(e))?.0,
    };
    (uidl != listing.uid(e).as_bytes()).then(|| uidl.into())
}

/// Numbers the messages: those the old server's list knows first, in its order; then the rest
/// in delivery order (the Unix time a qmail file name starts with, then the name).
fn sort(listing: &mut Listing, old: Option<&OldUidls>) {
    const OURS: u64 = 1 << 63;
    if let Some(old) = old {
        for i in 0..listing.entries.len() {
            let e = listing.entries[i];
            listing.entries[i].key = match old.get(listing.base(&e)) {
                Some((_, key)) => key.min(OURS - 1),
                None => OURS | e.key.min(OURS - 1),
            };
        }
    }
    listing.sort_by_key();
}
