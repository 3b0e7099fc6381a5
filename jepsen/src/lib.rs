//! Fault-injection harness for Skiff: runs real brokers and a real Kafka client
//! workload, injects faults, records the history and checks it for lost,
//! duplicated, reordered and aborted reads.
//!
//! Parts, each usable and tested on its own:
//!
//! * [`history`]: the recorded operations (`history.jsonl`), one JSON object
//!   per line; the contract between workloads and the checker.
//! * [`checker`]: finds lost, duplicated, unseen, non-monotonic, skipped,
//!   inconsistent-offset and aborted reads in a history; [`checker::Report`].
//! * [`control`]: broker processes (start, stop, kill -9, pause, resume),
//!   moto's S3 server, a tmpfs for disk-full, port helpers.
//! * [`proxy`]: a fault-injecting TCP proxy (latency, resets, black-hole).
//!
//! ```
//! use skiff_jepsen::checker::check;
//! use skiff_jepsen::history::{F, Op, OpType, SendRec};
//!
//! let send = |kind, offset| Op {
//!     sends: vec![SendRec { topic: "t".into(), partition: 0, value: 1, offset }],
//!     ..Op::new(0, kind, F::Send)
//! };
//! // Acked at offset 0, and there is no final read: "unseen".
//! let report = check(&[send(OpType::Invoke, None), send(OpType::Ok, Some(0))]);
//! assert!(!report.valid);
//! ```

pub mod checker;
pub mod control;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod run;
pub mod workload;

use std::path::PathBuf;

/// The executable named by environment variable `var`, if it exists. When it
/// does not: panics if `SKIFF_REQUIRE_EXTERNAL=1` (the test must fail), else
/// prints why and returns `None` (the test skips).
pub fn external_tool(var: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map(PathBuf::from);
    match path {
        Some(p) if p.is_file() => Some(p),
        other => {
            let why = match other {
                Some(p) => format!("{var}={} does not exist", p.display()),
                None => format!("{var} is not set"),
            };
            if std::env::var("SKIFF_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
                panic!("{why} and SKIFF_REQUIRE_EXTERNAL=1");
            }
            eprintln!("skipping: {why}");
            None
        }
    }
}
