//! The Prometheus-query metric source against an HTTP server on loopback that answers
//! like Prometheus' `/api/v1/query` (and like a broken one).

use std::time::{Duration, Instant};

use autoscaler::metrics::{MetricsError, Scraper};
use axum::Router;
use axum::extract::Query;
use axum::routing::get;

async fn start_fake_prometheus() -> String {
    async fn query(Query(q): Query<std::collections::HashMap<String, String>>) -> String {
        match q.get("query").map(String::as_str) {
            Some("sum(rate(x[30s]))") => {
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"42.5"]}]}}"#.into()
            }
            Some("rate(x[30s])") => {
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"i":"a"},"value":[1,"1"]},{"metric":{"i":"b"},"value":[1,"2"]}]}}"#.into()
            }
            Some("hang") => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                String::new()
            }
            Some("garbage") => "<html>not prometheus</html>".into(),
            _ => r#"{"status":"error","errorType":"bad_data","error":"parse error at char 1"}"#.into(),
        }
    }
    let app = Router::new().route("/api/v1/query", get(query));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn prometheus_query_reads_one_value_and_explains_every_failure() {
    let base = start_fake_prometheus().await;
    let scraper = Scraper::new(Duration::from_millis(300)).unwrap();

    let v = scraper
        .prometheus_query(&base, "sum(rate(x[30s]))")
        .await
        .unwrap();
    assert_eq!(v, 42.5);

    let e = scraper
        .prometheus_query(&base, "rate(x[30s])")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("aggregate"), "{e}");

    let e = scraper.prometheus_query(&base, "bad(").await.unwrap_err();
    assert!(e.to_string().contains("parse error"), "{e}");

    let e = scraper
        .prometheus_query(&base, "garbage")
        .await
        .unwrap_err();
    assert!(matches!(e, MetricsError::Query { .. }), "{e}");

    let started = Instant::now();
    let e = scraper.prometheus_query(&base, "hang").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeout honoured"
    );
    assert!(
        matches!(e, MetricsError::Request { .. } | MetricsError::Query { .. }),
        "{e}"
    );

    let e = scraper
        .prometheus_query("http://127.0.0.1:1", "sum(rate(x[30s]))")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("127.0.0.1:1"),
        "names the server: {e}"
    );
}
