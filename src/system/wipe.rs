//! wipe: the one routine that erases a secret from memory (store secrets and PASS passwords).
//!
//! Guarantee: every byte of the buffer is zero when [`wipe`] returns, and the compiler may not
//! drop the writes because the buffer is about to be freed (they are volatile).

/// Overwrites every byte of `bytes` with zero, in a way the optimiser must keep.
pub fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference into a live buffer, so writing
        // one `u8` through it is sound; `write_volatile` only keeps the compiler from eliding
        // the store into a buffer that is dead afterwards.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
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
