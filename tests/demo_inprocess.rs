//! The demo backend served in-process on port 0: routes, metrics, readiness, graceful shutdown.

use std::time::{Duration, Instant};

use autoscaler::demo::{self, DemoConfig};
use autoscaler::exposition;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Server {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), demo::DemoError>>,
}

async fn start(config: DemoConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(demo::serve_listener(listener, config, async move {
        let _ = stopped.await;
    }));
    Server {
        base,
        stop: Some(stop),
        task,
    }
}

fn client() -> reqwest::Client {
    // reqwest is built with `rustls-no-provider`: a client needs a provider installed.
    autoscaler::metrics::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn scrape(client: &reqwest::Client, base: &str) -> exposition::Exposition {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_names_the_replica_and_counter_counts_only_real_requests() {
    let server = start(DemoConfig {
        name: "replica-7".into(),
        ..DemoConfig::default()
    })
    .await;
    let client = client();
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let before = scrape(&client, &server.base).await;
    assert_eq!(before.sum("http_requests_total"), Some(0.0));
    for _ in 0..7 {
        let page = client
            .get(format!("{}/", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let body = page.text().await.unwrap();
        assert!(body.contains("replica-7") && body.contains(&port), "{body}");
        assert_eq!(
            client
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        scrape(&client, &server.base).await;
    }
    assert_eq!(
        client
            .get(format!("{}/missing", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let after = scrape(&client, &server.base).await;
    let two_xx = after.sum_where("http_requests_total", |s| {
        s.label("path") == Some("/") && s.label("code") == Some("2xx")
    });
    assert_eq!(two_xx, Some(7.0));
    assert_eq!(
        after.sum("http_requests_total"),
        Some(8.0),
        "7 pages + one 404; scrapes and health checks not counted"
    );
    assert_eq!(
        after.sum("http_requests_in_flight"),
        Some(0.0),
        "the scrape itself is not in flight"
    );
    server.stop.unwrap().send(()).unwrap();
    server.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_unavailable_until_the_ready_delay_passes() {
    let delay = Duration::from_millis(600);
    let started = Instant::now();
    let server = start(DemoConfig {
        ready_delay: delay,
        ..DemoConfig::default()
    })
    .await;
    let client = client();
    let url = format!("{}/healthz", server.base);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 503);
    let mut ready_after = None;
    for _ in 0..100 {
        if client.get(&url).send().await.unwrap().status() == 200 {
            ready_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_after = ready_after.expect("never became ready");
    assert!(ready_after >= delay, "ready after {ready_after:?}");
    server.stop.unwrap().send(()).unwrap();
    server.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_burst_of_slow_requests_answers_every_one() {
    const BURST: usize = 20;
    let mut server = start(DemoConfig {
        latency: Duration::from_millis(500),
        ..DemoConfig::default()
    })
    .await;
    let client = client();
    let requests: Vec<_> = (0..BURST)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{}/", server.base));
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    // Wait until every request is inside the handler, then ask for shutdown.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let in_flight = scrape(&client, &server.base)
            .await
            .sum("http_requests_in_flight");
        if in_flight == Some(BURST as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "in flight stuck at {in_flight:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(r.await.unwrap().map_err(|e| e.to_string()));
    }
    assert!(statuses.iter().all(|s| *s == Ok(200)), "{statuses:?}");
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        asked.elapsed()
    );
    // reqwest is built with `rustls-no-provider`: a client needs a provider installed.
    autoscaler::metrics::tls::install_crypto_provider();
    let refused = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/", server.base))
        .send()
        .await;
    assert!(refused.is_err(), "listener still accepting after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_work_takes_at_least_the_configured_time() {
    let server = start(DemoConfig {
        work: Duration::from_millis(30),
        ..DemoConfig::default()
    })
    .await;
    let client = client();
    let started = Instant::now();
    assert_eq!(
        client
            .get(format!("{}/", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "{:?}",
        started.elapsed()
    );
    server.stop.unwrap().send(()).unwrap();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn binding_a_taken_port_is_a_bind_error_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = demo::serve(
        DemoConfig {
            listen: addr,
            ..DemoConfig::default()
        },
        async {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, demo::DemoError::Bind { addr: a, .. } if a == addr),
        "{err}"
    );
    assert!(err.to_string().contains(&addr.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_answers_404_and_everything_else_still_works() {
    let server = start(DemoConfig {
        expose_metrics: false,
        ..DemoConfig::default()
    })
    .await;
    let client = client();
    let get = |path: &str| client.get(format!("{}{path}", server.base)).send();
    assert_eq!(get("/metrics").await.unwrap().status(), 404);
    assert_eq!(get("/").await.unwrap().status(), 200);
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    server.stop.unwrap().send(()).unwrap();
    server.task.await.unwrap().unwrap();
}
