//! scram: SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677), server side.
//!
//! Guarantees:
//! - The messages are parsed as RFC 5802 §7's grammar says: the GS2 header (see `gs2`), then
//!   `n=<user>,r=<nonce>[,extensions]`; a mandatory extension (`m=`) is refused; the client
//!   final `c=...,r=...[,extensions],p=...` must echo the GS2 header (and, for -PLUS, the
//!   binding data) in `c=` exactly and the whole nonce in `r=`.
//! - Success only when H(proof XOR HMAC(StoredKey, AuthMessage)) equals the StoredKey,
//!   compared in constant time; then the server-final `v=` goes out as a challenge and the
//!   login is proven once the client answers it with an empty response (RFC 5034 §4).
//! - A [`Credential::Absent`] account gets the same server-first message (with the caller's
//!   salt and count) and the same work on the proof, and fails only there.
//! - Channel binding: SCRAM-SHA-256 refuses `p=` (binding belongs to -PLUS) and, where -PLUS
//!   is on offer (TLS with a binding), `y` (a downgrade, as Dovecot refuses it);
//!   SCRAM-SHA-256-PLUS takes only `p=tls-server-end-point` or `p=tls-exporter`, and only
//!   where the connection has that binding.
//! - The exchange's copy of the keys and every intermediate key (SaltedPassword, ClientKey)
//!   are wiped from memory; passwords are used as bytes, without SASLprep.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::gs2::{self, CbindFlag};
use super::{check_login, ChannelBinding, Context, Credential, Event, Next};
use crate::auth::apop::constant_time_eq;
use crate::system::wipe::wipe;

/// The stored SCRAM-SHA-256 credentials of an account (RFC 5802 §3). `Debug` shows the salt
/// and the count, never the keys. (No `Drop` wipes them, so that holders may take the
/// fields apart; an [`super::Exchange`] keeps its own copy, which is wiped.)
#[derive(Clone)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl ScramKeys {
    /// PBKDF2-HMAC-SHA-256 of the password → SaltedPassword → ClientKey / StoredKey /
    /// ServerKey (RFC 5802 §3). The password is taken as bytes, exactly as stored: no SASLprep
    /// (RFC 4013), so a client that normalises a non-ASCII password differently fails. An
    /// iteration count of 0 derives like 1, and [`super::Exchange::provide`] refuses it.
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
        let mut client_key = hmac(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let server_key = hmac(&salted, b"Server Key");
        wipe(&mut salted);
        wipe(&mut client_key);
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key,
            server_key,
        }
    }
}

