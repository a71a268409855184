//! fuzzing: the properties the fuzz targets (fuzz/) and their regression tests (tests/corpus)
//! check, in one place so both run exactly the same code. Each function takes arbitrary bytes
//! and panics only if a property is broken.

use std::path::Path;

use crate::config::Config;
use crate::store::record::{decode, encode};

/// Any bytes give a Config, or an error that names the file and line.
pub fn config(data: &[u8]) {
    match Config::parse(data, Path::new("/fuzz.conf")) {
        Ok(cfg) => assert!(cfg.min_length >= 1 && cfg.max_auth_failures >= 1),
        Err(e) => assert!(e.to_string().starts_with("/fuzz.conf:"), "{e}"),
    }
}

/// Any bytes decode to a non-empty secret without NUL or newline, or to a "malformed" reason;
/// a decoded record re-encodes to bytes that decode the same.
pub fn store_file(data: &[u8]) {
    if let Ok(rec) = decode(data) {
        let s = rec.secret.as_bytes();
        assert!(!s.is_empty() && !s.contains(&0) && !s.contains(&b'\n'));
        let again = decode(&encode(&rec)).expect("a re-encoded record decodes");
        assert_eq!(again.secret.as_bytes(), s);
        assert_eq!(again.changed, rec.changed);
        assert_eq!(again.by, rec.by);
    }
}

/// A PROXY protocol header from any bytes: never a panic, never more read than the header
/// may be long (107 bytes for version 1, 16 + 1024 for version 2), and a header that parses
/// reads the same when the stream arrives one byte at a time.
pub fn proxy_header(data: &[u8]) {
    use crate::server::proxy::read_header;
    let mut whole = std::io::Cursor::new(data);
    let parsed = read_header(&mut whole).expect("a cursor cannot fail");
    let used = whole.position() as usize;
    assert!(
        used <= 16 + crate::server::proxy::MAX_V2_LEN,
        "{used} bytes read"
    );
    if data.starts_with(b"PROXY ") {
        assert!(used <= 107, "{used} bytes read for version 1");
    }
    struct OneByte<'a>(&'a [u8]);
    impl std::io::Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }
    let mut slow = OneByte(data);
    let again = read_header(&mut slow).expect("no I/O error");
    assert_eq!(parsed, again, "the chunking changed the parse");
    assert_eq!(
        data.len() - slow.0.len(),
        used,
        "the chunking changed what was read"
    );
}

/// The frames between the split's front and back, from any bytes: a stream of requests (as a
/// compromised front could send) and of verdicts decodes to messages or errors, never a
/// panic; every decoded message encodes back to exactly the bytes it came from.
pub fn pipe_frames(data: &[u8]) {
    use crate::server::pipe::{FrameError, Request, Verdict};
    for verdicts in [false, true] {
        let mut rest = data;
        loop {
            let before = rest;
            let decoded = if verdicts {
                Verdict::read_from(&mut rest).map(|v| {
                    v.map(|v| {
                        let mut bytes = Vec::new();
                        v.write_to(&mut bytes).unwrap();
                        bytes
                    })
                })
            } else {
                Request::read_from(&mut rest).map(|r| {
                    r.map(|r| {
                        let mut bytes = Vec::new();
                        r.write_to(&mut bytes).unwrap();
                        bytes
                    })
                })
            };
            match decoded.expect("a slice cannot fail") {
                Ok(bytes) => assert_eq!(&before[..before.len() - rest.len()], &bytes[..]),
                Err(FrameError::Closed) => break,
                Err(FrameError::Malformed(_)) => break,
            }
        }
    }
}

/// The POP3 parser yields the same items whatever the chunking of the stream: `data`'s first
/// byte picks a chunk size for the rest, which is also parsed whole. Every LF ends exactly one
/// item (a command or a line error): no line is lost or merged.
pub fn pop3_parser(data: &[u8]) {
    use crate::pop3::wire::Parser;
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let drain = |p: &mut Parser, out: &mut Vec<String>| {
        while let Some(item) = p.next_item() {
            out.push(format!("{item:?}"));
        }
    };
    let (mut whole, mut chunked) = (Parser::new(), Parser::new());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    whole.feed(stream);
    drain(&mut whole, &mut a);
    for chunk in stream.chunks(usize::from(split).max(1)) {
        chunked.feed(chunk);
        drain(&mut chunked, &mut b);
    }
    assert_eq!(a, b, "chunking changed the parse");
    assert_eq!(a.len(), stream.iter().filter(|&&c| c == b'\n').count());
}

