//! pop3: the POP3 wire format (RFC 1939, 2449, 3206) without any I/O.
//!
//! - [`Parser`] is fed the client's bytes in any chunking and yields, per line, a [`Command`] or
//!   a [`LineError`], or, during a SASL exchange, the line as a client response
//!   ([`Parser::next_response`]). A command line longer than [`MAX_LINE`] octets (terminator
//!   included) is [`LineError::TooLong`]; no line is ever buffered past [`MAX_RESPONSE`]: the
//!   parser drops bytes until the next LF, then yields one [`LineError::TooLong`] and carries
//!   on with the following line. LF and CRLF both end a line.
//!   Message numbers are parsed without overflow (a number too big is an error, not a wrap).
//!   The parser never panics; the line buffer is wiped after every line (it may hold a
//!   password).
//! - [`Response`] is every reply the server sends, serialised by [`Response::write_to`] to exact
//!   wire bytes (status line with RFC 2449/3206 response codes, or one line of a multi-line
//!   listing). No error text from the system ever reaches a response: every text is fixed here.

use std::collections::VecDeque;
use std::io::{self, Write};

use crate::system::wipe::wipe;

/// Longest SASL client response line accepted, in octets, CRLF included. RFC 5034 §4 keeps
/// the AUTH command itself (initial response included) within [`MAX_LINE`], but not the
/// responses to `+ ` challenges: a SCRAM-SHA-256-PLUS client-final message is about 300
/// octets of base64.
pub const MAX_RESPONSE: usize = 4096;

/// Longest command line accepted, in octets, CRLF included (RFC 2449 §4).
pub const MAX_LINE: usize = 255;

/// A client's password as sent with PASS: the one secret type, never printed, wiped when
/// dropped.
pub use crate::store::Secret as Password;

/// One client command with its arguments, syntax already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(Password),
    /// `APOP name digest`: the digest as sent (checked by [`crate::auth::apop::verify`]).
    Apop {
        name: String,
        digest: String,
    },
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    Top {
        msg: u32,
        lines: u32,
    },
    Uidl(Option<u32>),
    Capa,
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `AUTH` alone: list the mechanisms (RFC 1734's discovery, which Outlook uses).
    AuthList,
    /// `AUTH mechanism [initial-response]` (RFC 5034): the initial response still in base64
    /// (`=` for an empty one), held as a secret since it may carry a password.
    Auth {
        mechanism: String,
        initial: Option<Password>,
    },
}

/// Why a line is not a command. The session answers each with `-ERR` and goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Longer than [`MAX_LINE`] octets.
    TooLong,
    /// Contains a NUL byte.
    Nul,
    /// Not valid UTF-8 (outside a PASS argument, which may be any bytes but NUL).
    NotUtf8,
    /// Empty line or unknown keyword.
    Unknown,
    /// A known keyword with missing, extra or malformed arguments.
    BadArguments,
}

/// `n` in decimal, in the tail of `buf`.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Writes `msg SP rest CRLF` into `line` (which must hold 20 + 1 + rest + 2 bytes); returns
/// the length.
fn listing_line(line: &mut [u8], msg: u64, rest: &[u8]) -> usize {
    let mut digits = [0u8; 20];
    let number = decimal(msg, &mut digits);
    let mut n = 0;
    for part in [number, b" ", rest, b"\r\n"] {
        line[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    n
}

/// The incremental command-line parser (see the module comment).
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of the current line so far (without the LF), at most `MAX_RESPONSE - 1`.
    line: Vec<u8>,
    /// Inside an overlong line: drop everything up to the next LF.
    discarding: bool,
    /// Complete lines (without their LF), parsed when taken: as a command or as a response.
    ready: VecDeque<Result<Password, LineError>>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser {
            line: Vec::with_capacity(MAX_LINE),
            discarding: false,
            ready: VecDeque::new(),
        }
    }

    /// Takes the next chunk of the client's bytes.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let part = &bytes[..i];
                    bytes = &bytes[i + 1..];
                    let item = if self.discarding || self.line.len() + part.len() + 1 > MAX_RESPONSE
                    {
                        Err(LineError::TooLong)
                    } else {
                        self.line.extend_from_slice(part);
                        Ok(Password::new(self.line.clone()))
                    };
                    self.discarding = false;
                    wipe(&mut self.line);
                    self.line.clear();
                    self.ready.push_back(item);
                }
                None => {
                    if !self.discarding {
                        if self.line.len() + bytes.len() + 1 > MAX_RESPONSE {
                            self.discarding = true;
                            wipe(&mut self.line);
                            self.line.clear();
                        } else {
                            self.line.extend_from_slice(bytes);
                        }
                    }
                    bytes = &[];
                }
            }
        }
    }

    /// The next complete line's command or error, in order.
    pub fn next_item(&mut self) -> Option<Result<Command, LineError>> {
        Some(self.ready.pop_front()?.and_then(|line| {
            if line.as_bytes().len() + 1 > MAX_LINE {
                Err(LineError::TooLong)
            } else {
                parse_line(line.as_bytes())
            }
        }))
    }

    /// The next complete line as a SASL client response (its CR dropped), in order.
    pub fn next_response(&mut self) -> Option<Result<Password, LineError>> {
        Some(self.ready.pop_front()?.map(|line| {
            let bytes = line.as_bytes();
            Password::new(bytes.strip_suffix(b"\r").unwrap_or(bytes).to_vec())
        }))
    }
}