/// The two keys an exchange holds once the account is known: wiped from memory when dropped.
/// (The public [`ScramKeys`] has no `Drop`, so its holders can move its fields; the exchange
/// copies the keys into this instead of cloning it.)
struct HeldKeys {
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl Drop for HeldKeys {
    fn drop(&mut self) {
        wipe(&mut self.stored_key);
        wipe(&mut self.server_key);
    }
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys")
            .field("salt", &STANDARD.encode(&self.salt))
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length (RFC 2104 §2 hashes a long one): this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SCRAM's states.
pub(super) enum Scram {
    Ready(Setup),
    /// The empty challenge was sent: the client-first message comes next.
    AwaitingClientFirst(Setup),
    /// The client-first message named a login: its keys come next.
    AwaitingKeys(ClientFirst),
    /// The server-first message was sent: the client-final message comes next.
    AwaitingClientFinal(ServerFirst),
    /// The proof held and the server-final message was sent: an empty response comes next.
    AwaitingAck(Proven),
}

/// What the exchange was started with.
pub(super) struct Setup {
    plus: bool,
    server_nonce: String,
    tls: Option<ChannelBinding>,
}

/// A well-formed client-first message.
pub(super) struct ClientFirst {
    login: String,
    /// What `c=` must decode to: the GS2 header as sent, then the binding data (-PLUS).
    channel_binding: Vec<u8>,
    /// client-first-message-bare, the start of the AuthMessage.
    bare: String,
    /// The client's nonce and ours.
    nonce: String,
}

/// The server-first message is out; what the client-final message is checked against.
pub(super) struct ServerFirst {
    login: String,
    channel_binding: Vec<u8>,
    nonce: String,
    /// client-first-message-bare "," server-first-message.
    auth_prefix: String,
    keys: HeldKeys,
    /// The keys are a decoy (all zero): no proof can hold, and none is accepted.
    absent: bool,
}

/// The client proved it knows the password; the server-final message is out.
pub(super) struct Proven {
    login: String,
}

impl Scram {
    pub(super) fn new(plus: bool, context: Context) -> Scram {
        Scram::Ready(Setup {
            plus,
            server_nonce: context.server_nonce,
            tls: context.tls,
        })
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Scram::Ready(_) => "start",
            Scram::AwaitingClientFirst(_) => "the client-first message",
            Scram::AwaitingKeys(_) => "the account's SCRAM keys",
            Scram::AwaitingClientFinal(_) => "the client-final message",
            Scram::AwaitingAck(_) => "the empty response to the server-final message",
        }
    }

    pub(super) fn on(self, event: Event) -> Next<Scram> {
        match (self, event) {
            (Scram::Ready(setup), Event::Start(initial)) => {
                if let Err(reason) = setup.usable() {
                    return Next::failure(reason);
                }
                match initial {
                    None => Next::Challenge(Scram::AwaitingClientFirst(setup), vec![]),
                    Some(message) => setup.client_first(message),
                }
            }
            (Scram::AwaitingClientFirst(setup), Event::Respond(message)) => {
                setup.client_first(message)
            }
            (Scram::AwaitingKeys(first), Event::Provide(credential)) => {
                first.server_first(credential)
            }
            (Scram::AwaitingClientFinal(first), Event::Respond(message)) => {
                first.client_final(message)
            }
            (Scram::AwaitingAck(proven), Event::Respond(response)) => {
                if response.is_empty() {
                    Next::Success(proven.login)
                } else {
                    Next::failure("a non-empty response to the server-final message")
                }
            }
            (state, _) => Next::out_of_order(state.name()),
        }
    }
}

impl Setup {
    /// Whether the caller's context lets the mechanism run at all.
    fn usable(&self) -> Result<(), &'static str> {
        if !is_nonce(&self.server_nonce) {
            return Err("unusable server nonce (server bug)");
        }
        if self.plus && !self.tls.as_ref().is_some_and(ChannelBinding::any) {
            return Err("SCRAM-SHA-256-PLUS without a TLS channel binding");
        }
        Ok(())
    }

    /// `gs2-header client-first-message-bare` (RFC 5802 §7).
    fn client_first(self, message: &[u8]) -> Next<Scram> {
        match self.parse_client_first(message) {
            Ok(first) => {
                let login = first.login.clone();
                Next::Lookup(Scram::AwaitingKeys(first), login)
            }
            Err(reason) => Next::failure(reason),
        }
    }

    fn parse_client_first(&self, message: &[u8]) -> Result<ClientFirst, &'static str> {
        let text = text(message)?;
        let (header, bare) = gs2::split(text)?;
        let binding_data = self.binding_data(header.flag)?;
        let mut fields = bare.split(',');
        let user = fields.next().unwrap_or_default();
        if user.starts_with("m=") {
            return Err("a mandatory extension (m=)");
        }
        let user = user.strip_prefix("n=").ok_or("no n= user name")?;
        let login = check_login(gs2::unescape(user)?.as_bytes())?;
        let client_nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or("no r= nonce")?;
        if !is_nonce(client_nonce) {
            return Err("malformed client nonce");
        }
        fields.try_for_each(extension)?;
        if header.authzid.is_some_and(|a| a != login) {
            return Err("authzid differs from the user name");
        }
        let mut channel_binding = header.raw.as_bytes().to_vec();
        channel_binding.extend_from_slice(binding_data);
        Ok(ClientFirst {
            login,
            channel_binding,
            bare: bare.to_owned(),
            nonce: format!("{client_nonce}{}", self.server_nonce),
        })
    }

    /// The channel binding data `c=` must carry after the GS2 header, for the client's flag.
    fn binding_data(&self, flag: CbindFlag) -> Result<&[u8], &'static str> {
        let offers_plus = self.tls.as_ref().is_some_and(ChannelBinding::any);
        match (self.plus, flag) {
            (false, CbindFlag::NotSupported) => Ok(&[]),
            (false, CbindFlag::ServerNotSupported) if offers_plus => {
                Err("y with SCRAM-SHA-256 where -PLUS is offered (a downgrade)")
            }
            (false, CbindFlag::ServerNotSupported) => Ok(&[]),
            (false, CbindFlag::Binding(_)) => Err("channel binding asked for with SCRAM-SHA-256"),
            (true, CbindFlag::NotSupported | CbindFlag::ServerNotSupported) => {
                Err("SCRAM-SHA-256-PLUS without p=")
            }
            (true, CbindFlag::Binding(name)) => self
                .tls
                .as_ref()
                .and_then(|tls| tls.data(name))
                .ok_or("a channel binding type this connection does not have"),
        }
    }
}

