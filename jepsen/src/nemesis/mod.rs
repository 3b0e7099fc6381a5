//! The nemesis: generates a seeded [`Schedule`] of faults and plays it
//! against a [`Target`] (the real one is [`Harness`]), recording every action
//! in the history as an `f = nemesis` op.
//!
//! Playing never aborts the run: an action that fails (e.g. disk-full where
//! no tmpfs could be mounted) is recorded with its error and skipped. At the
//! end, or when stopped early, [`Target::heal`] makes everything whole.

mod harness;
mod schedule;

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use harness::{Harness, HarnessConfig};
pub use schedule::{Action, Event, FaultKind, Schedule, ScheduleOptions};

use crate::history::{F, Op, OpType, Recorder};

/// What the nemesis acts on.
pub trait Target {
    /// Applies one action; the error is recorded, not fatal.
    fn apply(&mut self, action: &Action) -> impl Future<Output = Result<(), String>> + Send;
    /// Heals every fault: proxies pass, disks freed, brokers resumed and
    /// restarted.
    fn heal(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Counts of what happened while playing a schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Played {
    pub applied: usize,
    pub failed: usize,
}

fn record(rec: &Recorder, text: String, ok: bool) {
    rec.record(Op {
        error: Some(text),
        ..Op::new(
            u64::MAX,
            if ok { OpType::Info } else { OpType::Fail },
            F::Nemesis,
        )
    });
}

/// Plays `schedule` from `start` until done or `stop`, then heals.
pub async fn play<T: Target>(
    schedule: &Schedule,
    target: &mut T,
    rec: &Recorder,
    start: Instant,
    stop: &CancellationToken,
) -> Played {
    let mut played = Played::default();
    for ev in &schedule.events {
        tokio::select! {
            _ = tokio::time::sleep_until(start + ev.at) => {}
            _ = stop.cancelled() => break,
        }
        match target.apply(&ev.action).await {
            Ok(()) => {
                played.applied += 1;
                tracing::info!(at = ?ev.at, "nemesis: {}", ev.action);
                record(rec, ev.action.to_string(), true);
            }
            Err(e) => {
                played.failed += 1;
                tracing::warn!(at = ?ev.at, "nemesis: {} failed: {e}", ev.action);
                record(rec, format!("{} failed: {e}", ev.action), false);
            }
        }
    }
    // Heal, retrying: a broker may need a moment to come back.
    for attempt in 0..5 {
        match target.heal().await {
            Ok(()) => {
                record(rec, "heal all".into(), true);
                break;
            }
            Err(e) => {
                record(
                    rec,
                    format!("heal all failed (attempt {attempt}): {e}"),
                    false,
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    played
}

#[cfg(test)]
mod tests;
