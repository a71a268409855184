//! maildir: one POP3 session's view of a Maildir (the "maildrop"), opened as the account.
//!
//! - [`maildrop`]: the open, locked maildrop a session works on, and its UPDATE.
//! - [`names`]: what a file name says (unique part, sizes, flags) and the UIDL made from it.
//! - [`scan`]: moving `new/` to `cur/` and listing `cur/`.
//! - [`listing`]: the session's messages, 24 bytes each, their names in one arena.
//! - [`sizes`]: the RETR size of a message and the cache of sizes.
//! - [`dotqmail`]: which Maildir an extension address delivers to.
//! - [`import`]: the UIDLs (and order) Dovecot and Courier showed, read from their own files
//!   (never written), and qmail-pop3d's, from the names (`uidl_compat`).
//!
//! Guarantees:
//! - One session per maildrop: an exclusive, non-blocking flock on `apoptools-pop3.lock` in the
//!   Maildir, held for the life of the [`Maildrop`]; a second session gets
//!   [`crate::error::Error::Busy`].
//! - At open, every message in `new/` moves to `cur/` (link, fsync `cur/`, then unlink: never
//!   over an existing name, never lost in a crash) as `<unique>:2,<flags>`: the unique part is
//!   kept whole, so Dovecot, Courier and mutt sharing the Maildir see the same message. Sizes
//!   are measured once and remembered in `apoptools-sizes` (replaced atomically, keyed by the
//!   name before `:`), so later scans need only `readdir`; a size in a name is never believed.
//! - Every message has its own UIDL: messages whose unique parts collide are renamed apart
//!   once (`<unique>.dup<inode>`), and keep those names.
//! - Messages are numbered in delivery order: by the Unix time that starts a qmail file name,
//!   then by name.
//! - The unique-id (UIDL) of a message is the unique part of its file name (before `:` and
//!   before any `,S=`/`,W=` field, which earlier versions added) when that is 1-70 characters
//!   of 0x21-0x7E, else the hex MD5 of it; it never changes when flags are added to the name,
//!   and messages renamed by earlier versions keep theirs.
//! - With `uidl_compat`, a message this ipop3d has not served before takes the UIDL the old
//!   server presented ([`import`]), and messages the old server listed come first, in its
//!   order. Every UIDL presented that is not the name's own is recorded in `apoptools-sizes`
//!   at that session, so it never changes afterwards whatever `uidl_compat` says; UIDLs stay
//!   unique and within RFC 1939's characters. An old server's file that is there but unusable
//!   refuses the maildrop before anything in it changes.
//! - A size is exactly the number of octets RETR sends for the message before dot-stuffing: LF
//!   becomes CRLF (an existing CRLF stays two octets) and a message not ending in LF gets a
//!   final CRLF.
//! - DELE only marks; [`Maildrop::commit`] (the UPDATE state) unlinks the marked files and
//!   fsyncs `cur/`. Dropping a `Maildrop` without `commit` deletes nothing.
//! - A message removed or renamed by another program after the scan is looked up again by its
//!   unique part; if it is gone, the caller gets `None` and the session goes on.

pub mod dotqmail;
pub mod import;
mod listing;
pub mod maildrop;
pub mod names;
pub mod scan;
pub mod sizes;

pub use dotqmail::locate;
pub use maildrop::{Maildrop, Refused, CHUNK};
#[cfg(test)]
pub use sizes::measure;

#[cfg(test)]
mod tests;
