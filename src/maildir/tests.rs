//! Tests of the maildir folder as a whole: names, scan, sizes, the maildrop and dotqmail.

use std::io::{Cursor, Read};
use std::path::Path;

use super::import::UidlCompat;
use super::maildrop::*;
use super::names::*;
use super::scan::*;
use super::sizes::*;
use super::*;
use crate::config::Config;
use crate::error::{Error, Unsafe};
use crate::system::accounts::Account;

fn maildir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    dir
}

fn names(dir: &Path, sub: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn name_fields() {
    let f = NameFields::parse(b"1700000000.M1P2.host,S=1234,W=1260:2,RS");
    assert_eq!(f.unique, b"1700000000.M1P2.host");
    assert_eq!(f.wire_size, Some(1260));
    assert_eq!(f.flags, b"RS");
    let f = NameFields::parse(b"1700000000.123.host:2,");
    assert_eq!(f.unique, b"1700000000.123.host");
    assert_eq!(f.wire_size, None);
    let f = NameFields::parse(b"a,S=5");
    assert_eq!((f.unique, f.wire_size), (&b"a"[..], None));
    let f = NameFields::parse(b"a,X=1,W=99999999999999999999");
    assert_eq!((f.unique, f.wire_size), (&b"a,X=1"[..], None));
}

#[test]
fn uidl_rules() {
    assert_eq!(uidl(b"1700000000.M1P2.host"), "1700000000.M1P2.host");
    let long = [b'x'; 71];
    let hashed = uidl(&long);
    assert_eq!(hashed.len(), 32);
    assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(hashed, uidl(&long), "stable");
    assert_eq!(uidl(&[b'x'; 70]).len(), 70);
    assert_eq!(uidl(b"with space").len(), 32);
    assert_eq!(uidl(b"caf\xc3\xa9").len(), 32);
    assert_eq!(uidl(b"").len(), 32);
}

#[test]
fn uid_survives_renames_and_odd_names_are_hashed() {
    let dir = maildir();
    let d = dir.path();
    let odd = "1700000001.caf\u{e9} \u{1}.h";
    std::fs::write(d.join("new/1700000000.1.h"), b"m\n").unwrap();
    std::fs::write(d.join("new").join(odd), b"m\n").unwrap();
    let mut md = Maildrop::open(d).unwrap();
    assert_eq!(md.messages().next().unwrap().uid(), "1700000000.1.h");
    assert_eq!(md.messages().nth(1).unwrap().uid(), uidl(odd.as_bytes()));
    let cur = names(d, "cur");
    let first = cur.iter().find(|n| n.starts_with("1700000000")).unwrap();
    std::fs::rename(
        d.join("cur").join(first),
        d.join("cur").join(format!("{first}RS")),
    )
    .unwrap();
    assert!(md.open_message(1).unwrap().is_some());
    assert_eq!(md.messages().next().unwrap().uid(), "1700000000.1.h");
}

#[test]
fn measure_counts_what_retr_sends() {
    let cases: [(&[u8], u64); 9] = [
        (b"", 0),
        (b"a\n", 3),
        (b"a\r\n", 3),
        (b"a\nb\r\nc\n", 9),
        (b"no newline", 12),
        (b"\n\n", 4),
        (b"\r\n", 2),
        (b"x\r", 4),
        (b".\n..\n", 7),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            measure(bytes).unwrap(),
            (bytes.len() as u64, want),
            "{bytes:?}"
        );
    }
    // A CRLF split across read chunks still counts two.
    let mut big = vec![b'y'; CHUNK - 1];
    big.extend_from_slice(b"\r\nz\n");
    assert_eq!(measure(Cursor::new(&big)).unwrap().1, big.len() as u64 + 1);
}

