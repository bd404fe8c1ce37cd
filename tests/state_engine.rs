//! An unreadable state file on the real engine and nginx (issue 11, item 3, state half):
//! `reconcile --once` and `down` set it aside loudly and go on; nothing scales down on its
//! account. Loopback ports 26100-26199 are this file's.

mod support;

use std::path::{Path, PathBuf};

use support::{Env, assert_exit};

/// Writes what a NaN counter used to leave behind: a sample whose value is `null`.
fn poison(file: &Path) {
    let text = std::fs::read_to_string(file).expect("policy state file");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("state JSON");
    value["samples"] = serde_json::json!({
        "poisoned/http_requests_total": {"atMs": 1, "value": null}
    });
    std::fs::write(file, serde_json::to_vec(&value).unwrap()).unwrap();
}

fn set_aside(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".json.corrupt-"))
        .collect();
    files.sort();
    files
}

#[test]
fn unreadable_state_is_set_aside_and_blocks_neither_a_pass_nor_down() {
    let Some(env) = Env::new("state_null", 26100) else {
        return;
    };
    let mut o = env.opts();
    o.min = 1;
    o.max = 3;
    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "first pass");
    let before = env.running_ids();
    assert_eq!(before.len(), 1, "{:?}", env.containers());

    let policies = env.state_dir.join("policies");
    let file = policies.join(format!("{}.json", o.name));
    poison(&file);
    let out = env.reconcile();
    assert_exit(&out, 0, "a pass over an unreadable state file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("set aside"), "no error line: {stderr}");
    let aside = set_aside(&policies);
    assert_eq!(aside.len(), 1, "{aside:?}");
    let events = std::fs::read_to_string(env.state_dir.join("events.jsonl")).unwrap();
    let reset = events
        .lines()
        .find(|l| l.contains("\"StateReset\""))
        .unwrap_or_else(|| panic!("no StateReset event in {events}"));
    assert!(reset.contains(&format!("{}.json", o.name)), "{reset}");
    // The replica is untouched, and the policy's file is written afresh.
    assert_eq!(env.running_ids(), before);
    assert_eq!(env.upstream_ports(&o.name).len(), 1);
    assert!(file.exists());

    // `down` over a poisoned file drains and removes everything.
    poison(&file);
    let policy = env.policy_path();
    let out = env.run(&["down", "-f", policy.to_str().unwrap()]);
    assert_exit(&out, 0, "down over an unreadable state file");
    assert!(env.running_ids().is_empty(), "{:?}", env.containers());
    assert_eq!(set_aside(&policies).len(), 2);
}
