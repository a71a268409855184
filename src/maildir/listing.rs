//! listing: the messages of one session, held compactly.
//!
//! - Every name lives in one byte arena; an [`Entry`] is 24 bytes (size, sort key, where its
//!   name is, the length of its base and its UIDL). A 100,000-message listing is those
//!   entries and the names' own bytes: no allocation per message, no pointer per name.
//! - A message's UIDL is either the first bytes of its name (the unique part, which a rename
//!   keeps) or a text of at most 70 bytes stored in the arena right after the name: a digest,
//!   or a kept UIDL that is not the name's at all ([`Listing::is_kept`] tells them apart).
//! - Changing a name or a UIDL writes the new bytes at the arena's end; entries never share
//!   bytes, so no change to one message can alter another's name or UIDL.
//! - The arena is addressed by `u32`: a listing whose names would pass 4 GiB is refused
//!   ([`Listing::push`] says so), never wrapped.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::names::{self, uid_is_name, NameFields};

/// One message of the listing (see the module comment).
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// Octets RETR sends before dot-stuffing.
    pub(super) size: u64,
    /// The sort key: the delivery time the name starts with, or the old server's order.
    pub(super) key: u64,
    /// Where the name starts in the arena.
    at: u32,
    /// The name's length (at most 255, as every name in a directory).
    len: u8,
    /// The length of the name's base (before `:`).
    base: u8,
    /// [`TEXT`] clear: the UIDL is the name's first `uid` bytes; set: it is the `uid & !TEXT`
    /// bytes after the name.
    uid: u8,
    pub(super) deleted: bool,
}

/// The flag of [`Entry::uid`] saying the UIDL is a text of its own (at most 70 < 128 bytes).
const TEXT: u8 = 0x80;

/// The messages of a session and their names (see the module comment).
#[derive(Debug, Default)]
pub(super) struct Listing {
    names: Vec<u8>,
    pub(super) entries: Vec<Entry>,
}

/// A listing whose names no longer fit the arena's `u32` offsets.
#[derive(Debug)]
pub(super) struct TooLarge;

impl Listing {
    /// Adds the file `name`, unsized, with the UIDL its name gives it ([`names::uidl`]).
    pub(super) fn push(&mut self, name: &[u8]) -> Result<(), TooLarge> {
        let entry = self.store(name)?;
        let mut e = Entry {
            size: 0,
            key: names::delivery_time(OsStr::from_bytes(name)),
            deleted: false,
            ..entry
        };
        self.give_own_uid(&mut e)?;
        self.entries.push(e);
        Ok(())
    }

    /// The name of `e` (as it is in `cur/`).
    pub(super) fn name(&self, e: &Entry) -> &OsStr {
        OsStr::from_bytes(self.name_bytes(e))
    }

    fn name_bytes(&self, e: &Entry) -> &[u8] {
        &self.names[e.at as usize..][..usize::from(e.len)]
    }

    /// The base of `e`'s name: the part before `:`, which flag changes keep.
    pub(super) fn base(&self, e: &Entry) -> &[u8] {
        &self.name_bytes(e)[..usize::from(e.base)]
    }

    /// The unique-id listing's id for `e`.
    pub(super) fn uid(&self, e: &Entry) -> &str {
        // Both kinds are ASCII 0x21-0x7E (checked when stored).
        std::str::from_utf8(self.uid_bytes(e)).unwrap_or("")
    }

    /// [`Listing::uid`] as bytes, for comparing (no UTF-8 check each time).
    fn uid_bytes(&self, e: &Entry) -> &[u8] {
        if e.uid & TEXT == 0 {
            &self.name_bytes(e)[..usize::from(e.uid)]
        } else {
            let at = e.at as usize + usize::from(e.len);
            &self.names[at..][..usize::from(e.uid & !TEXT)]
        }
    }

    /// Whether `e`'s UIDL is a kept one, not the one its name gives.
    pub(super) fn is_kept(&self, e: &Entry) -> bool {
        if e.uid & TEXT == 0 {
            return false;
        }
        let unique = NameFields::parse(self.name_bytes(e)).unique;
        uid_is_name(unique) || names::uidl(unique).as_bytes() != self.uid_bytes(e)
    }

    /// Gives entry `i` the UIDL `text` if it is one RFC 1939 allows (1-70 characters of
    /// 0x21-0x7E); whether it was taken. The one check of every recorded or imported UIDL.
    pub(super) fn set_uid(&mut self, i: usize, text: &[u8]) -> Result<bool, TooLarge> {
        if !uid_is_name(text) {
            return Ok(false);
        }
        let mut e = self.entries[i];
        e.at = self.store_again(&e, text)?;
        e.uid = TEXT | text.len() as u8;
        self.entries[i] = e;
        Ok(true)
    }