#[test]
fn scan_moves_new_orders_and_sizes() {
    let dir = maildir();
    let d = dir.path();
    std::fs::write(d.join("new/1700000200.2.host"), b"b\nb\n").unwrap();
    std::fs::write(d.join("new/1700000100.9.host"), b"aa\r\n").unwrap();
    std::fs::write(d.join("new/.hidden"), b"x").unwrap();
    std::fs::write(d.join("cur/999999999.1.host:2,S"), b"old\n").unwrap();
    std::fs::write(d.join("cur/1700000100.10.host:2,"), b"same time\n").unwrap();
    std::fs::write(d.join("tmp/1700000300.1.host"), b"not yet").unwrap();
    let md = Maildrop::open(d).unwrap();
    assert_eq!(md.report.moved, 2);
    // Sizes come from the files, for every message, the first time.
    assert_eq!(md.report.measured, 4);
    assert!(md.report.cache_written);
    let got: Vec<(&str, u64)> = md.messages().map(|m| (m.uid(), m.size)).collect();
    assert_eq!(
        got,
        [
            ("999999999.1.host", 5),
            ("1700000100.10.host", 11),
            ("1700000100.9.host", 4),
            ("1700000200.2.host", 6),
        ]
    );
    assert_eq!(md.stat(), (4, 26));
    assert_eq!(names(d, "new"), [".hidden"]);
    // The unique part is kept whole; the size goes to the cache, not the name.
    assert!(names(d, "cur").contains(&"1700000200.2.host:2,".to_string()));
    drop(md);
    // The second scan takes every size from the cache: nothing is measured.
    let cache = std::fs::read(d.join(SIZE_CACHE)).unwrap();
    assert!(cache.starts_with(CACHE_HEADER));
    // Growing every file proves it: the sizes reported are still the recorded ones.
    for name in names(d, "cur") {
        std::fs::write(d.join("cur").join(name), [b'x'; 100]).unwrap();
    }
    let again = Maildrop::open(d).unwrap();
    assert_eq!(again.report, ScanReport::default());
    assert_eq!(again.stat(), (4, 26));
    drop(again);
    // A cache entry for a file that is gone is dropped, and a damaged cache is only a
    // cache: the sizes are measured again.
    std::fs::remove_file(d.join("cur/999999999.1.host:2,S")).unwrap();
    let third = Maildrop::open(d).unwrap();
    assert!(third.report.cache_written);
    assert_eq!(third.report.measured, 0);
    drop(third);
    std::fs::write(d.join(SIZE_CACHE), b"garbage\n").unwrap();
    let fourth = Maildrop::open(d).unwrap();
    assert_eq!(fourth.report.measured, 3);
    assert_eq!(fourth.stat(), (3, 3 * 102));
}

#[test]
fn new_mail_moves_in_batches_and_all_arrives() {
    let dir = maildir();
    let d = dir.path();
    let n = MOVE_BATCH + 5;
    for i in 0..n {
        std::fs::write(d.join(format!("new/{}.{i}.h", 1_700_000_000 + i)), b"m\n").unwrap();
    }
    let md = Maildrop::open(d).unwrap();
    assert_eq!(md.report.moved, n);
    assert_eq!(md.stat(), (n, 3 * n as u64));
    assert!(names(d, "new").is_empty());
    assert_eq!(
        md.messages().nth(n - 1).unwrap().uid(),
        format!("{}.{}.h", 1_700_000_000 + n - 1, n - 1)
    );
}

#[test]
fn unsorted_cache_costs_a_measurement_never_a_wrong_size() {
    let dir = maildir();
    let d = dir.path();
    for (name, body) in [
        ("1.a:2,", &b"aa\n"[..]),
        ("2.b:2,", b"b\nb\n"),
        ("3.c:2,", b"c"),
    ] {
        std::fs::write(d.join("cur").join(name), body).unwrap();
    }
    // Hand-edited: out of order, one stale entry, one wrong size for a name not present.
    std::fs::write(
        d.join(SIZE_CACHE),
        b"apoptools-sizes 2\n3 3.c\n99 0.gone\n4 1.a\n",
    )
    .unwrap();
    let md = Maildrop::open(d).unwrap();
    let sizes: Vec<(&str, u64)> = md.messages().map(|m| (m.uid(), m.size)).collect();
    assert_eq!(sizes, [("1.a", 4), ("2.b", 6), ("3.c", 3)]);
    assert!(md.report.cache_written);
    drop(md);
    let cache = std::fs::read(d.join(SIZE_CACHE)).unwrap();
    assert_eq!(cache, b"apoptools-sizes 3\n4 1.a\n6 2.b\n3 3.c\n");
    assert_eq!(Maildrop::open(d).unwrap().report, ScanReport::default());
}

#[test]
fn fifos_and_directories_are_not_messages() {
    let dir = maildir();
    let d = dir.path();
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    nix::unistd::mkfifo(&d.join("new/1700000000.fifo.h"), mode).unwrap();
    nix::unistd::mkfifo(&d.join("cur/1700000001.fifo.h:2,"), mode).unwrap();
    std::fs::create_dir(d.join("cur/1700000002.dir.h:2,")).unwrap();
    std::fs::write(d.join("new/1700000003.ok.h"), b"ok\n").unwrap();
    let md = Maildrop::open(d).unwrap();
    let uids: Vec<&str> = md.messages().map(|m| m.uid()).collect();
    assert_eq!(uids, ["1700000003.ok.h"]);
}

