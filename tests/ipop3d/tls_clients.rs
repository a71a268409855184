//! Real POP3 clients over TLS against a root ipop3d (only a root ipop3d does TLS): curl,
//! fetchmail, mpop, getmail6, Python's poplib and `openssl s_client`, each trusting only the
//! world's throwaway CA, in implicit TLS (`--implicit-tls`, port 995's mode) and, where the
//! client can, STLS. The mail each one fetches must be the Maildir file byte for byte once the
//! client's CRLF conversion and added header fields are undone (as in `clients.rs`), and every
//! session must have logged a successful login under TLS. The STLS servers run with
//! `plaintext = tls` and no INTRANET, so USER/PASS works only after the upgrade.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::clients::{lf, output, strip_fetchmail_received, text};
use crate::harness::{crlf, large_message, retr_wire, seed_message, small_message, uniques};
use crate::harness::{User, World};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// TLS from the first byte.
    Implicit,
    /// STLS after the greeting.
    Stls,
}

impl Mode {
    /// `implicit` or `stls`, by the mode.
    fn pick<'a>(self, implicit: &'a str, stls: &'a str) -> &'a str {
        match self {
            Mode::Implicit => implicit,
            Mode::Stls => stls,
        }
    }
}

/// The number of messages in the mailbox (see [`mailbox`]).
const COUNT: usize = 3;

/// What a client is given: the server's port and mode, the CA file to trust, the account's
/// name and password, and a scratch directory of its own (no spaces in any of these).
struct Target {
    port: u16,
    mode: Mode,
    ca: String,
    name: String,
    pass: String,
    dir: PathBuf,
}

impl Target {
    /// The port, the CA file, the name, the password and the scratch directory, to format.
    fn vars(&self) -> (u16, &str, &str, &str, std::path::Display<'_>) {
        (
            self.port,
            &self.ca,
            &self.name,
            &self.pass,
            self.dir.display(),
        )
    }
}

/// What a client fetched (its changes undone), in server order; the number of sessions it
/// opened; its output, for messages.
type Fetched = (Vec<Vec<u8>>, usize, String);

/// A client run: what it fetched, or its output when it failed.
type Run = Result<Fetched, String>;

/// A client: runs it against a target and undoes its changes to the mail.
type Fetch = fn(&Target) -> Run;

/// Runs `cmdline` (split at spaces) with a time limit and `stdin`; Err(its output) unless it
/// exits 0.
fn run(cmdline: &str, stdin: &[u8], env: &[(&str, &str)]) -> Result<Output, String> {
    use std::io::Write;
    let mut child = Command::new("timeout")
        .arg("120")
        .args(cmdline.split_whitespace())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmdline}: {e}"));
    // A client that fails early may not read its input.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    match out.status.success() {
        true => Ok(out),
        false => Err(format!("{cmdline}: {}\n{}", out.status, output(&out))),
    }
}

fn write(path: &Path, contents: &str, mode: u32) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes `dir/mda.sh`, an MDA that puts each message into its own numbered file in
/// `dir/out`; returns the command that runs it.
pub fn mda(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let script =
        "#!/bin/sh\nset -e\nn=$(ls \"$1\" | wc -l)\ncat > \"$1/$(printf %04d $((n + 1)))\"\n";
    write(&dir.join("mda.sh"), script, 0o755);
    format!("/bin/sh {}/mda.sh {}/out", dir.display(), dir.display())
}

