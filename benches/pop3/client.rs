//! client: the one POP3 client the benchmark runs against every server.
//!
//! Plain `std::net::TcpStream` with TCP_NODELAY, one `write` per command, reads through a 64 KB
//! buffer. It checks what it receives: a `-ERR`, a malformed line or an early EOF is an error,
//! and RETR compares every received octet with the expected wire form (see
//! [`crate::data::wire_form`]) while it streams, so the client's own cost stays a `memcmp`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

pub struct Pop3 {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The greeting's `<...>` timestamp, when it has one.
    pub timestamp: Option<Vec<u8>>,
    line: Vec<u8>,
}

pub fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
        .trim_end()
        .to_string()
}

impl Pop3 {
    /// Connects to 127.0.0.1:`port` and reads the greeting.
    pub fn connect(port: u16) -> io::Result<Pop3> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let writer = stream.try_clone()?;
        let mut c = Pop3 {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            timestamp: None,
            line: Vec::with_capacity(256),
        };
        let greeting = c.status()?;
        if let (Some(a), Some(b)) = (
            greeting.iter().position(|&x| x == b'<'),
            greeting.iter().rposition(|&x| x == b'>'),
        ) {
            if a < b {
                c.timestamp = Some(greeting[a..=b].to_vec());
            }
        }
        Ok(c)
    }

    /// Reads one line (CRLF included) into `self.line`; EOF is an error.
    fn read_line(&mut self) -> io::Result<()> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line)?;
        if n == 0 || !self.line.ends_with(b"\r\n") {
            return Err(err(format!(
                "connection closed or line without CRLF: {:?}",
                show(&self.line)
            )));
        }
        Ok(())
    }

    /// Reads a status line; `+OK ...` gives its text, anything else is an error.
    fn status(&mut self) -> io::Result<Vec<u8>> {
        self.read_line()?;
        if self.line.starts_with(b"+OK") {
            Ok(self.line[..self.line.len() - 2].to_vec())
        } else {
            Err(err(format!("server said {:?}", show(&self.line))))
        }
    }

    fn send(&mut self, cmd: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(cmd.len() + 2);
        buf.extend_from_slice(cmd);
        buf.extend_from_slice(b"\r\n");
        self.writer.write_all(&buf)
    }

    /// Sends `line` and returns the reply line (CRLF removed), whatever it is: SASL's `+ `
    /// challenges and failures are the caller's to judge.
    pub fn exchange(&mut self, line: &[u8]) -> io::Result<Vec<u8>> {
        self.send(line)?;
        self.read_line()?;
        Ok(self.line[..self.line.len() - 2].to_vec())
    }

    /// Sends `cmd` and returns the `+OK` line's text.
    pub fn simple(&mut self, cmd: &[u8]) -> io::Result<Vec<u8>> {
        self.send(cmd)?;
        self.status()
    }

    /// Sends `cmd`, expects `+OK` and a multi-line body; calls `each` with every line (CRLF
    /// removed, dot-unstuffed) and returns the number of lines.
    pub fn multi(&mut self, cmd: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<usize> {
        self.simple(cmd)?;
        let mut n = 0;
        loop {
            self.read_line()?;
            let l = &self.line[..self.line.len() - 2];
            if l == b"." {
                return Ok(n);
            }
            each(l.strip_prefix(b".").unwrap_or(l));
            n += 1;
        }
    }

    pub fn login_user(&mut self, user: &str, pass: &str) -> io::Result<()> {
        self.simple(format!("USER {user}").as_bytes())?;
        self.simple(format!("PASS {pass}").as_bytes())?;
        Ok(())
    }

    pub fn login_apop(&mut self, user: &str, secret: &str) -> io::Result<()> {
        let ts = self
            .timestamp
            .clone()
            .ok_or_else(|| err("the greeting has no APOP timestamp"))?;
        let d = apoptools::testing::apop::digest(&ts, secret.as_bytes());
        let mut cmd = format!("APOP {user} ").into_bytes();
        cmd.extend_from_slice(&d);
        self.simple(&cmd)?;
        Ok(())
    }

    /// STAT: (messages, octets).
    pub fn stat(&mut self) -> io::Result<(u64, u64)> {
        let l = self.simple(b"STAT")?;
        let text = String::from_utf8_lossy(&l);
        let mut f = text.split_ascii_whitespace().skip(1);
        let parse = |s: Option<&str>| -> io::Result<u64> {
            s.and_then(|s| s.parse().ok())
                .ok_or_else(|| err(format!("bad STAT reply {text:?}")))
        };
        Ok((parse(f.next())?, parse(f.next())?))
    }

    /// RETR `n`, comparing the body with `expected` (wire form with terminator) as it arrives.
    /// Returns the number of octets received after the `+OK` line.
    pub fn retr_expect(&mut self, n: u64, expected: &[u8]) -> io::Result<u64> {
        self.simple(format!("RETR {n}").as_bytes())?;
        let mut at = 0usize;
        while at < expected.len() {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Err(err(format!(
                    "EOF after {at} of {} octets of RETR",
                    expected.len()
                )));
            }
            let take = buf.len().min(expected.len() - at);
            if buf[..take] != expected[at..at + take] {
                let off = buf[..take]
                    .iter()
                    .zip(&expected[at..at + take])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(err(format!(
                    "RETR body differs from the file at wire octet {}",
                    at + off
                )));
            }
            self.reader.consume(take);
            at += take;
        }
        Ok(at as u64)
    }

    /// QUIT: expects `+OK`, then waits for the server to close the connection.
    pub fn quit(mut self) -> io::Result<()> {
        self.simple(b"QUIT")?;
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest)?;
        if !rest.is_empty() {
            return Err(err(format!("data after QUIT: {:?}", show(&rest))));
        }
        Ok(())
    }
}
