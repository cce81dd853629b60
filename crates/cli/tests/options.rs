//! Options out of range are refused with a message naming them, never with a panic.

use std::process::Command;

fn log() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("prescient-options-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("events.jsonl");
    std::fs::write(
        &path,
        "{\"id\":\"e1\",\"type\":\"open\",\"time\":\"2024-01-01T00:00:00Z\",\"entities\":[{\"kind\":\"a\",\"id\":\"1\"}]}\n\
         {\"id\":\"e2\",\"type\":\"close\",\"time\":\"2024-01-01T00:01:00Z\",\"entities\":[{\"kind\":\"a\",\"id\":\"1\"}]}\n",
    )
    .expect("write log");
    path
}

#[test]
fn a_ttl_under_a_second_is_refused_cleanly() {
    let log = log();
    for (flag, value) in [("--ttl", "0s"), ("--ttl", "500ms"), ("--tick", "0s")] {
        let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
            .args(["replay", "--log"])
            .arg(&log)
            .args([flag, value])
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
