//! pipe: the messages between the pre-login front and the back of the privilege split.
//!
//! Guarantees:
//! - One fixed frame: a 4-byte big-endian length (of what follows), a type byte, the payload;
//!   at most [`MAX_FRAME`] bytes. Every malformed frame (short, oversized, unknown type, bad
//!   payload) decodes to an error, never to a message, and never panics.
//! - The front only asks ([`Request`]); the back only answers ([`Verdict`]). The APOP
//!   timestamp never crosses: the back verifies against its own.
//! - Passwords are carried in [`Secret`]s and the frame buffers holding them are wiped.

use std::io::{self, Read, Write};

use crate::store::Secret;
use crate::system::wipe::wipe;

/// The largest frame, length field included (a SASL message is at most
/// [`crate::auth::sasl::MAX_MESSAGE`] bytes).
pub const MAX_FRAME: usize = 2048;

/// What the front asks the back.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `APOP login digest`: the back checks the digest over its own timestamp.
    Apop { login: String, digest: Vec<u8> },
    /// `USER login` then `PASS password`.
    Plain { login: String, password: Secret },
    /// A log line of the front's (it may not write files itself: RLIMIT_FSIZE is 0): an event
    /// word and its `key=value` fields, written by the back.
    Log { event: String, fields: String },
    /// The TLS handshake is done (once per connection, before any login under TLS): the
    /// version and cipher suite, for the back's log lines and plaintext rule, and the channel
    /// bindings of SCRAM-SHA-256-PLUS (tls-server-end-point; tls-exporter under TLS 1.3,
    /// else empty).
    Tls {
        what: String,
        end_point: Vec<u8>,
        exporter: Vec<u8>,
    },
    /// `AUTH mechanism [initial-response]`, the response decoded.
    SaslStart {
        mechanism: String,
        initial: Option<Secret>,
    },
    /// The client's decoded answer to the back's last challenge.
    SaslRespond { response: Secret },
    /// The exchange ends without an answer the mechanism can read (`*`, bad base64, too long).
    SaslAbort { reason: String },
    /// apoppassd's `newpass`: the new password for the login the back last verified.
    NewPassword { password: Secret },
}

/// The back's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The next challenge of a SASL exchange, for the client.
    Challenge(Vec<u8>),
    /// apoppassd: the new password was refused by the policy; the reason, for the client.
    Refused(String),
    /// The back has become the account and serves the rest of the session; the front ends.
    Granted,
    /// A failed login (after the back's delay, counted by the back).
    Wrong,
    /// An outage: not counted.
    Outage,
    /// The back cannot go on (a failed privilege drop); the front ends the connection.
    Fatal,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The peer closed the pipe between frames.
    Closed,
    /// Anything else wrong with a frame, with what.
    Malformed(&'static str),
}

const APOP: u8 = 0x10;
const PLAIN: u8 = 0x12;
const LOG: u8 = 0x14;
const TLS: u8 = 0x16;
const SASL_START: u8 = 0x18;
const SASL_RESPOND: u8 = 0x1a;
const SASL_ABORT: u8 = 0x1c;
const NEW_PASSWORD: u8 = 0x1e;
const REFUSED: u8 = 0x2b;
const CHALLENGE: u8 = 0x29;
const GRANTED: u8 = 0x21;
const WRONG: u8 = 0x23;
const OUTAGE: u8 = 0x25;
const FATAL: u8 = 0x27;

/// Writes one frame of type `kind` with the `fields`, each as a 2-byte length and its bytes.
fn write_frame(w: &mut impl Write, kind: u8, fields: &[&[u8]]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&[0; 4]);
    frame.push(kind);
    for f in fields {
        frame.extend_from_slice(&(f.len() as u16).to_be_bytes());
        frame.extend_from_slice(f);
    }
    let len = frame.len() - 4;
    if frame.len() > MAX_FRAME {
        wipe(&mut frame);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
    let result = w.write_all(&frame).and_then(|()| w.flush());
    wipe(&mut frame);
    result
}

