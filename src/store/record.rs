//! record: the format of a store file, and the secret it holds.
//!
//! - [`Secret`] is never printed and is wiped from memory when dropped.
//! - [`decode`] takes any bytes and returns a [`Record`] or the reason the bytes are not one
//!   (never quoting the secret); [`encode`] writes what [`decode`] reads back unchanged.
//! - [`check_policy`] is the one password policy every writer applies.
//!
//! The file format (documented in apoppasswd(1)), version 2, one `key value` per line:
//!
//! ```text
//! apoptools-secret 2
//! changed 1796380800
//! by root
//! secret <the secret's bytes, anything but NUL and newline>
//! scram-sha-256 4096 <salt> <StoredKey> <ServerKey>
//! ```
//!
//! The `scram-sha-256` line (base64 fields, RFC 5802 §3) is what version 2 adds; every write
//! has it. Version 1 (no such line) is still read: SCRAM then derives the keys from the secret
//! at login. Unknown keys are ignored (room for more metadata). A file whose first line is not
//! the `apoptools-secret` header is read as imapext APOPtools' format: the first line is the
//! secret.

use base64::Engine;

use crate::auth::sasl::ScramKeys;
use crate::error::{Error, Result, Unsafe};
use crate::system::wipe::wipe;

const HEADER: &[u8] = b"apoptools-secret ";
const VERSION: &[u8] = b"2";
/// The versions [`decode`] reads.
const VERSIONS: [&[u8]; 2] = [b"1", b"2"];
/// Longest new password accepted: a USER/PASS login sends it in `PASS <password>\r\n`, at most
/// 255 octets (RFC 2449), so 248 bytes is the most that works everywhere. Longer secrets that
/// earlier versions stored are still read, and work with APOP.
pub const MAX_SECRET_LEN: usize = 248;

/// A secret's bytes (a stored password, or one a client sent): never printed, wiped from
/// memory when dropped (by the `zeroize` crate), compared in constant time. The one type every
/// secret lives in.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        crate::auth::apop::constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for Secret {}

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The bytes, to fill in place (a new random key).
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What a store file holds.
#[derive(Debug)]
pub struct Record {
    pub secret: Secret,
    /// Unix seconds of the last change, when known.
    pub changed: Option<u64>,
    /// Who made the last change, when known.
    pub by: Option<String>,
    /// SCRAM-SHA-256's keys (version 2 records); `None` in older records.
    pub scram: Option<ScramKeys>,
}

/// Checks a new password against the policy: not empty, at least `min_length` characters, at
/// most [`MAX_SECRET_LEN`] bytes, no NUL, CR or LF. The error never quotes the password.
pub fn check_policy(secret: &[u8], min_length: usize) -> Result<()> {
    let chars = std::str::from_utf8(secret).map_or(secret.len(), |s| s.chars().count());
    if secret.is_empty() {
        return Err(Error::Policy("the password is empty".into()));
    }
    if secret.iter().any(|&b| b == 0 || b == b'\n' || b == b'\r') {
        return Err(Error::Policy(
            "the password contains a NUL, CR or newline".into(),
        ));
    }
    if chars < min_length {
        return Err(Error::Policy(format!(
            "the password is shorter than {min_length} characters"
        )));
    }
    if secret.len() > MAX_SECRET_LEN {
        return Err(Error::Policy(format!(
            "the password is longer than {MAX_SECRET_LEN} bytes"
        )));
    }
    Ok(())
}

/// Serialises a record in the version-2 format.
pub fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + record.secret.as_bytes().len());
    out.extend_from_slice(HEADER);
    out.extend_from_slice(VERSION);
    out.push(b'\n');
    if let Some(t) = record.changed {
        out.extend_from_slice(format!("changed {t}\n").as_bytes());
    }
    if let Some(by) = &record.by {
        out.extend_from_slice(format!("by {by}\n").as_bytes());
    }
    out.extend_from_slice(b"secret ");
    out.extend_from_slice(record.secret.as_bytes());
    out.push(b'\n');
    if let Some(keys) = &record.scram {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        out.extend_from_slice(
            format!(
                "scram-sha-256 {} {} {} {}\n",
                keys.iterations,
                b64(&keys.salt),
                b64(&keys.stored_key),
                b64(&keys.server_key)
            )
            .as_bytes(),
        );
    }
    out
}

/// The value of a `scram-sha-256` line: iterations, salt, StoredKey, ServerKey.
fn scram_line(value: &[u8]) -> Option<ScramKeys> {
    let text = std::str::from_utf8(value).ok()?;
    let fields: Vec<&str> = text.split(' ').collect();
    let [iterations, salt, stored, server] = fields[..] else {
        return None;
    };
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.decode(t).ok();
    let key = |t: &str| -> Option<[u8; 32]> { b64(t)?.try_into().ok() };
    let iterations: u32 = iterations.parse().ok()?;
    let salt = b64(salt)?;
    if iterations < 4096 || salt.is_empty() {
        return None;
    }
    Some(ScramKeys {
        salt,
        iterations,
        stored_key: key(stored)?,
        server_key: key(server)?,
    })
}

