//! The real `autoscaler` binary on the examples and on the bad-input corpus.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::invalid_fixtures;

fn autoscaler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autoscaler"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run autoscaler")
}

#[test]
fn every_invalid_fixture_exits_2_naming_its_file_and_a_line() {
    let files = invalid_fixtures();
    assert!(files.len() >= 40, "only {} fixtures", files.len());
    for file in files {
        let rel = file
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap()
            .to_str()
            .unwrap();
        let out = autoscaler(&["validate", "-f", rel]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rel}: {stderr}");
        assert!(out.stdout.is_empty(), "{rel}: printed OK lines");
        // `file:LINE:COL: path: message` on the first line.
        let first = stderr.lines().next().unwrap_or_default();
        let rest = first
            .strip_prefix(&format!("{rel}:"))
            .unwrap_or_else(|| panic!("{rel}: no file name in {first:?}"));
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().unwrap_or_default();
        let col = parts.next().unwrap_or_default();
        assert!(
            line.parse::<usize>().is_ok_and(|n| n >= 1) && col.parse::<usize>().is_ok(),
            "{rel}: no line:column in {first:?}"
        );
    }
}

#[test]
fn invalid_fixtures_fail_together_in_one_run() {
    let out = autoscaler(&["validate", "-f", "tests/fixtures/invalid"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for file in invalid_fixtures() {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(stderr.contains(name), "no error for {name}");
    }
}

#[test]
fn examples_validate_with_one_ok_line_per_policy() {
    let out = autoscaler(&["validate", "-f", "examples/"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["quickstart", "web", "legacy", "api", "reports"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("OK ") && l.ends_with(&format!(" {name}"))),
            "{stdout}"
        );
    }
}

#[test]
fn several_files_are_checked_together() {
    // quickstart.yaml alone is fine; twice it conflicts with itself.
    let out = autoscaler(&[
        "validate",
        "-f",
        "examples/quickstart.yaml",
        "-f",
        "examples/quickstart.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("metadata.name: name \"quickstart\" is already used"),
        "{stderr}"
    );
}

#[test]
fn a_50_mb_file_is_rejected_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let line = "# padding padding padding padding padding padding padding padding\n";
    let text = line.repeat(50 * 1024 * 1024 / line.len() + 1);
    std::fs::write(&path, text).unwrap();
    let start = Instant::now();
    let out = autoscaler(&["validate", "-f", path.to_str().unwrap()]);
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("huge.yaml:1:1:"), "{stderr}");
    assert!(stderr.contains("larger than the limit"), "{stderr}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn committed_schema_matches_the_generated_one() {
    let out = autoscaler(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/scalingpolicy.schema.json"),
    )
    .unwrap();
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "manifests/scalingpolicy.schema.json is stale; regenerate it with \
         `cargo run -q -- schema > manifests/scalingpolicy.schema.json`"
    );
}

#[test]
fn missing_file_is_invalid_input() {
    let out = autoscaler(&["validate", "-f", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does/not/exist.yaml:1:1:"));
}
