//! `wacrm-load drain`, small: against a tansu it starts, both consumers drain the whole
//! backlog in every round and the report carries both rates and their ratio. (How fast, and
//! how the two compare, is for the full run: docs/performance.md.) Without tansu the test
//! skips, unless `CI` or `WACRM_REQUIRE_KAFKA` is set, where it fails.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn drain_reports_both_consumers_over_every_round() {
    if wacrm_bench::tansu::find().is_none() {
        let required =
            std::env::var_os("CI").is_some() || std::env::var_os("WACRM_REQUIRE_KAFKA").is_some();
        assert!(
            !required,
            "tansu is not installed but the Kafka suites are required here"
        );
        eprintln!("skipping: no tansu");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_wacrm-load"))
        .args([
            "drain",
            "--records",
            "300",
            "--rounds",
            "2",
            "--timeout",
            "60",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    for round in 1..=2 {
        for kind in ["plain", "wacrm"] {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("round {round} {kind}: ")))
                .unwrap_or_else(|| panic!("no round {round} {kind} line in {stdout}"));
            assert!(line.contains("records/s (300 in "), "{line}");
            assert!(!line.contains("TIMED OUT"), "{line}");
        }
        assert!(
            stdout.contains(&format!("round {round}: wacrm/plain ")),
            "{stdout}"
        );
    }
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("wacrm / plain:"))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    assert!(summary.ends_with("over 2 rounds"), "{summary}");
}
