//! scan: moving `new/` to `cur/`, and listing `cur/`.
//!
//! - Every message in `new/` moves to `cur/` (link, fsync `cur/`, then unlink: never over an
//!   existing name, never lost in a crash) as `<unique>,S=<file size>,W=<wire size>:2,<flags>`,
//!   so later scans need only `readdir`: no stat, no read.
//! - The listing skips dot files and directories; a message whose name has no `W=` is left for
//!   [`super::sizes`] to size.
//! - A message file is opened without blocking and only if it is a regular file, so a FIFO or
//!   device planted in the Maildir cannot hang the session.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::atomic;

use super::maildrop::{Message, Uid};
use super::names::{delivery_time, uid_is_name, uidl, NameFields};
use super::sizes::measure;

/// Lists the messages in `cur/`, and the indices of those whose size the name does not give.
pub(super) fn list_cur(cur: &Path) -> Result<(Vec<Message>, Vec<usize>)> {
    let mut messages = Vec::new();
    // Messages whose names carry no `W=`: sized from the cache or measured, below.
    let mut unmeasured: Vec<usize> = Vec::new();
    let entries = std::fs::read_dir(cur).map_err(|e| Error::io(cur, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(cur, e))?;
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
    Ok((messages, unmeasured))
}

/// Opens a message file for reading. A FIFO or device planted in the Maildir must not hang
/// the session, so the open does not block and anything but a regular file counts as gone
/// (`NotFound`).
pub(super) fn open_regular(path: &Path) -> io::Result<File> {
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
pub(super) fn move_new(new: &Path, cur: &Path) -> Result<usize> {
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
pub(super) const MOVE_BATCH: usize = 4096;

/// Makes the new names durable, then removes the old ones: a crash can leave a message in
/// both places (the next session finishes the move) but never in neither.
pub(super) fn finish_moves(cur: &Path, linked: &mut Vec<PathBuf>) -> Result<()> {
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
