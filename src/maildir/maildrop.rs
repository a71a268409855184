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
use crate::store::atomic::{self, Lock};

use super::import::{self, OldUidls, UidlCompat};
use super::sizes::SIZE_CACHE;
use super::{names, scan, sizes};

/// The session lock file in the Maildir.
pub const LOCK_FILE: &str = "apoptools-pop3.lock";
/// Read size for measuring and sending messages.
pub const CHUNK: usize = 64 * 1024;

/// One message of the maildrop.
#[derive(Debug, Clone)]
pub struct Message {
    /// The file name in `cur/` (updated if another program renames it).
    pub(super) name: Box<OsStr>,
    /// The UIDL: the first `n` bytes of the name (the unique part, which a rename keeps), or a
    /// digest. Kept this way a 100,000-message listing needs no second string per message.
    pub(super) uid: Uid,
    /// Octets RETR sends before dot-stuffing.
    pub size: u64,
    pub deleted: bool,
    /// The delivery time the name starts with (sort key).
    pub(super) delivered: u64,
}

/// 16 bytes: a 100,000-message listing holds one per message.
#[derive(Debug, Clone)]
pub(super) enum Uid {
    /// The first `n` bytes of the name.
    Prefix(u8),
    /// Either the hex MD5 of a unique part that cannot be its own UIDL, or a kept UIDL that is
    /// not the name's at all: imported from another server's list, or recorded in the size
    /// cache when it was (always 1-70 characters of 0x21-0x7E). [`Message::is_kept`] tells
    /// them apart.
    Text(Box<str>),
}

impl Message {
    /// The unique-id listing's id for this message (see the module comment).
    pub fn uid(&self) -> &str {
        match &self.uid {
            Uid::Prefix(n) => {
                let bytes = self.name.as_bytes();
                std::str::from_utf8(&bytes[..usize::from(*n).min(bytes.len())]).unwrap_or("")
            }
            Uid::Text(t) => t,
        }
    }

    /// Whether the UIDL is a kept one (see [`Uid::Text`]), not the one the name gives.
    pub(super) fn is_kept(&self) -> bool {
        let Uid::Text(text) = &self.uid else {
            return false;
        };
        let unique = names::NameFields::parse(self.name.as_bytes()).unique;
        names::uid_is_name(unique) || names::uidl(unique) != **text
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
    messages: Vec<Message>,
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
        let mut report = ScanReport {
            moved: scan::move_new(&new, &cur)?,
            ..ScanReport::default()
        };
        let mut messages = scan::list_cur(&cur)?;
        sizes::fill_sizes(
            &root.join(SIZE_CACHE),
            &cur,
            &mut messages,
            &mut report,
            &|m| imported_uidl(compat, old.as_ref(), m),
        );
        // A file that vanished while being measured is not listed.
        messages.retain(|m| m.size != sizes::VANISHED);
        sort(&mut messages, old.as_ref());
        Ok(Maildrop {
            cur,
            messages,
            report,
            _lock: lock,
        })
    }

    /// The UIDLs a session on the Maildir at `root` would present now, in its order, without
    /// taking the lock, moving, renaming, measuring or writing anything (`ipop3d
    /// --uidl-report`). Runs as the account.
    pub fn preview_uidls(root: &Path, compat: UidlCompat) -> Result<Vec<String>> {
        let old = import::read_old(root, compat)?;
        let mut messages = scan::list_unchanged(&root.join("cur"), &root.join("new"))?;
        sizes::preview_uidls(&root.join(SIZE_CACHE), &mut messages, &|m| {
            imported_uidl(compat, old.as_ref(), m)
        });
        sort(&mut messages, old.as_ref());
        Ok(messages.iter().map(|m| m.uid().to_string()).collect())
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
            .fold((0, 0u64), |(n, s), m| (n + 1, s.saturating_add(m.size)))
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
        match scan::open_regular(&path) {
            Ok(f) => return Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let Some(name) = self.find_renamed(index)? else {
            return Ok(None);
        };
        self.messages[index].name = name.into_boxed_os_str();
        match scan::open_regular(&self.cur.join(&*self.messages[index].name)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The current name of message `index` if another program renamed it (new flags).
    fn find_renamed(&self, index: usize) -> io::Result<Option<OsString>> {
        let old = self.messages[index].name.as_bytes();
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
        for index in 0..self.messages.len() {
            if !self.messages[index].deleted {
                continue;
            }
            let mut result = std::fs::remove_file(self.cur.join(&*self.messages[index].name));
            if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                if renamed.is_none() {
                    renamed = Some(names::names_by_base(&self.cur));
                }
                let base = names::base_of(self.messages[index].name.as_bytes());
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

/// The UIDL `compat`'s server showed for a message new here, if any and if it differs from
/// the message's own.
fn imported_uidl(compat: UidlCompat, old: Option<&OldUidls>, m: &Message) -> Option<Box<str>> {
    let base = names::base_of(m.name.as_bytes());
    let uidl = match compat {
        UidlCompat::None => return None,
        UidlCompat::Qmail => import::qmail_uidl(m.name.as_bytes())?,
        UidlCompat::Dovecot | UidlCompat::Courier => old?.get(base)?.0,
    };
    if !names::uid_is_name(uidl) || uidl == m.uid().as_bytes() {
        return None;
    }
    std::str::from_utf8(uidl).ok().map(Into::into)
}

/// Numbers the messages: those the old server's list knows first, in its order; then the rest
/// in delivery order (the Unix time a qmail file name starts with, then the name).
fn sort(messages: &mut [Message], old: Option<&OldUidls>) {
    const OURS: u64 = 1 << 63;
    if let Some(old) = old {
        for m in messages.iter_mut() {
            m.delivered = match old.get(names::base_of(m.name.as_bytes())) {
                Some((_, key)) => key.min(OURS - 1),
                None => OURS | m.delivered.min(OURS - 1),
            };
        }
    }
    messages.sort_unstable_by(|a, b| (a.delivered, &a.name).cmp(&(b.delivered, &b.name)));
}
