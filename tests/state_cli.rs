//! The real binary's guards around state and the endpoint, checked before Docker is touched.
//!
//! - `run --listen` on a non-loopback address exits 2 naming `--allow-remote-api`, before
//!   anything is created (issue 11, item 16);
//! - `down` and `reconcile --once` of an instance whose lock is held are refused naming the
//!   holder, whatever their state directory; another instance goes on (item 15);
//! - the help names an absolute default state directory (item 15).
//!
//! Docker is never reached: every command runs with `DOCKER_HOST` pointing at a socket
//! that does not exist, so a command that gets past the checks fails to connect instead.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use autoscaler::state::StateDir;

const POLICY: &str = "apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: statecli
spec:
  template:
    image: autoscaler-demo:latest
    containerPort: 8000
  replicas: {min: 1, max: 2}
  ports: {hostIp: 127.0.0.1, range: 26001-26010}
  loadBalancer: {listen: \"127.0.0.1:26000\"}
  metrics:
    - requestRate: {path: /metrics, counter: http_requests_total, targetPerReplica: 10}
";

/// `autoscaler ARGS` in `dir`; a command still running after 20 s is killed and fails the test.
fn autoscaler(dir: &Path, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_autoscaler"))
        .args(args)
        .current_dir(dir)
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no-docker.sock", dir.display()),
        )
        .env("AUTOSCALER_LOG", "warn")
        .env_remove("AUTOSCALER_STATE_DIR")
        .env_remove("AUTOSCALER_INSTANCE")
        .env_remove("AUTOSCALER_LOCK_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run autoscaler");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.expect("wait for autoscaler"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("autoscaler {args:?} still running after 20 s");
        }
    }
}

fn policy_file(dir: &Path) -> String {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, POLICY).unwrap();
    path.display().to_string()
}

#[test]
fn run_refuses_a_non_loopback_listen_address_before_touching_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = policy_file(tmp.path());
    let state = tmp.path().join("state");
    let state_arg = state.display().to_string();
    for addr in ["0.0.0.0:26002", "[::]:26002", "192.0.2.1:26002"] {
        let out = autoscaler(
            tmp.path(),
            &[
                "run",
                "-f",
                &policy,
                "--state-dir",
                &state_arg,
                "--listen",
                addr,
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{addr}: {stderr}");
        assert!(
            stderr.contains("not a loopback address"),
            "{addr}: {stderr}"
        );
        assert!(stderr.contains("--allow-remote-api"), "{addr}: {stderr}");
        assert!(!state.exists(), "{addr}: the state dir was created");
    }
}

#[test]
fn run_accepts_a_non_loopback_listen_address_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = policy_file(tmp.path());
    let state = tmp.path().join("state").display().to_string();
    let locks = tmp.path().join("locks").display().to_string();
    // Past the check it takes the lock, then waits for the engine: it must still be running.
    let mut child = Command::new(env!("CARGO_BIN_EXE_autoscaler"))
        .args([
            "run",
            "-f",
            &policy,
            "--state-dir",
            &state,
            "--lock-dir",
            &locks,
        ])
        .args([
            "--instance",
            "statecli-allowed",
            "--listen",
            "0.0.0.0:26003",
        ])
        .arg("--allow-remote-api")
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no-docker.sock", tmp.path().display()),
        )
        .env("AUTOSCALER_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tmp.path().join("locks/statecli-allowed.lock").exists() {
        assert!(Instant::now() < deadline, "never took its lock");
        assert!(child.try_wait().unwrap().is_none(), "exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().unwrap().is_none(), "exited after the lock");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn second_operator_of_an_instance_is_refused_whatever_its_state_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = policy_file(tmp.path());
    let locks = tmp.path().join("locks");
    let locks_arg = locks.display().to_string();
    // The daemon of instance `statecli-a`, in state dir `a`.
    let daemon_dir = tmp.path().join("a");
    let _daemon = StateDir::new(&daemon_dir)
        .with_instance("statecli-a", Some(locks.clone()))
        .lock("run")
        .unwrap();
    for cmd in [&["down"][..], &["reconcile", "--once"][..]] {
        let other = tmp.path().join("b").display().to_string();
        let mut args = cmd.to_vec();
        args.extend([
            "-f",
            &policy,
            "--state-dir",
            &other,
            "--lock-dir",
            &locks_arg,
        ]);
        args.extend(["--instance", "statecli-a"]);
        let out = autoscaler(tmp.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Exit 3: the host cannot be used as asked (see the exit-code table).
        assert_eq!(out.status.code(), Some(3), "{cmd:?}: {stderr}");
        assert!(
            stderr.contains("instance `statecli-a` holds the lock"),
            "{cmd:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("pid {}", std::process::id())),
            "{cmd:?}: {stderr}"
        );
        assert!(
            stderr.contains(&daemon_dir.display().to_string()),
            "{cmd:?}: {stderr}"
        );
        assert!(
            !stderr.contains("Docker"),
            "{cmd:?} reached Docker: {stderr}"
        );

        // Another instance is not held back: it gets as far as the (missing) engine.
        let mut args = cmd.to_vec();
        args.extend([
            "-f",
            &policy,
            "--state-dir",
            &other,
            "--lock-dir",
            &locks_arg,
        ]);
        args.extend(["--instance", "statecli-b"]);
        let out = autoscaler(tmp.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("holds the lock"), "{cmd:?}: {stderr}");
        assert!(stderr.contains("no-docker.sock"), "{cmd:?}: {stderr}");
    }
}

#[test]
fn default_state_dir_is_absolute() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in ["reconcile", "status"] {
        let out = autoscaler(tmp.path(), &[cmd, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        let default = help
            .split("--state-dir")
            .nth(1)
            .and_then(|s| s.split("[default: ").nth(1))
            .and_then(|s| s.split(']').next())
            .unwrap_or_else(|| panic!("{cmd}: no default in {help}"));
        assert!(Path::new(default).is_absolute(), "{cmd}: {default}");
        assert!(!default.contains(".autoscaler"), "{cmd}: {default}");
    }
}

/// Item 16: the systemd example runs unprivileged and hardened; `systemd-analyze` (when
/// installed) accepts it and rates its exposure low.
#[test]
fn systemd_unit_runs_unprivileged_and_hardened() {
    let unit_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ops/autoscaler.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "User=autoscaler",
        "SupplementaryGroups=docker",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/autoscaler",
        "ProtectHome=true",
        "PrivateTmp=true",
        "CapabilityBoundingSet=",
        "Environment=AUTOSCALER_STATE_DIR=/var/lib/autoscaler",
    ] {
        assert!(lines.contains(&want), "{want} missing from the unit");
    }
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    if !analyze.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    }
    // The binary is not installed here: verify a copy that runs /bin/true.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("autoscaler.service");
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/local/bin/autoscaler ",
            "ExecStart=/bin/true ",
        ),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = text
        .split("Overall exposure level for autoscaler.service: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    assert!(exposure <= 2.0, "exposure {exposure}:\n{text}");
}
