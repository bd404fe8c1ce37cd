//! External-mode load balancer against the real nginx binary (ports 18500-18599 and
//! 25500-25599).

mod lb_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use autoscaler::lb::{ApplyOutcome, ExternalNginx, LbError, LoadBalancer};
use autoscaler::nginx::{Upstream, render_snippet};
use autoscaler::policy::Algorithm;
use lb_support::{Backend, Client, NginxDir, nginx_bin};

fn upstream(policy: &str, listen: u16, servers: &[SocketAddr]) -> Upstream {
    Upstream {
        policy: policy.to_owned(),
        algorithm: Algorithm::RoundRobin,
        keepalive: 8,
        listen: SocketAddr::from(([127, 0, 0, 1], listen)),
        servers: servers.to_vec(),
        drain_timeout_seconds: 30,
        hold: None,
    }
}

/// A reload command that appends a line to `marker` and exits with `code`.
fn marking_command(marker: &Path, code: i32) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("echo reload >> '{}'; exit {code}", marker.display()),
    ]
}

fn marks(marker: &Path) -> usize {
    std::fs::read_to_string(marker).map_or(0, |t| t.lines().count())
}

/// Starts a user's own nginx in `dir` whose `http {}` includes `snippet`; returns the
/// command that reloads it.
fn start_users_nginx(dir: &Path, snippet: &Path) -> Vec<String> {
    let bin = nginx_bin().unwrap();
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nworker_processes 1;\nevents {{}}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/cb;\n  proxy_temp_path {d}/px;\n  \
             fastcgi_temp_path {d}/fc;\n  uwsgi_temp_path {d}/uw;\n  scgi_temp_path {d}/sc;\n  \
             include {};\n}}\n",
            snippet.display()
        ),
    )
    .unwrap();
    let base: Vec<String> = vec![
        bin.display().to_string(),
        "-p".into(),
        d.to_string(),
        "-c".into(),
        conf.display().to_string(),
        "-e".into(),
        format!("{d}/error.log"),
    ];
    let status = std::process::Command::new(&base[0])
        .args(&base[1..])
        .status()
        .unwrap();
    assert!(status.success());
    let mut reload = base;
    reload.extend(["-s".into(), "reload".into()]);
    reload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_snippet_that_a_users_nginx_serves_and_reloads_only_on_change() {
    let Some(bin) = nginx_bin() else { return };
    let dir = NginxDir::new("ext-serve");
    let snippet = dir.path().join("conf.d").join("autoscaler.conf");
    std::fs::create_dir_all(snippet.parent().unwrap()).unwrap();
    std::fs::write(&snippet, "").unwrap();
    let reload = start_users_nginx(dir.path(), &snippet);
    let (a, b) = (
        Backend::start(18501, "a").await,
        Backend::start(18502, "b").await,
    );

    let lb = ExternalNginx::new(snippet.clone(), reload, bin, dir.path().join("check"));
    let ups = [upstream("web", 18500, &[a.addr, b.addr])];
    assert_eq!(lb.apply(&ups).await.unwrap(), ApplyOutcome::Reloaded);
    assert_eq!(
        lb.current().await.unwrap(),
        Some(render_snippet(&ups).unwrap())
    );
    let client = Client::new();
    // `nginx -s reload` only signals: wait for the new config to serve.
    let url = "http://127.0.0.1:18500/";
    assert!(client.wait_for(url, Duration::from_secs(5), |_| true).await);
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        seen.insert(client.get(url).await.unwrap().1);
    }
    assert_eq!(seen, BTreeSet::from(["a".to_owned(), "b".to_owned()]));

    let mtime = std::fs::metadata(&snippet).unwrap().modified().unwrap();
    assert_eq!(lb.apply(&ups).await.unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(
        std::fs::metadata(&snippet).unwrap().modified().unwrap(),
        mtime
    );
    assert!(
        lb.ensure_running().await.is_ok() && lb.stop().await.is_ok(),
        "no-ops"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_reload_command_restores_the_previous_bytes() {
    let Some(bin) = nginx_bin() else { return };
    let dir = NginxDir::new("ext-fail");
    let snippet = dir.path().join("autoscaler.conf");
    let marker = dir.path().join("reloads");
    let lb = ExternalNginx::new(
        snippet.clone(),
        marking_command(&marker, 3),
        bin,
        dir.path().join("check"),
    );

    // From nothing: the file is removed again.
    let err = lb.apply(&[upstream("web", 18510, &[])]).await.unwrap_err();
    assert!(matches!(err, LbError::ReloadCommand { .. }), "{err}");
    assert!(!snippet.exists());
    assert_eq!(
        marks(&marker),
        2,
        "the attempt plus the reload after restoring"
    );

    // Over an existing file: its bytes come back.
    std::fs::write(&snippet, "# previous\n").unwrap();
    let err = lb.apply(&[upstream("web", 18510, &[])]).await.unwrap_err();
    assert!(err.to_string().contains("exit status: 3"), "{err}");
    assert_eq!(std::fs::read_to_string(&snippet).unwrap(), "# previous\n");
    assert_no_temp_files(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_validation_writes_nothing_and_never_reloads() {
    if nginx_bin().is_none() {
        return;
    }
    let dir = NginxDir::new("ext-invalid");
    let snippet = dir.path().join("autoscaler.conf");
    let marker = dir.path().join("reloads");
    std::fs::write(&snippet, "# previous\n").unwrap();
    // An "nginx" whose -t always fails stands in for a candidate nginx rejects.
    let lb = ExternalNginx::new(
        snippet.clone(),
        marking_command(&marker, 0),
        PathBuf::from("false"),
        dir.path().join("check"),
    );
    let err = lb.apply(&[upstream("web", 18520, &[])]).await.unwrap_err();
    assert!(matches!(err, LbError::Validate { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&snippet).unwrap(), "# previous\n");
    assert_eq!(marks(&marker), 0);
    assert_no_temp_files(dir.path());

    // A name that would inject a directive never reaches the disk either.
    let ok = ExternalNginx::new(
        snippet.clone(),
        marking_command(&marker, 0),
        nginx_bin().unwrap(),
        dir.path().join("check"),
    );
    let err = ok
        .apply(&[upstream("web;}", 18520, &[])])
        .await
        .unwrap_err();
    assert!(matches!(err, LbError::Render(_)), "{err}");
    assert_eq!(std::fs::read_to_string(&snippet).unwrap(), "# previous\n");
    assert_eq!(marks(&marker), 0);
}

fn assert_no_temp_files(dir: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Paths planted for a test, removed (without following them) on drop.
struct Planted(Vec<PathBuf>);

impl Drop for Planted {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_never_written_through_a_symlink_planted_at_a_predictable_name() {
    let Some(bin) = nginx_bin() else { return };
    let dir = NginxDir::new("ext-planted");
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    // What a local attacker could plant before the operator validates: the names the
    // operator used to create under /tmp for `nginx -t`, pointing at a directory of theirs.
    let planted = Planted(
        (0..64)
            .map(|n| {
                std::env::temp_dir().join(format!("autoscaler-nginx-t-{}-{n}", std::process::id()))
            })
            .filter(|path| std::os::unix::fs::symlink(&victim, path).is_ok())
            .collect(),
    );
    assert!(!planted.0.is_empty());
    // And the candidate's name next to the snippet, pointing at a file of the victim's.
    let snippet = dir.path().join("autoscaler.conf");
    let victim_file = dir.path().join("victim.txt");
    std::fs::write(&victim_file, "victim\n").unwrap();
    let candidate = dir
        .path()
        .join(format!(".autoscaler.conf.candidate.{}", std::process::id()));
    std::os::unix::fs::symlink(&victim_file, &candidate).unwrap();

    let lb = ExternalNginx::new(snippet.clone(), Vec::new(), bin, dir.path().join("check"));
    let ups = [upstream("web", 25500, &[])];
    assert_eq!(lb.apply(&ups).await.unwrap(), ApplyOutcome::Written);
    assert_eq!(std::fs::read_to_string(&victim_file).unwrap(), "victim\n");
    let meta = std::fs::symlink_metadata(&snippet).unwrap();
    assert!(
        meta.is_file(),
        "the snippet is a file of its own, not a link"
    );
    assert_eq!(
        std::fs::read_to_string(&snippet).unwrap(),
        render_snippet(&ups).unwrap()
    );
    let written: Vec<_> = std::fs::read_dir(&victim)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        written.is_empty(),
        "nginx -t files went through a planted symlink: {written:?}"
    );
}

/// Chowns `path` (not following a symlink) to nobody; false when we may not (not root).
fn give_to_nobody(path: &Path) -> bool {
    std::os::unix::fs::lchown(path, Some(65_534), Some(65_534)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_directory_that_is_not_privately_ours_is_refused_and_left_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let Some(bin) = nginx_bin() else { return };
    let dir = NginxDir::new("ext-checkdir");
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let snippet = dir.path().join("autoscaler.conf");
    let marker = dir.path().join("reloads");
    std::fs::write(&snippet, "# previous\n").unwrap();
    type Plant = fn(&Path, &Path) -> bool;
    let cases: [(&str, Plant, &str); 5] = [
        (
            "a symlink to someone's directory",
            |check, victim| std::os::unix::fs::symlink(victim, check).is_ok(),
            "symlink",
        ),
        (
            "a world-writable directory",
            |check, _| {
                std::fs::create_dir(check).unwrap();
                std::fs::set_permissions(check, std::fs::Permissions::from_mode(0o777)).is_ok()
            },
            "mode 0777",
        ),
        (
            "a group-readable directory",
            |check, _| {
                std::fs::create_dir(check).unwrap();
                std::fs::set_permissions(check, std::fs::Permissions::from_mode(0o750)).is_ok()
            },
            "mode 0750",
        ),
        (
            "a 0700 directory of another user",
            |check, _| {
                std::fs::create_dir(check).unwrap();
                std::fs::set_permissions(check, std::fs::Permissions::from_mode(0o700)).unwrap();
                give_to_nobody(check)
            },
            "owned by uid 65534",
        ),
        (
            "a regular file",
            |check, _| std::fs::write(check, "").is_ok(),
            "not a directory",
        ),
    ];
    for (i, (what, plant, reason)) in cases.into_iter().enumerate() {
        let check = dir.path().join(format!("check-{i}"));
        if !plant(&check, &victim) {
            eprintln!("SKIP case {what:?}: cannot set it up as this user");
            continue;
        }
        let lb = ExternalNginx::new(
            snippet.clone(),
            marking_command(&marker, 0),
            bin.clone(),
            check.clone(),
        );
        let err = lb.apply(&[upstream("web", 25520, &[])]).await.unwrap_err();
        assert!(matches!(err, LbError::UnsafeDir { .. }), "{what}: {err}");
        assert!(err.to_string().contains(reason), "{what}: {err}");
        assert!(is_empty_dir(&victim), "{what}: wrote through the symlink");
        if check.is_dir() && !check.is_symlink() {
            assert!(is_empty_dir(&check), "{what}: used the directory");
        }
        assert_eq!(
            std::fs::read_to_string(&snippet).unwrap(),
            "# previous\n",
            "{what}"
        );
        assert_eq!(marks(&marker), 0, "{what}: reloaded");
    }
    assert_no_temp_files(dir.path());

    // Absent, it is created private, and each check cleans up after itself.
    let check = dir.path().join("state").join("nginx-check");
    let lb = ExternalNginx::new(snippet.clone(), Vec::new(), bin, check.clone());
    let outcome = lb.apply(&[upstream("web", 25520, &[])]).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Written);
    let meta = std::fs::symlink_metadata(&check).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
    assert!(is_empty_dir(&check), "leftovers in {}", check.display());
}

/// GET `path` at `target` from the local address `source`: status and body.
async fn get_from(source: &str, target: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(source.parse().unwrap()).unwrap();
    let mut stream = socket.connect(target).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_exits_0_while_the_master_keeps_the_old_config_is_an_error() {
    let Some(bin) = nginx_bin() else { return };
    let dir = NginxDir::new("ext-notlive");
    let snippet = dir.path().join("autoscaler.conf");
    std::fs::write(&snippet, "").unwrap();
    let reload = start_users_nginx(dir.path(), &snippet);
    let a = Backend::start(25511, "a").await;
    let lb = ExternalNginx::new(snippet.clone(), reload, bin, dir.path().join("check"))
        .with_live_timeout(Duration::from_secs(3));

    let good = [upstream("web", 25510, &[a.addr])];
    assert_eq!(lb.apply(&good).await.unwrap(), ApplyOutcome::Reloaded);
    // Live when apply returns: no wait needed before the first request.
    let client = Client::new();
    let (status, body) = client.get("http://127.0.0.1:25510/").await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "a"));
    let good_text = lb.current().await.unwrap().unwrap();
    let hash = autoscaler::nginx::config_hash(&good_text)
        .unwrap()
        .to_owned();
    let listen: SocketAddr = "127.0.0.1:25510".parse().unwrap();
    let path = autoscaler::nginx::LIVE_PATH;
    assert_eq!(
        get_from("127.0.0.1:0", listen, path).await,
        (200, format!("{hash}\n"))
    );
    // Any other source address (what another host would be) is not told.
    assert_eq!(get_from("127.0.0.2:0", listen, path).await.0, 404);

    // Another process holds 25512: `nginx -t` passes (it binds nothing) and
    // `nginx -s reload` exits 0, but the master cannot bind and keeps the old config.
    let squatter = std::net::TcpListener::bind("127.0.0.1:25512").unwrap();
    let bad = [good[0].clone(), upstream("api", 25512, &[a.addr])];
    let started = std::time::Instant::now();
    let err = lb.apply(&bad).await.unwrap_err();
    eprintln!("rejected reload detected in {:?}: {err}", started.elapsed());
    match &err {
        // The first address in order that does not confirm: it still serves the old hash.
        LbError::NotLive {
            listen,
            expected,
            got,
            ..
        } => {
            assert_eq!(*listen, "127.0.0.1:25510".parse::<SocketAddr>().unwrap());
            assert_eq!(*got, format!("hash {hash}"));
            assert_eq!(
                Some(expected.as_str()),
                autoscaler::nginx::config_hash(&lb.render(&bad).unwrap())
            );
        }
        other => panic!("want NotLive, got {other}"),
    }
    assert_eq!(
        lb.current().await.unwrap().as_deref(),
        Some(good_text.as_str())
    );
    assert_eq!(
        get_from("127.0.0.1:0", "127.0.0.1:25510".parse().unwrap(), path).await,
        (200, format!("{hash}\n")),
        "the old config still serves"
    );
    assert_no_temp_files(dir.path());

    // Once the port is free, the same set goes live.
    drop(squatter);
    assert_eq!(lb.apply(&bad).await.unwrap(), ApplyOutcome::Reloaded);
    let (status, body) = client.get("http://127.0.0.1:25512/").await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "a"));
}
