//! Schedules are reproducible and always healed; playing records every action.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::proxy::Fault;

fn opts(seed: u64) -> ScheduleOptions {
    ScheduleOptions {
        seed,
        time: Duration::from_secs(120),
        faults: FaultKind::ALL.to_vec(),
        brokers: 3,
        ..ScheduleOptions::default()
    }
}

#[test]
fn same_seed_same_schedule_other_seed_other_schedule() {
    let a = Schedule::generate(opts(7));
    assert_eq!(a, Schedule::generate(opts(7)));
    assert_ne!(a.events, Schedule::generate(opts(8)).events);
    // Survives a JSON round trip (it is saved as schedule.json).
    let json = serde_json::to_string(&a).expect("serialise");
    let back: Schedule = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, a);
}

#[test]
fn every_fault_is_healed_before_the_end_and_kinds_are_combined() {
    for seed in 0..20 {
        let s = Schedule::generate(opts(seed));
        assert!(s.faults() > 10, "seed {seed}: {}", s.render());
        let mut down = std::collections::BTreeSet::new();
        let mut s3 = Fault::Pass;
        let mut max_concurrent = 0;
        for e in &s.events {
            assert!(e.at < s.options.time, "{}", s.render());
            match &e.action {
                Action::Kill { broker } | Action::Pause { broker } => {
                    assert!(
                        down.insert(("proc", *broker)),
                        "double fault on broker {broker}: {}",
                        s.render()
                    )
                }
                Action::Restart { broker } | Action::Resume { broker } => {
                    assert!(down.remove(&("proc", *broker)))
                }
                Action::DiskFill { broker } => assert!(down.insert(("disk", *broker))),
                Action::DiskFree { broker } => assert!(down.remove(&("disk", *broker))),
                Action::Net {
                    broker,
                    fault: Fault::Pass,
                } => assert!(down.remove(&("net", *broker))),
                Action::Net { broker, .. } => assert!(down.insert(("net", *broker))),
                Action::S3 { fault } => s3 = *fault,
            }
            let now = down.len() + usize::from(s3 != Fault::Pass);
            max_concurrent = max_concurrent.max(now);
        }
        assert!(down.is_empty(), "seed {seed} leaves faults: {down:?}");
        assert_eq!(s3, Fault::Pass);
        assert!(max_concurrent <= 2);
    }
    let combined = (0..20).any(|seed| {
        let s = Schedule::generate(opts(seed));
        s.events.windows(2).any(|w| w[0].at == w[1].at)
    });
    assert!(combined, "some step injects two faults at once");
}

#[test]
fn only_requested_kinds_appear_and_blackholes_outlast_uploads() {
    let s = Schedule::generate(ScheduleOptions {
        faults: vec![FaultKind::S3Blackhole],
        upload_interval: Duration::from_secs(2),
        ..opts(3)
    });
    assert!(s.faults() > 0);
    for w in s.events.chunks(2) {
        assert_eq!(
            w[0].action,
            Action::S3 {
                fault: Fault::BlackHole
            }
        );
        assert_eq!(w[1].action, Action::S3 { fault: Fault::Pass });
        assert!(
            w[1].at - w[0].at >= Duration::from_secs(6)
                || w[1].at + Duration::from_secs(3) >= s.options.time
        );
    }
}

#[derive(Default)]
struct Fake {
    applied: Vec<Action>,
    heals: usize,
}

impl Target for Fake {
    async fn apply(&mut self, action: &Action) -> Result<(), String> {
        self.applied.push(action.clone());
        match action {
            Action::DiskFill { .. } => Err("no disk".into()),
            _ => Ok(()),
        }
    }
    async fn heal(&mut self) -> Result<(), String> {
        self.heals += 1;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn play_applies_in_order_records_and_heals() {
    let s = Schedule::generate(opts(11));
    let rec = crate::history::Recorder::in_memory();
    let mut fake = Fake::default();
    let played = play(
        &s,
        &mut fake,
        &rec,
        Instant::now(),
        &CancellationToken::new(),
    )
    .await;
    let expected: Vec<Action> = s.events.iter().map(|e| e.action.clone()).collect();
    assert_eq!(fake.applied, expected);
    assert_eq!(fake.heals, 1);
    let fills = expected
        .iter()
        .filter(|a| matches!(a, Action::DiskFill { .. }))
        .count();
    assert_eq!(played.failed, fills);
    assert_eq!(played.applied + played.failed, expected.len());
    let history = rec.finish().expect("history");
    assert_eq!(history.len(), expected.len() + 1);
    assert!(history.iter().all(|o| o.f == crate::history::F::Nemesis));
}

#[tokio::test(start_paused = true)]
async fn stopping_early_still_heals() {
    let s = Schedule::generate(opts(11));
    let stop = CancellationToken::new();
    stop.cancel();
    let mut fake = Fake::default();
    let rec = crate::history::Recorder::in_memory();
    play(&s, &mut fake, &rec, Instant::now(), &stop).await;
    assert!(fake.applied.is_empty());
    assert_eq!(fake.heals, 1);
}
