//! Tests of the state directory as a whole: round trips, change-only saves, migration, set-aside.

use super::*;
use crate::state::store::{LEGACY_FILE, POLICIES_DIR};

fn policy(source: &str, listen: &str) -> PolicyState {
    PolicyState {
        source_file: source.into(),
        upstream: UpstreamSettings {
            listen: listen.to_owned(),
            ..UpstreamSettings::default()
        },
        ..Default::default()
    }
}

fn state(policies: &[(&str, PolicyState)]) -> State {
    State {
        policies: policies
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.clone()))
            .collect(),
    }
}

fn json(s: &State) -> serde_json::Value {
    serde_json::to_value(s).unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn missing_state_loads_empty_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let sd = StateDir::new(dir.path().join("s"));
    assert!(sd.load().unwrap().policies.is_empty());
    let st = state(&[("web", policy("p.yaml", "127.0.0.1:8080"))]);
    sd.save(&st).unwrap();
    assert_eq!(json(&StateDir::new(sd.root()).load().unwrap()), json(&st));
    assert_eq!(files(&sd.root().join(POLICIES_DIR)), vec!["web.json"]);
}

/// Item 18: a save writes only the policies whose bytes changed.
#[test]
fn save_rewrites_only_the_policies_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let sd = StateDir::new(dir.path());
    let mut st = state(&[
        ("a", policy("p.yaml", "127.0.0.1:8080")),
        ("b", policy("p.yaml", "127.0.0.1:8081")),
        ("c", policy("p.yaml", "127.0.0.1:8082")),
    ]);
    assert_eq!(sd.save_counted(&st).unwrap(), 3);
    assert_eq!(sd.save_counted(&st).unwrap(), 0);
    st.policies.get_mut("b").unwrap().status.desired = 4;
    assert_eq!(sd.save_counted(&st).unwrap(), 1);
    // A fresh process that loaded the directory knows what is on disk, too.
    let again = StateDir::new(dir.path());
    let loaded = again.load().unwrap();
    assert_eq!(json(&loaded), json(&st));
    assert_eq!(again.save_counted(&loaded).unwrap(), 0);
}

#[test]
fn save_policy_writes_one_policy_only_when_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let sd = StateDir::new(dir.path());
    let mut st = state(&[
        ("a", policy("p.yaml", "127.0.0.1:8080")),
        ("b", policy("p.yaml", "127.0.0.1:8081")),
    ]);
    sd.save(&st).unwrap();
    assert!(!sd.save_policy("a", &st.policies["a"]).unwrap());
    st.policies.get_mut("a").unwrap().status.current = 2;
    assert!(sd.save_policy("a", &st.policies["a"]).unwrap());
    assert!(!sd.save_policy("a", &st.policies["a"]).unwrap());
    // `save` knows what `save_policy` wrote.
    assert_eq!(sd.save_counted(&st).unwrap(), 0);
    assert_eq!(json(&StateDir::new(dir.path()).load().unwrap()), json(&st));
}

#[test]
fn save_removes_the_files_of_policies_gone_from_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join(POLICIES_DIR);
    let st = state(&[
        ("a", policy("p.yaml", "127.0.0.1:8080")),
        ("b", policy("p.yaml", "127.0.0.1:8081")),
    ]);
    let sd = StateDir::new(dir.path());
    sd.save(&st).unwrap();
    let only_a = state(&[("a", policy("p.yaml", "127.0.0.1:8080"))]);
    sd.save(&only_a).unwrap();
    assert_eq!(files(&pdir), vec!["a.json"]);
    // A directory this process never loaded: whatever is not in the state goes too.
    sd.save(&st).unwrap();
    StateDir::new(dir.path()).save(&only_a).unwrap();
    assert_eq!(files(&pdir), vec!["a.json"]);
}

#[test]
fn legacy_state_file_is_split_into_policy_files_by_the_lock_holder() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(&[
        ("a", policy("p.yaml", "127.0.0.1:8080")),
        ("b", policy("q.yaml", "127.0.0.1:8081")),
    ]);
    fs::write(
        dir.path().join(LEGACY_FILE),
        serde_json::to_vec_pretty(&st).unwrap(),
    )
    .unwrap();
    // A reader (status) sees it and changes nothing.
    assert_eq!(json(&StateDir::new(dir.path()).load().unwrap()), json(&st));
    assert!(dir.path().join(LEGACY_FILE).exists());
    let sd = StateDir::new(dir.path());
    let _lock = sd.lock("run").unwrap();
    assert_eq!(json(&sd.load().unwrap()), json(&st));
    assert!(!dir.path().join(LEGACY_FILE).exists());
    assert!(dir.path().join("state.json.migrated").exists());
    assert_eq!(
        files(&dir.path().join(POLICIES_DIR)),
        vec!["a.json", "b.json"]
    );
    assert!(sd.take_resets().is_empty());
    assert_eq!(sd.save_counted(&st).unwrap(), 0);
}

