//! update: DELE and RSET, which mark and unmark, and QUIT, which ends the session and in
//! TRANSACTION enters the UPDATE state (RFC 1939 §6).
//!
//! Guarantees: DELE only marks. Messages are removed only by QUIT in TRANSACTION; if any
//! marked message could not be removed the client is told so (`-ERR`), never `+OK`.

use std::io::{self, Write};

use crate::pop3::wire::Response;

use super::{refused, Authenticator, End, Flow, Output, Session, State};

impl<A: Authenticator> Session<'_, A> {
    pub(super) fn dele<W: Write>(&mut self, msg: u32, out: &mut Output<W>) -> io::Result<Flow> {
        self.with_maildrop(out, |md, out| match md.delete(msg) {
            Ok(()) => out.send(&Response::Deleted),
            Err(r) => out.send(&refused(r)),
        })
    }

    pub(super) fn rset<W: Write>(&mut self, out: &mut Output<W>) -> io::Result<Flow> {
        self.with_maildrop(out, |md, out| {
            md.reset();
            out.send(&Response::Reset(md.stat().0))
        })
    }

    pub(super) fn quit<W: Write>(&mut self, out: &mut Output<W>) -> io::Result<Flow> {
        let state = std::mem::replace(&mut self.state, State::Update);
        if let State::Transaction(md) = state {
            let report = md.commit();
            self.summary.deleted = report.deleted;
            if report.failed > 0 {
                (self.log)(
                    "update",
                    &format!("result=fail not-removed={}", report.failed),
                );
                out.send(&Response::DeleteFailed)?;
                return Ok(Flow::Stop(End::Quit));
            }
        }
        out.send(&Response::Sayonara)?;
        Ok(Flow::Stop(End::Quit))
    }
}
