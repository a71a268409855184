//! client: a tiny POP3 client over a TcpStream, plain or under TLS (rustls, trusting the
//! world's test CA), strict about the wire (every line ends CRLF).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use crate::harness::PATIENCE;

pub struct Pop {
    reader: BufReader<Conn>,
    writer: Conn,
    pub greeting: String,
}

/// The connection, shared by the reader and the writer.
#[derive(Clone)]
struct Conn {
    tcp: Arc<TcpStream>,
    tls: Option<Arc<Mutex<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>>>,
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &self.tls {
            Some(tls) => tls.lock().unwrap().read(buf),
            None => (&*self.tcp).read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.tls {
            Some(tls) => tls.lock().unwrap().write(buf),
            None => (&*self.tcp).write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &self.tls {
            Some(tls) => tls.lock().unwrap().flush(),
            None => (&*self.tcp).flush(),
        }
    }
}

/// A TLS client configuration trusting the CA certificate in `ca_pem` (TLS 1.2 and 1.3).
pub fn tls_client(ca_pem: &std::path::Path) -> Arc<rustls::ClientConfig> {
    tls_client_versions(ca_pem, &[&rustls::version::TLS13, &rustls::version::TLS12])
}

/// The same, offering only `versions`.
pub fn tls_client_versions(
    ca_pem: &std::path::Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Runs a client handshake for `localhost` on `tcp` to its end.
fn handshake(
    config: Arc<rustls::ClientConfig>,
    mut tcp: TcpStream,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

impl Pop {
    /// Connects to 127.0.0.1:`port` and reads the greeting, which must be `+OK`.
    pub fn connect(port: u16) -> Pop {
        Pop::over(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
    }

    /// Connects to 127.0.0.1:`port` from the loopback address `local` (such as 127.0.0.3).
    pub fn connect_from(local: std::net::Ipv4Addr, port: u16) -> Pop {
        Pop::over(tcp_from(local, port))
    }

    /// Connects to 127.0.0.1:`port` with TLS at once (port 995's mode) and reads the
    /// greeting, which must be `+OK`.
    pub fn connect_tls(port: u16, config: Arc<rustls::ClientConfig>) -> Pop {
        Pop::try_connect_tls(port, config).expect("TLS handshake")
    }

    /// The same; the handshake's error, if it fails.
    pub fn try_connect_tls(port: u16, config: Arc<rustls::ClientConfig>) -> std::io::Result<Pop> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        tcp.set_write_timeout(Some(PATIENCE)).unwrap();
        let tls = handshake(config, tcp.try_clone().unwrap())?;
        let conn = Conn {
            tcp: Arc::new(tcp),
            tls: Some(Arc::new(Mutex::new(tls))),
        };
        Ok(Pop::greeted(conn))
    }

    /// Sends STLS, expects `+OK` with nothing after it, and runs the handshake; the commands
    /// that follow go under TLS.
    pub fn stls(&mut self, config: Arc<rustls::ClientConfig>) -> std::io::Result<()> {
        let reply = self.cmd("STLS");
        assert!(reply.starts_with("+OK"), "STLS: {reply:?}");
        self.start_tls(config)
    }

    /// Runs the client's handshake now (after an STLS the caller sent itself). The server
    /// must have sent nothing beyond the line already read.
    pub fn start_tls(&mut self, config: Arc<rustls::ClientConfig>) -> std::io::Result<()> {
        assert!(
            self.reader.buffer().is_empty(),
            "bytes after the STLS reply: {:?}",
            String::from_utf8_lossy(self.reader.buffer())
        );
        let tcp = self.writer.tcp.try_clone().unwrap();
        let tls = Arc::new(Mutex::new(handshake(config, tcp)?));
        self.writer.tls = Some(tls.clone());
        self.reader.get_mut().tls = Some(tls);
        Ok(())
    }

    /// The negotiated TLS version, under TLS.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        let tls = self.writer.tls.as_ref()?;
        let version = tls.lock().unwrap().conn.protocol_version();
        version
    }

    /// Reads the greeting on `stream`, which must be `+OK`.
    pub fn over(stream: TcpStream) -> Pop {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        Pop::greeted(Conn {
            tcp: Arc::new(stream),
            tls: None,
        })
    }

    /// Reads the first line on `stream`, whatever it is (empty if the stream ends first).
    pub fn over_unchecked(stream: TcpStream) -> Pop {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        let conn = Conn {
            tcp: Arc::new(stream),
            tls: None,
        };
        let mut pop = Pop {
            reader: BufReader::new(conn.clone()),
            writer: conn,
            greeting: String::new(),
        };
        pop.greeting = pop.try_line().unwrap_or_default();
        pop
    }

    fn greeted(conn: Conn) -> Pop {
        let mut pop = Pop {
            reader: BufReader::new(conn.clone()),
            writer: conn,
            greeting: String::new(),
        };
        pop.greeting = pop.line();
        assert!(
            pop.greeting.starts_with("+OK"),
            "greeting {:?}",
            pop.greeting
        );
        pop
    }

    /// The RFC 1939 timestamp `<...>` of the greeting.
    pub fn timestamp(&self) -> &str {
        let start = self.greeting.find('<').expect("greeting has a timestamp");
        let end = self.greeting[start..].find('>').expect("timestamp closes") + start;
        &self.greeting[start..=end]
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to ipop3d");
    }

    /// Sends `line` and CRLF.
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// The next line, raw, with its CRLF; `None` at end of stream.
    pub fn try_raw_line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert!(
                    line.ends_with(b"\r\n"),
                    "line without CRLF: {:?}",
                    String::from_utf8_lossy(&line)
                );
                Some(line)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            // A TLS peer that closed without close_notify.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(e) => panic!("reading from ipop3d: {e}"),
        }
    }

