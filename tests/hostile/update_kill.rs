//! ipop3d SIGKILLed during QUIT's UPDATE: every message marked for deletion is either still
//! there or gone, every unmarked one is there, a `+OK` to QUIT means all marked are gone, and
//! the next session works and lists the survivors under the same UIDLs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::direct::Direct;
use crate::harness::{small_message, uniques, User, World};
use crate::Rng;

const TRIALS: usize = 400;
const MESSAGES: u32 = 20;

/// Empties `user`'s Maildir and delivers [`MESSAGES`] fresh messages.
fn fresh_maildrop(w: &mut World, user: &User) {
    for sub in ["new", "cur", "tmp"] {
        for e in std::fs::read_dir(user.maildir().join(sub)).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    for i in 1..=MESSAGES {
        w.deliver(user, &small_message(i));
    }
}

/// Logs in and returns the session and its UIDL listing (message number -> UIDL).
fn login(config: &std::path::Path, user: &User) -> (Direct, BTreeMap<u64, String>) {
    let mut d = Direct::start(config, &[]);
    let line = d.apop_line(user.name(), &user.password);
    d.ok(&line);
    d.ok("UIDL");
    let uidl = d
        .multiline()
        .iter()
        .map(|l| {
            let (n, u) = l.split_once(' ').unwrap();
            (n.parse().unwrap(), u.to_string())
        })
        .collect();
    (d, uidl)
}

/// Marks `marked` (message numbers) with DELE, all in one write, and checks the replies.
fn dele(d: &mut Direct, marked: &[u64]) {
    let batch: String = marked.iter().map(|n| format!("DELE {n}\r\n")).collect();
    d.send_raw(batch.as_bytes());
    for n in marked {
        let r = d.line().expect("DELE reply");
        assert!(r.starts_with("+OK"), "DELE {n}: {r:?}");
    }
}

#[test]
fn sigkill_during_quit_update() {
    let mut w = World::new();
    let user = w.user("victim");
    let config = crate::direct::config(&w, "direct.conf", "auth_delay = 0\n");

    // Calibrate: how long QUIT takes to answer with half the messages marked.
    let mut spans = Vec::new();
    for _ in 0..5 {
        fresh_maildrop(&mut w, &user);
        let (mut d, uidl) = login(&config, &user);
        assert_eq!(
            uidl.values().cloned().collect::<BTreeSet<_>>(),
            uniques(&user.maildir()),
            "UIDL is the unique part of the file name"
        );
        dele(&mut d, &(1..=u64::from(MESSAGES) / 2).collect::<Vec<_>>());
        let start = Instant::now();
        d.ok("QUIT");
        spans.push(start.elapsed());
        d.finish();
    }
    let update = spans.iter().sum::<Duration>() / spans.len() as u32;
    let span = (update.as_micros() as u64 * 3 / 2).max(200);
    crate::report(&format!(
        "QUIT with {} marked answers in {update:?} on average; kills spread over 0..{span} us",
        MESSAGES / 2
    ));

    let seed = 0x5eed_0004;
    let mut rng = Rng::new(seed);
    let (mut untouched, mut partial, mut all_gone_unanswered, mut answered) = (0, 0, 0, 0);
    let run = Instant::now();
    for trial in 0..TRIALS {
        fresh_maildrop(&mut w, &user);
        let (mut d, uidl) = login(&config, &user);
        let marked: Vec<u64> = uidl.keys().copied().filter(|_| rng.below(2) == 0).collect();
        let marked = if marked.is_empty() { vec![1] } else { marked };
        dele(&mut d, &marked);
        let marked_uidls: BTreeSet<String> = marked.iter().map(|n| uidl[n].clone()).collect();
        let unmarked: BTreeSet<String> = uidl
            .values()
            .filter(|u| !marked_uidls.contains(*u))
            .cloned()
            .collect();
        // Half the kills aim at the first third, where the unlinks are (the rest is mostly
        // the directory fsync and the reply).
        let window = if trial % 2 == 0 { span / 3 } else { span };
        let delay = Duration::from_micros(rng.below(window.max(1)));
        d.send("QUIT");
        // Spin rather than sleep: a sleep's wake-up latency is as long as the update itself.
        let sent = Instant::now();
        while sent.elapsed() < delay {
            std::hint::spin_loop();
        }
        let _ = d.child.kill();
        let _ = d.child.wait();
        let quit_ok = d.rest().starts_with("+OK");
        drop(d);

        let on_disk = uniques(&user.maildir());
        let ctx = format!("trial {trial} (seed {seed:#x}, delay {delay:?})");
        assert!(
            unmarked.is_subset(&on_disk),
            "{ctx}: an unmarked message went"
        );
        assert!(
            on_disk.is_subset(&uidl.values().cloned().collect()),
            "{ctx}: a message appeared"
        );
        let gone = marked_uidls
            .iter()
            .filter(|u| !on_disk.contains(*u))
            .count();
        if quit_ok {
            assert_eq!(
                gone,
                marked_uidls.len(),
                "{ctx}: +OK to QUIT but not all gone"
            );
            answered += 1;
        } else if gone == 0 {
            untouched += 1;
        } else if gone < marked_uidls.len() {
            partial += 1;
        } else {
            all_gone_unanswered += 1;
        }

        // The next session works and lists exactly the survivors, under the same UIDLs.
        let (mut d, after) = login(&config, &user);
        let listed: BTreeSet<String> = after.values().cloned().collect();
        assert_eq!(listed, on_disk, "{ctx}: the next session's listing");
        d.ok("QUIT");
        assert!(d.finish().success(), "{ctx}");
    }
    crate::report(&format!(
        "kill during UPDATE: {TRIALS} trials in {:?}: before any deletion {untouched}, \
         mid-update (some marked gone) {partial}, all gone before the +OK {all_gone_unanswered}, \
         +OK received {answered}",
        run.elapsed()
    ));
    assert!(
        untouched + partial > 0 && all_gone_unanswered + answered > 0,
        "the kills did not land both before and after the deletions"
    );
}
