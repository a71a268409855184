//! scan: moving `new/` to `cur/`, and listing `cur/`.
//!
//! - Every message in `new/` moves to `cur/` (link, fsync `cur/`, then unlink: never over an
//!   existing name, never lost in a crash) as `<unique>:2,<flags>`: the unique part is never
//!   changed, so other readers of the Maildir see the same message.
//! - The listing skips dot files and directories and gives every message its own UIDL
//!   ([`separate_duplicates`]); sizes are left to [`super::sizes`].
//! - A message file is opened without blocking and only if it is a regular file, so a FIFO or
//!   device planted in the Maildir cannot hang the session.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::atomic;

use super::maildrop::{Message, Uid};
use super::names::{delivery_time, uid_is_name, uidl, NameFields};

/// Lists the messages in `cur/`, unsized (sizes come from [`super::sizes`], never from a
/// name). Two messages whose unique parts collide (a copy left in `new/` beside its moved
/// self, names with an empty unique part) would share a UIDL: all but the oldest of each such
/// group get a unique part of their own first (see [`separate_duplicates`]).
pub(super) fn list_cur(cur: &Path) -> Result<Vec<Message>> {
    let mut messages = Vec::new();
    each_message_name(cur, |name| messages.push(message(name)))?;
    separate_duplicates(cur, &mut messages);
    Ok(messages)
}

/// Calls `found` with the name of every message file in `dir`: not a dot file, not a
/// directory.
fn each_message_name(dir: &Path, mut found: impl FnMut(OsString)) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if name.as_bytes().starts_with(b".") {
            continue;
        }
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(true) {
            continue;
        }
        found(name);
    }
    Ok(())
}

/// The listing entry of the file `name` in `cur/`, unsized.
pub(super) fn message(name: OsString) -> Message {
    Message {
        delivered: delivery_time(&name),
        uid: own_uid(&name),
        name: name.into_boxed_os_str(),
        size: 0,
        deleted: false,
    }
}

/// The UIDL a message's name gives it (see [`super::names::uidl`]).
pub(super) fn own_uid(name: &OsStr) -> Uid {
    let fields = NameFields::parse(name.as_bytes());
    match u8::try_from(fields.unique.len()) {
        Ok(n) if uid_is_name(fields.unique) => Uid::Prefix(n),
        _ => Uid::Text(uidl(fields.unique).into_boxed_str()),
    }
}

/// Gives every message of a group that shares one UIDL but the one whose inode changed first
/// (the one there before: a link into `cur/` changes the inode's ctime) a unique part of its
/// own, `<unique>.dup<inode>` (`dup<inode>` when the unique part was empty), keeping the rest
/// of its name. Such a Maildir breaks the unique-name rule every reader relies on; Dovecot
/// renames in the same case. Once renamed, the names and so the UIDLs are stable. A rename
/// that fails leaves the message out of this session's listing rather than list it twice.
pub(super) fn separate_duplicates(cur: &Path, messages: &mut Vec<Message>) {
    // The usual case, no collision, costs one pass.
    let mut seen = std::collections::HashSet::with_capacity(messages.len());
    if messages.iter().all(|m| seen.insert(m.uid())) {
        return;
    }
    drop(seen);
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_unstable_by(|&a, &b| messages[a].uid().cmp(messages[b].uid()));
    let mut drop = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && messages[order[end]].uid() == messages[order[start]].uid() {
            end += 1;
        }
        if end - start > 1 {
            let mut group: Vec<(i64, i64, u64, usize)> = order[start..end]
                .iter()
                .filter_map(|&i| {
                    let meta = std::fs::symlink_metadata(cur.join(&*messages[i].name)).ok()?;
                    Some((meta.ctime(), meta.ctime_nsec(), meta.ino(), i))
                })
                .collect();
            // Oldest change first; for links to one inode, the smaller name first.
            group.sort_unstable_by(|a, b| {
                (a.0, a.1, a.2)
                    .cmp(&(b.0, b.1, b.2))
                    .then_with(|| messages[a.3].name.cmp(&messages[b.3].name))
            });
            let mut seen_inodes = vec![group.first().map_or(0, |g| g.2)];
            for &(_, _, ino, i) in group.iter().skip(1) {
                if seen_inodes.contains(&ino) {
                    // Two links to one file (a move into cur/ under a new name, interrupted
                    // before new/ was unlinked, by an earlier version): one message, one name.
                    let _ = std::fs::remove_file(cur.join(&*messages[i].name));
                    drop.push(i);
                    continue;
                }
                seen_inodes.push(ino);
                match rename_apart(cur, &messages[i].name, ino) {
                    Some(name) => messages[i] = message(name),
                    None => drop.push(i),
                }
            }
        }
        start = end;
    }
    drop.sort_unstable();
    for i in drop.into_iter().rev() {
        messages.swap_remove(i);
    }
}

/// Renames `cur/name` to the same name with `.dup<ino>` after its unique part; the new name.
fn rename_apart(cur: &Path, name: &OsStr, ino: u64) -> Option<OsString> {
    let bytes = name.as_bytes();
    let unique_len = NameFields::parse(bytes).unique.len();
    let mut to = bytes[..unique_len].to_vec();
    if !to.is_empty() {
        to.push(b'.');
    }
    to.extend_from_slice(format!("dup{ino}").as_bytes());
    to.extend_from_slice(&bytes[unique_len..]);
    let to = OsString::from_vec(to);
    let target = cur.join(&to);
    if to.len() > 255 || target.exists() {
        return None;
    }
    std::fs::rename(cur.join(name), &target).ok()?;
    Some(to)
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

/// Moves every message in `new/` to `cur/` (see [`cur_name`]); returns how many.
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
        drop(file);
        let to = cur.join(cur_name(name.as_bytes()));
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

/// Lists what a session would list, without moving, renaming or measuring anything: `cur/`,
/// and `new/` under the names its messages would get in `cur/` (for `ipop3d --uidl-report`).
/// Names that collide are listed as they are (a session renames all but one apart first).
pub(super) fn list_unchanged(cur: &Path, new: &Path) -> Result<Vec<Message>> {
    let mut messages = Vec::new();
    each_message_name(cur, |name| messages.push(message(name)))?;
    each_message_name(new, |name| {
        messages.push(message(cur_name(name.as_bytes())))
    })?;
    Ok(messages)
}

/// The name a message in `new/` gets in `cur/`: its unique part (everything before `:`) kept
/// whole, as the Maildir specification asks and other readers (Dovecot, Courier, mutt) key
/// on, then `:2,` and any flags it had. A name with no room left for `:2,` within 255 bytes
/// moves as it is.
fn cur_name(name: &[u8]) -> OsString {
    let (base, info) = match name.iter().position(|&b| b == b':') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (name, &b""[..]),
    };
    let flags = info.strip_prefix(b"2,").unwrap_or(b"");
    let mut to = base.to_vec();
    if base.len() + 3 + flags.len() <= 255 {
        to.extend_from_slice(b":2,");
        to.extend_from_slice(flags);
    }
    OsString::from_vec(to)
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