impl ClientFirst {
    /// `r=<nonce>,s=<salt>,i=<count>` (RFC 5802 §7).
    fn server_first(self, credential: Credential) -> Next<Scram> {
        let (salt, iterations, keys, absent) = match credential {
            Credential::Scram(keys) => (
                &keys.salt[..],
                keys.iterations,
                HeldKeys {
                    stored_key: keys.stored_key,
                    server_key: keys.server_key,
                },
                false,
            ),
            Credential::Absent { salt, iterations } => (
                salt,
                iterations,
                HeldKeys {
                    stored_key: [0; 32],
                    server_key: [0; 32],
                },
                true,
            ),
            Credential::Secret(_) => {
                return Next::failure("a plaintext secret given to SCRAM (derive ScramKeys)")
            }
        };
        if salt.is_empty() || iterations == 0 {
            return Next::failure("an empty salt or a zero iteration count (server bug)");
        }
        let server_first = format!(
            "r={},s={},i={iterations}",
            self.nonce,
            STANDARD.encode(salt),
        );
        let auth_prefix = format!("{},{server_first}", self.bare);
        Next::Challenge(
            Scram::AwaitingClientFinal(ServerFirst {
                login: self.login,
                channel_binding: self.channel_binding,
                nonce: self.nonce,
                auth_prefix,
                keys,
                absent,
            }),
            server_first.into_bytes(),
        )
    }
}

impl ServerFirst {
    /// `c=<binding>,r=<nonce>[,extensions],p=<proof>` (RFC 5802 §7), checked as §3 says.
    fn client_final(self, message: &[u8]) -> Next<Scram> {
        match self.check_client_final(message) {
            Ok(server_final) => Next::Challenge(
                Scram::AwaitingAck(Proven { login: self.login }),
                server_final,
            ),
            Err(reason) => Next::failure(reason),
        }
    }

    fn check_client_final(&self, message: &[u8]) -> Result<Vec<u8>, &'static str> {
        let text = text(message)?;
        let (without_proof, proof) = text.rsplit_once(',').ok_or("no p= proof")?;
        let proof = proof.strip_prefix("p=").ok_or("no p= proof")?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .ok_or("no c= channel binding")?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or("no r= nonce")?;
        fields.try_for_each(extension)?;
        let binding = STANDARD.decode(binding).map_err(|_| "c= not base64")?;
        if !constant_time_eq(&binding, &self.channel_binding) {
            return Err("c= differs from the GS2 header and channel binding");
        }
        if nonce != self.nonce {
            return Err("r= differs from the nonce");
        }
        let proof = STANDARD.decode(proof).map_err(|_| "p= not base64")?;
        let proof = <[u8; 32]>::try_from(proof).map_err(|_| "p= not 32 bytes")?;
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let client_signature = hmac(&self.keys.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key
            .iter_mut()
            .zip(proof.iter().zip(client_signature))
        {
            *k = p ^ s;
        }
        let proven = constant_time_eq(&sha256(&client_key), &self.keys.stored_key);
        wipe(&mut client_key);
        if self.absent {
            return Err("no usable account");
        }
        if !proven {
            return Err("wrong proof");
        }
        let server_signature = hmac(&self.keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
    }
}

/// A SCRAM message as text: not empty, UTF-8, no NUL (RFC 5802 §7's value-char).
fn text(message: &[u8]) -> Result<&str, &'static str> {
    if message.is_empty() {
        return Err("empty SCRAM message");
    }
    if message.contains(&0) {
        return Err("NUL in a SCRAM message");
    }
    std::str::from_utf8(message).map_err(|_| "SCRAM message not UTF-8")
}

/// A nonce: printable ASCII (0x21..0x7e) but ','.
fn is_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// An optional extension, `attr-val = ALPHA "=" value` (RFC 5802 §7): accepted and ignored,
/// but for the reserved `m`.
fn extension(field: &str) -> Result<(), &'static str> {
    match field.as_bytes() {
        [b'm', b'=', ..] => Err("a mandatory extension (m=)"),
        [attr, b'=', _, ..] if attr.is_ascii_alphabetic() => Ok(()),
        _ => Err("malformed extension"),
    }
}
