//! Resuming the live stream from an id the log has not reached (another server's, or one from
//! before a restore) starts from the newest event instead of hiding everything until the log
//! catches up with it.

use std::time::{Duration, Instant};

use kontor_testkit::server::TestServer;
use kontor_testkit::sse::{SseNext, SseReader};
use serde_json::json;

#[tokio::test]
async fn a_last_event_id_beyond_the_newest_event_resumes_from_the_newest() {
    let server = TestServer::start(|_| {}).await;
    let first = json!({ "from": { "email": "vorher@example.de" }, "text": "Vorher" });
    assert_eq!(server.call("POST", "/api/v1/inbound", Some(first)).await.0, 201);
    let resp = server
        .with_token(&server.token, reqwest::Method::GET, "/api/v1/events/stream")
        .header("Last-Event-ID", "999999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = SseReader::new(resp);
    let body = json!({ "from": { "email": "danach@example.de" }, "text": "Nach dem Wiederverbinden" });
    let (s, r) = server.call("POST", "/api/v1/inbound", Some(body)).await;
    assert_eq!(s, 201, "{r}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match stream.next(deadline).await {
            SseNext::Event(e) if e.id == r["event_id"].as_i64() => break,
            SseNext::Event(e) => assert!(e.id < r["event_id"].as_i64(), "an event after the new message: {e:?}"),
            other => panic!("the new message never arrived: {other:?}"),
        }
    }
}
