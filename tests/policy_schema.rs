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
    for example in entries {
        // check-jsonschema reads one document per file: split multi-document files.
        let text = std::fs::read_to_string(&example).unwrap();
        let stem = example.file_stem().unwrap().to_str().unwrap().to_owned();
        for (i, doc) in text.split("\n---\n").enumerate() {
            let part = tmp.path().join(format!("{stem}-{i}.yaml"));
            std::fs::write(&part, doc).unwrap();
            let out = Command::new("check-jsonschema")
                .arg("--schemafile")
                .arg(&schema)
                .arg(&part)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} document {i}: {}{}",
                example.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "checked only {checked} documents");
}

#[test]
fn the_schema_rejects_what_serde_rejects() {
    if !tool_available() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "check-jsonschema is missing");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = root.join("manifests/scalingpolicy.schema.json");
    for fixture in [
        "unknown-field-typo.yaml",
        "type-min-string.yaml",
        "missing-image.yaml",
        "type-bad-algorithm.yaml",
    ] {
        let out = Command::new("check-jsonschema")
            .arg("--schemafile")
            .arg(&schema)
            .arg(root.join("tests/fixtures/invalid").join(fixture))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{fixture} passed the schema");
    }
}