/// The files in `dir/out`, in delivery order.
pub fn delivered(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// curl, one session per message: `pop3s://`, or `pop3://` with `--ssl-reqd` (STLS).
fn curl(t: &Target) -> Run {
    let ((port, ca, name, pass, _), mode) = (t.vars(), t.mode);
    let (scheme, extra) = (mode.pick("pop3s", "pop3"), mode.pick("", "--ssl-reqd"));
    let (mut mail, mut output) = (Vec::new(), String::new());
    for i in 1..=COUNT {
        let url = format!("{scheme}://127.0.0.1:{port}/{i}");
        let cmd = format!("curl -sS -v --max-time 60 --cacert {ca} -u {name}:{pass} {extra} {url}");
        let out = run(&cmd, b"", &[])?;
        let log = text(&out.stderr);
        assert!(log.contains("SSL certificate verify ok"), "{log}");
        assert_eq!(t.mode == Mode::Stls, log.contains("\n> STLS"), "{log}");
        mail.push(lf(&out.stdout));
        output += &log;
    }
    Ok((mail, COUNT, output))
}

/// fetchmail `fetchall keep` into the MDA: `ssl` for implicit TLS; without it, `sslproto
/// tls1.2+` makes STLS mandatory. `sslcertck` (the default, given anyway) with only the CA in
/// `sslcertfile`. The poll is for `localhost`: fetchmail checks no IP addresses in
/// certificates (for 127.0.0.1: "Server CommonName mismatch: localhost != 127.0.0.1").
/// fetchmail converts to LF and adds a `Received:` field, taken off here.
fn fetchmail(t: &Target) -> Run {
    let ((port, ca, name, pass, d), mda) = (t.vars(), mda(&t.dir));
    let ssl = t.mode.pick("ssl", "");
    let config = format!(
        "set no syslog\npoll localhost service {port} protocol POP3 timeout 60\n\
         \tuser \"{name}\" there with password \"{pass}\"\n\toptions no rewrite fetchall keep \
         {ssl} sslproto tls1.2+ sslcertck sslcertfile \"{ca}\" mda \"{mda}\"\n"
    );
    write(&t.dir.join("fetchmailrc"), &config, 0o600);
    // Root's default pid file is /var/run/fetchmail.pid, shared by parallel tests.
    let cmd = format!("fetchmail --nodetach --nosyslog -v --pidfile {d}/pid -f {d}/fetchmailrc");
    let home = t.dir.to_str().unwrap();
    let env = [("HOME", home), ("FETCHMAILHOME", home), ("LC_ALL", "C")];
    let log = output(&run(&cmd, b"", &env)?);
    assert_eq!(t.mode == Mode::Stls, log.contains("POP3> STLS"), "{log}");
    let mail = delivered(&t.dir).into_iter();
    let mail = mail.map(|m| strip_fetchmail_received(&lf(&m)));
    Ok((mail.collect(), 1, log))
}

/// mpop: `tls on` with `tls_starttls off` (implicit) or `on` (STLS), `tls_trust_file` the CA,
/// every message kept and delivered to the MDA without mpop's Received field. Under STLS it
/// must log in with USER (which `plaintext = tls` allows only after the upgrade); otherwise
/// it picks (APOP).
fn mpop(t: &Target) -> Run {
    let ((port, ca, name, pass, d), mda) = (t.vars(), mda(&t.dir));
    let (starttls, auth) = (t.mode.pick("off", "on"), t.mode.pick("on", "user"));
    let config = format!(
        "account default\nhost 127.0.0.1\nport {port}\ntimeout 60\nauth {auth}\nuser {name}\n\
         password {pass}\ntls on\ntls_starttls {starttls}\ntls_trust_file {ca}\nkeep on\n\
         only_new off\nreceived_header off\nuidls_file {d}/uidls\ndelivery mda {mda}\n"
    );
    write(&t.dir.join("mpoprc"), &config, 0o600);
    let out = run(&format!("mpop -C {d}/mpoprc"), b"", &[])?;
    let mail = delivered(&t.dir).iter().map(|m| lf(m)).collect();
    Ok((mail, 1, output(&out)))
}

/// getmail6's SimplePOP3SSLRetriever (implicit TLS only) with `ca_certs`, all mail read and
/// kept, into the MDA; no Delivered-To or Received field. getmail writes a `Return-Path:`
/// first in any case (`<unknown>` for mail without one), taken off here when it is not the
/// message's own.
fn getmail(t: &Target) -> Run {
    assert_eq!(t.mode, Mode::Implicit, "getmail has no STLS");
    let (port, ca, name, pass, d) = t.vars();
    mda(&t.dir);
    let config = format!(
        "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\nport = {port}\n\
         username = {name}\npassword = {pass}\nca_certs = {ca}\ntimeout = 60\n\
         [destination]\ntype = MDA_external\npath = /bin/sh\n\
         arguments = (\"{d}/mda.sh\", \"{d}/out\")\nallow_root_commands = true\n\
         [options]\nread_all = true\ndelete = false\ndelivered_to = false\nreceived = false\n"
    );
    write(&t.dir.join("getmailrc"), &config, 0o600);
    let cmd = format!("getmail --getmaildir {d} --rcfile {d}/getmailrc");
    let log = output(&run(&cmd, b"", &[])?);
    let unknown = b"Return-Path: <unknown>\n";
    let strip = |m: Vec<u8>| m.strip_prefix(unknown).map(<[u8]>::to_vec).unwrap_or(m);
    Ok((delivered(&t.dir).into_iter().map(strip).collect(), 1, log))
}

/// Python's poplib: `POP3_SSL` (implicit) or `POP3(...).stls(context)`, with a default context
/// (chain and host name checked) trusting only the CA, for `localhost`; prints the TLS
/// version, then USER/PASS, STAT, RETR of every message into `out/NNNN`, QUIT.
const POPLIB_SCRIPT: &str = r#"
import os, poplib, ssl, sys
port, ca, user, mode, out = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
if mode == "Implicit":
    p = poplib.POP3_SSL("localhost", int(port), context=ctx, timeout=60)
else:
    p = poplib.POP3("localhost", int(port), timeout=60)
    p.stls(ctx)
print(p.sock.version())
p.user(user)
p.pass_(os.environ["POP_SECRET"])
count, size = p.stat()
for i in range(1, count + 1):
    resp, lines, _ = p.retr(i)
    open(os.path.join(out, "%04d" % i), "wb").write(b"\n".join(lines) + b"\n")
print(p.quit().decode())
"#;

fn poplib(t: &Target) -> Run {
    std::fs::create_dir_all(t.dir.join("out")).unwrap();
    write(&t.dir.join("fetch_poplib.py"), POPLIB_SCRIPT, 0o644);
    let ((port, ca, name, pass, d), mode) = (t.vars(), t.mode);
    let cmd = format!("python3 {d}/fetch_poplib.py {port} {ca} {name} {mode:?} {d}/out");
    let log = output(&run(&cmd, b"", &[("POP_SECRET", pass)])?);
    assert!(log.starts_with("TLSv1.") && log.contains("\n+OK"), "{log}");
    Ok((delivered(&t.dir), 1, log))
}

/// `openssl s_client` (with `-starttls pop3` for STLS) checking the chain and the name
/// `localhost`, fed CAPA, USER, PASS, STAT, RETR of every message and QUIT on stdin. Every
/// reply line must end CRLF and say `+OK`, CAPA must list USER and not STLS; the RETR replies
/// are returned in their wire form and the STAT reply first in the output.
fn s_client(t: &Target) -> Run {
    let (port, ca, name, pass, _) = t.vars();
    let starttls = t.mode.pick("", "-starttls pop3");
    let cmd = format!(
        "openssl s_client -quiet -verify_return_error -CAfile {ca} -verify_hostname localhost \
         -connect 127.0.0.1:{port} {starttls}"
    );
    let mut input = format!("CAPA\r\nUSER {name}\r\nPASS {pass}\r\nSTAT\r\n");
    input.extend((1..=COUNT).map(|i| format!("RETR {i}\r\n")));
    input += "QUIT\r\n";
    let out = run(&cmd, input.as_bytes(), &[])?;
    let log = output(&out);
    let stdout = text(&out.stdout);
    let all = stdout
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("no CRLF end:\n{log}"));
    let mut lines = all.split("\r\n");
    let ok = |lines: &mut std::str::Split<'_, &str>, what: &str| {
        let l = lines.next().unwrap_or_default();
        assert!(l.starts_with("+OK"), "{what}: {l:?}\n{log}");
        l.to_string()
    };
    if t.mode == Mode::Implicit {
        ok(&mut lines, "greeting");
    }
    ok(&mut lines, "CAPA");
    let caps: Vec<&str> = lines.by_ref().take_while(|l| *l != ".").collect();
    assert!(caps.contains(&"USER"), "{caps:?}");
    assert!(!caps.contains(&"STLS"), "{caps:?}");
    ok(&mut lines, "USER");
    ok(&mut lines, "PASS");
    let stat = ok(&mut lines, "STAT");
    let mut mail = Vec::new();
    for i in 1..=COUNT {
        ok(&mut lines, &format!("RETR {i}"));
        let wire: String = lines
            .by_ref()
            .take_while(|l| *l != ".")
            .map(|l| l.to_string() + "\r\n")
            .collect();
        mail.push((wire + ".\r\n").into_bytes());
    }
    ok(&mut lines, "QUIT");
    assert_eq!(lines.next(), None, "after QUIT:\n{log}");
    Ok((mail, 1, format!("{stat}\n{log}")))
}