#[test]
fn interrupted_move_is_finished_once() {
    let dir = maildir();
    let d = dir.path();
    std::fs::write(d.join("new/1700000000.1.h"), b"m\n").unwrap();
    // As if an earlier session linked the file into cur/ and died before the unlink.
    std::fs::hard_link(
        d.join("new/1700000000.1.h"),
        d.join("cur/1700000000.1.h,S=2,W=3:2,"),
    )
    .unwrap();
    let md = Maildrop::open(d).unwrap();
    assert_eq!(md.stat(), (1, 3));
    assert!(names(d, "new").is_empty());
    // One message under one name (an earlier version's), not two links listed twice.
    assert_eq!(names(d, "cur"), ["1700000000.1.h,S=2,W=3:2,"]);
}

#[test]
fn session_lock_is_exclusive() {
    let dir = maildir();
    let first = Maildrop::open(dir.path()).unwrap();
    let err = Maildrop::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Busy(_)), "{err}");
    drop(first);
    Maildrop::open(dir.path()).unwrap();
}

#[test]
fn dele_marks_rset_unmarks_commit_deletes() {
    let dir = maildir();
    let d = dir.path();
    for i in 1..=3 {
        std::fs::write(d.join(format!("new/17000000{i}0.{i}.h")), b"m\n").unwrap();
    }
    let mut md = Maildrop::open(d).unwrap();
    assert_eq!(md.get(0).unwrap_err(), Refused::NoSuchMessage);
    assert_eq!(md.get(4).unwrap_err(), Refused::NoSuchMessage);
    md.delete(2).unwrap();
    assert_eq!(md.delete(2).unwrap_err(), Refused::Deleted);
    assert_eq!(md.get(2).unwrap_err(), Refused::Deleted);
    assert_eq!(md.stat(), (2, 6));
    md.reset();
    assert_eq!(md.stat(), (3, 9));
    md.delete(1).unwrap();
    md.delete(3).unwrap();
    // Without commit (a dropped connection), nothing goes.
    let before = names(d, "cur");
    drop(md);
    assert_eq!(names(d, "cur"), before);
    let mut md = Maildrop::open(d).unwrap();
    md.delete(1).unwrap();
    md.delete(3).unwrap();
    // Another program renames message 3 (a new flag) and removes message 1 meanwhile.
    let m3 = before[2].clone();
    std::fs::rename(
        d.join("cur").join(&m3),
        d.join("cur").join(format!("{m3}S")),
    )
    .unwrap();
    assert_eq!(
        md.commit(),
        UpdateReport {
            deleted: 2,
            failed: 0
        }
    );
    assert_eq!(names(d, "cur"), [before[1].clone()]);
}

#[test]
fn renamed_or_removed_message() {
    let dir = maildir();
    let d = dir.path();
    std::fs::write(d.join("new/1700000000.1.h"), b"body\n").unwrap();
    std::fs::write(d.join("new/1700000001.1.h"), b"body\n").unwrap();
    let mut md = Maildrop::open(d).unwrap();
    let cur = names(d, "cur");
    std::fs::rename(
        d.join("cur").join(&cur[0]),
        d.join("cur").join(format!("{}S", cur[0])),
    )
    .unwrap();
    std::fs::remove_file(d.join("cur").join(&cur[1])).unwrap();
    let mut body = String::new();
    md.open_message(1)
        .unwrap()
        .unwrap()
        .read_to_string(&mut body)
        .unwrap();
    assert_eq!(body, "body\n");
    assert!(md.open_message(2).unwrap().is_none());
}

#[test]
fn locate_extension_maildir() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let me = nix::unistd::geteuid().as_raw();
    let account = Account {
        name: "u".into(),
        uid: me,
        gid: nix::unistd::getegid().as_raw(),
        home: h.to_path_buf(),
    };
    let config = Config::default();
    assert_eq!(locate(&account, None, &config).unwrap(), h.join("Maildir"));
    std::fs::create_dir(h.join("Maildir-ml")).unwrap();
    std::fs::write(
        h.join(".qmail-ml"),
        "# list\n|preline x\n./mbox\n./Maildir-ml/\n./other/\n",
    )
    .unwrap();
    assert_eq!(
        locate(&account, Some("ml"), &config).unwrap(),
        h.join("./Maildir-ml/")
    );
    let abs = format!("{}/Maildir-ml/\n", h.display());
    std::fs::write(h.join(".qmail-abs"), abs).unwrap();
    assert_eq!(
        locate(&account, Some("abs"), &config).unwrap(),
        h.join("Maildir-ml/")
    );
    std::fs::write(h.join(".qmail-up"), "./../elsewhere/\n").unwrap();
    assert!(matches!(
        locate(&account, Some("up"), &config),
        Err(Error::Unsafe { .. })
    ));
    std::fs::write(h.join(".qmail-none"), "&forward@example.org\n").unwrap();
    assert!(locate(&account, Some("none"), &config).is_err());
    assert!(locate(&account, Some("missing"), &config).is_err());
    // An absolute line outside the home is refused, whoever owns the target.
    std::fs::write(h.join(".qmail-root"), "/\n").unwrap();
    assert!(matches!(
        locate(&account, Some("root"), &config),
        Err(Error::Unsafe {
            why: Unsafe::Malformed("the maildir is outside the home directory"),
            ..
        })
    ));
}