/// A whole session over a small Maildir, fed arbitrary client bytes: it never panics, every
/// reply is CRLF-terminated with no bare LF, and messages disappear only through DELE + QUIT
/// (exactly as many as the summary counts).
pub fn session(data: &[u8]) {
    static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let root = ROOT.get_or_init(|| {
        // tmpfs where there is one: the session fsyncs, and fuzzing wants speed, not durability.
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("apoptools-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    });
    session_in(root, data)
}

/// [`session`] with its Maildir under `root`.
pub fn session_in(root: &Path, data: &[u8]) {
    use crate::pop3::session::{Authenticator, Credentials, Denied, Granted, Session, Settings};

    use std::sync::atomic::{AtomicBool, Ordering};
    static TOUCHED: AtomicBool = AtomicBool::new(true);

    struct Fixed(std::path::PathBuf);
    impl Authenticator for Fixed {
        fn authenticate(&mut self, c: &Credentials) -> Result<Granted, Denied> {
            TOUCHED.store(true, Ordering::Relaxed);
            match c {
                Credentials::Plain {
                    login: "u",
                    password: b"p",
                } => Ok(Granted::Maildir(self.0.clone())),
                Credentials::Apop {
                    login: "u", digest, ..
                } if *digest == b"0123456789abcdef0123456789abcdef" => {
                    Ok(Granted::Maildir(self.0.clone()))
                }
                _ => Err(Denied::Wrong("fuzz".into())),
            }
        }
    }
    let maildir = root.join("Maildir");
    let messages: [(&str, &[u8]); 3] = [
        (
            "1700000001.M1P1.fuzz",
            b"Subject: a\n\n.dot line\n..two\nbody\n",
        ),
        (
            "1700000002.M2P2.fuzz",
            b"Subject: b\r\n\r\ncrlf body\r\n.\r\n",
        ),
        ("1700000003.M3P3.fuzz", b"Subject: c\n\nno final newline"),
    ];
    // Only a session that logged in can have changed the Maildir: rebuild it only then.
    if TOUCHED.swap(false, Ordering::Relaxed) || !maildir.exists() {
        let _ = std::fs::remove_dir_all(&maildir);
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        for (name, body) in messages {
            std::fs::write(maildir.join("new").join(name), body).unwrap();
        }
    }
    let settings = Settings {
        plaintext: true,
        plaintext_over_tls: true,
        // STLS is answered (and ends the run) as where TLS is configured.
        tls: crate::pop3::session::Tls::Offered,
        // AUTH is parsed and answered; the fixed authenticator refuses every exchange.
        sasl: crate::auth::sasl::Mechanism::ALL.to_vec(),
        auth_delay: std::time::Duration::ZERO,
        max_auth_failures: 3,
        timestamp: "<1.2@fuzz>".into(),
        max_login_commands: u32::MAX,
        login_deadline: None,
        uidl_compat: crate::maildir::import::UidlCompat::None,
    };
    let mut log = |_: &str, _: &str| {};
    let mut out = Vec::new();
    let summary = Session::new(settings, Fixed(maildir.clone()), &mut log).run(data, &mut out);
    assert!(out.starts_with(b"+OK "));
    assert!(out.ends_with(b"\r\n"));
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}");
        }
    }
    let left: usize = ["new", "cur"]
        .iter()
        .map(|d| std::fs::read_dir(maildir.join(d)).unwrap().count())
        .sum();
    assert_eq!(left + summary.deleted, messages.len(), "{summary:?}");
}

