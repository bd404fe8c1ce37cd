//! The examples against the committed JSON Schema, with an independent validator
//! (`check-jsonschema` from PyPI: `pip install check-jsonschema`).

use std::path::Path;
use std::process::Command;

fn tool_available() -> bool {
    Command::new("check-jsonschema")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn examples_validate_against_the_committed_schema() {
    if !tool_available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "check-jsonschema is missing (pip install check-jsonschema)"
        );
        eprintln!("skipping: check-jsonschema not installed (pip install check-jsonschema)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = root.join("manifests/scalingpolicy.schema.json");
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    entries.sort();
    let mut parts = Vec::new();
    for example in entries {
        // check-jsonschema reads one document per file: split multi-document files.
        let text = std::fs::read_to_string(&example).unwrap();
        let stem = example.file_stem().unwrap().to_str().unwrap().to_owned();
        for (i, doc) in text.split("\n---\n").enumerate() {
            let part = tmp.path().join(format!("{stem}-{i}.yaml"));
            std::fs::write(&part, doc).unwrap();
            parts.push(part);
            checked += 1;
        }
    }
    // One invocation for all documents: the tool's start-up dominates.
    let out = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(&schema)
        .args(&parts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(checked >= 5, "checked only {checked} documents");
}

#[test]
fn the_schema_rejects_what_serde_rejects() {
    if !tool_available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "check-jsonschema is missing"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = root.join("manifests/scalingpolicy.schema.json");
    let fixtures = [
        "unknown-field-typo.yaml",
        "type-min-string.yaml",
        "missing-image.yaml",
        "type-bad-algorithm.yaml",
        "prometheus-inline-password.yaml",
    ];
    let out = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(&schema)
        .args(fixtures.map(|f| root.join("tests/fixtures/invalid").join(f)))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    for fixture in fixtures {
        assert!(
            report.contains(fixture),
            "{fixture} passed the schema: {report}"
        );
    }
}