/// The UIDLs of an open maildrop, in order.
fn uids(md: &Maildrop) -> Vec<&str> {
    md.messages().map(|m| m.uid()).collect()
}

#[test]
fn imported_uidls_are_recorded_and_kept_whatever_the_setting_says() {
    let dir = maildir();
    let d = dir.path();
    // qmail-pop3d's UIDL is the whole name before ':' (a `,S=` field included); ours stops
    // before the `,S=` field.
    std::fs::write(d.join("new/1700000000.1.h,S=2"), b"m\n").unwrap();
    std::fs::write(d.join("new/1700000001.2.h"), b"m\n").unwrap();
    let md = Maildrop::open_compat(d, UidlCompat::Qmail).unwrap();
    assert_eq!(uids(&md), ["1700000000.1.h,S=2", "1700000001.2.h"]);
    assert_eq!(md.report.imported, 1);
    drop(md);
    let cache = std::fs::read_to_string(d.join(SIZE_CACHE)).unwrap();
    assert_eq!(
        cache,
        "apoptools-sizes 3\n3,1700000000.1.h,S=2 1700000000.1.h,S=2\n3 1700000001.2.h\n"
    );
    // Switched to `none`: the recorded UIDL stays; a new message gets ours.
    std::fs::write(d.join("new/1700000002.3.h,S=2"), b"m\n").unwrap();
    let md = Maildrop::open_compat(d, UidlCompat::None).unwrap();
    assert_eq!(
        uids(&md),
        ["1700000000.1.h,S=2", "1700000001.2.h", "1700000002.3.h"]
    );
    assert_eq!(md.report.imported, 0);
    let mut md = md;
    md.delete(2).unwrap();
    md.commit();
    // Back to qmail: the message first served under `none` keeps ours.
    std::fs::write(d.join("new/1700000003.4.h,S=2"), b"m\n").unwrap();
    let md = Maildrop::open_compat(d, UidlCompat::Qmail).unwrap();
    assert_eq!(
        uids(&md),
        ["1700000000.1.h,S=2", "1700000002.3.h", "1700000003.4.h,S=2"]
    );
    assert_eq!(md.report.imported, 1);
    assert_eq!(md.report.measured, 1);
}

#[test]
fn a_version_2_cache_is_read_and_kept_uidls_stay_unique() {
    let dir = maildir();
    let d = dir.path();
    std::fs::write(d.join("cur/1700000000.1.h:2,"), b"m\n").unwrap();
    std::fs::write(d.join("cur/1700000001.2.h:2,S"), b"m\n").unwrap();
    std::fs::write(
        d.join(SIZE_CACHE),
        "apoptools-sizes 2\n3 1700000000.1.h\n3 1700000001.2.h\n",
    )
    .unwrap();
    let md = Maildrop::open(d).unwrap();
    assert_eq!(md.report.measured, 0, "version 2 sizes are believed");
    assert!(!md.report.cache_written, "nothing to change");
    assert_eq!(uids(&md), ["1700000000.1.h", "1700000001.2.h"]);
    drop(md);
    // A recorded UIDL that another message's own equals gives way; one RFC 1939 forbids is
    // not believed.
    std::fs::write(
        d.join(SIZE_CACHE),
        "apoptools-sizes 3\n3,1700000001.2.h 1700000000.1.h\n3,\u{7f}bad 1700000001.2.h\n",
    )
    .unwrap();
    let md = Maildrop::open(d).unwrap();
    assert_eq!(uids(&md), ["1700000000.1.h", "1700000001.2.h"]);
    assert!(md.report.cache_written, "the dropped record is rewritten");
    drop(md);
    let cache = std::fs::read_to_string(d.join(SIZE_CACHE)).unwrap();
    assert_eq!(
        cache,
        "apoptools-sizes 3\n3 1700000000.1.h\n3 1700000001.2.h\n"
    );
    // Two kept UIDLs equal to each other: both give way.
    std::fs::write(
        d.join(SIZE_CACHE),
        "apoptools-sizes 3\n3,same 1700000000.1.h\n3,same 1700000001.2.h\n",
    )
    .unwrap();
    let md = Maildrop::open(d).unwrap();
    assert_eq!(uids(&md), ["1700000000.1.h", "1700000001.2.h"]);
}