/// A SASL exchange (`crate::auth::sasl`) fed arbitrary client messages: never a panic, and
/// never a `Success`, since the account's password is 32 random bytes no input holds by
/// chance (and the absent account has none). `data`'s first byte picks the mechanism (bits
/// 0-2), the TLS bindings (bits 3-4: none, end-point, exporter, both), an initial response
/// (bit 5), an absent account (bit 6), and calls in any order (bit 7: each message's first
/// byte then picks start, provide or respond); the rest, split at 0xff, are the messages.
/// Also: every failure reason is a short line of printable ASCII, every looked-up login is
/// 1 to 255 bytes without NUL, and once the exchange has ended every call fails.
pub fn sasl(data: &[u8]) {
    use crate::auth::sasl::{
        ChannelBinding, Context, Credential, Exchange, Mechanism, ScramKeys, Step, MAX_FIELD,
        MAX_MESSAGE, SCRAM_ITERATIONS,
    };
    const SECRET: &[u8] = b"\xb1\x6b\x48\x13\xe7\x24\x5a\xd7\xa8\x2d\x57\x80\x3b\xd2\x5e\x58\
        \xe1\x36\x70\xb3\x38\xc6\xd0\x42\x72\xec\xd5\xa7\x7c\xfb\x4f\xd6";
    const SALT: &[u8] = b"fuzz salt";
    static KEYS: std::sync::OnceLock<ScramKeys> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| ScramKeys::derive(SECRET, SALT, SCRAM_ITERATIONS));
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mechanism = Mechanism::ALL[usize::from(pick & 7) % Mechanism::ALL.len()];
    let tls = match (pick >> 3) & 3 {
        0 => None,
        n => Some(ChannelBinding {
            server_end_point: (n & 1 != 0).then(|| vec![0x5a; 32]),
            exporter: (n & 2 != 0).then(|| vec![0xa5; 32]),
        }),
    };
    assert_eq!(Mechanism::from_name(mechanism.log_name()), Some(mechanism));
    let scram = !mechanism.is_plaintext() && mechanism != Mechanism::CramMd5;
    let credential = match (pick & 0x40 != 0, scram) {
        (true, _) => Credential::Absent {
            salt: SALT,
            iterations: SCRAM_ITERATIONS,
        },
        (false, true) => Credential::Scram(keys),
        (false, false) => Credential::Secret(SECRET),
    };
    let chaos = pick & 0x80 != 0;
    let bound = tls.as_ref().is_some_and(ChannelBinding::any);
    let mut x = Exchange::new(
        mechanism,
        Context {
            cram_challenge: "<1896.697170952@fuzz.example>".into(),
            server_nonce: "fuzz-server-nonce".into(),
            tls,
        },
    );
    assert_eq!(x.mechanism(), mechanism);
    let mut messages = rest.split(|&b| b == 0xff);
    let mut step = if pick & 0x20 != 0 {
        x.start(messages.next())
    } else {
        x.start(None)
    };
    if mechanism.needs_tls() && !bound {
        assert!(matches!(step, Step::Failure(_)), "-PLUS without a binding");
    }
    let mut ended = false;
    loop {
        match &step {
            Step::Success { login } => {
                panic!("{} proved {login:?} without the secret", mechanism.name())
            }
            Step::Failure(reason) => {
                assert!(
                    reason.len() <= 120 && reason.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "{reason:?}"
                );
                assert!(x.is_finished());
                if ended {
                    break;
                }
                ended = true;
            }
            Step::Lookup { login } => {
                assert!(!ended, "a lookup after the end");
                assert!(!login.is_empty() && login.len() <= MAX_FIELD && !login.contains('\0'));
            }
            Step::Challenge(bytes) => {
                assert!(!ended, "a challenge after the end");
                assert!(bytes.len() <= 2 * MAX_MESSAGE, "{} bytes", bytes.len());
            }
        }
        step = if chaos {
            let Some(message) = messages.next() else {
                break;
            };
            match message.split_first() {
                None => x.start(None),
                Some((&b, rest)) => match b % 4 {
                    0 => x.start(Some(rest)),
                    1 => x.provide(credential),
                    _ => x.respond(rest),
                },
            }
        } else if matches!(step, Step::Lookup { .. }) {
            x.provide(credential)
        } else if ended {
            // The one call after the end: it must fail too.
            x.respond(messages.next().unwrap_or_default())
        } else {
            let Some(message) = messages.next() else {
                break;
            };
            x.respond(message)
        };
    }
}

