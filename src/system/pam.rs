//! pam: one question to the system's PAM stack — would this password log this account in?
//!
//! [`authenticate`] runs `pam_start`, `pam_authenticate` and `pam_end` for one service, one
//! account and one candidate, and nothing else: no `pam_acct_mgmt` (expiry, pam_lastlog,
//! pam_faillock's account part), no `pam_setcred`, no session. Guarantees:
//! - The answer is a [`Verdict`]: `Same` only for `PAM_SUCCESS`, `Different` only for
//!   `PAM_AUTH_ERR` (the stack's own "wrong password"); any other status (a missing module,
//!   `PAM_ABORT`, a module error, an unknown user, a conversation this module refused) is
//!   `Unavailable` with the reason, never "different", so a caller can fail closed.
//! - The service must have its own file in `/etc/pam.d` (or the vendor directory
//!   `/usr/lib/pam.d`): for a missing one, Linux-PAM would silently run the `other` service,
//!   which may deny every password and so hide a login password.
//! - The conversation answers `PAM_PROMPT_ECHO_OFF` with the candidate and refuses every other
//!   message (`PAM_CONV_ERR`: the check is then unavailable). `PAM_SILENT` asks modules not to
//!   send messages at all.
//! - The delay a module asks for after a failure (pam_unix's 2 s, pam_faildelay's) reaches our
//!   `PAM_FAIL_DELAY` function, which does not sleep: the caller owns delays.
//! - The candidate is copied only into the malloc'd response PAM takes over (Linux-PAM's
//!   modules overwrite it before they free it, and `pam_end` wipes the stored authtok);
//!   nothing here logs, prints or keeps it.
//!
//! pam_unix run as root reads `/etc/shadow` itself; run as a user it asks its setgid helper
//! `unix_chkpwd`, which answers for the caller's own account only (and cannot read the shadow
//! file under `no_new_privs`, which is therefore refused up front for a non-root caller).
//!
//! The library is linked by its soname, `libpam.so.0` (Debian's essential `libpam0g`), so the
//! build needs no development package.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;

/// What the PAM stack says of a candidate password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `PAM_SUCCESS`: the candidate logs the account in.
    Same,
    /// `PAM_AUTH_ERR`: it does not.
    Different,
    /// The stack could not answer; the text says why (never a password).
    Unavailable(String),
}

/// Where Linux-PAM looks for a service's file, in its order (`/etc/pam.d`, then the vendor
/// directory of distributions that use one).
const SERVICE_DIRS: &[&str] = &["/etc/pam.d", "/usr/lib/pam.d"];

/// Longest service name accepted.
const MAX_SERVICE_LEN: usize = 64;

/// Whether `service` may name a PAM service: 1-64 bytes of letters, digits, `.`, `_`, `-`,
/// not starting with `.` or `-` (it becomes a file name under `/etc/pam.d`).
pub fn valid_service(service: &str) -> bool {
    !service.is_empty()
        && service.len() <= MAX_SERVICE_LEN
        && !service.starts_with(['.', '-'])
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The file Linux-PAM reads for `service`, if there is one.
pub fn service_file(service: &str) -> Option<PathBuf> {
    if !valid_service(service) {
        return None;
    }
    SERVICE_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(service))
        .find(|p| p.is_file())
}

