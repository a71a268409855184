//! tls: TLS 1.2 and 1.3 with rustls for the pre-login front of ipop3d: STLS (RFC 2595) and
//! implicit TLS (RFC 8314, port 995).
//!
//! Guarantees:
//! - [`load`] reads `tls_cert` and `tls_key` afresh for every connection (a renewed certificate
//!   is served without a restart) and checks the key on the opened handle: a regular file,
//!   owned by root (or by the user running ipop3d), not writable by its group and with no
//!   permission at all for others. Anything else is an error naming the file and the fix; the
//!   caller refuses the connection before its greeting. The key's file bytes are wiped once
//!   parsed.
//! - Only TLS 1.2 and 1.3, with rustls's default suites of the `ring` provider (ring rather
//!   than aws-lc-rs: a fresh build of the crate took 33 s with ring and 71 s with aws-lc-rs
//!   here, the binary is 2.7 MB instead of 5.4 MB, and the handshake rates measured were
//!   within 15 %: 6.0-7.2k/s with ring, 7.5-8.2k/s with aws-lc-rs, far above what one
//!   process per connection can use). No session resumption: each process serves one
//!   connection, so a cache could never be hit.
//! - [`Link`] is the session's byte stream under TLS, with the same idle timeout and login
//!   deadline as the plain connection, and, before the login, at most one line per read (what
//!   follows a login line is kept for the back, see [`Link::relay`]).
//! - [`Link::relay`]: after the login the front stays as the relay between TLS and the back's
//!   socketpair, so the process that runs as the mail account never holds the key. It stops
//!   reading the client while the back has not taken what it was sent (no unbounded buffer),
//!   and ends with a close_notify when the back closes.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use crate::system::wipe::wipe;

use super::connection;

/// The largest certificate chain file read.
const MAX_CERT: u64 = 1 << 20;
/// The largest key file read.
const MAX_KEY: u64 = 64 << 10;

/// What [`load`] gives one connection.
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// SCRAM-SHA-256-PLUS's tls-server-end-point binding: the hash of the server's certificate
    /// (RFC 5929 §4.1: SHA-256, unless the certificate is signed with SHA-384 or SHA-512).
    pub end_point: Vec<u8>,
}

/// Reads the certificate chain and the key and builds the server's TLS configuration; the
/// error is for the log.
pub fn load(cert: &Path, key: &Path) -> Result<Loaded, String> {
    let chain_pem = read(cert, MAX_CERT, false)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "tls_cert {}: no PEM certificate in it",
            cert.display()
        ));
    }
    let end_point = end_point_hash(&chain[0]);
    let mut key_pem = read(key, MAX_KEY, true)?;
    let parsed = PrivateKeyDer::from_pem_slice(&key_pem);
    wipe(&mut key_pem);
    let private = parsed.map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "tls_cert {} and tls_key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    // One connection per process: resumption could never find its session again.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Loaded {
        config: Arc::new(config),
        end_point,
    })
}

/// RFC 5929 §4.1's hash of a certificate: the hash of its signature algorithm, SHA-256 for
/// MD5, SHA-1 and anything else.
fn end_point_hash(cert: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    const ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
    const RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    const RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    match signature_algorithm(cert) {
        Some(oid) if oid == ECDSA_SHA384 || oid == RSA_SHA384 => {
            sha2::Sha384::digest(cert).to_vec()
        }
        Some(oid) if oid == ECDSA_SHA512 || oid == RSA_SHA512 => {
            sha2::Sha512::digest(cert).to_vec()
        }
        _ => sha2::Sha256::digest(cert).to_vec(),
    }
}

/// The OID of a DER certificate's outer signatureAlgorithm (RFC 5280 §4.1.1.2).
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    /// One DER element: its tag, its contents and what follows it.
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |l, &b| l << 8 | usize::from(b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (0x30, certificate, _) = element(cert)? else {
        return None;
    };
    let (0x30, _, rest) = element(certificate)? else {
        return None;
    };
    let (0x30, algorithm, _) = element(rest)? else {
        return None;
    };
    let (0x06, oid, _) = element(algorithm)? else {
        return None;
    };
    Some(oid)
}

