//! Managed-mode load balancer against the real nginx binary (ports 18400-18499 and
//! 25530-25599).

mod lb_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use autoscaler::lb::{ApplyOutcome, LbError, LoadBalancer, ManagedNginx};
use autoscaler::nginx::Upstream;
use autoscaler::policy::Algorithm;
use hyper::StatusCode;
use lb_support::{
    Backend, Client, KeepAliveClient, NginxDir, nginx_bin, nginx_processes_mentioning, workers,
};

fn upstream(policy: &str, listen: u16, servers: &[SocketAddr]) -> Upstream {
    Upstream {
        policy: policy.to_owned(),
        algorithm: Algorithm::LeastConn,
        keepalive: 16,
        listen: SocketAddr::from(([127, 0, 0, 1], listen)),
        servers: servers.to_vec(),
        drain_timeout_seconds: 30,
        hold: None,
    }
}

fn manager(dir: &NginxDir) -> ManagedNginx {
    ManagedNginx::new(dir.path().join("nginx"), nginx_bin().unwrap(), 2)
        .with_stop_timeout(Duration::from_secs(5))
}

/// Bodies of `n` sequential GETs on one keep-alive connection.
async fn bodies(client: &mut KeepAliveClient, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let (status, body) = client.get().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.insert(body);
    }
    seen
}

