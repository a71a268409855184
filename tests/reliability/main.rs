//! Reliability under faults: SIGKILL at random moments, a full file system. Each promise of the
//! store and the disable list (old or new, never torn; no debris that breaks the next run) is
//! checked after every fault. Root only (virtual users, tmpfs mounts); elsewhere each test says
//! `SKIPPED (needs root): <name>`.

#[allow(dead_code)]
#[path = "../tools/harness.rs"]
mod harness;

mod crash;
mod disk_full;

/// A small deterministic PRNG (xorshift64*), so a failing trial can be replayed by its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
