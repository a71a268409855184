//! apop: the APOP digest (RFC 1939 §7) and constant-time comparisons.
//!
//! digest = lowercase hex MD5(timestamp ‖ secret). Comparisons of digests and of plaintext
//! passwords take time that depends only on the lengths, never on where the bytes differ.

use md5::{Digest, Md5};

/// Lowercase hex MD5 of `timestamp` followed by `secret`.
pub fn digest(timestamp: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut h = Md5::new();
    h.update(timestamp);
    h.update(secret);
    let sum = h.finalize();
    let mut out = [0u8; 32];
    for (i, b) in sum.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `client` (as sent; hex case is ignored) is the digest of `timestamp` and `secret`.
pub fn verify(timestamp: &[u8], secret: &[u8], client: &[u8]) -> bool {
    let want = digest(timestamp, secret);
    let lowered: Vec<u8> = client.iter().map(u8::to_ascii_lowercase).collect();
    constant_time_eq(&want, &lowered)
}

/// Equality whose time depends only on the lengths of `a` and `b`.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    // Keep the optimiser from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1939_example() {
        // RFC 1939 §7: the shared secret "tanstaaf".
        let ts = b"<1896.697170952@dbc.mtview.ca.us>";
        assert_eq!(
            &digest(ts, b"tanstaaf"),
            b"c4c9334bac560ecc979e58001b3e22fb"
        );
        assert!(verify(ts, b"tanstaaf", b"C4C9334BAC560ECC979E58001B3E22FB"));
        assert!(!verify(
            ts,
            b"tanstaaF",
            b"c4c9334bac560ecc979e58001b3e22fb"
        ));
        assert!(!verify(ts, b"tanstaaf", b"c4c9334bac560ecc979e58001b3e22f"));
    }

    #[test]
    fn constant_time_eq_cases() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"\xff", b""));
    }
}
