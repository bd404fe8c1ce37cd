//! The real `demo-backend` binary under a real SIGTERM during a burst of slow requests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Port from this area's loopback block (18000-18199).
const PORT: u16 = 18010;

/// Kills the child if the test fails before it exits.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    const BURST: usize = 10;
    let child = Command::new(env!("CARGO_BIN_EXE_demo-backend"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &PORT.to_string(),
            "--latency-ms",
            "500",
            "--name",
            "sig",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let base = format!("http://127.0.0.1:{PORT}");
    // reqwest is built with `rustls-no-provider`: a client needs a provider installed.
    autoscaler::metrics::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "demo-backend never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let requests: Vec<_> = (0..BURST)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{base}/"));
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    loop {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let exp = autoscaler::exposition::parse(&text).unwrap();
        if exp.sum("http_requests_in_flight") == Some(BURST as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "requests never all in flight:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    kill(Pid::from_raw(guard.0.id() as i32), Signal::SIGTERM).unwrap();
    for r in requests {
        assert_eq!(r.await.unwrap().map_err(|e| e.to_string()), Ok(200));
    }
    let exit_deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < exit_deadline,
            "demo-backend did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}