/// Reads one frame: its type and payload (the caller wipes the payload).
fn read_frame(r: &mut impl Read) -> io::Result<Result<(u8, Vec<u8>), FrameError>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Err(FrameError::Closed)),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len + 4 > MAX_FRAME {
        return Ok(Err(FrameError::Malformed("frame length out of range")));
    }
    let mut body = vec![0u8; len];
    match r.read_exact(&mut body) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Err(FrameError::Malformed("frame cut short")))
        }
        Err(e) => return Err(e),
    }
    let kind = body.remove(0);
    Ok(Ok((kind, body)))
}

/// Splits a payload into exactly `n` length-prefixed fields.
fn fields(payload: &[u8], n: usize) -> Result<Vec<&[u8]>, FrameError> {
    let mut out = Vec::with_capacity(n);
    let mut rest = payload;
    for _ in 0..n {
        let [a, b, tail @ ..] = rest else {
            return Err(FrameError::Malformed("field length missing"));
        };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        if tail.len() < len {
            return Err(FrameError::Malformed("field cut short"));
        }
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(FrameError::Malformed("bytes after the last field"));
    }
    Ok(out)
}

impl Request {
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            Request::Apop { login, digest } => write_frame(w, APOP, &[login.as_bytes(), digest]),
            Request::Plain { login, password } => {
                write_frame(w, PLAIN, &[login.as_bytes(), password.as_bytes()])
            }
            Request::Log { event, fields } => {
                write_frame(w, LOG, &[event.as_bytes(), fields.as_bytes()])
            }
            Request::Tls {
                what,
                end_point,
                exporter,
            } => write_frame(w, TLS, &[what.as_bytes(), end_point, exporter]),
            Request::SaslStart { mechanism, initial } => match initial {
                None => write_frame(w, SASL_START, &[mechanism.as_bytes(), b"", b""]),
                Some(data) => write_frame(
                    w,
                    SASL_START,
                    &[mechanism.as_bytes(), b"+", data.as_bytes()],
                ),
            },
            Request::SaslRespond { response } => {
                write_frame(w, SASL_RESPOND, &[response.as_bytes()])
            }
            Request::SaslAbort { reason } => write_frame(w, SASL_ABORT, &[reason.as_bytes()]),
            Request::NewPassword { password } => {
                write_frame(w, NEW_PASSWORD, &[password.as_bytes()])
            }
        }
    }

    pub fn read_from(r: &mut impl Read) -> io::Result<Result<Request, FrameError>> {
        let (kind, mut payload) = match read_frame(r)? {
            Ok(frame) => frame,
            Err(e) => return Ok(Err(e)),
        };
        let decoded = Request::decode(kind, &payload);
        wipe(&mut payload);
        Ok(decoded)
    }

    fn decode(kind: u8, payload: &[u8]) -> Result<Request, FrameError> {
        let login = |b: &[u8]| match std::str::from_utf8(b) {
            Ok("") => Err(FrameError::Malformed("an empty login")),
            Ok(l) => Ok(l.to_string()),
            Err(_) => Err(FrameError::Malformed("login not UTF-8")),
        };
        let text = |b: &[u8]| {
            std::str::from_utf8(b)
                .ok()
                .filter(|t| t.bytes().all(|c| (0x20..0x7f).contains(&c)))
                .map(str::to_string)
                .ok_or(FrameError::Malformed("text that is not printable ASCII"))
        };
        match kind {
            TLS => {
                let f = fields(payload, 3)?;
                let what = text(f[0])?;
                if what.is_empty() || what.contains(' ') {
                    return Err(FrameError::Malformed("a TLS description with a space"));
                }
                Ok(Request::Tls {
                    what,
                    end_point: f[1].to_vec(),
                    exporter: f[2].to_vec(),
                })
            }
            SASL_START => {
                let f = fields(payload, 3)?;
                let mechanism = text(f[0])?;
                if mechanism.is_empty() || mechanism.len() > 40 {
                    return Err(FrameError::Malformed("a mechanism name out of bounds"));
                }
                let initial = match f[1] {
                    b"" if f[2].is_empty() => None,
                    b"+" => Some(Secret::new(f[2].to_vec())),
                    _ => return Err(FrameError::Malformed("a bad initial-response flag")),
                };
                Ok(Request::SaslStart { mechanism, initial })
            }
            SASL_RESPOND => {
                let f = fields(payload, 1)?;
                Ok(Request::SaslRespond {
                    response: Secret::new(f[0].to_vec()),
                })
            }
            NEW_PASSWORD => {
                let f = fields(payload, 1)?;
                Ok(Request::NewPassword {
                    password: Secret::new(f[0].to_vec()),
                })
            }
            SASL_ABORT => {
                let f = fields(payload, 1)?;
                Ok(Request::SaslAbort {
                    reason: text(f[0])?,
                })
            }
            APOP => {
                let f = fields(payload, 2)?;
                Ok(Request::Apop {
                    login: login(f[0])?,
                    digest: f[1].to_vec(),
                })
            }
            PLAIN => {
                let f = fields(payload, 2)?;
                Ok(Request::Plain {
                    login: login(f[0])?,
                    password: Secret::new(f[1].to_vec()),
                })
            }
            LOG => {
                let f = fields(payload, 2)?;
                Ok(Request::Log {
                    event: text(f[0])?,
                    fields: text(f[1])?,
                })
            }
            _ => Err(FrameError::Malformed("not a request type")),
        }
    }
}