/// Asks the PAM `service` whether `candidate` is the password of `user`. Blocks as long as
/// the stack takes (pam_unix: one hash of the candidate); never sleeps for a failure delay
/// (see the module comment).
pub fn authenticate(service: &str, user: &str, candidate: &[u8]) -> Verdict {
    if service_file(service).is_none() {
        return Verdict::Unavailable(format!(
            "PAM service {service:?} has no file in {} (PAM would use its \"other\" service \
             instead)",
            SERVICE_DIRS.join(" or ")
        ));
    }
    if !nix::unistd::geteuid().is_root() && nix::sys::prctl::get_no_new_privs().unwrap_or(true) {
        return Verdict::Unavailable(
            "no_new_privs is set, so PAM's unix_chkpwd helper could not read the shadow file"
                .into(),
        );
    }
    // A C string cannot hold a NUL, and so no login password can: the candidate is not one.
    if candidate.contains(&0) {
        return Verdict::Different;
    }
    let (Ok(c_service), Ok(c_user)) = (CString::new(service), CString::new(user)) else {
        return Verdict::Unavailable("a PAM service or user name holds a NUL".into());
    };
    let mut talk = Talk {
        candidate,
        refused: None,
    };
    let conv = PamConv {
        conv: Some(converse),
        appdata_ptr: ptr::addr_of_mut!(talk).cast(),
    };
    let mut handle: *mut PamHandle = ptr::null_mut();
    // SAFETY: both strings are NUL-terminated and outlive the call (pam_start copies them);
    // `conv` and the `talk` its appdata points to live on this stack frame until after
    // pam_end below, the only time PAM may call the conversation; `handle` is a valid place
    // for pam_start to store the new handle.
    let started = unsafe { pam_start(c_service.as_ptr(), c_user.as_ptr(), &conv, &mut handle) };
    if started != PAM_SUCCESS || handle.is_null() {
        return Verdict::Unavailable(format!(
            "pam_start for service {service:?}: {}",
            describe(started)
        ));
    }
    let delay_fn: DelayFn = no_delay;
    // SAFETY: `handle` came from a successful pam_start and is not yet ended; for
    // PAM_FAIL_DELAY Linux-PAM stores the pointer as the function it calls instead of
    // sleeping, and `no_delay` has exactly the C signature it calls it with.
    let set = unsafe { pam_set_item(handle, PAM_FAIL_DELAY, delay_fn as *const c_void) };
    let status = if set == PAM_SUCCESS {
        // SAFETY: `handle` is live (see above); PAM_SILENT is a valid flag of pam_authenticate.
        unsafe { pam_authenticate(handle, PAM_SILENT) }
    } else {
        set
    };
    // SAFETY: `handle` is live and is never used again after this call, which frees it.
    unsafe { pam_end(handle, status) };
    match (status, talk.refused) {
        // The stack let the candidate in, whatever else it said.
        (PAM_SUCCESS, _) => Verdict::Same,
        (_, Some(style)) => Verdict::Unavailable(format!(
            "PAM service {service:?} asked for something other than the password (message \
             style {style}), which this check does not answer"
        )),
        (PAM_AUTH_ERR, None) => Verdict::Different,
        (_, None) if set != PAM_SUCCESS => Verdict::Unavailable(format!(
            "PAM service {service:?}: cannot set PAM_FAIL_DELAY: {}",
            describe(status)
        )),
        (_, None) => Verdict::Unavailable(format!(
            "PAM service {service:?}: pam_authenticate: {}",
            describe(status)
        )),
    }
}

/// A PAM status as its name and number, such as `PAM_ABORT (26)`.
fn describe(status: c_int) -> String {
    let name = match status {
        PAM_SUCCESS => "PAM_SUCCESS",
        1 => "PAM_OPEN_ERR: a module could not be loaded",
        2 => "PAM_SYMBOL_ERR",
        3 => "PAM_SERVICE_ERR: a module failed",
        4 => "PAM_SYSTEM_ERR",
        5 => "PAM_BUF_ERR",
        6 => "PAM_PERM_DENIED",
        PAM_AUTH_ERR => "PAM_AUTH_ERR",
        8 => "PAM_CRED_INSUFFICIENT",
        9 => "PAM_AUTHINFO_UNAVAIL: the password database cannot be read",
        10 => "PAM_USER_UNKNOWN: the stack does not know the account",
        11 => "PAM_MAXTRIES",
        PAM_CONV_ERR => "PAM_CONV_ERR",
        26 => "PAM_ABORT",
        28 => "PAM_MODULE_UNKNOWN",
        _ => "an unexpected status",
    };
    format!("{name} ({status})")
}

/// What the conversation knows and learns during one `pam_authenticate`.
struct Talk<'a> {
    candidate: &'a [u8],
    /// The style of the first message refused, if any.
    refused: Option<c_int>,
}