#[test]
fn the_preview_changes_nothing_and_matches_the_session() {
    let dir = maildir();
    let d = dir.path();
    std::fs::write(d.join("cur/1700000000.1.h,S=2:2,S"), b"m\n").unwrap();
    std::fs::write(d.join("new/1700000001.2.h,S=2"), b"m\n").unwrap();
    std::fs::write(d.join("new/1699999999.0.h"), b"m\n").unwrap();
    let before = (names(d, "cur"), names(d, "new"));
    let preview = Maildrop::preview_uidls(d, UidlCompat::Qmail).unwrap();
    assert_eq!(
        preview,
        ["1699999999.0.h", "1700000000.1.h,S=2", "1700000001.2.h,S=2"]
    );
    assert_eq!((names(d, "cur"), names(d, "new")), before, "nothing moved");
    assert!(!d.join(SIZE_CACHE).exists(), "nothing written");
    assert!(!d.join(LOCK_FILE).exists(), "no lock taken");
    let md = Maildrop::open_compat(d, UidlCompat::Qmail).unwrap();
    assert_eq!(uids(&md), preview);
    drop(md);
    // Served once, the preview under another setting shows what was recorded.
    assert_eq!(
        Maildrop::preview_uidls(d, UidlCompat::None).unwrap(),
        preview
    );
}

/// `measure` against the definition (every LF not after a CR is one more octet, an
/// unterminated last line two), on random CR/LF-heavy texts read in random-sized pieces.
#[test]
fn measure_agrees_with_the_definition_whatever_the_reads() {
    struct Pieces<'a>(&'a [u8], u64);
    impl Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self
                .1
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = ((self.1 >> 33) as usize % 7 + 1)
                .min(self.0.len())
                .min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut seed = 7u64;
    for _ in 0..500 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let len = (seed >> 40) as usize % 300;
        let text: Vec<u8> = (0..len)
            .map(|i| [b'a', b'\r', b'\n', b'.'][((seed >> (i % 60)) as usize + i * 7) % 4])
            .collect();
        let mut want = text.len() as u64;
        for (i, &b) in text.iter().enumerate() {
            if b == b'\n' && (i == 0 || text[i - 1] != b'\r') {
                want += 1;
            }
        }
        if text.last().is_some_and(|&b| b != b'\n') {
            want += 2;
        }
        let got = measure(Pieces(&text, seed)).unwrap();
        assert_eq!(got, (text.len() as u64, want), "{text:?}");
    }
}

/// A name that cannot be its own UIDL gets the hex MD5 of it, which the name gives again
/// every session: nothing about it is recorded in the cache.
#[test]
fn digest_uidls_are_not_recorded() {
    let dir = maildir();
    let d = dir.path();
    let odd = "1700000001.caf\u{e9} x.h";
    std::fs::write(d.join("new").join(odd), b"m\n").unwrap();
    let md = Maildrop::open(d).unwrap();
    assert_eq!(md.messages().next().unwrap().uid(), uidl(odd.as_bytes()));
    drop(md);
    let cache = std::fs::read_to_string(d.join(SIZE_CACHE)).unwrap();
    assert_eq!(cache, format!("apoptools-sizes 3\n3 {odd}\n"));
}

/// With the length fstat gave, measuring makes no read that would only say end-of-file, and
/// counts the same.
#[test]
fn measuring_with_the_files_length_stops_there() {
    struct Counted<'a>(&'a [u8], usize);
    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 += 1;
            let n = self.0.len().min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let text = b"a\nb\r\n.c\n\nd";
    let mut buf = vec![0u8; 4];
    let mut r = Counted(text, 0);
    let hinted = measure_with(&mut r, &mut buf, Some(text.len() as u64)).unwrap();
    assert_eq!(r.1, text.len().div_ceil(4));
    let mut r = Counted(text, 0);
    let plain = measure_with(&mut r, &mut buf, None).unwrap();
    assert_eq!(r.1, text.len().div_ceil(4) + 1);
    assert_eq!(hinted, plain);
    assert_eq!(plain, measure(Cursor::new(text)).unwrap());
    let mut r = Counted(b"", 0);
    assert_eq!(measure_with(&mut r, &mut buf, Some(0)).unwrap(), (0, 0));
    assert_eq!(r.1, 0);
}
