//! What a run reports: the parameters, the figures (a flat name → number
//! map, so the side-by-side runner can divide them) and the broker's resource
//! use. Printed as a human summary on stderr and one JSON line on stdout.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::procstat::{self, ProcSample};

/// Percentiles reported for every latency histogram.
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)];

/// One run's result.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Report {
    /// Workload name (`produce`, `latency`, ...).
    pub workload: String,
    /// Free-form label of the broker under test (e.g. `skiff`, `tansu-memory`).
    pub label: String,
    /// Unix time (seconds) at the end of the run.
    pub unix_time: u64,
    /// The parameters the run used.
    pub params: BTreeMap<String, serde_json::Value>,
    /// The measured figures; names end in their unit (`_mb_s`, `_ms`, ...).
    pub figures: BTreeMap<String, f64>,
}

impl Report {
    /// An empty report for `workload`.
    pub fn new(workload: &str, label: &str) -> Self {
        Report {
            workload: workload.to_string(),
            label: label.to_string(),
            ..Report::default()
        }
    }

    /// Records a parameter.
    pub fn param(&mut self, name: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.params.insert(name.to_string(), v);
    }

    /// Records a figure.
    pub fn figure(&mut self, name: &str, value: f64) {
        self.figures.insert(name.to_string(), value);
    }

    /// Records `<prefix>_p50_ms` ... `<prefix>_max_ms` and the sample count
    /// from a histogram of microseconds.
    pub fn latency(&mut self, prefix: &str, h: &Histogram<u64>) {
        self.figure(&format!("{prefix}_samples"), h.len() as f64);
        if h.is_empty() {
            return;
        }
        for (name, q) in PERCENTILES {
            let v = h.value_at_percentile(q) as f64 / 1000.0;
            self.figure(&format!("{prefix}_{name}_ms"), v);
        }
        self.figure(&format!("{prefix}_max_ms"), h.max() as f64 / 1000.0);
    }

    /// Prints the summary on stderr and the JSON line on stdout.
    pub fn emit(&mut self) {
        self.unix_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        eprintln!("== {} against {} ==", self.workload, self.label);
        for (k, v) in &self.params {
            eprintln!("  {k:<28} {v}");
        }
        eprintln!("  --");
        for (k, v) in &self.figures {
            eprintln!("  {k:<28} {}", fmt_num(*v));
        }
        match serde_json::to_string(self) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("cannot encode the report: {e}"),
        }
    }
}

/// A number with a sensible precision for the summary.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid histogram bounds")
}

/// Samples the broker process (when its pid is known) at the start and end
/// of the measured part of a run.
#[derive(Debug)]
pub struct BrokerMonitor {
    pid: Option<u32>,
    start: Option<ProcSample>,
}

impl BrokerMonitor {
    /// Takes the starting sample.
    pub fn start(pid: Option<u32>) -> Self {
        BrokerMonitor {
            pid,
            start: pid.and_then(procstat::sample),
        }
    }

    /// Adds `broker_rss_mib`, `broker_rss_peak_mib`, `broker_cpu_s` and,
    /// when `bytes` > 0, `broker_cpu_s_per_gb` to the report.
    pub fn finish(&self, report: &mut Report, bytes: u64) {
        let (Some(pid), Some(start)) = (self.pid, self.start) else {
            return;
        };
        let Some(end) = procstat::sample(pid) else {
            eprintln!("broker pid {pid} is gone; no resource figures");
            return;
        };
        let mib = 1024.0 * 1024.0;
        report.figure("broker_rss_mib", end.rss_bytes as f64 / mib);
        report.figure("broker_rss_peak_mib", end.rss_peak_bytes as f64 / mib);
        let cpu = end.cpu_seconds - start.cpu_seconds;
        report.figure("broker_cpu_s", cpu);
        if bytes > 0 {
            report.figure("broker_cpu_s_per_gb", cpu / (bytes as f64 / 1e9));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_figures_are_in_milliseconds() {
        let mut h = micros_histogram();
        for us in 1..=1000u64 {
            h.record(us * 10).expect("in range");
        }
        let mut r = Report::new("latency", "test");
        r.latency("ack", &h);
        assert_eq!(r.figures["ack_samples"], 1000.0);
        let p50 = r.figures["ack_p50_ms"];
        assert!((4.9..=5.1).contains(&p50), "{p50}");
        assert!((r.figures["ack_max_ms"] - 10.0).abs() < 0.02);
    }

    #[test]
    fn report_round_trips_through_json() {
        let mut r = Report::new("produce", "skiff");
        r.param("acks", "all");
        r.figure("throughput_mb_s", 12.5);
        let line = serde_json::to_string(&r).expect("encode");
        let back: Report = serde_json::from_str(&line).expect("decode");
        assert_eq!(back.figures, r.figures);
        assert_eq!(back.params, r.params);
    }
}