/// The conversation: every message must be `PAM_PROMPT_ECHO_OFF`, answered with the
/// candidate in a malloc'd, NUL-terminated copy (PAM frees the responses). Anything else
/// refuses the whole call.
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    if appdata_ptr.is_null() || msg.is_null() || resp.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata_ptr is the `Talk` that `authenticate` put in the pam_conv; it lives,
    // unaliased, until pam_end returns, and PAM calls the conversation only before that.
    let talk = unsafe { &mut *appdata_ptr.cast::<Talk>() };
    let Ok(count) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if count == 0 || count > PAM_MAX_NUM_MSG {
        return PAM_CONV_ERR;
    }
    for i in 0..count {
        // SAFETY: Linux-PAM passes `msg` as an array of `num_msg` pointers to messages, each
        // valid for the duration of this call.
        let message = unsafe { *msg.add(i) };
        if message.is_null() {
            return PAM_CONV_ERR;
        }
        // SAFETY: `message` is a non-null pointer to a pam_message PAM owns (see above).
        let style = unsafe { (*message).msg_style };
        if style != PAM_PROMPT_ECHO_OFF {
            talk.refused.get_or_insert(style);
            return PAM_CONV_ERR;
        }
    }
    // SAFETY: calloc is called with a non-zero count and the size of the C struct; the result
    // is checked for null below.
    let replies = unsafe { nix::libc::calloc(count, std::mem::size_of::<PamResponse>()) }
        .cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..count {
        let len = talk.candidate.len();
        // SAFETY: malloc of len + 1 bytes, checked for null below.
        let copy = unsafe { nix::libc::malloc(len + 1) }.cast::<u8>();
        if copy.is_null() {
            // SAFETY: `replies` holds `count` responses, the first `i` with a malloc'd copy
            // of the candidate each, which are wiped and freed with it; nothing else refers
            // to them, and PAM never sees this array.
            unsafe { free_replies(replies, i) };
            return PAM_BUF_ERR;
        }
        // SAFETY: `copy` has room for len + 1 bytes and does not overlap the candidate; the
        // last byte is the C string's terminator. `replies` has `count` zeroed entries, so
        // entry `i` is in bounds.
        unsafe {
            ptr::copy_nonoverlapping(talk.candidate.as_ptr(), copy, len);
            *copy.add(len) = 0;
            (*replies.add(i)).resp = copy.cast::<c_char>();
        }
    }
    // SAFETY: `resp` is the non-null place PAM gave for the array; PAM now owns it and the
    // strings in it, and frees them (overwriting the answers first).
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// Wipes and frees the first `filled` answers of `replies`, then the array.
///
/// # Safety
/// `replies` is a calloc'd array whose first `filled` entries each hold a malloc'd,
/// NUL-terminated string, and nothing else refers to any of them.
unsafe fn free_replies(replies: *mut PamResponse, filled: usize) {
    for i in 0..filled {
        // SAFETY: entry `i` is within the first `filled` entries (see the contract).
        let answer = unsafe { (*replies.add(i)).resp };
        if !answer.is_null() {
            // SAFETY: `answer` is a malloc'd C string (see the contract): its strlen bytes
            // are writable, and it is freed once, here.
            unsafe {
                let len = CStr::from_ptr(answer).to_bytes().len();
                crate::system::wipe::wipe(std::slice::from_raw_parts_mut(answer.cast(), len));
                nix::libc::free(answer.cast());
            }
        }
    }
    // SAFETY: `replies` came from calloc and is freed once, here.
    unsafe { nix::libc::free(replies.cast()) };
}

/// The `PAM_FAIL_DELAY` function: called instead of PAM's own sleep after a failure. It does
/// nothing: whether and how long to wait is the caller's decision (apoppassd pads every
/// answer to its `auth_delay`).
extern "C" fn no_delay(_status: c_int, _usec: c_uint, _appdata_ptr: *mut c_void) {}

// The Linux-PAM ABI (security/_pam_types.h, security/pam_appl.h).
const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_AUTH_ERR: c_int = 7;
const PAM_CONV_ERR: c_int = 19;
const PAM_SILENT: c_int = 0x8000;
const PAM_FAIL_DELAY: c_int = 10;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
/// Linux-PAM's limit on messages in one conversation call.
const PAM_MAX_NUM_MSG: usize = 32;

#[repr(C)]
struct PamHandle {
    _opaque: [u8; 0],
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn =
    extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;
type DelayFn = extern "C" fn(c_int, c_uint, *mut c_void);

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "libpam.so.0", kind = "dylib", modifiers = "+verbatim")]
extern "C" {
    fn pam_start(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, pam_status: c_int) -> c_int;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for good in ["passwd", "common-auth", "login", "apop_tools.1"] {
            assert!(valid_service(good), "{good}");
        }
        for bad in [
            "",
            "../shadow",
            "a/b",
            ".hidden",
            "-x",
            "sp ace",
            &"x".repeat(65),
        ] {
            assert!(!valid_service(bad), "{bad}");
        }
    }

    #[test]
    fn a_missing_service_is_unavailable_never_different() {
        let v = authenticate("apoptools-no-such-service", "root", b"whatever-1");
        assert!(
            matches!(&v, Verdict::Unavailable(why) if why.contains("has no file")),
            "{v:?}"
        );
    }

    #[test]
    fn an_unknown_user_is_not_the_same() {
        // Whatever the stack says of an account that does not exist, it is not "same".
        let v = authenticate("login", "apoptools-no-such-user", b"whatever-1");
        assert_ne!(v, Verdict::Same);
    }
}
