//! checkpassword: the request a checkpassword caller (qmail-popup, Dovecot) writes to fd 3
//! (cr.yp.to/checkpwd/interface.html): `login\0password\0timestamp\0`, at most [`MAX_REQUEST`]
//! bytes. Guarantees: [`parse`] takes any bytes and returns the three fields or why they are
//! not a request, never a panic and never the password in the error; the password is held in
//! a [`Secret`]. Anything after the third NUL (the interface allows more) is ignored.

use crate::store::Secret;

/// The longest request read, as qmail's and Dovecot's callers bound it.
pub const MAX_REQUEST: usize = 512;

/// One checkpassword request.
#[derive(Debug)]
pub struct Request {
    pub login: String,
    /// The plaintext password, or (with a timestamp) the hex APOP digest over it.
    pub password: Secret,
    /// qmail-popup's APOP timestamp; empty for a plaintext login or a Dovecot lookup.
    pub timestamp: String,
}

/// Why fd 3's bytes are not a request (for the log; the exit status is 2, misuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    TooLong,
    /// Fewer than three NUL-terminated fields.
    MissingFields,
    EmptyLogin,
    /// The login or the timestamp is not UTF-8, or holds a control character.
    BadText,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Malformed::TooLong => "the request on fd 3 is longer than 512 bytes",
            Malformed::MissingFields => "the request on fd 3 lacks login, password or timestamp",
            Malformed::EmptyLogin => "the request on fd 3 has an empty login",
            Malformed::BadText => "the login or timestamp on fd 3 is not printable UTF-8",
        })
    }
}

/// Parses fd 3's bytes.
pub fn parse(bytes: &[u8]) -> Result<Request, Malformed> {
    if bytes.len() > MAX_REQUEST {
        return Err(Malformed::TooLong);
    }
    let mut fields = bytes.splitn(4, |&b| b == 0);
    let (Some(login), Some(password), Some(timestamp), Some(_)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Malformed::MissingFields);
    };
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .filter(|t| !t.chars().any(char::is_control))
            .map(str::to_string)
            .ok_or(Malformed::BadText)
    };
    let login = text(login)?;
    if login.is_empty() {
        return Err(Malformed::EmptyLogin);
    }
    Ok(Request {
        login,
        password: Secret::new(password.to_vec()),
        timestamp: text(timestamp)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_fields_and_nothing_else() {
        let r = parse(b"alice\0pass word\0<1.2@host>\0").unwrap();
        assert_eq!(
            (
                r.login.as_str(),
                r.password.as_bytes(),
                r.timestamp.as_str()
            ),
            ("alice", &b"pass word"[..], "<1.2@host>")
        );
        // Dovecot leaves the timestamp empty, and a lookup the password too.
        let r = parse(b"bob\0\0\0").unwrap();
        assert_eq!(
            (r.password.as_bytes(), r.timestamp.as_str()),
            (&b""[..], "")
        );
        // Bytes after the third NUL are ignored.
        assert!(parse(b"bob\0x\0\0trailing").is_ok());
    }

    #[test]
    fn malformed_requests() {
        let long = [b'a'; 513];
        let cases: [(&[u8], Malformed); 6] = [
            (&long, Malformed::TooLong),
            (b"", Malformed::MissingFields),
            (b"alice\0pw\0", Malformed::MissingFields),
            (b"alice\0pw", Malformed::MissingFields),
            (b"\0pw\0\0", Malformed::EmptyLogin),
            (b"al\nice\0pw\0\0", Malformed::BadText),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(bytes).unwrap_err(), want, "{bytes:?}");
        }
        // The error never shows the password.
        let err = parse(b"\xff\0secret-pw\0\0").unwrap_err().to_string();
        assert!(!err.contains("secret-pw"), "{err}");
    }
}