/// Reads an administrator's TLS file; for the key, the ownership and mode are checked on the
/// opened handle first.
fn read(path: &Path, limit: u64, secret: bool) -> Result<Vec<u8>, String> {
    let key = if secret { "tls_key" } else { "tls_cert" };
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{key} {shown}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{key} {shown}: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!("{key} {shown}: not a regular file"));
    }
    if meta.len() > limit {
        return Err(format!("{key} {shown}: larger than {limit} bytes"));
    }
    if secret {
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != 0 && meta.uid() != me {
            return Err(format!(
                "{key} {shown}: owned by uid {}, not root; chown root {shown}",
                meta.uid()
            ));
        }
        if meta.mode() & 0o027 != 0 {
            return Err(format!(
                "{key} {shown}: mode {:04o} lets others read or change the key; chmod 0600 {shown}",
                meta.mode() & 0o7777
            ));
        }
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    let read = (&file).take(limit + 1).read_to_end(&mut bytes);
    if let Err(e) = read {
        wipe(&mut bytes);
        return Err(format!("{key} {shown}: {e}"));
    }
    Ok(bytes)
}

/// Standard output as rustls's TLS sink.
struct Out;

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        nix::unistd::write(io::stdout(), buf).map_err(io::Error::from)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The client's connection under TLS: standard input and output through one rustls server
/// connection.
pub struct Link {
    inner: RefCell<Inner>,
}

struct Inner {
    conn: ServerConnection,
    /// The TLS bytes' source, with its timeouts.
    raw: connection::Stdin,
    /// Plaintext taken from rustls and not yet given to the session.
    plain: Vec<u8>,
    /// At most one line per read (before the login).
    one_line: bool,
}

impl Link {
    /// Runs the server side of a handshake on standard input and output (`raw` carries the
    /// timeouts); the error is for the log.
    pub fn accept(config: Arc<ServerConfig>, raw: connection::Stdin) -> Result<Link, String> {
        let conn = ServerConnection::new(config).map_err(|e| format!("TLS: {e}"))?;
        let mut inner = Inner {
            conn,
            raw,
            plain: Vec::new(),
            one_line: true,
        };
        while inner.conn.is_handshaking() {
            if inner.conn.wants_write() {
                inner.push().map_err(|e| format!("TLS handshake: {e}"))?;
                continue;
            }
            match inner.conn.read_tls(&mut inner.raw) {
                Ok(0) => return Err("TLS handshake: the client closed the connection".into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("TLS handshake: {e}")),
            }
            if let Err(e) = inner.conn.process_new_packets() {
                // The alert that says why.
                let _ = inner.push();
                return Err(format!("TLS handshake: {e}"));
            }
        }
        inner.push().map_err(|e| format!("TLS handshake: {e}"))?;
        Ok(Link {
            inner: RefCell::new(inner),
        })
    }

