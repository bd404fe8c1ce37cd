//! The command line's output and exit codes, as reviewed snapshots (trycmd cases under
//! `tests/cmd/`) plus the cases a snapshot cannot express: a closed stdout, a log that is
//! not a terminal, a listen port already taken, and `diff` on the real engine.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_autoscaler")
}

/// Every `tests/cmd/*.toml` case: arguments, environment, stdout, stderr, exit code.
/// `TRYCMD=overwrite cargo test --test cli_snapshots` rewrites the snapshots for review.
#[test]
fn cli_output_and_exit_codes_match_the_snapshots() {
    trycmd::TestCases::new()
        .register_bin("autoscaler", std::path::PathBuf::from(bin()))
        .case("tests/cmd/*.toml");
}

/// Runs `autoscaler ARGS` with stdout on a pipe whose read end is already closed.
fn run_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let child = Command::new(bin())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AUTOSCALER_STATE_DIR", "tests/cmd/inputs/state")
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn autoscaler");
    child.wait_with_output().expect("wait autoscaler")
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let cases: &[(&[&str], i32)] = &[
        (&["validate", "-f", "examples/"], 0),
        (&["schema"], 0),
        (&["completions", "bash"], 0),
        (&["man"], 0),
        (&["--help"], 0),
        (
            &[
                "simulate",
                "-f",
                "examples/multi.yaml",
                "--trace",
                "examples/traces/step.csv",
            ],
            0,
        ),
        (&["status"], 0),
    ];
    for (args, code) in cases {
        let out = run_into_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

#[test]
fn logs_carry_no_colour_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plot = dir.path().join("plot.svg");
    let out = Command::new(bin())
        .args([
            "simulate",
            "-f",
            "examples/web.yaml",
            "--trace",
            "examples/traces/step.csv",
        ])
        .arg("--plot")
        .arg(&plot)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("NO_COLOR")
        .env("AUTOSCALER_LOG", "info")
        .output()
        .expect("run autoscaler");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("plot written"),
        "no log line to check: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escape in a redirected log: {stderr:?}"
    );
}

/// Port 27501 of this file's block (27500-27999).
#[test]
fn run_refuses_a_listen_address_in_use_before_the_first_pass() {
    let taken = std::net::TcpListener::bind("127.0.0.1:27501").expect("bind 27501");
    let dir = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let mut child = Command::new(bin())
        .args([
            "run",
            "-f",
            "examples/web.yaml",
            "--listen",
            "127.0.0.1:27501",
        ])
        .args(["--nginx-bin", "/bin/sh"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // Whatever the engine does, the port is checked first.
        .env(
            "DOCKER_HOST",
            "unix:///nonexistent/autoscaler-cli-test.sock",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn autoscaler run");
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`run` kept running with its listen address taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    drop(taken);
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot listen on 127.0.0.1:27501"),
        "{stderr}"
    );
    assert!(stderr.contains("--listen"), "{stderr}");
}

/// Whether the Docker engine answers; under `CI=true` it must (the test fails instead).
fn docker_ready(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{test}: the Docker engine is not reachable (CI=true: must not skip)"
        );
        eprintln!("SKIP {test}: the Docker engine is not reachable");
    }
    ok
}

/// `autoscaler diff` of `tests/cmd/inputs/diff-policy.yaml` (ports 27600-27610) on the
/// real engine, with a private instance label and state dir: it only reads, so nothing
/// is left to clean up but the temporary directory.
fn real_diff(stdout: Stdio) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    Command::new(bin())
        .args(["diff", "-f", "tests/cmd/inputs/diff-policy.yaml"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--instance", &format!("cli-snap-{}", std::process::id())])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AUTOSCALER_LOG", "error")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("run autoscaler diff")
}

/// `diff | head -2` on the real engine: a quiet end with diff's own exit code (1, pending).
#[test]
fn diff_into_a_closed_pipe_ends_quietly_with_its_own_exit_code() {
    if !docker_ready("diff_into_a_closed_pipe_ends_quietly_with_its_own_exit_code") {
        return;
    }
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = real_diff(writer.into());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "changes are pending: {stderr}");
}

/// `diff` ends with one summary line and exits 1 while changes are pending.
#[test]
fn diff_ends_with_a_one_line_summary() {
    if !docker_ready("diff_ends_with_a_one_line_summary") {
        return;
    }
    let out = real_diff(Stdio::piped());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().last(),
        Some("2 to create, 0 to remove, nginx changes"),
        "{stdout}"
    );
}