    /// Gives entry `i` back the UIDL its name gives.
    pub(super) fn set_own_uid(&mut self, i: usize) -> Result<(), TooLarge> {
        let mut e = self.entries[i];
        self.give_own_uid(&mut e)?;
        self.entries[i] = e;
        Ok(())
    }

    /// Entry `i` is now called `name` (renamed by another program, or apart from a duplicate),
    /// with the UIDL and delivery time that name gives it; size and mark stay.
    pub(super) fn rename(&mut self, i: usize, name: &[u8]) -> Result<(), TooLarge> {
        let stored = self.store(name)?;
        let mut e = Entry {
            at: stored.at,
            len: stored.len,
            base: stored.base,
            key: names::delivery_time(OsStr::from_bytes(name)),
            ..self.entries[i]
        };
        self.give_own_uid(&mut e)?;
        self.entries[i] = e;
        Ok(())
    }

    /// Sets `e.uid` to its name's: the unique part, or its digest stored after the name.
    fn give_own_uid(&mut self, e: &mut Entry) -> Result<(), TooLarge> {
        let unique = NameFields::parse(self.name_bytes(e)).unique;
        if uid_is_name(unique) {
            e.uid = unique.len() as u8;
            return Ok(());
        }
        let digest = names::uidl(unique);
        e.at = self.store_again(e, digest.as_bytes())?;
        e.uid = TEXT | digest.len() as u8;
        Ok(())
    }

    /// Copies `e`'s name to the arena's end with `text` after it; where the copy starts.
    fn store_again(&mut self, e: &Entry, text: &[u8]) -> Result<u32, TooLarge> {
        let at = u32::try_from(self.names.len()).map_err(|_| TooLarge)?;
        u32::try_from(self.names.len() + usize::from(e.len) + text.len()).map_err(|_| TooLarge)?;
        let from = e.at as usize;
        self.names
            .extend_from_within(from..from + usize::from(e.len));
        self.names.extend_from_slice(text);
        Ok(at)
    }

    /// Writes `name` at the arena's end.
    fn store(&mut self, name: &[u8]) -> Result<Entry, TooLarge> {
        let len = u8::try_from(name.len()).map_err(|_| TooLarge)?;
        let at = u32::try_from(self.names.len()).map_err(|_| TooLarge)?;
        u32::try_from(self.names.len() + name.len()).map_err(|_| TooLarge)?;
        self.names.extend_from_slice(name);
        Ok(Entry {
            size: 0,
            key: 0,
            at,
            len,
            base: names::base_of(name).len() as u8,
            uid: 0,
            deleted: false,
        })
    }

    /// Orders the entries by their names' bases (the size cache's order).
    pub(super) fn sort_by_base(&mut self) {
        let Listing { names, entries } = self;
        let base = |e: &Entry| &names[e.at as usize..][..usize::from(e.base)];
        entries.sort_unstable_by(|a, b| base(a).cmp(base(b)));
    }

    /// Orders the entries by key, then name: the session's numbering.
    pub(super) fn sort_by_key(&mut self) {
        let Listing { names, entries } = self;
        let name = |e: &Entry| &names[e.at as usize..][..usize::from(e.len)];
        entries.sort_unstable_by(|a, b| a.key.cmp(&b.key).then_with(|| name(a).cmp(name(b))));
    }

    /// The indexes of every set of two or more entries sharing one UIDL (usually none). When
    /// every UIDL is its name's whole base (ipop3d's and qmail's names), equal UIDLs are
    /// equal bases, side by side once the entries are in base order, where the size cache's
    /// merge wants them anyway: one pass, no sort of its own. Otherwise (`,S=` fields, digests,
    /// kept UIDLs) one sort of the indexes (4 bytes an entry). Never a hash table of every
    /// UIDL.
    pub(super) fn shared_uids(&mut self) -> Vec<Vec<u32>> {
        if self
            .entries
            .iter()
            .all(|e| e.uid & TEXT == 0 && e.uid == e.base)
        {
            self.sort_by_base();
            return self.runs((0..self.entries.len() as u32).collect(), |l, e| l.base(e));
        }
        let mut order: Vec<u32> = (0..self.entries.len() as u32).collect();
        let uid = |i: u32| self.uid_bytes(&self.entries[i as usize]);
        order.sort_unstable_by(|&a, &b| uid(a).cmp(uid(b)));
        self.runs(order, Listing::uid_bytes)
    }