/// Runs `fetch` as `user` with a scratch directory of its own.
fn fetch_with(fetch: Fetch, port: u16, mode: Mode, ca: &Path, user: &User) -> Run {
    let dir = tempfile::tempdir().unwrap();
    fetch(&Target {
        port,
        mode,
        ca: ca.display().to_string(),
        name: user.name().to_string(),
        pass: user.password.clone(),
        dir: dir.path().to_path_buf(),
    })
}

/// A mailbox of three messages (the seed's, a small one, a large one).
fn mailbox(w: &mut World) -> (User, Vec<Vec<u8>>, Vec<String>) {
    let alice = w.user("alice");
    let msgs = vec![seed_message(), small_message(2), large_message(200)];
    assert_eq!(msgs.len(), COUNT);
    let names = msgs.iter().map(|m| w.deliver(&alice, m)).collect();
    (alice, msgs, names)
}

/// Serves alice's three messages in `mode` and fetches them with `fetch`: the mail must be the
/// files (for `s_client` their wire form, and its STAT right), each session must have logged
/// `result=ok` under TLS, and the Maildir must still hold every message.
fn round(mut w: World, mode: Mode, client: &str, fetch: Fetch) {
    let files = w.tls();
    let (alice, msgs, names) = mailbox(&mut w);
    let server = match mode {
        Mode::Implicit => w.serve_implicit_tls(&[]),
        Mode::Stls => {
            w.set("plaintext", "tls");
            w.serve_with(&[], None)
        }
    };
    let (mail, sessions, output) = fetch_with(fetch, server.port, mode, &files.ca, &alice)
        .unwrap_or_else(|e| panic!("{client} {mode:?} failed:\n{e}"));
    let wire = client == "s_client";
    assert_eq!(mail.len(), msgs.len(), "{client} {mode:?}:\n{output}");
    for (i, (got, m)) in mail.iter().zip(&msgs).enumerate() {
        let want = if wire { retr_wire(m) } else { m.clone() };
        let shown = text(&got[..got.len().min(2000)]);
        assert!(
            *got == want,
            "{client} {mode:?} message {} differs:\n{shown}\n---\n{output}",
            i + 1
        );
    }
    if wire {
        let total: usize = msgs.iter().map(|m| crlf(m).len()).sum();
        let stat = format!("+OK {COUNT} {total}\n");
        assert!(output.starts_with(&stat), "{output}");
    }
    let log = server.wait_ends(sessions);
    let logins: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ipop3d: login "))
        .collect();
    assert_eq!(logins.len(), sessions, "{log}");
    for l in logins {
        let good = l.contains(" user=alice ") && l.contains(" result=ok ");
        assert!(
            good && l.contains(" tls=TLSv1."),
            "{client} {mode:?}: {l}\n{log}"
        );
    }
    let kept = names.into_iter().collect();
    assert_eq!(uniques(&alice.maildir()), kept, "{client}");
}

