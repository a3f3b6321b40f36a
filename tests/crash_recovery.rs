//! Crash safety: `POST /api/v1/inbound` answers 201 only after commit, so whatever was
//! acknowledged survives a SIGKILL of the server in the middle of a write burst, exactly once.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{received_by_provider_id, within, Api, Deployment};
use futures::StreamExt;

const CLIENTS: usize = 16;
const BURST: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_message_survives_sigkill_once() {
    let dep = Deployment::sqlite();
    within(Duration::from_secs(180), "the SQLite crash test", sigkill_during_ingest(&dep)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_message_survives_sigkill_once_on_postgres() {
    let Some(dep) = Deployment::postgres().await else { return };
    within(Duration::from_secs(180), "the PostgreSQL crash test", sigkill_during_ingest(&dep)).await;
}

/// What one sending client saw.
#[derive(Default)]
struct ClientReport {
    /// (provider_message_id, sender, message_id) of every 201.
    acked: Vec<(String, String, i64)>,
    /// Anything but a 201 before the kill, and any 5xx other than 503 at all.
    problems: Vec<String>,
    sent: usize,
}

async fn client(api: Api, c: usize, killed: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> ClientReport {
    let mut report = ClientReport::default();
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let pmid = format!("crash-{c}-{n}");
        let email = format!("crash{c}-{}@example.test", n % 4);
        n += 1;
        report.sent += 1;
        let after_kill = killed.load(Ordering::SeqCst);
        match api.inbound(&pmid, &email, &format!("Nachricht {pmid}")).await {
            Ok((201, body)) => match body["message_id"].as_i64() {
                Some(id) => report.acked.push((pmid, email, id)),
                None => report.problems.push(format!("{pmid}: 201 without message_id: {body}")),
            },
            Ok((status, body)) => {
                if !after_kill || (status >= 500 && status != 503) {
                    report.problems.push(format!("{pmid}: answered {status}: {body}"));
                }
            }
            // The server is gone: this client is done.
            Err(_) if after_kill || killed.load(Ordering::SeqCst) => break,
            Err(e) => report.problems.push(format!("{pmid}: request failed before the kill: {e}")),
        }
    }
    report
}

async fn sigkill_during_ingest(dep: &Deployment) {
    let token = dep.token();
    let mut first = dep.start_node("before-crash", &[]).await;
    let api = Api::new(&first, &token);

    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> =
        (0..CLIENTS).map(|c| tokio::spawn(client(api.clone(), c, killed.clone(), stop.clone()))).collect();
    tokio::time::sleep(BURST).await;
    // Flag first, so that every error seen after the flag is attributed to the kill.
    killed.store(true, Ordering::SeqCst);
    first.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);

    // provider_message_id → (sender, message_id)
    let mut acked: HashMap<String, (String, i64)> = HashMap::new();
    let mut problems = Vec::new();
    let mut sent = 0;
    for c in clients {
        let r = within(Duration::from_secs(30), "a sending client", c).await.expect("client task");
        sent += r.sent;
        problems.extend(r.problems);
        for (pmid, email, id) in r.acked {
            assert!(acked.insert(pmid.clone(), (email, id)).is_none(), "{pmid} was acknowledged twice");
        }
    }
    assert!(
        problems.is_empty(),
        "{} unexpected answers, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert!(acked.len() >= 50, "only {} of {sent} messages were acknowledged in {BURST:?}", acked.len());

    let second = dep.start_node("after-crash", &[]).await;
    let api = Api::new(&second, &token);

    // 1. The event log holds every acknowledged message, each once.
    let events = api.all_events().await;
    let received = received_by_provider_id(&events);
    let mut duplicated: Vec<_> = received.iter().filter(|(_, ids)| ids.len() > 1).collect();
    duplicated.sort();
    assert!(
        duplicated.is_empty(),
        "provider ids received more than once: {:?}",
        &duplicated[..duplicated.len().min(5)]
    );
    let mut missing: Vec<_> = acked.keys().filter(|p| !received.contains_key(*p)).cloned().collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages are missing after the crash, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    for (pmid, (_, id)) in &acked {
        assert_eq!(received[pmid], vec![*id], "message id of {pmid}");
    }

    // 2. Sending each acknowledged message again is a duplicate with the same ids.
    let started = Instant::now();
    let wrong: Vec<String> = futures::stream::iter(acked.iter().map(|(pmid, (email, id))| {
        let api = api.clone();
        async move {
            // A redelivery repeats the message: same key, same sender, same text.
            match api.inbound(pmid, email, &format!("Nachricht {pmid}")).await {
                Ok((200, body)) if body["message_id"].as_i64() == Some(*id) => None,
                Ok((status, body)) => Some(format!("{pmid} (message {id}): answered {status}: {body}")),
                Err(e) => Some(format!("{pmid}: {e}")),
            }
        }
    }))
    .buffer_unordered(CLIENTS)
    .filter_map(|x| async move { x })
    .collect()
    .await;
    assert!(
        wrong.is_empty(),
        "{} re-sent messages were not duplicates, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );

    let unacked_stored = received.keys().filter(|p| p.starts_with("crash-") && !acked.contains_key(*p)).count();
    eprintln!(
        "{} sent, {} acknowledged, {} more stored without acknowledgement (in flight at the kill); \
         re-sending took {:?}",
        sent,
        acked.len(),
        unacked_stored,
        started.elapsed()
    );
}
