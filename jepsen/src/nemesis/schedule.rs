//! Seeded fault schedules: the same seed and options always give the same
//! schedule, which is printed and saved (`schedule.json`) with every run.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::proxy::Fault;

/// Fault families, as named on the command line (`--faults kill,pause,...`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// kill -9 a broker, restart it later.
    Kill,
    /// SIGSTOP a broker, SIGCONT it later.
    Pause,
    /// Reset a fraction of object-store connections.
    S3Errors,
    /// Add latency to object-store traffic.
    S3Latency,
    /// Object store accepts connections but never answers, for longer than the
    /// upload interval.
    S3Blackhole,
    /// Fill the tmpfs under a broker's WAL directory.
    DiskFull,
    /// Black-hole or reset client connections to a broker (its proxy).
    Net,
}

impl FaultKind {
    /// Everything, for `--faults all`.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::S3Errors,
        FaultKind::S3Latency,
        FaultKind::S3Blackhole,
        FaultKind::DiskFull,
        FaultKind::Net,
    ];
}

/// One thing the nemesis does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    Kill { broker: usize },
    Restart { broker: usize },
    Pause { broker: usize },
    Resume { broker: usize },
    S3 { fault: Fault },
    DiskFill { broker: usize },
    DiskFree { broker: usize },
    Net { broker: usize, fault: Fault },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Kill { broker } => write!(f, "kill -9 broker-{broker}"),
            Action::Restart { broker } => write!(f, "restart broker-{broker}"),
            Action::Pause { broker } => write!(f, "pause broker-{broker}"),
            Action::Resume { broker } => write!(f, "resume broker-{broker}"),
            Action::S3 { fault } => write!(f, "object store: {fault}"),
            Action::DiskFill { broker } => write!(f, "fill WAL disk of broker-{broker}"),
            Action::DiskFree { broker } => write!(f, "free WAL disk of broker-{broker}"),
            Action::Net { broker, fault } => {
                write!(f, "client network to broker-{broker}: {fault}")
            }
        }
    }
}

/// An action at a time since the start of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    #[serde(flatten)]
    pub action: Action,
}

/// Knobs for [`Schedule::generate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleOptions {
    pub seed: u64,
    #[serde(with = "humantime_serde")]
    pub time: Duration,
    pub faults: Vec<FaultKind>,
    pub brokers: usize,
    /// The broker's upload interval: s3 black-holes last at least 3x this.
    #[serde(with = "humantime_serde")]
    pub upload_interval: Duration,
    /// Mean quiet time between faults.
    #[serde(with = "humantime_serde")]
    pub gap: Duration,
    /// Probability that a step injects two kinds of fault at once.
    pub combine: f64,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        ScheduleOptions {
            seed: 0,
            time: Duration::from_secs(60),
            faults: vec![FaultKind::Kill, FaultKind::Pause, FaultKind::S3Errors],
            brokers: 1,
            upload_interval: Duration::from_secs(1),
            gap: Duration::from_millis(1500),
            combine: 0.3,
        }
    }
}

/// The full list of fault events of a run, in time order; every fault is
/// healed before `time`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub options: ScheduleOptions,
    pub events: Vec<Event>,
}

fn secs(rng: &mut StdRng, lo: f64, hi: f64) -> Duration {
    Duration::from_secs_f64(rng.random_range(lo..hi))
}

impl Schedule {
    pub fn generate(options: ScheduleOptions) -> Self {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let mut events = Vec::new();
        let mut kinds = options.faults.clone();
        kinds.sort();
        kinds.dedup();
        let brokers = options.brokers.max(1);
        // Quiet at both ends: clients connect first, and the end leaves
        // time for recovery before the final read.
        let end = options.time.saturating_sub(Duration::from_secs(3));
        let mut t = Duration::from_secs(2).min(end);
        while !kinds.is_empty() && t < end {
            let n = if kinds.len() > 1 && rng.random_bool(options.combine.clamp(0.0, 1.0)) {
                2
            } else {
                1
            };
            let mut chosen: Vec<FaultKind> = kinds.choose_multiple(&mut rng, n).copied().collect();
            // A killed broker cannot also be paused.
            if chosen.contains(&FaultKind::Kill) {
                chosen.retain(|k| *k != FaultKind::Pause);
            }
            let mut step_end = t;
            for kind in chosen {
                let broker = rng.random_range(0..brokers);
                let (start, stop, dur) =
                    fault_pair(&mut rng, kind, broker, options.upload_interval);
                let heal_at = (t + dur).min(end);
                events.push(Event {
                    at: t,
                    action: start,
                });
                events.push(Event {
                    at: heal_at,
                    action: stop,
                });
                step_end = step_end.max(heal_at);
            }
            let gap = options.gap.as_secs_f64();
            t = step_end + secs(&mut rng, gap * 0.5, gap * 1.5 + f64::EPSILON);
        }
        events.sort_by_key(|e| e.at);
        Schedule { options, events }
    }

    /// Number of faults injected (start events).
    pub fn faults(&self) -> usize {
        self.events
            .iter()
            .filter(|e| {
                !matches!(
                    e.action,
                    Action::Restart { .. }
                        | Action::Resume { .. }
                        | Action::DiskFree { .. }
                        | Action::S3 { fault: Fault::Pass }
                        | Action::Net {
                            fault: Fault::Pass,
                            ..
                        }
                )
            })
            .count()
    }

    /// One line per event.
    pub fn render(&self) -> String {
        let mut s = format!(
            "fault schedule (seed {}, {} faults over {}):\n",
            self.options.seed,
            self.faults(),
            humantime::format_duration(self.options.time)
        );
        for e in &self.events {
            s.push_str(&format!("  {:>7.1}s  {}\n", e.at.as_secs_f64(), e.action));
        }
        s
    }
}

/// A fault's start action, its healing action, and how long it lasts.
fn fault_pair(
    rng: &mut StdRng,
    kind: FaultKind,
    broker: usize,
    upload: Duration,
) -> (Action, Action, Duration) {
    match kind {
        FaultKind::Kill => (
            Action::Kill { broker },
            Action::Restart { broker },
            secs(rng, 0.5, 3.0),
        ),
        FaultKind::Pause => (
            Action::Pause { broker },
            Action::Resume { broker },
            secs(rng, 0.5, 4.0),
        ),
        FaultKind::S3Errors => (
            Action::S3 {
                fault: Fault::Flaky((rng.random_range(0.2..0.8f64) * 100.0).round() / 100.0),
            },
            Action::S3 { fault: Fault::Pass },
            secs(rng, 1.0, 5.0),
        ),
        FaultKind::S3Latency => (
            Action::S3 {
                fault: Fault::Latency(Duration::from_millis(rng.random_range(50..1000))),
            },
            Action::S3 { fault: Fault::Pass },
            secs(rng, 1.0, 5.0),
        ),
        FaultKind::S3Blackhole => {
            let min = (upload.as_secs_f64() * 3.0).max(2.0);
            (
                Action::S3 {
                    fault: Fault::BlackHole,
                },
                Action::S3 { fault: Fault::Pass },
                secs(rng, min, min * 3.0),
            )
        }
        FaultKind::DiskFull => (
            Action::DiskFill { broker },
            Action::DiskFree { broker },
            secs(rng, 1.0, 5.0),
        ),
        FaultKind::Net => {
            let fault = if rng.random_bool(0.5) {
                Fault::BlackHole
            } else {
                Fault::Reset
            };
            (
                Action::Net { broker, fault },
                Action::Net {
                    broker,
                    fault: Fault::Pass,
                },
                secs(rng, 1.0, 6.0),
            )
        }
    }
}
