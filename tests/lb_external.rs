//! External-mode load balancer against the real nginx binary (ports 18500-18599).

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

    let lb = ExternalNginx::new(snippet.clone(), reload, bin);
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
    let lb = ExternalNginx::new(snippet.clone(), marking_command(&marker, 3), bin);

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
