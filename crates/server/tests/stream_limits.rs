//! One caller cannot hold the live hub hostage: a staff user or API token gets at most
//! `max_streams_per_caller` event streams per node; more are refused with 429 and a JSON
//! reason, another caller is not affected, and a closed stream frees its place.

use std::time::{Duration, Instant};

use kontor_core::Role;
use kontor_testkit::server::TestServer;
use reqwest::Method;

async fn open(srv: &TestServer, token: &str) -> reqwest::Response {
    srv.with_token(token, Method::GET, "/api/v1/events/stream").send().await.expect("request")
}

#[tokio::test]
async fn a_caller_over_its_stream_limit_gets_429_until_one_of_its_streams_closes() {
    let srv = TestServer::start(|c| c.max_streams_per_caller = 2).await;
    let crm = srv.token("crm", Role::Admin).await;
    let other = srv.token("other", Role::Admin).await;

    let first = open(&srv, &crm).await;
    let second = open(&srv, &crm).await;
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));

    let third = open(&srv, &crm).await;
    assert_eq!(third.status().as_u16(), 429);
    let body: serde_json::Value = third.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("at most 2"), "{body}");

    assert_eq!(open(&srv, &other).await.status().as_u16(), 200, "another caller has its own limit");

    // Closing a stream frees its place once the server has seen the connection go.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let again = open(&srv, &crm).await;
        match again.status().as_u16() {
            200 => break,
            429 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(25)).await,
            s => panic!("a closed stream did not free its place (status {s})"),
        }
    }
    drop(second);
}