    /// The next line without its CRLF; `None` at end of stream.
    pub fn try_line(&mut self) -> Option<String> {
        self.try_raw_line()
            .map(|l| String::from_utf8(l[..l.len() - 2].to_vec()).expect("status lines are UTF-8"))
    }

    /// The next line without its CRLF; the connection must still be open.
    pub fn line(&mut self) -> String {
        self.try_line()
            .expect("ipop3d closed the connection unexpectedly")
    }

    /// Sends a command and returns the status line.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }

    /// Sends a command that must succeed; returns the status line.
    pub fn ok(&mut self, line: &str) -> String {
        let reply = self.cmd(line);
        assert!(reply.starts_with("+OK"), "{line:?} got {reply:?}");
        reply
    }

    /// Sends a command that must fail; returns the status line.
    pub fn err(&mut self, line: &str) -> String {
        let reply = self.cmd(line);
        assert!(reply.starts_with("-ERR"), "{line:?} got {reply:?}");
        reply
    }

    /// The body of a multi-line reply exactly as sent, through the ".\r\n" terminator.
    pub fn multiline_raw(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self
                .try_raw_line()
                .expect("connection closed inside a multi-line reply");
            out.extend_from_slice(&line);
            if line == b".\r\n" {
                return out;
            }
        }
    }

    /// The lines of a multi-line reply, dot-unstuffed, without CRLF or the terminator.
    pub fn multiline(&mut self) -> Vec<String> {
        let raw = self.multiline_raw();
        let text = String::from_utf8(raw).expect("UTF-8 listing");
        let mut lines: Vec<String> = text
            .split_terminator("\r\n")
            .map(|l| l.strip_prefix('.').unwrap_or(l).to_string())
            .collect();
        assert_eq!(lines.pop().as_deref(), Some(""), "terminator");
        lines
    }

    /// A command with a multi-line reply that must succeed: its lines.
    pub fn ok_lines(&mut self, line: &str) -> Vec<String> {
        self.ok(line);
        self.multiline()
    }

    /// USER and PASS, both must succeed.
    pub fn login(&mut self, user: &str, pass: &str) -> String {
        self.ok(&format!("USER {user}"));
        self.ok(&format!("PASS {pass}"))
    }

    /// The APOP command line for `user` and `secret` under this session's timestamp.
    pub fn apop_line(&self, user: &str, secret: &str) -> String {
        let digest =
            apoptools::testing::apop::digest(self.timestamp().as_bytes(), secret.as_bytes());
        format!(
            "APOP {user} {}",
            String::from_utf8(digest.to_vec()).unwrap()
        )
    }

    /// APOP login, which must succeed.
    pub fn apop(&mut self, user: &str, secret: &str) -> String {
        let line = self.apop_line(user, secret);
        self.ok(&line)
    }

    /// Whether the server has closed the connection (reads until end of stream; any further
    /// line is returned in the error).
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => panic!("waiting for close: {e}"),
        }
        assert!(
            rest.is_empty(),
            "expected the connection closed, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Says we will send nothing more (a half close), still able to read the replies.
    pub fn finish_sending(&mut self) {
        if let Some(tls) = &self.writer.tls {
            let mut tls = tls.lock().unwrap();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        self.writer
            .tcp
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown(Write)");
    }

    /// Closes our side without QUIT (a dropped connection).
    pub fn drop_connection(self) {
        let _ = self.writer.tcp.shutdown(std::net::Shutdown::Both);
    }
}

/// LIST/UIDL lines "n value" as pairs.
pub fn pairs(lines: &[String]) -> Vec<(u64, String)> {
    lines
        .iter()
        .map(|l| {
            let (n, v) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad listing line {l:?}"));
            (n.parse().unwrap(), v.to_string())
        })
        .collect()
}

/// A TCP connection to 127.0.0.1:`port` bound to the loopback address `local` first.
pub fn tcp_from(local: std::net::Ipv4Addr, port: u16) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let [a, b, c, d] = local.octets();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(a, b, c, d, 0),
    )
    .expect("bind the client's address");
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(127, 0, 0, 1, port),
    )
    .expect("connect");
    TcpStream::from(fd)
}