/// `diff` after a template edit names what changed (real engine, nginx and demo image;
/// ports 27700-27799 through the shared fixture, which removes what the test made).
#[test]
fn diff_names_what_changed_in_a_template() {
    let Some(env) = support::Env::new("cli_template", 27700) else {
        return;
    };
    let mut opts = env.opts();
    env.write_policy(&opts);
    let out = env.reconcile();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    opts.env = vec![("MODE".into(), "fast".into())];
    opts.args = vec!["--latency-ms".into(), "1".into()];
    env.write_policy(&opts);
    let policy = env.policy_path();
    let out = env.run(&["diff", "-f", policy.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let detail = stdout
        .lines()
        .find(|l| l.starts_with("cli-template: template: "))
        .unwrap_or_else(|| panic!("no template detail in:\n{stdout}"));
    assert!(detail.contains("env MODE added"), "{detail}");
    assert!(
        detail.contains(
            "args [\"--port\", \"8000\"] → [\"--port\", \"8000\", \"--latency-ms\", \"1\"]"
        ),
        "{detail}"
    );
    assert!(
        !detail.contains("fast"),
        "env values stay private: {detail}"
    );
}

/// Every key of a JSON document (map keys of `policies` are names, not keys: skipped).
fn json_keys(value: &serde_json::Value, parent: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if parent != "policies" {
                    out.push(k.clone());
                }
                json_keys(v, k, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_keys(v, parent, out)),
        _ => {}
    }
}

#[test]
fn every_json_output_uses_camel_case_keys() {
    let cases: &[&[&str]] = &[
        &["status", "--json", "--state-dir", "tests/cmd/inputs/state"],
        &["events", "--json", "--state-dir", "tests/cmd/inputs/state"],
        &[
            "simulate",
            "-f",
            "examples/web.yaml",
            "--trace",
            "examples/traces/step.csv",
            "--json",
        ],
        // Port 27998 of this file's block: nothing listens, every request fails (exit 1).
        &[
            "load",
            "--url",
            "http://127.0.0.1:27998/",
            "--rps",
            "5",
            "--duration",
            "1s",
            "--json",
        ],
    ];
    for args in cases {
        let out = Command::new(bin())
            .args(*args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run autoscaler");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let mut keys = Vec::new();
        json_keys(&doc, "", &mut keys);
        assert!(!keys.is_empty(), "{args:?}");
        let snake: Vec<&String> = keys.iter().filter(|k| k.contains('_')).collect();
        assert!(snake.is_empty(), "{args:?}: snake_case keys {snake:?}");
    }
}

/// `events --follow --since 10m` prints an event appended after it started, once, and
/// never the old one that `--since` excludes.
#[test]
fn events_follow_prints_new_events_as_they_are_recorded() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let events = state.join("events.jsonl");
    std::fs::write(
        &events,
        "{\"atMs\":1700000000000,\"policy\":\"web\",\"kind\":\"ScaledUp\",\"message\":\"old\"}\n",
    )
    .expect("write events");
    let mut child = Command::new(bin())
        .args([
            "events",
            "--follow",
            "--since",
            "10m",
            "--json",
            "--state-dir",
        ])
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn events --follow");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .expect("open events");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    writeln!(
        file,
        "{{\"atMs\":{now_ms},\"policy\":\"web\",\"kind\":\"StepFailed\",\"message\":\"new one\"}}"
    )
    .expect("append event");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
        if seen.iter().any(|l| l.contains("new one")) {
            break;
        }
    }
    // Let a second poll pass: the new event must not be printed twice.
    std::thread::sleep(Duration::from_millis(1500));
    seen.extend(rx.try_iter());
    let _ = child.kill();
    let _ = child.wait();
    let new_lines = seen.iter().filter(|l| l.contains("new one")).count();
    assert_eq!(new_lines, 1, "{seen:#?}");
    assert!(!seen.iter().any(|l| l.contains("\"old\"")), "{seen:#?}");
    let line = seen
        .iter()
        .find(|l| l.contains("new one"))
        .expect("printed");
    let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(row["kind"], "StepFailed");
    assert!(
        row["lastSeen"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{row}"
    );
}
