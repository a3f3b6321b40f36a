//! A PostgreSQL outage (simulated by cutting a TCP proxy between Kontor and the database):
//! the API answers 503 quickly (never 500, never hangs), `/readyz` reports it, and once the
//! database is back Kontor recovers by itself without losing anything it acknowledged.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{free_port, received_by_provider_id, within, Api, Deployment, Proxy, REQUEST_TIMEOUT};

/// Sends one inbound message; returns its status and message id, failing the test on a
/// transport error (hang, reset) or an answer other than 201 and 503.
async fn send(api: &Api, pmid: &str) -> (u16, Option<i64>) {
    let started = Instant::now();
    let result = api.inbound(pmid, "outage@example.test", "Ist die Datenbank da?").await;
    let took = started.elapsed();
    let (status, body) = result.unwrap_or_else(|e| panic!("inbound {pmid} failed after {took:?}: {e}"));
    assert!(took < REQUEST_TIMEOUT, "inbound {pmid} took {took:?}");
    assert!(status == 201 || status == 503, "inbound {pmid} answered {status} (expected 201 or 503): {body}");
    if status == 503 {
        assert_eq!(body["error"]["code"], "unavailable", "503 body: {body}");
    }
    (status, body["message_id"].as_i64())
}

/// Polls `/readyz` until it answers `want` (any other answer than 200/503 fails the test).
async fn wait_readyz(api: &Api, want: u16, limit: Duration) {
    let started = Instant::now();
    let deadline = started + limit;
    loop {
        let status = api.readyz().await.unwrap_or_else(|e| panic!("/readyz failed: {e}"));
        assert!(status == 200 || status == 503, "/readyz answered {status}");
        if status == want {
            eprintln!("/readyz answered {want} after {:?}", started.elapsed());
            return;
        }
        assert!(Instant::now() < deadline, "/readyz did not answer {want} within {limit:?} (last: {status})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_answers_503_and_recovers() {
    let Some(dep) = Deployment::postgres().await else { return };
    within(Duration::from_secs(150), "the database outage test", async {
        let token = dep.token();
        let target = dep.pg_server_addr();
        let proxy_port = free_port();
        let proxy = Proxy::start(proxy_port, &target).await;
        let via_proxy = dep.database_url_via(&format!("127.0.0.1:{proxy_port}"));
        let node = dep.start_node_with("outage", Some(&via_proxy), &[]).await;
        let api = Api::new(&node, &token);
        // provider_message_id → message_id of every 201
        let mut acked: HashMap<String, i64> = HashMap::new();

        // 1. Healthy.
        for i in 0..5 {
            let pmid = format!("outage-before-{i}");
            let (status, id) = send(&api, &pmid).await;
            assert_eq!(status, 201, "inbound {pmid} before the outage");
            acked.insert(pmid, id.expect("message_id"));
        }
        wait_readyz(&api, 200, Duration::from_secs(5)).await;

        // 2. The database goes away: 503 within a few seconds, for writes, reads and /readyz.
        proxy.stop().await;
        let outage = Instant::now();
        let mut n = 0;
        loop {
            let pmid = format!("outage-during-{n}");
            n += 1;
            match send(&api, &pmid).await {
                (503, _) => break,
                (_, id) => {
                    acked.insert(pmid, id.expect("message_id"));
                }
            }
            assert!(
                outage.elapsed() < Duration::from_secs(10),
                "inbound still answers 201 {:?} into the outage",
                outage.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("first 503 after {:?} ({n} requests)", outage.elapsed());
        wait_readyz(&api, 503, Duration::from_secs(10)).await;
        for path in ["/api/v1/events?after=0", "/api/v1/cases"] {
            let started = Instant::now();
            let (status, body) = api.get(path).await.unwrap_or_else(|e| panic!("GET {path} during the outage: {e}"));
            assert_eq!(status, 503, "GET {path} during the outage ({:?}): {body}", started.elapsed());
            eprintln!("GET {path} answered 503 after {:?}", started.elapsed());
        }
        for i in 0..3 {
            let (status, _) = send(&api, &format!("outage-still-{i}")).await;
            assert_eq!(status, 503, "inbound while the database is still away");
        }

        // 3. The database is back: Kontor recovers within 15 s without a restart.
        let proxy = Proxy::start(proxy_port, &target).await;
        let back = Instant::now();
        let mut n = 0;
        loop {
            let pmid = format!("outage-after-{n}");
            n += 1;
            if let (201, id) = send(&api, &pmid).await {
                acked.insert(pmid, id.expect("message_id"));
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(15),
                "inbound still answers 503 15 s after the database came back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("first 201 {:?} after the database came back", back.elapsed());
        wait_readyz(&api, 200, Duration::from_secs(15).saturating_sub(back.elapsed())).await;
        for i in 0..5 {
            let pmid = format!("outage-recovered-{i}");
            let (status, id) = send(&api, &pmid).await;
            assert_eq!(status, 201, "inbound {pmid} after recovery");
            acked.insert(pmid, id.expect("message_id"));
        }

        // 4. Nothing acknowledged was lost, nothing was stored twice.
        let received = received_by_provider_id(&api.all_events().await);
        for (pmid, id) in &acked {
            assert_eq!(received.get(pmid), Some(&vec![*id]), "message.received events of acknowledged {pmid}");
        }
        let twice: Vec<_> = received.iter().filter(|(_, ids)| ids.len() > 1).collect();
        assert!(twice.is_empty(), "stored more than once: {twice:?}");
        for (pmid, id) in &acked {
            let (status, body) =
                api.inbound(pmid, "outage@example.test", "Ist die Datenbank da?").await.expect("re-send");
            assert_eq!((status, body["message_id"].as_i64()), (200, Some(*id)), "re-sending {pmid}: {body}");
        }
        drop(node);
        proxy.stop().await;
    })
    .await;
}
