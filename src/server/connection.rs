//! connection: the client's connection as ipop3d sees it, standard input and output.
//!
//! Guarantees:
//! - [`Stdin`] enforces the idle timeout: poll(2) before every read, and expiry is a
//!   `TimedOut` error (the session answers `-ERR [SYS/TEMP]` and deletes nothing).
//! - [`Stdout`] writes straight to fd 1, without std's line buffering: the session batches its
//!   replies into one write per batch of pipelined commands.
//! - [`set_socket_options`]: on a TCP socket, TCP_NODELAY (small replies never wait on Nagle's
//!   algorithm) and a send timeout, so a client that stops reading is dropped too.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// On a socket at standard output: TCP_NODELAY (TCP only) and a send timeout of `timeout`, so a
/// client that stops reading cannot hold the process forever. Anything else (a pipe in tests,
/// ENOTSOCK) is left alone.
pub fn set_socket_options(timeout: Duration) {
    use nix::sys::socket::{setsockopt, sockopt};
    let stdout = io::stdout();
    let _ = setsockopt(&stdout.as_fd(), sockopt::TcpNoDelay, &true);
    let limit = nix::sys::time::TimeVal::new(timeout.as_secs().min(i32::MAX as u64) as _, 0);
    let _ = setsockopt(&stdout.as_fd(), sockopt::SendTimeout, &limit);
}

/// The address of the peer of standard input, when it is an IPv4 or IPv6 socket.
pub fn peer_address() -> Option<String> {
    use nix::sys::socket::{getpeername, SockaddrStorage};
    let peer: SockaddrStorage = getpeername(nix::libc::STDIN_FILENO).ok()?;
    if let Some(v4) = peer.as_sockaddr_in() {
        return Some(v4.ip().to_string());
    }
    peer.as_sockaddr_in6().map(|v6| {
        let ip = v6.ip();
        // An IPv4 client of a dual-stack socket, as tcpserver shows it.
        ip.to_ipv4_mapped()
            .map_or(ip.to_string(), |v4| v4.to_string())
    })
}

/// Standard input with the idle timeout, and before login the login deadline too: poll(2)
/// before each read; expiry of either is `TimedOut`.
pub struct Stdin {
    pub timeout: Duration,
    /// When AUTHORIZATION must end; no longer applies once `logged_in` is set.
    pub login_deadline: Option<Instant>,
    pub logged_in: Rc<Cell<bool>>,
    /// Take at most one line per read, and nothing after it (the pre-login front: what the
    /// client sent after its login line stays in the socket for the back).
    pub one_line: bool,
}

impl Stdin {
    /// Standard input with the idle timeout alone.
    pub fn idle(timeout: Duration) -> Stdin {
        Stdin {
            timeout,
            login_deadline: None,
            logged_in: Rc::new(Cell::new(false)),
            one_line: false,
        }
    }
}

impl Read for Stdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut wait = self.timeout;
        if let Some(deadline) = self.login_deadline.filter(|_| !self.logged_in.get()) {
            wait = wait.min(deadline.saturating_duration_since(Instant::now()));
        }
        let millis = wait.as_millis().min(i32::MAX as u128) as i32;
        let stdin = io::stdin();
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Err(io::ErrorKind::TimedOut.into()),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        if !self.one_line {
            return nix::unistd::read(nix::libc::STDIN_FILENO, buf).map_err(io::Error::from);
        }
        read_one_line(buf)
    }
}

/// Reads from standard input up to and including the first LF that is waiting (or all that
/// is waiting, if no LF is): peeked first on a socket, one byte at a time on anything else.
///
/// The one command this reader knows is STLS: when the line read is an STLS line, every byte
/// already waiting after it is read and discarded, before the session can answer `+OK`
/// (RFC 2595 §4; the CVE-2011-0411 class of plaintext injected ahead of the handshake).
/// Nothing the client sent after seeing `+OK` can have arrived yet, so a client that follows
/// the RFC loses nothing; bytes still in flight reach the TLS layer, which refuses them.
fn read_one_line(buf: &mut [u8]) -> io::Result<usize> {
    use nix::sys::socket::{recv, MsgFlags};
    let fd = nix::libc::STDIN_FILENO;
    let want = match recv(fd, buf, MsgFlags::MSG_PEEK) {
        Ok(n) => buf[..n]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(n, |i| i + 1),
        Err(nix::errno::Errno::ENOTSOCK) => 1.min(buf.len()),
        Err(e) => return Err(e.into()),
    };
    let n = nix::unistd::read(fd, &mut buf[..want]).map_err(io::Error::from)?;
    if is_stls_line(&buf[..n]) {
        let mut junk = [0u8; 1024];
        while let Ok(got) = recv(fd, &mut junk, MsgFlags::MSG_DONTWAIT) {
            if got == 0 {
                break;
            }
        }
    }
    Ok(n)
}

/// Whether `line` is a whole `STLS` command line (any case, CRLF or LF).
fn is_stls_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.eq_ignore_ascii_case(b"STLS")
}

/// Standard output without std's line buffering: the session does its own batching.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        nix::unistd::write(io::stdout(), buf).map_err(io::Error::from)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