/// Each test: `$program` (through `$fetch`) fetches every message intact in `$mode`, under
/// TLS (see [`round`]).
macro_rules! tls_client_tests {
    ($($(#[$doc:meta])* $test:ident: $program:literal, $mode:ident, $fetch:ident;)*) => {$(
        $(#[$doc])*
        #[test]
        fn $test() {
            let test = stringify!($test);
            if crate::harness::need_programs(&[$program], test) && crate::harness::need_root(test) {
                round(World::new(), Mode::$mode, stringify!($fetch), $fetch);
            }
        }
    )*};
}

tls_client_tests! {
    /// curl `pop3s://` (implicit TLS), one session per message.
    curl_implicit_tls_root: "curl", Implicit, curl;
    /// curl `pop3://` with `--ssl-reqd` sends STLS (then APOP, its pick); the log says TLS.
    curl_stls_root: "curl", Stls, curl;
    /// fetchmail `ssl` (implicit TLS), USER/PASS.
    fetchmail_implicit_tls_root: "fetchmail", Implicit, fetchmail;
    /// fetchmail with `sslproto tls1.2+` and no `ssl` sends STLS, then USER/PASS.
    fetchmail_stls_root: "fetchmail", Stls, fetchmail;
    /// mpop `tls on` with `tls_starttls off` (implicit TLS), APOP (its pick).
    mpop_implicit_tls_root: "mpop", Implicit, mpop;
    /// mpop `tls_starttls on` sends STLS, then USER/PASS (`auth user`).
    mpop_stls_root: "mpop", Stls, mpop;
    /// getmail6's SimplePOP3SSLRetriever (implicit TLS) with `ca_certs`.
    getmail_implicit_tls_root: "getmail", Implicit, getmail;
    /// Python's `poplib.POP3_SSL` (implicit TLS) for `localhost`.
    poplib_implicit_tls_root: "python3", Implicit, poplib;
    /// Python's `poplib.POP3(...).stls(context)`, then USER/PASS.
    poplib_stls_root: "python3", Stls, poplib;
    /// `openssl s_client` (implicit TLS): every reply of a whole session, RETR byte for byte
    /// on the wire.
    s_client_implicit_tls_root: "openssl", Implicit, s_client;
    /// `openssl s_client -starttls pop3`: the same after STLS.
    s_client_stls_root: "openssl", Stls, s_client;
}

/// The clients really check the certificate: trusting another CA of the same name (so only the
/// signature tells them apart), each one fails, and no session gets as far as a login.
#[test]
fn clients_refuse_a_certificate_their_ca_did_not_sign_root() {
    let test = "clients_refuse_a_certificate_their_ca_did_not_sign_root";
    let programs = ["curl", "fetchmail", "mpop", "getmail", "python3", "openssl"];
    if !crate::harness::need_programs(&programs, test) || !crate::harness::need_root(test) {
        return;
    }
    let mut w = World::new();
    w.tls();
    let (alice, _, _) = mailbox(&mut w);
    let mut other = World::new();
    let foreign = other.tls();
    let server = w.serve_implicit_tls(&[]);
    let clients: [(&str, Fetch); 6] = [
        ("curl", curl),
        ("fetchmail", fetchmail),
        ("mpop", mpop),
        ("getmail", getmail),
        ("poplib", poplib),
        ("s_client", s_client),
    ];
    for (n, (client, fetch)) in clients.iter().enumerate() {
        let got = fetch_with(*fetch, server.port, Mode::Implicit, &foreign.ca, &alice);
        if let Ok((_, _, output)) = got {
            panic!("{client} accepted a certificate from another CA:\n{output}");
        }
        let log = server.wait_ends(n + 1);
        assert!(!log.contains("ipop3d: login "), "{client}:\n{log}");
    }
}
