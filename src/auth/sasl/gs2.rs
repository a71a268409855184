//! gs2: the GS2 header that opens a SCRAM client-first message, and the `saslname` escapes
//! (RFC 5802 §5.1 and §7).
//!
//! Guarantees: [`split`] accepts exactly `gs2-cbind-flag "," [authzid] ","`, where the flag is
//! `n`, `y` or `p=` and a cb-name of letters, digits, `.` and `-`, and the authzid is `a=`
//! and a non-empty saslname; it hands back the header as sent (the client echoes it in `c=`)
//! and the rest of the message. [`unescape`] turns `=2C` into `,` and `=3D` into `=` and
//! refuses any other `=` (RFC 5802 §5.1: the server MUST fail such a name). The non-standard
//! GS2 `F,` prefix is refused: SCRAM's header has none.

/// What the client says about channel binding (RFC 5802 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CbindFlag<'a> {
    /// `n`: the client cannot bind.
    NotSupported,
    /// `y`: the client could bind but thinks the server cannot.
    ServerNotSupported,
    /// `p=<cb-name>`: the client binds with this type.
    Binding(&'a str),
}

/// A parsed GS2 header.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Header<'a> {
    pub flag: CbindFlag<'a>,
    /// The authorisation identity, unescaped, when the client sent one.
    pub authzid: Option<String>,
    /// The header as sent, both commas included.
    pub raw: &'a str,
}

/// Splits a client-first message into its GS2 header and the client-first-message-bare.
pub(super) fn split(message: &str) -> Result<(Header<'_>, &str), &'static str> {
    let (flag, rest) = message.split_once(',').ok_or("no GS2 header")?;
    let (authzid, bare) = rest.split_once(',').ok_or("no GS2 header")?;
    let raw = &message[..flag.len() + authzid.len() + 2];
    let flag = match flag {
        "n" => CbindFlag::NotSupported,
        "y" => CbindFlag::ServerNotSupported,
        _ => match flag.strip_prefix("p=") {
            Some(name) if is_cb_name(name) => CbindFlag::Binding(name),
            _ => return Err("malformed gs2-cbind-flag"),
        },
    };
    let authzid = match authzid {
        "" => None,
        _ => match authzid.strip_prefix("a=") {
            Some(name) => Some(unescape(name)?),
            None => return Err("malformed GS2 authzid"),
        },
    };
    Ok((Header { flag, authzid, raw }, bare))
}

/// cb-name = 1*(ALPHA / DIGIT / "." / "-") (RFC 5802 §7).
fn is_cb_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// A saslname with its escapes undone; empty, or an `=` not starting `=2C` or `=3D`, is
/// malformed. (The caller has already refused NUL and split at every `,`.)
pub(super) fn unescape(name: &str) -> Result<String, &'static str> {
    if name.is_empty() {
        return Err("empty saslname");
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        out.push(match escape {
            Some("=2C") => ',',
            Some("=3D") => '=',
            _ => return Err("malformed saslname escape"),
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{split, unescape, CbindFlag, Header};

    #[test]
    fn valid_headers() {
        use CbindFlag::*;
        let cases: &[(&str, CbindFlag, Option<&str>, &str)] = &[
            ("n,,", NotSupported, None, ""),
            ("y,,", ServerNotSupported, None, ""),
            ("p=tls-exporter,,", Binding("tls-exporter"), None, ""),
            (
                "p=tls-server-end-point,,",
                Binding("tls-server-end-point"),
                None,
                "",
            ),
            (
                "p=vnd.example.com-frop2,,",
                Binding("vnd.example.com-frop2"),
                None,
                "",
            ),
            ("n,a=frop,", NotSupported, Some("frop"), ""),
            ("y,a=frop,", ServerNotSupported, Some("frop"), ""),
            ("p=frop,a=frop,", Binding("frop"), Some("frop"), ""),
            (
                "n,a=frop=2Cfriep=3Dfrml,",
                NotSupported,
                Some("frop,friep=frml"),
                "",
            ),
            ("n,a==2C=3D=2C,", NotSupported, Some(",=,"), ""),
            ("n,,n=user,r=abc", NotSupported, None, "n=user,r=abc"),
            ("n,a=fr,p,", NotSupported, Some("fr"), "p,"),
        ];
        for &(input, flag, authzid, bare) in cases {
            let (header, rest) = split(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            let want = Header {
                flag,
                authzid: authzid.map(String::from),
                raw: &input[..input.len() - bare.len()],
            };
            assert_eq!(header, want, "{input}");
            assert_eq!(rest, bare, "{input}");
        }
    }

    #[test]
    fn invalid_headers() {
        for input in [
            "",
            ",",
            ",,",
            "n",
            "n,",
            "q,,",
            "nn,,",
            "N,,",
            "Y,,",
            "p,,",
            "p=,,",
            "p=_frop,,",
            "p=fr_p,,",
            "p=fr p,,",
            "p=frop",
            "p=frop,",
            "F,n,,",
            "n,a,",
            "n,a=,",
            "n,a,b,",
            "n,b=frop,",
            "n,A=frop,",
            "n,a=fr=p,",
            "n,a==rop,",
            "n,a=fro=,",
            "n,a=fr=20p,",
            "n,a=fro=2,",
            "n,a=fr=2cp,",
            "n,a=fr=3dp,",
            "n,a=frop",
        ] {
            assert!(split(input).is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn saslname_escapes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("user", Some("user")),
            ("us=2Cer", Some("us,er")),
            ("us=3Der", Some("us=er")),
            ("=2C", Some(",")),
            ("=3D=3D", Some("==")),
            ("=3D2C", Some("=2C")),
            ("jürgen=2C", Some("jürgen,")),
            ("", None),
            ("=", None),
            ("=2", None),
            ("us=er", None),
            ("=2c", None),
            ("=3d", None),
            ("=41", None),
            ("user=", None),
            ("=ü2C", None),
        ];
        for &(input, want) in cases {
            assert_eq!(unescape(input).ok().as_deref(), want, "{input:?}");
        }
    }
}