impl Verdict {
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let kind = match self {
            Verdict::Challenge(bytes) => return write_frame(w, CHALLENGE, &[bytes]),
            Verdict::Refused(why) => return write_frame(w, REFUSED, &[why.as_bytes()]),
            Verdict::Granted => GRANTED,
            Verdict::Wrong => WRONG,
            Verdict::Outage => OUTAGE,
            Verdict::Fatal => FATAL,
        };
        write_frame(w, kind, &[])
    }

    pub fn read_from(r: &mut impl Read) -> io::Result<Result<Verdict, FrameError>> {
        let (kind, payload) = match read_frame(r)? {
            Ok(frame) => frame,
            Err(e) => return Ok(Err(e)),
        };
        if kind == CHALLENGE {
            return Ok(fields(&payload, 1).map(|f| Verdict::Challenge(f[0].to_vec())));
        }
        if kind == REFUSED {
            return Ok(fields(&payload, 1).and_then(|f| {
                std::str::from_utf8(f[0])
                    .ok()
                    .filter(|t| t.bytes().all(|c| (0x20..0x7f).contains(&c)))
                    .map(|t| Verdict::Refused(t.to_string()))
                    .ok_or(FrameError::Malformed(
                        "a refusal that is not printable ASCII",
                    ))
            }));
        }
        if !payload.is_empty() {
            return Ok(Err(FrameError::Malformed("a verdict carries no payload")));
        }
        Ok(match kind {
            GRANTED => Ok(Verdict::Granted),
            WRONG => Ok(Verdict::Wrong),
            OUTAGE => Ok(Verdict::Outage),
            FATAL => Ok(Verdict::Fatal),
            _ => Err(FrameError::Malformed("not a verdict type")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: Request) -> Request {
        let mut bytes = Vec::new();
        r.write_to(&mut bytes).unwrap();
        Request::read_from(&mut &bytes[..]).unwrap().unwrap()
    }

    #[test]
    fn requests_and_verdicts_round_trip() {
        let apop = Request::Apop {
            login: "alice".into(),
            digest: b"0123456789abcdef0123456789abcdef".to_vec(),
        };
        let plain = Request::Plain {
            login: "alice-lists".into(),
            password: Secret::new(b"pass word".to_vec()),
        };
        let log = Request::Log {
            event: "end".into(),
            fields: "user=- result=quit".into(),
        };
        let tls = Request::Tls {
            what: "TLSv1.3/TLS13_AES_256_GCM_SHA384".into(),
            end_point: vec![7; 32],
            exporter: vec![],
        };
        let starts = [
            None,
            Some(Secret::new(vec![])),
            Some(Secret::new(b"\0alice\0pw".to_vec())),
        ]
        .map(|initial| Request::SaslStart {
            mechanism: "PLAIN".into(),
            initial,
        });
        let respond = Request::SaslRespond {
            response: Secret::new(b"c=biws,r=x".to_vec()),
        };
        let abort = Request::SaslAbort {
            reason: "cancelled by the client".into(),
        };
        for r in [apop, plain, log, tls, respond, abort]
            .into_iter()
            .chain(starts)
        {
            let copy = round_trip(match &r {
                Request::Apop { login, digest } => Request::Apop {
                    login: login.clone(),
                    digest: digest.clone(),
                },
                Request::Plain { login, password } => Request::Plain {
                    login: login.clone(),
                    password: password.clone(),
                },
                Request::Log { event, fields } => Request::Log {
                    event: event.clone(),
                    fields: fields.clone(),
                },
                Request::Tls {
                    what,
                    end_point,
                    exporter,
                } => Request::Tls {
                    what: what.clone(),
                    end_point: end_point.clone(),
                    exporter: exporter.clone(),
                },
                Request::SaslStart { mechanism, initial } => Request::SaslStart {
                    mechanism: mechanism.clone(),
                    initial: initial.clone(),
                },
                Request::SaslRespond { response } => Request::SaslRespond {
                    response: response.clone(),
                },
                Request::SaslAbort { reason } => Request::SaslAbort {
                    reason: reason.clone(),
                },
                Request::NewPassword { password } => Request::NewPassword {
                    password: password.clone(),
                },
            });
            assert_eq!(copy, r);
        }
        for v in [
            Verdict::Challenge(b"r=abc,s=c2FsdA==,i=4096".to_vec()),
            Verdict::Challenge(vec![]),
            Verdict::Refused("the password is shorter than 8 characters".into()),
            Verdict::Granted,
            Verdict::Wrong,
            Verdict::Outage,
            Verdict::Fatal,
        ] {
            let mut bytes = Vec::new();
            v.clone().write_to(&mut bytes).unwrap();
            assert_eq!(Verdict::read_from(&mut &bytes[..]).unwrap(), Ok(v));
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        let cases: &[&[u8]] = &[
            &[0, 0, 0, 0],
            &[0, 0, 4, 0, APOP],
            &[0, 0, 0, 1],
            &[0, 0, 0, 1, 0x99],
            &[0, 0, 0, 3, APOP, 0, 5],
            &[0, 0, 0, 5, APOP, 0, 0, 0, 0],
            &[0, 0, 0, 8, APOP, 0, 0, 0, 0, 1, 2, 3],
            &[0, 0, 0, 5, APOP, 0, 1, 0xff, 0],
            &[0, 0, 0, 1, GRANTED],
            &[0, 0, 0, 8, LOG, 0, 1, b'a', 0, 2, b'\n', b'x'],
            &[0, 0, 0, 7, TLS, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 10, TLS, 0, 3, b'a', b' ', b'b', 0, 0, 0, 0],
            &[0, 0, 0, 3, TLS, 0, 0],
            &[0, 0, 0, 6, SASL_START, 0, 1, b'P', 0, 0],
            &[0, 0, 0, 10, SASL_START, 0, 1, b'P', 0, 1, b'x', 0, 0],
            &[0, 0, 0, 8, SASL_START, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 1, SASL_RESPOND],
        ];
        for c in cases {
            let got = Request::read_from(&mut &c[..]).unwrap();
            assert!(
                matches!(got, Err(FrameError::Malformed(_))),
                "{c:?}: {got:?}"
            );
        }
        assert_eq!(
            Request::read_from(&mut &b""[..]).unwrap(),
            Err(FrameError::Closed)
        );
        assert!(matches!(
            Verdict::read_from(&mut &[0u8, 0, 0, 2, GRANTED, 1][..]).unwrap(),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            Verdict::read_from(&mut &[0u8, 0, 0, 1, APOP][..]).unwrap(),
            Err(FrameError::Malformed(_))
        ));
        // A request too large to frame is refused by the writer.
        let huge = Request::Plain {
            login: "a".into(),
            password: Secret::new(vec![b'x'; MAX_FRAME]),
        };
        assert!(huge.write_to(&mut Vec::new()).is_err());
    }

    #[test]
    fn any_bytes_decode_without_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let mut bytes: Vec<u8> = (0..len)
                .map(|i| (seed.rotate_left(i as u32 * 5) & 0xff) as u8)
                .collect();
            if len >= 4 {
                bytes[..4].copy_from_slice(&((len - 4) as u32).to_be_bytes());
            }
            let _ = Request::read_from(&mut &bytes[..]);
            let _ = Verdict::read_from(&mut &bytes[..]);
        }
    }
}
