//! Load: 1,000 POP3 sessions, 40 at a time (tcpserver -c40), each against its own account,
//! all answered correctly, while every serving ipop3d's memory stays flat.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::{crlf, retr_wire, small_message};

const ACCOUNTS: usize = 1000;
const CONCURRENT: usize = 40;

#[test]
fn thousand_sessions_forty_at_a_time_memory_flat() {
    let mut w = world!("thousand_sessions_forty_at_a_time_memory_flat");
    let started = Instant::now();
    let mut users = Vec::new();
    let mut messages = Vec::new();
    for i in 0..ACCOUNTS {
        let user = w.user(&format!("load{i:04}"));
        let mut m = small_message(i as u32);
        // Sizes differ from account to account, so a mixed-up maildrop shows.
        m.extend(std::iter::repeat_n(b'z', i % 97));
        m.push(b'\n');
        w.deliver(&user, &m);
        users.push(user);
        messages.push(m);
    }
    crate::report(&format!(
        "load: {ACCOUNTS} accounts set up in {:?}",
        started.elapsed()
    ));
    let server = crate::serve(&w);
    let config = w.config_path();

    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    // Per pid: the largest VmHWM and VmRSS seen (KiB).
    let peaks: Mutex<std::collections::BTreeMap<u32, (u64, u64)>> = Default::default();
    let max_live = AtomicUsize::new(0);
    let run = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let pids = crate::ipop3d_pids(&config);
                max_live.fetch_max(pids.len(), Ordering::SeqCst);
                for pid in pids {
                    let (Some(hwm), Some(rss)) = (
                        crate::status_kib(pid, "VmHWM:"),
                        crate::status_kib(pid, "VmRSS:"),
                    ) else {
                        continue;
                    };
                    let mut p = peaks.lock().unwrap();
                    let e = p.entry(pid).or_insert((0, 0));
                    e.0 = e.0.max(hwm);
                    e.1 = e.1.max(rss);
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        let workers: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= ACCOUNTS {
                        return;
                    }
                    let (user, m) = (&users[i], &messages[i]);
                    let mut pop = server.connect();
                    if i.is_multiple_of(2) {
                        pop.apop(user.name(), &user.password);
                    } else {
                        pop.login(user.name(), &user.password);
                    }
                    assert_eq!(
                        pop.ok("STAT"),
                        format!("+OK 1 {}", crlf(m).len()),
                        "{}",
                        user.name()
                    );
                    pop.ok("RETR 1");
                    assert!(
                        pop.multiline_raw() == retr_wire(m),
                        "{}: RETR differs",
                        user.name()
                    );
                    pop.ok("QUIT");
                    pop.expect_closed();
                })
            })
            .collect();
        for worker in workers {
            if let Err(panic) = worker.join() {
                done.store(true, Ordering::SeqCst);
                std::panic::resume_unwind(panic);
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let elapsed = run.elapsed();
    let peaks = peaks.into_inner().unwrap();
    let mut hwms: Vec<u128> = peaks.values().map(|&(h, _)| u128::from(h)).collect();
    let rss_max = peaks.values().map(|&(_, r)| r).max().unwrap_or(0);
    let median = crate::median(&mut hwms);
    let (min, max) = (hwms.first().copied(), hwms.last().copied());
    crate::report(&format!(
        "load: {ACCOUNTS} sessions in {elapsed:?}; {} ipop3d processes sampled (up to {} at once); \
         VmHWM KiB min {min:?} median {median} max {max:?}; VmRSS max {rss_max} KiB",
        peaks.len(),
        max_live.load(Ordering::SeqCst)
    ));
    assert!(
        peaks.len() >= 20,
        "too few sessions sampled to say anything about memory: {}",
        peaks.len()
    );
    let max = max.unwrap();
    assert!(max < 32 * 1024, "an ipop3d peaked at {max} KiB");
    assert!(
        max < 2 * median,
        "memory not flat: peak {max} KiB against a median peak of {median} KiB"
    );
    // Every maildrop was left as it was: RETR deletes nothing.
    for user in users.iter().step_by(97) {
        assert_eq!(crate::harness::uniques(&user.maildir()).len(), 1);
    }
}