/// checkapop's fd-3 request from any bytes: never a panic; a request that parses has a
/// non-empty, printable login and timestamp, came from at most 512 bytes, and its three
/// fields are the bytes before the first three NULs.
pub fn checkpassword_request(data: &[u8]) {
    use crate::auth::checkpassword::{parse, MAX_REQUEST};
    let Ok(r) = parse(data) else {
        return;
    };
    assert!(data.len() <= MAX_REQUEST);
    assert!(!r.login.is_empty() && !r.login.chars().any(char::is_control));
    assert!(!r.timestamp.chars().any(char::is_control));
    let mut fields = data.split(|&b| b == 0);
    assert_eq!(fields.next(), Some(r.login.as_bytes()));
    assert_eq!(fields.next(), Some(r.password.as_bytes()));
    assert_eq!(fields.next(), Some(r.timestamp.as_bytes()));
}

/// apoppassd's dialogue from any bytes: never a panic; every reply is one `200 ` or `500 `
/// line ending in CRLF, at most one per input line (plus the greeting); no password is ever
/// changed, since none can be verified (the stand-in back knows one no input can guess).
pub fn poppassd_dialogue(data: &[u8]) {
    let out = crate::server::poppassd::dialogue_for_fuzzing(data);
    let text = String::from_utf8(out).expect("replies are UTF-8");
    assert!(
        text.starts_with("200 apoppassd ready, who are you?\r\n"),
        "{text:?}"
    );
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert!(text.ends_with("\r\n"), "{text:?}");
    for l in &lines {
        assert!(l.starts_with("200 ") || l.starts_with("500 "), "{l:?}");
        assert!(!l.contains('\n') && !l.contains('\r'), "{l:?}");
    }
    assert!(!text.contains("200 Password changed."), "{text:?}");
    assert!(!text.contains("200 Your new password please."), "{text:?}");
    let inputs = data.split(|&b| b == b'\n').count();
    assert!(
        lines.len() <= inputs + 1,
        "{} replies to {inputs} lines",
        lines.len()
    );
}

/// An old server's UIDL file (`crate::maildir::import`: Dovecot's `dovecot-uidlist`,
/// Courier's `courierpop3dsizelist`) from any bytes: never a panic; whatever parses keeps
/// every promise of `get` (a UIDL of 1-70 characters of 0x21-0x7E that no other entry has, a
/// distinct rank, found by its base, for every entry and for any word of the input asked
/// for); a header error is on line 1; and the same bytes with CRLF line ends read the same.
pub fn uidl_import(data: &[u8]) {
    use crate::maildir::import::{parse_courier_sizelist, parse_dovecot_uidlist};
    let crlf = (!data.contains(&b'\r')).then(|| {
        let mut crlf = Vec::with_capacity(data.len() * 2);
        for &b in data {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        crlf
    });
    for parse in [parse_dovecot_uidlist, parse_courier_sizelist] {
        let parsed = parse(data);
        match &parsed {
            Ok(old) => {
                old.assert_invariants();
                assert_eq!(old.is_empty(), old.iter().next().is_none());
                let lines = data.split(|&b| b == b'\n').count();
                assert!(
                    old.len() + old.ignored() <= lines,
                    "more entries than lines"
                );
                for word in data.split(|&b| b == b' ' || b == b'\n' || b == b':') {
                    if let Some((uidl, order)) = old.get(word) {
                        assert!(crate::maildir::names::uidl(uidl).as_bytes() == uidl);
                        assert!(order < old.len() as u64);
                    }
                }
            }
            Err(e) => assert_eq!(e.line, 1, "{e}"),
        }
        if let Some(crlf) = &crlf {
            assert_eq!(parse(crlf), parsed, "CRLF line ends read differently");
        }
    }
}
