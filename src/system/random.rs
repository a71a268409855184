//! random: bytes from the kernel's random generator (getrandom(2)), for SCRAM salts and
//! nonces. Guarantees: [`fill`] either fills the whole buffer with the kernel's output or
//! fails; it never returns fewer bytes, and never falls back to anything weaker.

use std::io;

/// Fills `buf` from getrandom(2) (blocking until the generator is seeded).
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe `rest`, a live, writable slice that the
        // kernel writes at most `rest.len()` bytes into; no other reference to it exists.
        let n = unsafe { nix::libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_everything_and_differs() {
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        super::fill(&mut a).unwrap();
        super::fill(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 64]);
    }
}