    /// The runs of two or more indexes in `order` whose entries have equal `key`s.
    fn runs(
        &self,
        order: Vec<u32>,
        key: impl for<'a> Fn(&'a Listing, &Entry) -> &'a [u8],
    ) -> Vec<Vec<u32>> {
        let key = |i: u32| key(self, &self.entries[i as usize]);
        let mut groups = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let first = key(order[start]);
            let end = start
                + order[start..]
                    .iter()
                    .take_while(|&&i| key(i) == first)
                    .count();
            if end - start > 1 {
                groups.push(order[start..end].to_vec());
            }
            start = end;
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn names_and_uidls_are_each_entrys_own() {
        let mut l = Listing::default();
        l.push(b"1700000000.1.h:2,S").unwrap();
        l.push(b"1700000001.2.h,S=10:2,").unwrap();
        l.push(b"1700000002 odd").unwrap();
        let e: Vec<Entry> = l.entries.clone();
        assert_eq!(l.name(&e[0]), "1700000000.1.h:2,S");
        assert_eq!(l.base(&e[0]), b"1700000000.1.h");
        assert_eq!(l.uid(&e[0]), "1700000000.1.h");
        assert_eq!(l.uid(&e[1]), "1700000001.2.h");
        assert_eq!(l.uid(&e[2]), names::uidl(b"1700000002 odd"));
        assert_eq!(e[0].key, 1_700_000_000);
        assert!(!l.is_kept(&e[0]) && !l.is_kept(&e[2]));

        assert!(l.set_uid(0, b"UID7-99").unwrap());
        assert_eq!(l.uid(&l.entries[0]), "UID7-99");
        assert!(l.is_kept(&l.entries[0]));
        assert_eq!(l.name(&l.entries[0]), "1700000000.1.h:2,S");
        // Not a UIDL RFC 1939 allows: not taken.
        assert!(!l.set_uid(1, b"has space").unwrap());
        assert_eq!(l.uid(&l.entries[1]), "1700000001.2.h");

        l.entries[0].deleted = true;
        l.rename(0, b"1700000000.1.h:2,ST").unwrap();
        let e0 = l.entries[0];
        assert_eq!(l.name(&e0), "1700000000.1.h:2,ST");
        assert_eq!(l.uid(&e0), "1700000000.1.h");
        assert!(e0.deleted);
        assert!(l.set_uid(0, b"UID7-99").unwrap());
        l.set_own_uid(0).unwrap();
        assert_eq!(l.uid(&l.entries[0]), "1700000000.1.h");
        // The others never moved.
        assert_eq!(l.name(&l.entries[1]), "1700000001.2.h,S=10:2,");
        assert_eq!(l.uid(&l.entries[2]), names::uidl(b"1700000002 odd"));
    }

    #[test]
    fn shared_uidls_are_found_in_groups() {
        let mut l = Listing::default();
        for n in ["b:2,", "a:2,", "b,S=3:2,S", "c", "a", "b:2,T"] {
            l.push(n.as_bytes()).unwrap();
        }
        let names = |l: &Listing, groups: Vec<Vec<u32>>| {
            let mut named: Vec<Vec<String>> = groups
                .into_iter()
                .map(|g| {
                    let mut g: Vec<String> = g
                        .iter()
                        .map(|&i| l.name(&l.entries[i as usize]).to_string_lossy().into())
                        .collect();
                    g.sort();
                    g
                })
                .collect();
            named.sort();
            named
        };
        let groups = l.shared_uids();
        assert_eq!(
            names(&l, groups),
            vec![vec!["a", "a:2,"], vec!["b,S=3:2,S", "b:2,", "b:2,T"]]
        );
    }

    /// The one-pass way (every UIDL its whole base) finds what the sort finds.
    #[test]
    fn both_ways_find_the_same_groups() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..50 {
            let mut plain = Listing::default();
            for _ in 0..200 {
                let name = format!(
                    "17{:03}.q{}:2,{}",
                    next() % 40,
                    next() % 3,
                    ["", "S", "T"][next() % 3]
                );
                plain.push(name.as_bytes()).unwrap();
            }
            let uids = |l: &Listing, groups: Vec<Vec<u32>>| {
                let mut u: Vec<(String, usize)> = groups
                    .iter()
                    .map(|g| (l.uid(&l.entries[g[0] as usize]).to_string(), g.len()))
                    .collect();
                u.sort();
                u
            };
            // The same names with one that forces the sort (a size field: not its base).
            let mut sorted = Listing::default();
            for e in &plain.entries {
                sorted.push(plain.name(e).as_encoded_bytes()).unwrap();
            }
            sorted.push(b"zz,S=1:2,").unwrap();
            let fast = plain.shared_uids();
            let slow = sorted.shared_uids();
            assert!(plain.entries.iter().all(|e| e.uid == e.base));
            assert_eq!(uids(&plain, fast), uids(&sorted, slow));
        }
    }

    #[test]
    fn a_name_longer_than_a_directory_entry_is_refused() {
        let mut l = Listing::default();
        assert!(l.push(&[b'a'; 256]).is_err());
        assert!(l.entries.is_empty());
    }
}
