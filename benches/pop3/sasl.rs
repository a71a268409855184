//! sasl: the client side of the SASL logins of (s) (RFC 5034's AUTH), over any line transport.
//!
//! PLAIN (RFC 4616) with its initial response; CRAM-MD5 (RFC 2195); SCRAM-SHA-256 (RFC 5802,
//! RFC 7677) with the client-first message as initial response, no channel binding (`n,,`),
//! the server's nonce and signature checked, and the empty response to the server-final
//! challenge that RFC 5034 §4 asks for. Every reply is checked: a login that does not end in
//! `+OK` is a [`Failure`] quoting the step and the server's line.
//!
//! SCRAM's SaltedPassword (PBKDF2-HMAC-SHA-256, `i` rounds) is computed once per (password,
//! salt, iterations) and kept in a [`ScramCache`], with the ClientKey, StoredKey and ServerKey
//! made from it, as real clients cache them: then the client's PBKDF2 does not dominate the
//! figures. A server that sends a new salt every login defeats the cache; [`ScramCache`] counts
//! logins and derivations so the report can say so.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A SASL mechanism the bench logs in with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mech {
    Plain,
    CramMd5,
    ScramSha256,
}

impl Mech {
    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::CramMd5 => "CRAM-MD5",
            Mech::ScramSha256 => "SCRAM-SHA-256",
        }
    }
}

/// A login that did not succeed: what went wrong, with the server's line when it said something.
#[derive(Debug)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The keys a SCRAM client derives from the password (RFC 5802 §3).
struct Keys {
    client_key: [u8; 32],
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

/// What the keys are derived from: (password, salt, iterations).
type KeysFrom = (Vec<u8>, Vec<u8>, u32);

/// The SCRAM client's cache of derived keys, shared by every client thread, and its counters.
#[derive(Default)]
pub struct ScramCache {
    keys: Mutex<HashMap<KeysFrom, Arc<Keys>>>,
    /// SCRAM logins that reached the server-first message.
    pub logins: AtomicU64,
    /// PBKDF2 computations (cache misses).
    pub derived: AtomicU64,
    /// The iteration counts servers asked for.
    pub iterations: Mutex<BTreeSet<u32>>,
}

/// Entries kept at most: a server with a new salt every login would otherwise grow it forever.
const CACHE_MAX: usize = 4096;

impl ScramCache {
    fn keys(&self, password: &[u8], salt: &[u8], iterations: u32) -> Arc<Keys> {
        self.logins.fetch_add(1, Ordering::Relaxed);
        self.iterations.lock().unwrap().insert(iterations);
        let key = (password.to_vec(), salt.to_vec(), iterations);
        if let Some(k) = self.keys.lock().unwrap().get(&key) {
            return Arc::clone(k);
        }
        // Outside the lock: the other clients go on while this one derives.
        self.derived.fetch_add(1, Ordering::Relaxed);
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let keys = Arc::new(Keys {
            client_key,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted, b"Server Key"),
        });
        let mut map = self.keys.lock().unwrap();
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(key, Arc::clone(&keys));
        keys
    }

    /// (logins, derivations) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.logins.load(Ordering::Relaxed),
            self.derived.load(Ordering::Relaxed),
        )
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_string()
}

/// A server reply during AUTH.
enum Reply {
    Ok,
    /// A `+ ` challenge, decoded.
    Challenge(Vec<u8>),
}

/// What the server answered to `step`: `+OK`, a challenge, or (anything else) a failure.
fn reply(mech: Mech, user: &str, step: &str, line: io::Result<Vec<u8>>) -> Result<Reply, Failure> {
    let fail = |what: String| Failure(format!("AUTH {} as {user}: {step}: {what}", mech.name()));
    let line = line.map_err(|e| fail(format!("{e}")))?;
    if line.starts_with(b"+OK") {
        return Ok(Reply::Ok);
    }
    let data = if line == b"+" {
        Some(&b""[..])
    } else {
        line.strip_prefix(b"+ ")
    };
    match data {
        Some(d) => B64
            .decode(d.trim_ascii())
            .map(Reply::Challenge)
            .map_err(|_| fail(format!("challenge not base64: {:?}", show(&line)))),
        None => Err(fail(format!("server said {:?}", show(&line)))),
    }
}

