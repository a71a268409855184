//! scan: moving `new/` to `cur/`, and listing `cur/`.
//!
//! - Every message in `new/` moves to `cur/` (link, fsync `cur/`, then unlink: never over an
//!   existing name, never lost in a crash) as `<unique>:2,<flags>`: the unique part is never
//!   changed, so other readers of the Maildir see the same message.
//! - The listing skips dot files and directories and gives every message its own UIDL
//!   ([`separate_duplicates`]); sizes are left to [`super::sizes`].
//! - A message file is opened without blocking and only if it is a regular file
//!   ([`Dir::open_regular`]), so a FIFO or device planted in the Maildir cannot hang the session.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::system::dir::Dir;

use super::listing::{Listing, TooLarge};
use super::names::NameFields;

/// Lists the messages in `cur/`, unsized (sizes come from [`super::sizes`], never from a
/// name). Two messages whose unique parts collide (a copy left in `new/` beside its moved
/// self, names with an empty unique part) would share a UIDL: all but the oldest of each such
/// group get a unique part of their own first (see [`separate_duplicates`]).
pub(super) fn list_cur(cur: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    each_message_name(cur, |name| listing.push(name.as_bytes()))?;
    separate_duplicates(cur, &mut listing).map_err(|e| too_large(cur, e))?;
    Ok(listing)
}

/// The error of a listing whose names pass the arena's 4 GiB.
pub(super) fn too_large(dir: &Path, _: TooLarge) -> Error {
    Error::io(
        dir,
        io::Error::other("the maildrop's file names pass 4 GiB"),
    )
}

/// Calls `found` with the name of every message file in `dir`: not a dot file, not a
/// directory.
fn each_message_name(
    dir: &Path,
    mut found: impl FnMut(OsString) -> std::result::Result<(), TooLarge>,
) -> Result<()> {
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
        found(name).map_err(|e| too_large(dir, e))?;
    }
    Ok(())
}

/// Gives every message of a group that shares one UIDL but the one whose inode changed first
/// (the one there before: a link into `cur/` changes the inode's ctime) a unique part of its
/// own, `<unique>.dup<inode>` (`dup<inode>` when the unique part was empty), keeping the rest
/// of its name. Such a Maildir breaks the unique-name rule every reader relies on; Dovecot
/// renames in the same case. Once renamed, the names and so the UIDLs are stable. A rename
/// that fails leaves the message out of this session's listing rather than list it twice.
pub(super) fn separate_duplicates(
    cur: &Path,
    listing: &mut Listing,
) -> std::result::Result<(), TooLarge> {
    let groups = listing.shared_uids();
    let mut drop = Vec::new();
    for g in groups {
        let mut group: Vec<(i64, i64, u64, usize)> = g
            .iter()
            .filter_map(|&i| {
                let i = i as usize;
                let meta =
                    std::fs::symlink_metadata(cur.join(listing.name(&listing.entries[i]))).ok()?;
                Some((meta.ctime(), meta.ctime_nsec(), meta.ino(), i))
            })
            .collect();
        // Oldest change first; for links to one inode, the smaller name first.
        group.sort_unstable_by(|a, b| {
            (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)).then_with(|| {
                let name = |i: usize| listing.name(&listing.entries[i]);
                name(a.3).cmp(name(b.3))
            })
        });
        let mut seen_inodes = vec![group.first().map_or(0, |g| g.2)];
        for &(_, _, ino, i) in group.iter().skip(1) {
            let name = listing.name(&listing.entries[i]).to_os_string();
            if seen_inodes.contains(&ino) {
                // Two links to one file (a move into cur/ under a new name, interrupted
                // before new/ was unlinked, by an earlier version): one message, one name.
                let _ = std::fs::remove_file(cur.join(&name));
                drop.push(i);
                continue;
            }
            seen_inodes.push(ino);
            match rename_apart(cur, &name, ino) {
                Some(to) => listing.rename(i, to.as_bytes())?,
                None => drop.push(i),
            }
        }
    }
    drop.sort_unstable();
    for i in drop.into_iter().rev() {
        listing.entries.swap_remove(i);
    }
    Ok(())
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

/// Moves every message in `new/` to `cur/` (see [`cur_name`]); returns how many. Every name is
/// resolved in its directory alone ([`Dir`]): a 100,000-message `new/` is 200,000 links and
/// unlinks, and walking the whole path for each was a tenth of the move.
pub(super) fn move_new(new: &Path, cur: &Path, cur_dir: &Dir) -> Result<usize> {
    let new_dir = Dir::open(new).map_err(|e| Error::io(new, e))?;
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
        // Anything but a regular file (the directory entry's type; lstat where the file
        // system does not say) stays where it is and is not listed; the rest of the maildrop
        // is still served. What is opened later is checked again on its handle.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let to = cur_name(name.as_bytes());
        match new_dir.link_to(&name, cur_dir, &to) {
            Ok(()) => linked.push(name),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // An earlier session linked it and died before the unlink: same file, so
                // finish the move; a different file of the same name stays in new/.
                let same = match (new_dir.entry_status(&name), cur_dir.entry_status(&to)) {
                    (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
                    _ => false,
                };
                if same {
                    let _ = new_dir.unlink(&name);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            // File systems without hard links: rename, but never over an existing name.
            Err(_) if cur_dir.entry_status(&to).is_err() => {
                match std::fs::rename(new.join(&name), cur.join(&to)) {
                    Ok(()) => renamed = true,
                    Err(_) => continue,
                }
            }
            Err(_) => continue,
        }
        moved += 1;
        if linked.len() >= MOVE_BATCH {
            finish_moves(cur_dir, &new_dir, &mut linked).map_err(|e| Error::io(cur, e))?;
        }
    }
    if renamed && linked.is_empty() {
        cur_dir.sync().map_err(|e| Error::io(cur, e))?;
    }
    finish_moves(cur_dir, &new_dir, &mut linked).map_err(|e| Error::io(cur, e))?;
    Ok(moved)
}

/// Lists what a session would list, without moving, renaming or measuring anything: `cur/`,
/// and `new/` under the names its messages would get in `cur/` (for `ipop3d --uidl-report`).
/// Names that collide are listed as they are (a session renames all but one apart first).
pub(super) fn list_unchanged(cur: &Path, new: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    each_message_name(cur, |name| listing.push(name.as_bytes()))?;
    each_message_name(new, |name| {
        listing.push(cur_name(name.as_bytes()).as_bytes())
    })?;
    Ok(listing)
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
fn finish_moves(cur: &Dir, new: &Dir, linked: &mut Vec<OsString>) -> io::Result<()> {
    if linked.is_empty() {
        return Ok(());
    }
    cur.sync()?;
    for name in linked.drain(..) {
        // A failed unlink only leaves a duplicate the next session removes.
        let _ = new.unlink(&name);
    }
    Ok(())
}