/// Parses one line (without its LF; a final CR is dropped here).
pub fn parse_line(raw: &[u8]) -> Result<Command, LineError> {
    let line = raw.strip_suffix(b"\r").unwrap_or(raw);
    if line.contains(&0) {
        return Err(LineError::Nul);
    }
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    if keyword.eq_ignore_ascii_case(b"PASS") {
        // RFC 1939: the password is the rest of the line and may contain spaces.
        if rest.is_empty() {
            return Err(LineError::BadArguments);
        }
        return Ok(Command::Pass(Password::new(rest.to_vec())));
    }
    let text = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)?;
    let mut words = text.split_ascii_whitespace();
    let Some(keyword) = words.next() else {
        return Err(LineError::Unknown);
    };
    let args: Vec<&str> = words.collect();
    let keyword = keyword.to_ascii_uppercase();
    let bad = LineError::BadArguments;
    let command = match (keyword.as_str(), args.as_slice()) {
        ("USER", [name]) => Command::User((*name).to_string()),
        ("APOP", [name, digest]) => Command::Apop {
            name: (*name).to_string(),
            digest: (*digest).to_string(),
        },
        ("STAT", []) => Command::Stat,
        ("LIST", []) => Command::List(None),
        ("LIST", [n]) => Command::List(Some(number(n)?)),
        ("RETR", [n]) => Command::Retr(number(n)?),
        ("DELE", [n]) => Command::Dele(number(n)?),
        ("NOOP", []) => Command::Noop,
        ("RSET", []) => Command::Rset,
        ("QUIT", []) => Command::Quit,
        ("TOP", [n, m]) => Command::Top {
            msg: number(n)?,
            lines: number(m)?,
        },
        ("UIDL", []) => Command::Uidl(None),
        ("UIDL", [n]) => Command::Uidl(Some(number(n)?)),
        ("CAPA", []) => Command::Capa,
        ("STLS", []) => Command::Stls,
        ("AUTH", []) => Command::AuthList,
        ("AUTH", [mechanism]) => Command::Auth {
            mechanism: (*mechanism).to_string(),
            initial: None,
        },
        ("AUTH", [mechanism, initial]) => Command::Auth {
            mechanism: (*mechanism).to_string(),
            initial: Some(Password::new(initial.as_bytes().to_vec())),
        },
        (
            "USER" | "PASS" | "APOP" | "STAT" | "LIST" | "RETR" | "DELE" | "NOOP" | "RSET" | "QUIT"
            | "TOP" | "UIDL" | "CAPA" | "STLS" | "AUTH",
            _,
        ) => return Err(bad),
        _ => return Err(LineError::Unknown),
    };
    Ok(command)
}

