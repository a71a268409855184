//! wipe: the one routine that erases a secret from memory (store secrets, PASS passwords, the
//! input and random bytes they came from).
//!
//! Guarantee: every byte of the buffer is zero when [`wipe`] returns, and the compiler may not
//! drop the writes because the buffer is about to be freed: the `zeroize` crate does the
//! writing, not hand code.

use zeroize::Zeroize;

/// Overwrites every byte of `bytes` with zero, in a way the optimiser must keep.
pub fn wipe(bytes: &mut [u8]) {
    bytes.zeroize();
}

/// Reads standard input straight from fd 0 (no std buffer in between, which would keep a copy
/// of the bytes): to its end, or through the first `\n` when `first_line` is set (then one byte
/// at a time, so nothing after the line is taken). More than `limit` bytes are an error
/// (`InvalidData`). When the buffer must grow, the bytes move to a larger one and the old one
/// is wiped first, so no copy is left in freed memory. The caller wipes what it gets.
pub fn read_stdin(limit: usize, first_line: bool) -> std::io::Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(if first_line { limit + 1 } else { 64 << 10 });
    let mut chunk = [0u8; 64 << 10];
    loop {
        let want = if first_line { 1 } else { chunk.len() };
        let n = match nix::unistd::read(0, &mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                wipe(&mut chunk);
                wipe(&mut out);
                return Err(e.into());
            }
        };
        if out.len() + n > limit {
            wipe(&mut chunk);
            wipe(&mut out);
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        if out.len() + n > out.capacity() {
            let mut bigger = Vec::with_capacity((out.capacity() * 2).max(out.len() + n));
            bigger.extend_from_slice(&out);
            wipe(&mut out);
            out = bigger;
        }
        out.extend_from_slice(&chunk[..n]);
        if first_line && chunk[0] == b'\n' {
            break;
        }
    }
    wipe(&mut chunk);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn wipes_every_byte() {
        let mut buf = b"open sesame".to_vec();
        super::wipe(&mut buf);
        assert!(buf.iter().all(|&b| b == 0));
    }
}