fn mtime(path: &std::path::Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_both_backends_then_skips_identical_apply_then_reloads_to_new_set() {
    if nginx_bin().is_none() {
        return;
    }
    let dir = NginxDir::new("serve");
    let (a, b, c) = (
        Backend::start(18401, "a").await,
        Backend::start(18402, "b").await,
        Backend::start(18403, "c").await,
    );
    let lb = manager(&dir);

    let first = [upstream("web", 18400, &[a.addr, b.addr])];
    assert_eq!(lb.apply(&first).await.unwrap(), ApplyOutcome::Written);
    lb.ensure_running().await.unwrap();
    let master = lb.master_pid().await.unwrap().expect("master running");
    let mut client = KeepAliveClient::new("127.0.0.1:18400".parse().unwrap());
    let seen = bodies(&mut client, 40).await;
    assert_eq!(seen, BTreeSet::from(["a".to_owned(), "b".to_owned()]));

    let (mtime_before, workers_before) = (mtime(&lb.config_path()), workers(master));
    assert_eq!(lb.apply(&first).await.unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(mtime(&lb.config_path()), mtime_before);
    assert_eq!(workers(master), workers_before);
    assert_eq!(
        lb.current().await.unwrap(),
        Some(lb.render(&first).unwrap())
    );

    let second = [upstream("web", 18400, &[c.addr])];
    assert_eq!(lb.apply(&second).await.unwrap(), ApplyOutcome::Reloaded);
    assert_eq!(
        lb.master_pid().await.unwrap(),
        Some(master),
        "reload keeps the master"
    );
    assert!(
        workers(master).difference(&workers_before).count() >= 2,
        "new workers"
    );
    // The reload has taken effect when apply returns: no request reaches the old set.
    assert_eq!(
        bodies(&mut client, 20).await,
        BTreeSet::from(["c".to_owned()])
    );
    // ...and the live-check location answers the hash of the file now in place.
    let hash = autoscaler::nginx::config_hash(&lb.current().await.unwrap().unwrap())
        .unwrap()
        .to_owned();
    let check = format!("http://127.0.0.1:18400{}", autoscaler::nginx::LIVE_PATH);
    let (status, body) = Client::new().get(&check).await.unwrap();
    assert_eq!((status, body), (StatusCode::OK, format!("{hash}\n")));

    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_onto_a_taken_port_rolls_back_and_keeps_serving() {
    if nginx_bin().is_none() {
        return;
    }
    let dir = NginxDir::new("rollback");
    let a = Backend::start(18411, "a").await;
    let lb = manager(&dir);
    let good = [upstream("web", 18410, &[a.addr])];
    lb.apply(&good).await.unwrap();
    lb.ensure_running().await.unwrap();
    let good_text = lb.current().await.unwrap().unwrap();
    let mut client = KeepAliveClient::new("127.0.0.1:18410".parse().unwrap());
    assert_eq!(bodies(&mut client, 3).await.len(), 1);

    // Another process holds 18419: nginx -t passes (it binds nothing), the reload cannot bind.
    let _squatter = std::net::TcpListener::bind("127.0.0.1:18419").unwrap();
    let bad = [good[0].clone(), upstream("api", 18419, &[a.addr])];
    let started = Instant::now();
    let err = lb.apply(&bad).await.unwrap_err();
    assert!(matches!(err, LbError::Reload { .. }), "{err}");
    assert!(err.to_string().contains("18419"), "{err}");
    eprintln!("failed reload detected in {:?}", started.elapsed());
    assert_eq!(
        lb.current().await.unwrap().as_deref(),
        Some(good_text.as_str())
    );
    assert_eq!(
        bodies(&mut client, 10).await,
        BTreeSet::from(["a".to_owned()])
    );

    // The next apply of the good set is a no-op: the file really is the old one.
    assert_eq!(lb.apply(&good).await.unwrap(), ApplyOutcome::Unchanged);
    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_manager_adopts_the_master_and_stop_leaves_no_process() {
    if nginx_bin().is_none() {
        return;
    }
    let dir = NginxDir::new("adopt");
    let (a, b) = (
        Backend::start(18421, "a").await,
        Backend::start(18422, "b").await,
    );
    let first = manager(&dir);
    first
        .apply(&[upstream("web", 18420, &[a.addr])])
        .await
        .unwrap();
    first.ensure_running().await.unwrap();
    let pid = first.master_pid().await.unwrap().unwrap();
    drop(first); // the operator goes away; the master must not

    let second = manager(&dir);
    second.ensure_running().await.unwrap();
    assert_eq!(
        second.master_pid().await.unwrap(),
        Some(pid),
        "adopted, not restarted"
    );
    let outcome = second
        .apply(&[upstream("web", 18420, &[b.addr])])
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Reloaded);
    let mut client = KeepAliveClient::new("127.0.0.1:18420".parse().unwrap());
    assert_eq!(
        bodies(&mut client, 5).await,
        BTreeSet::from(["b".to_owned()])
    );

    let prefix = second.prefix().to_string_lossy().into_owned();
    second.stop().await.unwrap();
    assert!(nginx_processes_mentioning(&prefix).is_empty());
    assert!(workers(pid).is_empty());
    assert!(!second.pid_path().exists());
    assert_eq!(second.master_pid().await.unwrap(), None);
    second.stop().await.unwrap(); // idempotent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pid_file_starts_a_fresh_master_and_empty_upstream_answers_503() {
    if nginx_bin().is_none() {
        return;
    }
    let dir = NginxDir::new("stale");
    let lb = manager(&dir);
    std::fs::create_dir_all(lb.prefix()).unwrap();
    // A pid that surely is not our nginx: a finished child of this test.
    let dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id() as i32;
    dead.wait_with_output().unwrap();
    std::fs::write(lb.pid_path(), format!("{dead_pid}\n")).unwrap();
    // Our own pid is alive but not nginx: must not be adopted either.
    assert_eq!(lb.master_pid().await.unwrap(), None);
    std::fs::write(lb.pid_path(), format!("{}\n", std::process::id())).unwrap();
    assert_eq!(lb.master_pid().await.unwrap(), None);

    lb.apply(&[upstream("idle", 18430, &[])]).await.unwrap();
    lb.ensure_running().await.unwrap();
    let pid = lb.master_pid().await.unwrap().unwrap();
    assert_ne!(pid, std::process::id() as i32);
    let (status, _) = Client::new().get("http://127.0.0.1:18430/").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_storm_under_keepalive_load_fails_no_request() {
    if nginx_bin().is_none() {
        return;
    }
    let dir = NginxDir::new("storm");
    let (a, b) = (
        Backend::start(18441, "a").await,
        Backend::start(18442, "b").await,
    );
    let lb = manager(&dir);
    let sets = [vec![a.addr, b.addr], vec![a.addr], vec![b.addr]];
    lb.apply(&[upstream("web", 18440, &sets[0])]).await.unwrap();
    lb.ensure_running().await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut client = KeepAliveClient::new("127.0.0.1:18440".parse().unwrap());
            let (mut ok, mut failed) = (0u32, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && Instant::now() < deadline
                && ok < 100_000
            {
                match client.get().await {
                    Ok((StatusCode::OK, _)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed, client.retried, client.connections)
        })
    };
    let started = Instant::now();
    let mut reloads = 0;
    for i in 1..=20 {
        let outcome = lb
            .apply(&[upstream("web", 18440, &sets[i % 3])])
            .await
            .unwrap();
        assert_eq!(outcome, ApplyOutcome::Reloaded);
        reloads += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let storm = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, retried, connections) = load.await.unwrap();
    eprintln!(
        "{reloads} reloads in {storm:?} ({:?}/reload); {ok} requests ok, {} failed, \
         {retried} retried after an idle keep-alive close, {connections} connections",
        storm / reloads,
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(ok > 100, "load actually ran: {ok}");
    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_killed_hard_is_restarted_past_its_orphan_workers() {
    if nginx_bin().is_none() {
        return;
    }
    let dir = NginxDir::new("killed");
    let a = Backend::start(18451, "a").await;
    let lb = manager(&dir);
    lb.apply(&[upstream("web", 18450, &[a.addr])])
        .await
        .unwrap();
    lb.ensure_running().await.unwrap();
    let old = lb.master_pid().await.unwrap().unwrap();
    let old_workers = workers(old);
    assert_eq!(old_workers.len(), 2, "ensure_running waits for the workers");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while lb_support::is_alive(old) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        lb.master_pid().await.unwrap(),
        None,
        "a dead master is not adopted"
    );
    let orphans = old_workers
        .iter()
        .filter(|w| lb_support::is_alive(**w))
        .count();
    eprintln!("{orphans} orphan workers hold the listen socket after SIGKILL of the master");

    lb.ensure_running().await.unwrap();
    let new = lb.master_pid().await.unwrap().unwrap();
    assert_ne!(new, old);
    assert!(
        old_workers.iter().all(|w| !lb_support::is_alive(*w)),
        "orphans ended"
    );
    let mut client = KeepAliveClient::new("127.0.0.1:18450".parse().unwrap());
    assert_eq!(
        bodies(&mut client, 5).await,
        BTreeSet::from(["a".to_owned()])
    );
    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_serialize_and_the_last_one_wins() {
    if nginx_bin().is_none() {
        return;
    }
    let dir = NginxDir::new("concurrent");
    let (a, b) = (
        Backend::start(18461, "a").await,
        Backend::start(18462, "b").await,
    );
    let lb = manager(&dir);
    lb.apply(&[upstream("web", 18460, &[a.addr, b.addr])])
        .await
        .unwrap();
    lb.ensure_running().await.unwrap();
    let only_a = [upstream("web", 18460, &[a.addr])];
    let only_b = [upstream("web", 18460, &[b.addr])];
    // A goes first: one poll takes the lock and parks A on its first file operation.
    // B, issued while A is in flight, comes last and must be what stays.
    let mut first = std::pin::pin!(lb.apply(&only_a));
    let early = futures::poll!(first.as_mut());
    assert!(
        early.is_pending(),
        "A finished on its first poll: {early:?}"
    );
    let (ra, rb) = tokio::join!(first, lb.apply(&only_b));
    assert_eq!(
        (ra.unwrap(), rb.unwrap()),
        (ApplyOutcome::Reloaded, ApplyOutcome::Reloaded)
    );
    let current = lb.current().await.unwrap().unwrap();
    let winner = autoscaler::nginx::parse_upstreams(&current)["web"].clone();
    assert_eq!(winner, vec![b.addr], "the last apply (B) wins on disk");
    let mut client = KeepAliveClient::new("127.0.0.1:18460".parse().unwrap());
    assert_eq!(
        bodies(&mut client, 10).await,
        BTreeSet::from(["b".to_owned()]),
        "the last apply (B) wins in the running nginx"
    );
    lb.stop().await.unwrap();
}

/// Lines of `path` (none when absent).
fn log_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_log_past_its_limit_is_rotated_and_reopened_by_the_running_master() {
    if nginx_bin().is_none() {
        return;
    }
    let dir = NginxDir::new("logrotate");
    let lb = manager(&dir).with_error_log_limit(2_000);
    // Nothing listens on 25531: every request logs a connect() error.
    let dead: SocketAddr = "127.0.0.1:25531".parse().unwrap();
    lb.apply(&[upstream("web", 25530, &[dead])]).await.unwrap();
    lb.ensure_running().await.unwrap();
    let master = lb.master_pid().await.unwrap().unwrap();
    let workers_before = workers(master);
    let (log, rotated) = (lb.error_log_path(), lb.rotated_error_log_path());
    let client = Client::new();
    let url = "http://127.0.0.1:25530/";
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&log).map_or(0, |m| m.len()) <= 2_000 {
        assert!(Instant::now() < deadline, "the error log does not grow");
        let _ = client.get(url).await;
    }
    let size_before = std::fs::metadata(&log).unwrap().len();

    lb.ensure_running().await.unwrap();
    assert!(
        rotated.exists(),
        "error.log.1 after a {size_before}-byte log"
    );
    assert_eq!(
        std::fs::metadata(&rotated).unwrap().len(),
        size_before,
        "the whole old log moved"
    );
    assert!(log.exists(), "the master reopened a fresh error.log");
    assert_eq!(lb.master_pid().await.unwrap(), Some(master), "no restart");
    assert_eq!(workers(master), workers_before, "no reload");

    // New lines land in the fresh file, not in the rotated one.
    let rotated_lines = log_lines(&rotated);
    let deadline = Instant::now() + Duration::from_secs(5);
    while log_lines(&log) == 0 {
        assert!(Instant::now() < deadline, "nothing logged after reopening");
        let _ = client.get(url).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log_lines(&rotated), rotated_lines);
    // Under the limit nothing moves again.
    let rotated_mtime = mtime(&rotated);
    lb.ensure_running().await.unwrap();
    assert_eq!(mtime(&rotated), rotated_mtime);
    lb.stop().await.unwrap();
}