/// Parses a store file's bytes (either format); the error says what is wrong, never the secret.
pub fn decode(bytes: &[u8]) -> std::result::Result<Record, Unsafe> {
    if bytes.contains(&0) {
        return Err(Unsafe::Malformed("it contains a NUL byte"));
    }
    let mut lines = bytes.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let Some(version) = first.strip_prefix(HEADER) else {
        // imapext APOPtools' format: the secret alone on the first line.
        let secret = first.strip_suffix(b"\r").unwrap_or(first);
        if secret.is_empty() {
            return Err(Unsafe::Malformed("it holds no secret"));
        }
        return Ok(Record {
            secret: Secret::new(secret.to_vec()),
            changed: None,
            by: None,
            scram: None,
        });
    };
    if !VERSIONS.contains(&version) {
        return Err(Unsafe::Malformed("unsupported format version"));
    }
    let (mut secret, mut changed, mut by, mut scram) = (None, None, None, None);
    for line in lines {
        let (key, value) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        match key {
            b"" if value.is_empty() => {}
            b"secret" => {
                if secret.is_some() {
                    return Err(Unsafe::Malformed("two secret lines"));
                }
                if value.is_empty() {
                    return Err(Unsafe::Malformed("the secret is empty"));
                }
                secret = Some(Secret::new(value.to_vec()));
            }
            b"changed" => {
                let t = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                changed = Some(t.ok_or(Unsafe::Malformed("bad `changed` time"))?);
            }
            b"by" => by = Some(String::from_utf8_lossy(value).into_owned()),
            b"scram-sha-256" => {
                if scram.is_some() {
                    return Err(Unsafe::Malformed("two scram-sha-256 lines"));
                }
                scram = Some(scram_line(value).ok_or(Unsafe::Malformed("bad scram-sha-256 line"))?);
            }
            _ => {}
        }
    }
    let secret = secret.ok_or(Unsafe::Malformed("no secret line"))?;
    Ok(Record {
        secret,
        changed,
        by,
        scram,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_round_trip_any_byte_but_nul_and_newline() {
        let secret: Vec<u8> = (1u8..=255).filter(|&b| b != b'\n').collect();
        let keys = ScramKeys::derive(b"pencil", b"salt of sixteen!", 4096);
        let rec = Record {
            secret: Secret::new(secret.clone()),
            changed: Some(42),
            by: Some("root".into()),
            scram: Some(keys.clone()),
        };
        let bytes = encode(&rec);
        assert!(bytes.starts_with(b"apoptools-secret 2\nchanged 42\nby root\nsecret "));
        let tail = format!(
            "\nscram-sha-256 4096 c2FsdCBvZiBzaXh0ZWVuIQ== {} {}\n",
            base64::engine::general_purpose::STANDARD.encode(keys.stored_key),
            base64::engine::general_purpose::STANDARD.encode(keys.server_key)
        );
        assert!(bytes.ends_with(tail.as_bytes()));
        let back = decode(&bytes).unwrap();
        assert_eq!(back.secret.as_bytes(), &secret[..]);
        assert_eq!(back.changed, Some(42));
        assert_eq!(back.by.as_deref(), Some("root"));
        let got = back.scram.unwrap();
        assert_eq!(
            (got.salt, got.iterations, got.stored_key, got.server_key),
            (keys.salt, 4096, keys.stored_key, keys.server_key)
        );
        // A version-1 record (before SCRAM) still reads, without keys.
        let old = decode(b"apoptools-secret 1\nchanged 7\nsecret abc\n").unwrap();
        assert_eq!(old.secret.as_bytes(), b"abc");
        assert!(old.scram.is_none());
    }

    #[test]
    fn legacy_and_malformed() {
        assert_eq!(
            decode(b"tanstaaf\n").unwrap().secret.as_bytes(),
            b"tanstaaf"
        );
        assert_eq!(
            decode(b"tanstaaf\r\n").unwrap().secret.as_bytes(),
            b"tanstaaf"
        );
        let bad: [(&[u8], &str); 9] = [
            (b"", "it holds no secret"),
            (
                b"apoptools-secret 3\nsecret x\n",
                "unsupported format version",
            ),
            (
                b"apoptools-secret 2\nsecret x\nscram-sha-256 4096 c2FsdA== AAAA AAAA\n",
                "bad scram-sha-256 line",
            ),
            (
                b"apoptools-secret 2\nsecret x\nscram-sha-256 1000 c2FsdA== \
                  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
                  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                "bad scram-sha-256 line",
            ),
            (
                b"apoptools-secret 2\nsecret x\nscram-sha-256\n",
                "bad scram-sha-256 line",
            ),
            (b"apoptools-secret 1\nchanged 1\n", "no secret line"),
            (b"apoptools-secret 1\nsecret \n", "the secret is empty"),
            (
                b"apoptools-secret 1\nsecret a\nsecret b\n",
                "two secret lines",
            ),
            (
                b"apoptools-secret 1\nsecret a\0\n",
                "it contains a NUL byte",
            ),
        ];
        for (bytes, why) in bad {
            assert_eq!(
                decode(bytes).unwrap_err(),
                Unsafe::Malformed(why),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn policy() {
        check_policy(b"longenough", 8).unwrap();
        for (bad, why) in [
            (&b""[..], "empty"),
            (b"short", "shorter than 8"),
            (b"has\nnewline", "NUL, CR or newline"),
            (b"has\0nul12", "NUL, CR or newline"),
        ] {
            let err = check_policy(bad, 8).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        assert!(check_policy(&[b'x'; 1025], 8).is_err());
        // Characters, not bytes: four two-byte characters are four.
        assert!(check_policy("éééé".as_bytes(), 5).is_err());
    }
}
