//! 50 writers x 20 updates on one account with deapop racing them: the store ends valid and
//! holds one of the 50 writers' last passwords, no temp file is left, and the disable mark is
//! what the last completed deapop made it. Root only (root sets another account's password).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crate::tools_harness::{listing, World};

const WRITERS: usize = 50;
const UPDATES: usize = 20;

#[test]
fn fifty_writers_twenty_updates_deapop_racing_root() {
    if !crate::need_root("fifty_writers_twenty_updates_deapop_racing_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    let finals: Vec<String> = (0..WRITERS)
        .map(|w| format!("writer {w:02} update {:02}", UPDATES - 1))
        .collect();
    let writers_done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (flips, last_disabled, last_runs) = std::thread::scope(|s| {
        let flipper = s.spawn(|| {
            let mut flips = 0;
            let mut disabled = false;
            while !stop.load(Ordering::SeqCst) {
                let run = if disabled {
                    world.deapop().args(["--enable", "alice"])
                } else {
                    world.deapop().arg("alice")
                };
                run.run().success();
                disabled = !disabled;
                flips += 1;
            }
            (flips, disabled)
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let world = &world;
                let writers_done = &writers_done;
                s.spawn(move || {
                    let mut last = None;
                    for u in 0..UPDATES {
                        let start = Instant::now();
                        world
                            .apoppasswd()
                            .args(["--stdin", "alice"])
                            .stdin(format!("writer {w:02} update {u:02}\n"))
                            .run()
                            .success();
                        last = Some((start, Instant::now()));
                    }
                    writers_done.fetch_add(1, Ordering::SeqCst);
                    last.unwrap()
                })
            })
            .collect();
        let last_runs: Vec<(Instant, Instant)> =
            writers.into_iter().map(|h| h.join().unwrap()).collect();
        stop.store(true, Ordering::SeqCst);
        let (flips, disabled) = flipper.join().unwrap();
        (flips, disabled, last_runs)
    });
    assert_eq!(writers_done.load(Ordering::SeqCst), WRITERS);
    crate::report(&format!(
        "{WRITERS} writers x {UPDATES} updates with {flips} deapop flips in {:?}",
        started.elapsed()
    ));

    assert_eq!(
        world.is_disabled("alice"),
        last_disabled,
        "the disable mark is not what the last deapop made it"
    );
    let status = world
        .apoppasswd()
        .args(["--status", "alice"])
        .run()
        .success()
        .stdout;
    assert!(status.contains("password:   set\n"), "{status}");
    let matching: Vec<&String> = finals
        .iter()
        .filter(|pw| world.verifies("alice", pw))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "final passwords that match: {matching:?}"
    );
    // And it is the last one written: the winner's final run did not end before any other
    // writer's final run began (a later run would have replaced it).
    let winner = finals.iter().position(|pw| pw == matching[0]).unwrap();
    let winner_end = last_runs[winner].1;
    for (w, (start, _)) in last_runs.iter().enumerate() {
        assert!(
            *start <= winner_end,
            "writer {w}'s last update began after writer {winner}'s had finished, yet {winner}'s \
             password is the one stored"
        );
    }
    assert_eq!(listing(&alice.home), [".apop", ".apop.lock"], "debris");
    assert_eq!(
        listing(world.disabled.parent().unwrap()),
        ["disabled", "disabled.lock"],
        "debris"
    );
}
