//! `bench memory` runs both phases and reports each as JSON, within a memory bound it names.

use std::process::Command;

#[test]
fn bench_memory_reports_both_phases() {
    let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args([
            "bench",
            "memory",
            "--entities",
            "3000",
            "--types",
            "300",
            "--memory-mb",
            "1",
            "--json",
        ])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["memory_mb"], 1);
    let phases = v["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 2);
    assert_eq!(phases[0]["name"], "entities");
    assert_eq!(phases[0]["events"], 3000);
    assert_eq!(phases[1]["name"], "types");
    assert_eq!(phases[1]["events"], 300);
    assert!(phases[0]["events_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn bench_memory_refuses_a_zero_budget() {
    let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["bench", "memory", "--memory-mb", "0"])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--memory-mb"));
}