/// A decimal number of ASCII digits only (no sign), which must fit in a u32.
fn number(s: &str) -> Result<u32, LineError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::BadArguments);
    }
    s.bytes()
        .try_fold(0u32, |n, d| {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
        .ok_or(LineError::BadArguments)
}

/// Every reply the server sends. Status lines end in CRLF; listing lines are the lines of a
/// multi-line reply, and [`Response::End`] terminates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// `+OK POP3 server ready <timestamp>` (the timestamp includes its angle brackets).
    Greeting(&'a str),
    UserAccepted,
    MailboxOpen(usize),
    Stat {
        messages: usize,
        octets: u64,
    },
    /// The reply to LIST without an argument; [`Response::ScanLine`]s and [`Response::End`]
    /// follow.
    ScanListing,
    /// `+OK n size`: LIST with a message number.
    Scan {
        msg: usize,
        octets: u64,
    },
    ScanLine {
        msg: usize,
        octets: u64,
    },
    UidlListing,
    Uidl {
        msg: usize,
        uid: &'a str,
    },
    UidlLine {
        msg: usize,
        uid: &'a str,
    },
    /// RETR: the message, dot-stuffed, and [`Response::End`] follow.
    Retr(u64),
    /// TOP: the headers and lines, dot-stuffed, and [`Response::End`] follow.
    Top,
    Deleted,
    Noop,
    Reset(usize),
    CapaListing,
    /// One capability line.
    Capability(&'a str),
    Sayonara,
    /// `.`: the end of a multi-line reply.
    End,
    // Errors.
    /// The one reply to every failed login, whatever the reason (RFC 3206 `[AUTH]`).
    AuthFailed,
    /// USER/PASS while the configuration allows only APOP.
    PlaintextDisabled,
    /// USER/PASS where the configuration allows it only under TLS, before STLS.
    PlaintextNeedsTls,
    /// STLS accepted: the TLS handshake starts after this line (RFC 2595 §4).
    BeginTls,
    /// STLS where TLS is not configured, or is already active.
    TlsUnavailable,
    /// The reply to a bare AUTH: the mechanisms follow, one per line, then [`Response::End`].
    AuthListing,
    /// AUTH with a mechanism not on offer here and now.
    UnknownMechanism,
    /// `+ base64` (RFC 5034 §4: a space after `+` even when the challenge is empty).
    Challenge(&'a str),
    /// Another session holds the maildrop (RFC 2449 `[IN-USE]`).
    InUse,
    /// The maildrop could not be opened (RFC 2449 `[SYS/TEMP]`).
    MailboxUnavailable,
    /// The server cannot serve at all (bad configuration, account database unreadable).
    Unavailable,
    /// QUIT could not remove every deleted message (RFC 1939 §6).
    DeleteFailed,
    /// Idle timeout (RFC 2449 `[SYS/TEMP]`).
    Autologout,
    /// The login deadline passed (config `login_timeout`).
    LoginTimeout,
    /// Too many commands before login (config `max_login_commands`).
    TooManyCommands,
    /// The account source or the disable list cannot be read: an outage, not a wrong login.
    AuthUnavailable,
    NoSuchMessage,
    AlreadyDeleted,
    /// The message file vanished after the scan (another client removed it).
    MessageGone,
    WrongState,
    /// PASS without a preceding USER.
    NeedUser,
    Line(LineError),
}

impl Response<'_> {
    /// Writes the exact wire bytes of this reply.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            Response::Greeting(ts) => write!(w, "+OK POP3 server ready {ts}\r\n"),
            Response::UserAccepted => w.write_all(b"+OK User name accepted, password please\r\n"),
            Response::MailboxOpen(n) => write!(w, "+OK Mailbox open, {n} messages\r\n"),
            Response::Stat { messages, octets } => write!(w, "+OK {messages} {octets}\r\n"),
            Response::ScanListing => w.write_all(b"+OK Mailbox scan listing follows\r\n"),
            Response::Scan { msg, octets } => write!(w, "+OK {msg} {octets}\r\n"),
            // Listing lines skip the formatting machinery: 100,000 of them make a session.
            Response::ScanLine { msg, octets } => {
                let (mut line, mut digits) = ([0u8; 44], [0u8; 20]);
                let n = listing_line(&mut line, *msg as u64, decimal(*octets, &mut digits));
                w.write_all(&line[..n])
            }
            Response::UidlListing => w.write_all(b"+OK Unique-ID listing follows\r\n"),
            Response::Uidl { msg, uid } => write!(w, "+OK {msg} {uid}\r\n"),
            Response::UidlLine { msg, uid } if uid.len() <= 70 => {
                let mut line = [0u8; 94];
                let n = listing_line(&mut line, *msg as u64, uid.as_bytes());
                w.write_all(&line[..n])
            }
            Response::UidlLine { msg, uid } => write!(w, "{msg} {uid}\r\n"),
            Response::Retr(octets) => write!(w, "+OK {octets} octets\r\n"),
            Response::Top => w.write_all(b"+OK Top of message follows\r\n"),
            Response::Deleted => w.write_all(b"+OK Message deleted\r\n"),
            Response::Noop => w.write_all(b"+OK\r\n"),
            Response::Reset(n) => write!(w, "+OK Mailbox reset, {n} messages\r\n"),
            Response::CapaListing => w.write_all(b"+OK Capability list follows\r\n"),
            Response::Capability(c) => write!(w, "{c}\r\n"),
            Response::Sayonara => w.write_all(b"+OK Sayonara\r\n"),
            Response::End => w.write_all(b".\r\n"),
            Response::AuthFailed => w.write_all(b"-ERR [AUTH] Authentication failed.\r\n"),
            Response::PlaintextDisabled => {
                w.write_all(b"-ERR Plaintext login is not allowed here; use APOP\r\n")
            }
            Response::PlaintextNeedsTls => {
                w.write_all(b"-ERR Plaintext login needs TLS first (STLS); or use APOP\r\n")
            }
            Response::BeginTls => w.write_all(b"+OK Begin TLS negotiation\r\n"),
            Response::TlsUnavailable => w.write_all(b"-ERR TLS is not available here\r\n"),
            Response::AuthListing => w.write_all(b"+OK SASL mechanisms follow\r\n"),
            Response::UnknownMechanism => {
                w.write_all(b"-ERR Unsupported authentication mechanism\r\n")
            }
            Response::Challenge(text) => write!(w, "+ {text}\r\n"),
            Response::InUse => {
                w.write_all(b"-ERR [IN-USE] Mailbox is locked by another session\r\n")
            }
            Response::MailboxUnavailable => {
                w.write_all(b"-ERR [SYS/TEMP] Unable to open the mailbox\r\n")
            }
            Response::Unavailable => {
                w.write_all(b"-ERR [SYS/TEMP] Service temporarily unavailable\r\n")
            }
            Response::DeleteFailed => {
                w.write_all(b"-ERR [SYS/TEMP] Some deleted messages were not removed\r\n")
            }
            Response::Autologout => {
                w.write_all(b"-ERR [SYS/TEMP] Autologout; idle for too long\r\n")
            }
            Response::LoginTimeout => w.write_all(b"-ERR Too long without a login; goodbye\r\n"),
            Response::TooManyCommands => {
                w.write_all(b"-ERR Too many commands without a login; goodbye\r\n")
            }
            Response::AuthUnavailable => w.write_all(
                b"-ERR [SYS/TEMP] Authentication is temporarily unavailable; try again later\r\n",
            ),
            Response::NoSuchMessage => w.write_all(b"-ERR No such message\r\n"),
            Response::AlreadyDeleted => w.write_all(b"-ERR Message already deleted\r\n"),
            Response::MessageGone => w.write_all(b"-ERR Message is no longer available\r\n"),
            Response::WrongState => w.write_all(b"-ERR Command not valid in this state\r\n"),
            Response::NeedUser => w.write_all(b"-ERR USER first\r\n"),
            Response::Line(e) => w.write_all(match e {
                LineError::TooLong => b"-ERR Line too long\r\n",
                LineError::Nul => b"-ERR NUL byte in command\r\n",
                LineError::NotUtf8 => b"-ERR Command is not valid UTF-8\r\n",
                LineError::Unknown => b"-ERR Unknown command\r\n",
                LineError::BadArguments => b"-ERR Invalid arguments\r\n",
            }),
        }
    }

    /// The wire bytes as a vector (tests, logs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v).expect("writing to a Vec cannot fail");
        v
    }
}

