//! retrieval: RETR and TOP, which stream a message to the client.
//!
//! Guarantees: a body streams in [`maildir::CHUNK`]-sized pieces through the one-pass encoder
//! (LF to CRLF and dot-stuffing), so memory stays bounded whatever the message size. A file
//! gone since the scan gets `-ERR` and the session goes on; a read error after the header has
//! been sent cannot be told to the client, so the connection closes.

use std::io::{self, Read, Write};

use crate::maildir;
use crate::pop3::wire::{BodyEncoder, Response};

use super::{refused, Authenticator, End, Flow, Output, Session, State};

impl<A: Authenticator> Session<'_, A> {
    pub(super) fn retr<W: Write>(&mut self, msg: u32, out: &mut Output<W>) -> io::Result<Flow> {
        let State::Transaction(md) = &mut self.state else {
            out.send(&Response::WrongState)?;
            return Ok(Flow::Go);
        };
        let size = match md.get(msg) {
            Ok(m) => m.size,
            Err(r) => {
                out.send(&refused(r))?;
                return Ok(Flow::Go);
            }
        };
        self.send_message(msg, Response::Retr(size), BodyEncoder::retr(), out)
    }

    pub(super) fn top<W: Write>(
        &mut self,
        msg: u32,
        lines: u32,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        let State::Transaction(md) = &mut self.state else {
            out.send(&Response::WrongState)?;
            return Ok(Flow::Go);
        };
        if let Err(r) = md.get(msg) {
            out.send(&refused(r))?;
            return Ok(Flow::Go);
        }
        self.send_message(msg, Response::Top, BodyEncoder::top(lines), out)
    }

    /// Streams message `msg` with `header` first. A file gone since the scan gets `-ERR` and
    /// the session goes on; a read error after the header has been sent cannot be told to the
    /// client, so the connection closes.
    fn send_message<W: Write>(
        &mut self,
        msg: u32,
        header: Response,
        mut encoder: BodyEncoder,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        let State::Transaction(md) = &mut self.state else {
            out.send(&Response::WrongState)?;
            return Ok(Flow::Go);
        };
        let mut file = match md.open_message(msg) {
            Ok(Some(f)) => f,
            Ok(None) => {
                out.send(&Response::MessageGone)?;
                return Ok(Flow::Go);
            }
            Err(e) => {
                (self.log)(
                    "retr",
                    &format!("msg={msg} result=fail reason={:?}", e.to_string()),
                );
                out.send(&Response::MessageGone)?;
                return Ok(Flow::Go);
            }
        };
        out.send(&header)?;
        let mut chunk = vec![0u8; maildir::CHUNK];
        while !encoder.is_done() {
            let n = match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    (self.log)(
                        "retr",
                        &format!("msg={msg} result=fail reason={:?}", e.to_string()),
                    );
                    out.flush()?;
                    return Ok(Flow::Stop(End::Io));
                }
            };
            encoder.encode(&chunk[..n], &mut out.buf);
            if out.buf.len() >= maildir::CHUNK {
                out.write_buf()?;
            }
        }
        encoder.finish(&mut out.buf);
        self.summary.retrieved += 1;
        Ok(Flow::Go)
    }
}
