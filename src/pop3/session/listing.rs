//! listing: STAT, LIST, UIDL and NOOP, which read the maildrop without changing it.
//!
//! Guarantees: messages marked deleted are not listed and do not count; a number that does
//! not name a message, or names a deleted one, gets `-ERR` and the session goes on.

use std::io::{self, Write};

use crate::pop3::wire::Response;

use super::{refused, Authenticator, Flow, Output, Session};

impl<A: Authenticator> Session<'_, A> {
    pub(super) fn stat<W: Write>(&mut self, out: &mut Output<W>) -> io::Result<Flow> {
        self.with_maildrop(out, |md, out| {
            let (messages, octets) = md.stat();
            out.send(&Response::Stat { messages, octets })
        })
    }

    pub(super) fn list<W: Write>(
        &mut self,
        msg: Option<u32>,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        self.with_maildrop(out, |md, out| match msg {
            None => {
                out.send(&Response::ScanListing)?;
                for (i, m) in md.messages().enumerate() {
                    if !m.deleted {
                        out.send(&Response::ScanLine {
                            msg: i + 1,
                            octets: m.size,
                        })?;
                    }
                }
                out.send(&Response::End)
            }
            Some(n) => match md.get(n) {
                Ok(m) => out.send(&Response::Scan {
                    msg: n as usize,
                    octets: m.size,
                }),
                Err(r) => out.send(&refused(r)),
            },
        })
    }

    pub(super) fn uidl<W: Write>(
        &mut self,
        msg: Option<u32>,
        out: &mut Output<W>,
    ) -> io::Result<Flow> {
        self.with_maildrop(out, |md, out| match msg {
            None => {
                out.send(&Response::UidlListing)?;
                for (i, m) in md.messages().enumerate() {
                    if !m.deleted {
                        out.send(&Response::UidlLine {
                            msg: i + 1,
                            uid: m.uid(),
                        })?;
                    }
                }
                out.send(&Response::End)
            }
            Some(n) => match md.get(n) {
                Ok(m) => out.send(&Response::Uidl {
                    msg: n as usize,
                    uid: m.uid(),
                }),
                Err(r) => out.send(&refused(r)),
            },
        })
    }

    pub(super) fn noop<W: Write>(&mut self, out: &mut Output<W>) -> io::Result<Flow> {
        self.with_maildrop(out, |_, out| out.send(&Response::Noop))
    }
}