    /// The negotiated version and cipher suite, as `TLSv1.3/TLS13_AES_256_GCM_SHA384`.
    pub fn describe(&self) -> String {
        let inner = self.inner.borrow();
        let version = match inner.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "unknown".to_string(),
        };
        let suite = inner
            .conn
            .negotiated_cipher_suite()
            .map_or("unknown".to_string(), |s| format!("{:?}", s.suite()));
        format!("{version}/{suite}")
    }

    /// SCRAM-SHA-256-PLUS's tls-exporter binding (RFC 9266): 32 bytes exported with the
    /// label `EXPORTER-Channel-Binding`; only under TLS 1.3, where it is unique per connection.
    pub fn exporter(&self) -> Option<Vec<u8>> {
        let inner = self.inner.borrow();
        if inner.conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return None;
        }
        let out = inner
            .conn
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()?;
        Some(out.to_vec())
    }

    /// Ends TLS cleanly (a close_notify), as the session ends before any login.
    pub fn close(self) {
        let mut inner = self.inner.into_inner();
        inner.conn.send_close_notify();
        let _ = inner.push();
    }

    /// After a granted login: relays between the client (under TLS) and the back, starting
    /// with the plaintext the session has not read, until either side is done.
    /// `idle` bounds a wait with no traffic either way (the back's own idle timeout ends the
    /// session well before it).
    pub fn relay(self, pipe: &UnixStream, idle: Duration) -> io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use nix::sys::socket::{recv, send, shutdown, MsgFlags, Shutdown};
        use std::os::fd::AsRawFd;
        let mut inner = self.inner.into_inner();
        let mut to_back = std::mem::take(&mut inner.plain);
        let mut chunk = vec![0u8; 16 << 10];
        let (mut client_open, mut back_open) = (true, true);
        let stdin = io::stdin();
        let wait = PollTimeout::try_from(idle.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        loop {
            // The plaintext rustls already holds goes first.
            if client_open {
                client_open = inner.drain_plain(&mut to_back)?;
                if !client_open {
                    let _ = shutdown(pipe.as_raw_fd(), Shutdown::Write);
                }
            }
            inner.push()?;
            if !back_open {
                return Ok(());
            }
            let client_events = if client_open && to_back.is_empty() {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            };
            let mut back_events = PollFlags::POLLIN;
            if !to_back.is_empty() {
                back_events |= PollFlags::POLLOUT;
            }
            let mut fds = [
                PollFd::new(stdin.as_fd(), client_events),
                PollFd::new(pipe.as_fd(), back_events),
            ];
            match poll(&mut fds, wait) {
                Ok(0) => return Err(io::ErrorKind::TimedOut.into()),
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let client = fds[0].revents().unwrap_or(PollFlags::empty());
            let back = fds[1].revents().unwrap_or(PollFlags::empty());
            if back.intersects(PollFlags::POLLOUT) && !to_back.is_empty() {
                let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
                match send(pipe.as_raw_fd(), &to_back, flags) {
                    Ok(n) => {
                        wipe(&mut to_back[..n]);
                        to_back.drain(..n);
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    // The back is gone: what it wrote last has been relayed already.
                    Err(_) => back_open = false,
                }
            }
            if back.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                match recv(pipe.as_raw_fd(), &mut chunk, MsgFlags::MSG_DONTWAIT) {
                    Ok(0) | Err(nix::errno::Errno::ECONNRESET) => back_open = false,
                    Ok(n) => inner.conn.writer().write_all(&chunk[..n])?,
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
                if !back_open {
                    inner.conn.send_close_notify();
                }
            }
            if client.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                match inner.conn.read_tls(&mut inner.raw) {
                    Ok(0) => {
                        client_open = false;
                        let _ = shutdown(pipe.as_raw_fd(), Shutdown::Write);
                    }
                    Ok(_) => {
                        if let Err(e) = inner.conn.process_new_packets() {
                            let _ = inner.push();
                            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

impl Inner {
    /// Writes every TLS byte rustls has queued to standard output.
    fn push(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut Out)?;
        }
        Ok(())
    }

    /// Moves the plaintext rustls holds to `into`; false once the client has sent its
    /// close_notify.
    fn drain_plain(&mut self, into: &mut Vec<u8>) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.conn.reader().read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    into.extend_from_slice(&chunk[..n]);
                    wipe(&mut chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes plaintext from the client until there is some; false at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            let mut plain = std::mem::take(&mut self.plain);
            let open = self.drain_plain(&mut plain);
            self.plain = plain;
            if !self.plain.is_empty() {
                return Ok(true);
            }
            let open = open?;
            if !open {
                return Ok(false);
            }
            match self.conn.read_tls(&mut self.raw) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                let _ = self.push();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            self.push()?;
        }
    }
}

impl Read for &Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut inner = self.inner.borrow_mut();
        if inner.plain.is_empty() && !inner.fill()? {
            return Ok(0);
        }
        let mut n = inner.plain.len().min(buf.len());
        if inner.one_line {
            if let Some(lf) = inner.plain[..n].iter().position(|&b| b == b'\n') {
                n = lf + 1;
            }
        }
        buf[..n].copy_from_slice(&inner.plain[..n]);
        wipe(&mut inner.plain[..n]);
        inner.plain.drain(..n);
        Ok(n)
    }
}

impl Write for &Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.borrow_mut();
        loop {
            let n = inner.conn.writer().write(buf)?;
            inner.push()?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.borrow_mut().push()
    }
}

#[cfg(test)]
mod tests {
    /// A certificate's outer signature algorithm picks the end-point hash (RFC 5929 §4.1):
    /// SHA-256 for an ecdsa-with-SHA256 certificate, SHA-384 for one signed with SHA-384.
    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        use sha2::Digest;
        for (alg, len) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, 32),
            (&rcgen::PKCS_ECDSA_P384_SHA384, 48),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            let cert = params.self_signed(&key).unwrap();
            let der = cert.der().to_vec();
            let hash = super::end_point_hash(&der);
            assert_eq!(hash.len(), len);
            if len == 32 {
                assert_eq!(hash, sha2::Sha256::digest(&der).to_vec());
            } else {
                assert_eq!(hash, sha2::Sha384::digest(&der).to_vec());
            }
        }
        assert_eq!(super::signature_algorithm(b"\x30\x03\x02\x01"), None);
    }
}