/// The one-pass transform of a message into what RETR and TOP send: LF becomes CRLF (an
/// existing CRLF is kept), a line starting with `.` gets another `.` (RFC 1939 §3), and
/// [`BodyEncoder::finish`] ends an unterminated last line with CRLF and adds the final `.`. Fed
/// in chunks of any size, with no buffering of its own.
#[derive(Debug, Clone)]
pub struct BodyEncoder {
    at_line_start: bool,
    prev_cr: bool,
    /// Bytes of the current line so far.
    line_len: u64,
    in_headers: bool,
    /// TOP: body lines still to send.
    lines_left: Option<u32>,
    done: bool,
}

impl BodyEncoder {
    /// The whole message (RETR).
    pub fn retr() -> BodyEncoder {
        BodyEncoder {
            at_line_start: true,
            prev_cr: false,
            line_len: 0,
            in_headers: true,
            lines_left: None,
            done: false,
        }
    }

    /// The headers, the blank line and `lines` lines of the body (TOP).
    pub fn top(lines: u32) -> BodyEncoder {
        BodyEncoder {
            lines_left: Some(lines),
            ..BodyEncoder::retr()
        }
    }

    /// Whether TOP has sent all it should (the rest of the file need not be read).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Appends the encoding of `input` to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() && !self.done {
            if self.at_line_start {
                self.at_line_start = false;
                if input[i] == b'.' {
                    out.push(b'.');
                }
            }
            match input[i..].iter().position(|&b| b == b'\n') {
                None => {
                    out.extend_from_slice(&input[i..]);
                    self.line_len += (input.len() - i) as u64;
                    self.prev_cr = input[input.len() - 1] == b'\r';
                    i = input.len();
                }
                Some(off) => {
                    let lf = i + off;
                    out.extend_from_slice(&input[i..lf]);
                    let cr = if off > 0 {
                        input[lf - 1] == b'\r'
                    } else {
                        self.prev_cr
                    };
                    if !cr {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                    let content = self.line_len + off as u64 - u64::from(cr);
                    self.end_line(content == 0);
                    i = lf + 1;
                }
            }
        }
    }

    fn end_line(&mut self, empty: bool) {
        self.at_line_start = true;
        self.prev_cr = false;
        self.line_len = 0;
        if self.in_headers {
            if empty {
                self.in_headers = false;
                self.done = self.lines_left == Some(0);
            }
        } else if let Some(left) = self.lines_left.as_mut() {
            *left = left.saturating_sub(1);
            self.done = *left == 0;
        }
    }

    /// Ends the reply: CRLF if the last line had none, then `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits() {
        for n in [0u64, 7, 10, 99, 1_000_000, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    fn pw(s: &str) -> Command {
        Command::Pass(Password::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn parser_table() {
        use Command as C;
        use LineError as E;
        let long_ok = format!("USER {}", "u".repeat(MAX_LINE - 2 - 5));
        let long_bad = format!("USER {}", "u".repeat(MAX_LINE - 2 - 4));
        let table: Vec<(&[u8], Result<Command, LineError>)> = vec![
            (b"USER alice", Ok(C::User("alice".into()))),
            (b"user alice\r", Ok(C::User("alice".into()))),
            (b"UsEr  alice  ", Ok(C::User("alice".into()))),
            (b"USER", Err(E::BadArguments)),
            (b"USER a b", Err(E::BadArguments)),
            (b"PASS my secret pw", Ok(pw("my secret pw"))),
            (b"pass  lead", Ok(pw(" lead"))),
            (
                b"PASS \xff\xfe",
                Ok(C::Pass(Password::new(vec![0xff, 0xfe]))),
            ),
            (b"PASS", Err(E::BadArguments)),
            (b"PASS ", Err(E::BadArguments)),
            (b"PASS a\0b", Err(E::Nul)),
            (
                b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                Ok(C::Apop {
                    name: "mrose".into(),
                    digest: "c4c9334bac560ecc979e58001b3e22fb".into(),
                }),
            ),
            (b"APOP mrose", Err(E::BadArguments)),
            (b"STAT", Ok(C::Stat)),
            (b"stat x", Err(E::BadArguments)),
            (b"LIST", Ok(C::List(None))),
            (b"LIST 7", Ok(C::List(Some(7)))),
            (b"LIST 0", Ok(C::List(Some(0)))),
            (b"LIST 007", Ok(C::List(Some(7)))),
            (b"LIST 4294967295", Ok(C::List(Some(u32::MAX)))),
            (b"LIST 4294967296", Err(E::BadArguments)),
            (b"LIST 99999999999999999999999", Err(E::BadArguments)),
            (b"LIST -1", Err(E::BadArguments)),
            (b"LIST +1", Err(E::BadArguments)),
            (b"LIST 1 2", Err(E::BadArguments)),
            (b"RETR 1", Ok(C::Retr(1))),
            (b"RETR", Err(E::BadArguments)),
            (b"RETR one", Err(E::BadArguments)),
            (b"DELE 2", Ok(C::Dele(2))),
            (b"NOOP", Ok(C::Noop)),
            (b"RSET", Ok(C::Rset)),
            (b"QUIT", Ok(C::Quit)),
            (b"quit\r", Ok(C::Quit)),
            (b"TOP 1 0", Ok(C::Top { msg: 1, lines: 0 })),
            (b"TOP 1", Err(E::BadArguments)),
            (b"TOP 1 2 3", Err(E::BadArguments)),
            (b"UIDL", Ok(C::Uidl(None))),
            (b"UIDL 3", Ok(C::Uidl(Some(3)))),
            (b"CAPA", Ok(C::Capa)),
            (b"stls", Ok(C::Stls)),
            (b"AUTH", Ok(C::AuthList)),
            (
                b"auth plain",
                Ok(C::Auth {
                    mechanism: "plain".into(),
                    initial: None,
                }),
            ),
            (
                b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
                Ok(C::Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some(Password::new(b"AGFsaWNlAHNlY3JldA==".to_vec())),
                }),
            ),
            (b"AUTH PLAIN a b", Err(E::BadArguments)),
            (b"STLS now", Err(E::BadArguments)),
            (b"", Err(E::Unknown)),
            (b"\r", Err(E::Unknown)),
            (b"   ", Err(E::Unknown)),
            (b"XTND foo", Err(E::Unknown)),
            (b"STATS", Err(E::Unknown)),
            (b"ST\0AT", Err(E::Nul)),
            (b"USER \xc3\x28", Err(E::NotUtf8)),
            (b"\xff", Err(E::NotUtf8)),
            (long_ok.as_bytes(), Ok(C::User("u".repeat(MAX_LINE - 7)))),
        ];
        for (line, want) in &table {
            assert_eq!(
                &parse_line(line),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // Through the parser, with both terminators, including the length limit.
        for (line, want) in table {
            for end in [&b"\r\n"[..], b"\n"] {
                let mut p = Parser::new();
                p.feed(line);
                p.feed(end);
                assert_eq!(p.next_item(), Some(want.clone()));
                assert_eq!(p.next_item(), None);
            }
        }
        let mut p = Parser::new();
        p.feed(long_ok.as_bytes());
        p.feed(b"\r\n");
        p.feed(long_bad.as_bytes());
        p.feed(b"\r\n");
        assert!(p.next_item().unwrap().is_ok(), "255 octets with CRLF fit");
        assert_eq!(p.next_item(), Some(Err(E::TooLong)), "256 do not");
    }

    #[test]
    fn overlong_line_is_not_buffered_and_parser_resyncs() {
        let mut p = Parser::new();
        p.feed(b"NOOP\r\nUSER ");
        for _ in 0..10_000 {
            p.feed(&[b'x'; 100]);
            assert!(p.line.capacity() <= 2 * MAX_RESPONSE, "buffer grew");
        }
        p.feed(b"\r\nSTAT\r\n");
        assert_eq!(p.next_item(), Some(Ok(Command::Noop)));
        assert_eq!(p.next_item(), Some(Err(LineError::TooLong)));
        assert_eq!(p.next_item(), Some(Ok(Command::Stat)));
        assert_eq!(p.next_item(), None);
        assert!(p.ready.is_empty());
    }

    #[test]
    fn every_chunk_size_gives_the_same_items() {
        let long = "Z".repeat(700);
        let stream = format!(
            "USER bob\r\nPASS a b c\r\nSTAT\nLIST 1\r\n{long}\r\nRETR 2\r\n\r\nTOP 1 5\r\n\
             BOGUS\nUIDL\r\nQUIT\r\n"
        );
        let mut whole = Parser::new();
        whole.feed(stream.as_bytes());
        let want: Vec<_> = std::iter::from_fn(|| whole.next_item()).collect();
        assert_eq!(want.len(), 11);
        assert_eq!(want[4], Err(LineError::TooLong));
        for size in 1..=stream.len() {
            let mut p = Parser::new();
            let mut got = Vec::new();
            for chunk in stream.as_bytes().chunks(size) {
                p.feed(chunk);
                got.extend(std::iter::from_fn(|| p.next_item()));
            }
            assert_eq!(got, want, "chunk size {size}");
            assert!(p.line.is_empty());
        }
    }

    #[test]
    fn response_bytes() {
        use Response as R;
        let cases: Vec<(Response, &[u8])> = vec![
            (R::Greeting("<1.2@h>"), b"+OK POP3 server ready <1.2@h>\r\n"),
            (
                R::UserAccepted,
                b"+OK User name accepted, password please\r\n",
            ),
            (R::MailboxOpen(1), b"+OK Mailbox open, 1 messages\r\n"),
            (
                R::Stat {
                    messages: 2,
                    octets: 320,
                },
                b"+OK 2 320\r\n",
            ),
            (R::ScanListing, b"+OK Mailbox scan listing follows\r\n"),
            (
                R::Scan {
                    msg: 1,
                    octets: 507,
                },
                b"+OK 1 507\r\n",
            ),
            (
                R::ScanLine {
                    msg: 1,
                    octets: 507,
                },
                b"1 507\r\n",
            ),
            (R::UidlListing, b"+OK Unique-ID listing follows\r\n"),
            (
                R::Uidl {
                    msg: 2,
                    uid: "QhdPYR:00WBw1Ph7x7",
                },
                b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n",
            ),
            (R::UidlLine { msg: 3, uid: "abc" }, b"3 abc\r\n"),
            (R::Retr(507), b"+OK 507 octets\r\n"),
            (R::Top, b"+OK Top of message follows\r\n"),
            (R::Deleted, b"+OK Message deleted\r\n"),
            (R::Noop, b"+OK\r\n"),
            (R::Reset(4), b"+OK Mailbox reset, 4 messages\r\n"),
            (R::CapaListing, b"+OK Capability list follows\r\n"),
            (R::Capability("EXPIRE NEVER"), b"EXPIRE NEVER\r\n"),
            (R::Sayonara, b"+OK Sayonara\r\n"),
            (R::End, b".\r\n"),
            (R::AuthFailed, b"-ERR [AUTH] Authentication failed.\r\n"),
            (
                R::PlaintextDisabled,
                b"-ERR Plaintext login is not allowed here; use APOP\r\n",
            ),
            (
                R::PlaintextNeedsTls,
                b"-ERR Plaintext login needs TLS first (STLS); or use APOP\r\n",
            ),
            (R::BeginTls, b"+OK Begin TLS negotiation\r\n"),
            (R::TlsUnavailable, b"-ERR TLS is not available here\r\n"),
            (R::AuthListing, b"+OK SASL mechanisms follow\r\n"),
            (
                R::UnknownMechanism,
                b"-ERR Unsupported authentication mechanism\r\n",
            ),
            (R::Challenge(""), b"+ \r\n"),
            (
                R::Challenge("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"),
                b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
            ),
            (
                R::InUse,
                b"-ERR [IN-USE] Mailbox is locked by another session\r\n",
            ),
            (
                R::MailboxUnavailable,
                b"-ERR [SYS/TEMP] Unable to open the mailbox\r\n",
            ),
            (
                R::Unavailable,
                b"-ERR [SYS/TEMP] Service temporarily unavailable\r\n",
            ),
            (
                R::DeleteFailed,
                b"-ERR [SYS/TEMP] Some deleted messages were not removed\r\n",
            ),
            (
                R::Autologout,
                b"-ERR [SYS/TEMP] Autologout; idle for too long\r\n",
            ),
            (
                R::LoginTimeout,
                b"-ERR Too long without a login; goodbye\r\n",
            ),
            (
                R::TooManyCommands,
                b"-ERR Too many commands without a login; goodbye\r\n",
            ),
            (
                R::AuthUnavailable,
                b"-ERR [SYS/TEMP] Authentication is temporarily unavailable; try again later\r\n",
            ),
            (R::NoSuchMessage, b"-ERR No such message\r\n"),
            (R::AlreadyDeleted, b"-ERR Message already deleted\r\n"),
            (R::MessageGone, b"-ERR Message is no longer available\r\n"),
            (R::WrongState, b"-ERR Command not valid in this state\r\n"),
            (R::NeedUser, b"-ERR USER first\r\n"),
            (R::Line(LineError::TooLong), b"-ERR Line too long\r\n"),
            (R::Line(LineError::Nul), b"-ERR NUL byte in command\r\n"),
            (
                R::Line(LineError::NotUtf8),
                b"-ERR Command is not valid UTF-8\r\n",
            ),
            (R::Line(LineError::Unknown), b"-ERR Unknown command\r\n"),
            (
                R::Line(LineError::BadArguments),
                b"-ERR Invalid arguments\r\n",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(
                r.to_bytes(),
                want,
                "{r:?}: {:?}",
                String::from_utf8_lossy(&r.to_bytes())
            );
        }
    }

    #[test]
    fn password_is_not_printed() {
        assert_eq!(format!("{:?}", pw("hunter2")), "Pass(Secret(..))");
    }

    fn encode_in_chunks(input: &[u8], mut enc: BodyEncoder, size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in input.chunks(size.max(1)) {
            enc.encode(chunk, &mut out);
            if enc.is_done() {
                break;
            }
        }
        enc.finish(&mut out);
        out
    }

    #[test]
    fn body_encoding() {
        let cases: [(&[u8], &[u8]); 10] = [
            (b"", b".\r\n"),
            (b"a\n", b"a\r\n.\r\n"),
            (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
            (b".\n", b"..\r\n.\r\n"),
            (b"x\n.\n..y\n", b"x\r\n..\r\n...y\r\n.\r\n"),
            (b"no final newline", b"no final newline\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b"a\n\nb", b"a\r\n\r\nb\r\n.\r\n"),
            (b"a\rb\n", b"a\rb\r\n.\r\n"),
            (b" .x\r\n.\r\n", b" .x\r\n..\r\n.\r\n"),
        ];
        for (input, want) in cases {
            for size in 1..=input.len().max(1) {
                let got = encode_in_chunks(input, BodyEncoder::retr(), size);
                assert_eq!(
                    got,
                    want,
                    "{:?} in chunks of {size}: {:?}",
                    String::from_utf8_lossy(input),
                    String::from_utf8_lossy(&got)
                );
                // The size the maildir reports is what is sent, before stuffing and the end.
                let unstuffed = want.len() - 3 - count_stuffed(want);
                assert_eq!(
                    crate::maildir::measure(input).unwrap().1,
                    unstuffed as u64,
                    "{input:?}"
                );
            }
        }
    }

    /// How many dots stuffing added to an encoded body (lines starting with `..`).
    fn count_stuffed(encoded: &[u8]) -> usize {
        let body = &encoded[..encoded.len() - 3];
        body.split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b".."))
            .count()
    }

    #[test]
    fn top_encoding() {
        let msg = b"Subject: x\r\nFrom: y\n\n.one\ntwo\r\nthree\nfour";
        let cases: [(u32, &[u8]); 4] = [
            (0, b"Subject: x\r\nFrom: y\r\n\r\n.\r\n"),
            (1, b"Subject: x\r\nFrom: y\r\n\r\n..one\r\n.\r\n"),
            (
                3,
                b"Subject: x\r\nFrom: y\r\n\r\n..one\r\ntwo\r\nthree\r\n.\r\n",
            ),
            (
                99,
                b"Subject: x\r\nFrom: y\r\n\r\n..one\r\ntwo\r\nthree\r\nfour\r\n.\r\n",
            ),
        ];
        for (lines, want) in cases {
            for size in 1..=msg.len() {
                let got = encode_in_chunks(msg, BodyEncoder::top(lines), size);
                assert_eq!(got, want, "TOP {lines} in chunks of {size}");
            }
        }
        // Headers only, no blank line: all of it.
        let got = encode_in_chunks(b"A: b\nC: d\n", BodyEncoder::top(0), 3);
        assert_eq!(got, b"A: b\r\nC: d\r\n.\r\n");
    }
}
