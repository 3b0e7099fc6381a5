//! The `jepsen` binary on saved histories: exit codes and report files.

use std::process::Command;

const CLEAN: &str = r#"{"process":0,"type":"invoke","f":"send","sends":[{"topic":"t","partition":0,"value":1}]}
{"process":0,"type":"ok","f":"send","sends":[{"topic":"t","partition":0,"value":1,"offset":0}]}
{"process":1,"type":"invoke","f":"final_read"}
{"process":1,"type":"ok","f":"final_read","read_committed":true,"reads":[{"topic":"t","partition":0,"offset":0,"value":1}],"end_offsets":[{"topic":"t","partition":0,"end_offset":1}]}
"#;

fn jepsen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(args)
        .output()
        .expect("run jepsen")
}

#[test]
fn check_exits_zero_on_a_clean_history_and_one_on_a_lost_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clean = dir.path().join("clean.jsonl");
    std::fs::write(&clean, CLEAN).expect("write");
    let out = jepsen(&["check", clean.to_str().expect("utf8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("anomalies: none"));
    assert!(dir.path().join("report.json").is_file());

    // The final read no longer holds the acked value.
    let lost = CLEAN.replace(
        r#""reads":[{"topic":"t","partition":0,"offset":0,"value":1}],"#,
        "",
    );
    let lost_path = dir.path().join("lost.jsonl");
    std::fs::write(&lost_path, lost).expect("write");
    let report = dir.path().join("lost-report.json");
    let out = jepsen(&[
        "check",
        lost_path.to_str().expect("utf8"),
        "--report",
        report.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("anomalies: lost 1"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(json["valid"], false);
    assert_eq!(json["anomalies"][0]["kind"], "lost");
}

#[test]
fn unreadable_history_exits_two() {
    let out = jepsen(&["check", "/nonexistent/history.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn schedule_is_printed_reproducibly() {
    let args = [
        "schedule",
        "--seed",
        "9",
        "--time",
        "120s",
        "--faults",
        "all",
        "--brokers",
        "3",
    ];
    let (a, b) = (jepsen(&args), jepsen(&args));
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8_lossy(&a.stdout);
    assert!(text.starts_with("fault schedule (seed 9"), "{text}");
}

#[test]
fn run_with_a_missing_broker_binary_fails_with_exit_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args([
            "run",
            "--time",
            "1s",
            "--faults",
            "none",
            "--no-moto",
            "--bin",
        ])
        .arg(dir.path().join("no-such-skiff"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .expect("run jepsen");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-skiff"));
}