/// Item 3 (state half): `"value": null` in a sample (what a NaN counter used to store)
/// no longer fails the load: the file is set aside, the reset is returned, logged as a
/// `StateReset` event, and the policy keeps its upstream with an empty history.
#[test]
fn unreadable_policy_file_is_set_aside_and_loading_continues() {
    let dir = tempfile::tempdir().unwrap();
    let sd = StateDir::new(dir.path());
    let mut good = policy("p.yaml", "127.0.0.1:8080");
    good.samples.insert(
        "c1/http_requests_total".into(),
        CounterSample {
            at_ms: 1,
            value: 5.0,
        },
    );
    let st = state(&[
        ("web", good.clone()),
        ("api", policy("p.yaml", "127.0.0.1:8081")),
    ]);
    sd.save(&st).unwrap();
    let web = dir.path().join(POLICIES_DIR).join("web.json");
    let text = fs::read_to_string(&web).unwrap().replace("5.0", "null");
    assert!(text.contains("\"value\":null"), "{text}");
    fs::write(&web, &text).unwrap();

    // Not the lock holder (status, diff): skipped in memory, left in place.
    let reader = StateDir::new(dir.path()).load_checked().unwrap();
    assert_eq!(reader.resets.len(), 1);
    assert!(reader.resets[0].moved_to.is_none());
    assert!(web.exists());

    let sd = StateDir::new(dir.path());
    let _lock = sd.lock("run").unwrap();
    let loaded = sd.load().unwrap();
    let resets = sd.take_resets();
    assert_eq!(resets.len(), 1, "{resets:?}");
    let reset = &resets[0];
    assert_eq!(reset.policy.as_deref(), Some("web"));
    assert!(
        matches!(reset.error, StateError::Corrupt { .. }),
        "{:?}",
        reset.error
    );
    let moved = reset.moved_to.clone().unwrap();
    assert!(!web.exists());
    assert_eq!(fs::read_to_string(&moved).unwrap(), text);
    assert!(
        moved
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("web.json.corrupt-"),
        "{moved:?}"
    );
    // The other policy is intact; `web` keeps its upstream, loses its history.
    assert_eq!(
        json(&state(&[("api", loaded.policies["api"].clone())])),
        json(&state(&[("api", st.policies["api"].clone())]))
    );
    let web_state = &loaded.policies["web"];
    assert_eq!(web_state.upstream.listen, "127.0.0.1:8080");
    assert!(web_state.samples.is_empty());
    assert!(web_state.history_reset_ms.is_some());
    // Loud: an event names the file.
    let events = sd.recent_events(10).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "StateReset");
    assert_eq!(events[0].policy, "web");
    assert!(
        events[0].message.contains("web.json"),
        "{}",
        events[0].message
    );
    // The next save writes the policy afresh; the next load is clean.
    sd.save(&loaded).unwrap();
    assert!(web.exists());
    let again = StateDir::new(dir.path()).load_checked().unwrap();
    assert!(again.resets.is_empty());
}

#[test]
fn legacy_file_that_is_not_json_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(LEGACY_FILE), b"{not json").unwrap();
    let sd = StateDir::new(dir.path());
    let _lock = sd.lock("down").unwrap();
    let report = sd.load_checked().unwrap();
    assert!(report.state.policies.is_empty());
    assert_eq!(report.resets.len(), 1);
    assert!(report.resets[0].policy.is_none());
    assert!(report.resets[0].error.to_string().contains("state.json"));
    assert!(!dir.path().join(LEGACY_FILE).exists());
    let names = files(dir.path());
    assert!(
        names.iter().any(|n| n.starts_with("state.json.corrupt-")),
        "{names:?}"
    );
}

#[test]
fn legacy_file_with_one_bad_policy_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(&[
        ("a", policy("p.yaml", "127.0.0.1:8080")),
        ("b", policy("p.yaml", "127.0.0.1:8081")),
    ]);
    let mut value = json(&st);
    value["policies"]["b"]["status"]["desired"] = serde_json::Value::Null;
    fs::write(
        dir.path().join(LEGACY_FILE),
        serde_json::to_vec(&value).unwrap(),
    )
    .unwrap();
    let sd = StateDir::new(dir.path());
    let _lock = sd.lock("reconcile --once").unwrap();
    let report = sd.load_checked().unwrap();
    assert_eq!(report.resets.len(), 1);
    assert_eq!(report.resets[0].policy.as_deref(), Some("b"));
    assert_eq!(
        json(&state(&[("a", report.state.policies["a"].clone())])),
        json(&state(&[("a", st.policies["a"].clone())]))
    );
    assert_eq!(report.state.policies["b"].upstream.listen, "127.0.0.1:8081");
    assert_eq!(
        files(&dir.path().join(POLICIES_DIR)),
        vec!["a.json", "b.json"]
    );
}

#[test]
fn names_encode_to_safe_file_names_and_back() {
    for (name, file) in [
        ("web", "web"),
        ("web-2", "web-2"),
        ("../etc", "%2E.%2Fetc"),
        (".hidden", "%2Ehidden"),
        ("a/b", "a%2Fb"),
        ("100%", "100%25"),
    ] {
        assert_eq!(encode_name(name), file);
        assert_eq!(decode_name(file).as_deref(), Some(name));
    }
    assert_eq!(decode_name("%zz"), None);
    assert_eq!(decode_name(""), None);
}

#[test]
fn condition_keeps_transition_time_while_status_holds() {
    let mut s = PolicyStatus::default();
    s.set_condition("ScalingActive", true, "ValidMetric", "ok", 10);
    s.set_condition("ScalingActive", true, "ValidMetric", "still ok", 20);
    assert_eq!(s.condition("ScalingActive").unwrap().last_transition_ms, 10);
    s.set_condition("ScalingActive", false, "FailedGetMetrics", "down", 30);
    assert_eq!(s.condition("ScalingActive").unwrap().last_transition_ms, 30);
}
