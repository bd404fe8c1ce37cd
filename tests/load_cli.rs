//! The real `autoscaler load` binary: exit codes, `--json`, `--out`.

mod load_common;

use std::process::Output;
use std::time::Duration;

use hyper::StatusCode;
use load_common::http_server;

async fn autoscaler_load(args: Vec<String>) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_autoscaler"))
        .arg("load")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn args(url: &str, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["--url".to_owned(), url.to_owned()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_error_rate_sets_the_exit_code() {
    let ok = http_server(StatusCode::OK, Duration::ZERO).await;
    let bad = http_server(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
    let run = [
        "--rps",
        "200",
        "--duration",
        "250ms",
        "--max-error-rate",
        "0.01",
    ];
    let cases = [(&ok, Some(0)), (&bad, Some(1))];
    for (server, want) in cases {
        let out = autoscaler_load(args(&server.url(), &run)).await;
        assert_eq!(out.status.code(), want, "{}: {out:?}", server.url());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_summary_and_timeline_csv() {
    let server = http_server(StatusCode::OK, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("timeline.csv");
    let out = autoscaler_load(args(
        &server.url(),
        &[
            "--profile",
            "20@1s,40@1s",
            "--json",
            "--out",
            csv.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["sent"], 60);
    assert_eq!(json["ok"], 60);
    assert_eq!(json["failures"]["timeout"], 0);
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "t,sent,ok,failed,p50_ms,p99_ms");
    assert!(
        rows[1].starts_with("0,20,20,0,") && rows[2].starts_with("1,40,40,0,"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_arguments_exit_2() {
    let cases: &[&[&str]] = &[
        &["--url", "http://127.0.0.1:1/"],
        &[
            "--url",
            "http://127.0.0.1:1/",
            "--rps",
            "5",
            "--concurrency",
            "2",
        ],
        &["--url", "http://127.0.0.1:1/", "--profile", "5@"],
        &[
            "--url",
            "http://127.0.0.1:1/",
            "--rps",
            "5",
            "--duration",
            "5",
        ],
        &[
            "--url",
            "http://127.0.0.1:1/",
            "--rps",
            "5",
            "--max-error-rate",
            "2",
        ],
        &["--url", "ftp://127.0.0.1:1/", "--rps", "5"],
    ];
    for case in cases {
        let out = autoscaler_load(case.iter().map(|s| s.to_string()).collect()).await;
        assert_eq!(out.status.code(), Some(2), "{case:?}: {out:?}");
    }
}