/// Logs `user` in with `mech`; `exchange` sends a line (CRLF added) and returns the reply line
/// (CRLF removed), whatever it is.
pub fn login(
    mech: Mech,
    user: &str,
    password: &str,
    cache: &ScramCache,
    mut exchange: impl FnMut(&[u8]) -> io::Result<Vec<u8>>,
) -> Result<(), Failure> {
    let fail = |what: String| Failure(format!("AUTH {} as {user}: {what}", mech.name()));
    let want_ok = |step: &str, r: Reply| match r {
        Reply::Ok => Ok(()),
        Reply::Challenge(c) => Err(fail(format!(
            "{step}: a challenge {:?} where +OK was due",
            show(&c)
        ))),
    };
    let want_challenge = |step: &str, r: Reply| match r {
        Reply::Challenge(c) => Ok(c),
        Reply::Ok => Err(fail(format!("{step}: +OK where a challenge was due"))),
    };
    match mech {
        Mech::Plain => {
            let ir = B64.encode(format!("\0{user}\0{password}"));
            let step = "AUTH PLAIN with its initial response";
            let r = reply(
                mech,
                user,
                step,
                exchange(format!("AUTH PLAIN {ir}").as_bytes()),
            )?;
            want_ok(step, r)
        }
        Mech::CramMd5 => {
            let step = "AUTH CRAM-MD5";
            let r = reply(mech, user, step, exchange(b"AUTH CRAM-MD5"))?;
            let challenge = want_challenge(step, r)?;
            let mut m = Hmac::<md5::Md5>::new_from_slice(password.as_bytes())
                .expect("HMAC takes any key length");
            m.update(&challenge);
            let hex: String = m
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let step = "the response to the challenge";
            let line = B64.encode(format!("{user} {hex}"));
            let r = reply(mech, user, step, exchange(line.as_bytes()))?;
            want_ok(step, r)
        }
        Mech::ScramSha256 => {
            let mut raw = [0u8; 18];
            File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut raw))
                .map_err(|e| fail(format!("/dev/urandom: {e}")))?;
            let nonce = B64.encode(raw);
            let name = user.replace('=', "=3D").replace(',', "=2C");
            let first_bare = format!("n={name},r={nonce}");
            let step = "AUTH SCRAM-SHA-256 with client-first as initial response";
            let cmd = format!(
                "AUTH SCRAM-SHA-256 {}",
                B64.encode(format!("n,,{first_bare}"))
            );
            let r = reply(mech, user, step, exchange(cmd.as_bytes()))?;
            let server_first = want_challenge(step, r)?;
            let sf = String::from_utf8(server_first)
                .map_err(|e| fail(format!("server-first not UTF-8: {e}")))?;
            let attr = |k: &str| {
                sf.split(',')
                    .find_map(|a| a.strip_prefix(k))
                    .ok_or_else(|| fail(format!("server-first {sf:?} has no {k}")))
            };
            let (r_all, salt, iterations) = (attr("r=")?, attr("s=")?, attr("i=")?);
            if !r_all.starts_with(&nonce) || r_all.len() == nonce.len() {
                return Err(fail(format!(
                    "server-first {sf:?}: its nonce does not extend ours ({nonce})"
                )));
            }
            let salt = B64
                .decode(salt)
                .map_err(|_| fail(format!("server-first {sf:?}: salt not base64")))?;
            let iterations: u32 = iterations
                .parse()
                .ok()
                .filter(|i| (1..=1_000_000).contains(i))
                .ok_or_else(|| fail(format!("server-first {sf:?}: bad iteration count")))?;
            let keys = cache.keys(password.as_bytes(), &salt, iterations);
            let final_bare = format!("c=biws,r={r_all}");
            let auth_message = format!("{first_bare},{sf},{final_bare}");
            let signature = hmac_sha256(&keys.stored_key, auth_message.as_bytes());
            let proof: Vec<u8> = keys
                .client_key
                .iter()
                .zip(signature)
                .map(|(k, s)| k ^ s)
                .collect();
            let client_final = format!("{final_bare},p={}", B64.encode(proof));
            let step = "client-final";
            let r = reply(
                mech,
                user,
                step,
                exchange(B64.encode(client_final).as_bytes()),
            )?;
            let server_final = want_challenge(step, r)?;
            let expected = format!(
                "v={}",
                B64.encode(hmac_sha256(&keys.server_key, auth_message.as_bytes()))
            );
            if server_final != expected.as_bytes() {
                return Err(fail(format!(
                    "server-final {:?}, expected {expected:?}",
                    show(&server_final)
                )));
            }
            let step = "the empty response to server-final";
            let r = reply(mech, user, step, exchange(b""))?;
            want_ok(step, r)
        }
    }
}
