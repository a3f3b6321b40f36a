//! Several nodes on one PostgreSQL database: live events cross nodes, and each delivery job
//! runs once in the cluster. Also (on SQLite): a failing webhook is retried, then dead-lettered.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{within, Api, Deployment, Node, SseStream, Webhook};
use futures::StreamExt;
use serde_json::{json, Value};

const SECRET: &str = "process-test-webhook-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_on_node_a_delivers_message_ingested_on_node_b() {
    let Some(dep) = Deployment::postgres().await else { return };
    within(Duration::from_secs(120), "the cross-node stream test", async {
        let token = dep.token();
        let a = dep.start_node("a", &[("KONTOR_NODE_NAME", "a")]).await;
        let b = dep.start_node("b", &[("KONTOR_NODE_NAME", "b")]).await;
        let api_b = Api::new(&b, &token);
        let mut stream = SseStream::open(&a, &token, None).await;
        let mut first_event = None;
        for i in 0..5 {
            let pmid = format!("cluster-sse-{i}");
            let (status, receipt) =
                api_b.inbound(&pmid, "sse@example.test", &format!("Hallo {i}")).await.expect("inbound on b");
            assert_eq!(status, 201, "inbound on b: {receipt}");
            let event_id = receipt["event_id"].as_i64().expect("event_id");
            first_event.get_or_insert(event_id);
            let posted = Instant::now();
            let deadline = posted + Duration::from_secs(5);
            loop {
                let Some(ev) = stream.next(deadline).await else {
                    panic!("event {event_id} (message {pmid} ingested on b) did not arrive on a's stream within 5 s");
                };
                let id = ev.id.expect("every stream event has an id");
                assert_eq!(ev.data["id"].as_i64(), Some(id), "SSE id and event id differ: {:?}", ev.data);
                assert!(id <= event_id, "the stream skipped event {event_id}: got {id} first");
                if id == event_id {
                    assert_eq!(ev.data["type"], "message.received", "{:?}", ev.data);
                    assert_eq!(ev.data["payload"]["message"]["provider_message_id"], pmid.as_str());
                    eprintln!("event {event_id} from b arrived on a after {:?}", posted.elapsed());
                    break;
                }
            }
        }
        // Resuming on a with Last-Event-ID replays what b wrote after that id, in order.
        let first = first_event.expect("at least one event");
        let mut resumed = SseStream::open(&a, &token, Some(first)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let Some(ev) = resumed.next(deadline).await else {
                panic!("resumed stream on a gave only {seen:?} within 5 s");
            };
            if ev.data["type"] == "message.received" {
                seen.push(ev.data["payload"]["message"]["provider_message_id"].as_str().unwrap_or("").to_string());
            }
        }
        assert_eq!(seen, (1..5).map(|i| format!("cluster-sse-{i}")).collect::<Vec<_>>());
    })
    .await;
}

fn webhook_env<'a>(webhook: &'a Webhook, node: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("KONTOR_API_CHANNEL__WEBHOOK_URL", webhook.url.as_str()),
        ("KONTOR_API_CHANNEL__WEBHOOK_SECRET", SECRET),
        ("KONTOR_JOBS__POLL_MS", "100"),
        ("KONTOR_NODE_NAME", node),
    ]
}

/// Ingests a message from `email` on `ingest`, replies to it on `reply`; returns (case, message) of the reply.
async fn inbound_and_reply(ingest: &Api, reply: &Api, pmid: &str, email: &str, text: &str) -> (i64, i64) {
    let (status, receipt) = ingest.inbound(pmid, email, "Eine Frage").await.expect("inbound");
    assert_eq!(status, 201, "inbound {pmid}: {receipt}");
    let case_id = receipt["case_id"].as_i64().expect("case_id");
    let body = json!({ "text": text, "based_on_event_id": receipt["event_id"], "force": false });
    let (status, accepted) = reply.post(&format!("/api/v1/cases/{case_id}/replies"), &body).await.expect("reply");
    assert_eq!(status, 202, "reply to case {case_id}: {accepted}");
    assert_eq!(accepted["delivery_state"], "queued");
    (case_id, accepted["message_id"].as_i64().expect("message_id"))
}

/// The message `message_id` as shown in its case.
async fn message_in_case(api: &Api, case_id: i64, message_id: i64) -> Value {
    let (status, detail) = api.get(&format!("/api/v1/cases/{case_id}")).await.expect("case detail");
    assert_eq!(status, 200, "case {case_id}: {detail}");
    detail["messages"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["id"].as_i64() == Some(message_id)).cloned())
        .unwrap_or_else(|| panic!("message {message_id} is not in case {case_id}: {detail}"))
}

/// Polls until every message has left the `queued` state; returns their final states.
async fn wait_delivered(apis: &[Api], messages: &[(i64, i64)], limit: Duration) -> HashMap<i64, Value> {
    let deadline = Instant::now() + limit;
    let mut done = HashMap::new();
    for round in 0usize.. {
        for (i, (case_id, message_id)) in messages.iter().enumerate() {
            if done.contains_key(message_id) {
                continue;
            }
            let m = message_in_case(&apis[(i + round) % apis.len()], *case_id, *message_id).await;
            if m["delivery_state"] == "sent" || m["delivery_state"] == "failed" {
                done.insert(*message_id, m);
            }
        }
        if done.len() == messages.len() {
            return done;
        }
        if Instant::now() > deadline {
            let pending: Vec<_> = messages.iter().filter(|(_, m)| !done.contains_key(m)).collect();
            panic!("{} messages were not delivered within {limit:?}: {pending:?}", pending.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unreachable!()
}

/// Deliveries per Idempotency-Key.
fn by_key(webhook: &Webhook) -> HashMap<String, Vec<common::Delivery>> {
    let mut out: HashMap<String, Vec<common::Delivery>> = HashMap::new();
    for d in webhook.deliveries() {
        out.entry(d.idempotency_key.clone().unwrap_or_default()).or_default().push(d);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_job_runs_once_across_two_nodes() {
    let Some(dep) = Deployment::postgres().await else { return };
    within(Duration::from_secs(150), "the cluster job test", async {
        let webhook = Webhook::start(SECRET, |_| 200).await;
        let token = dep.token();
        let nodes: Vec<Node> = vec![
            dep.start_node("a", &webhook_env(&webhook, "a")).await,
            dep.start_node("b", &webhook_env(&webhook, "b")).await,
        ];
        let apis: Vec<Api> = nodes.iter().map(|n| Api::new(n, &token)).collect();

        // 40 customers; ingest on i % 2, reply on (i / 2) % 2: every combination of nodes.
        let messages: Vec<(i64, i64)> = futures::stream::iter((0..40usize).map(|i| {
            let (ingest, reply) = (apis[i % 2].clone(), apis[(i / 2) % 2].clone());
            async move {
                inbound_and_reply(
                    &ingest,
                    &reply,
                    &format!("job-{i}"),
                    &format!("job{i}@example.test"),
                    &format!("Antwort {i}"),
                )
                .await
            }
        }))
        .buffered(8)
        .collect()
        .await;

        let states = wait_delivered(&apis, &messages, Duration::from_secs(60)).await;
        let failed: Vec<_> = states.values().filter(|m| m["delivery_state"] != "sent").collect();
        assert!(failed.is_empty(), "deliveries failed: {failed:?}");
        // Give a job that would run twice the chance to show it.
        tokio::time::sleep(Duration::from_secs(1)).await;

        let deliveries = by_key(&webhook);
        let bad_sigs: Vec<_> = webhook.deliveries().into_iter().filter(|d| d.signature.is_err()).collect();
        assert!(bad_sigs.is_empty(), "signatures that did not verify: {bad_sigs:?}");
        for (_, message_id) in &messages {
            let key = format!("kontor-message-{message_id}");
            let got = deliveries.get(&key).map(Vec::len).unwrap_or(0);
            assert_eq!(got, 1, "the webhook got message {message_id} (Idempotency-Key {key}) {got} times");
            let d = &deliveries[&key][0];
            assert_eq!(d.body["type"], "message.outbound", "{:?}", d.body);
            assert_eq!(d.body["message_id"].as_i64(), Some(*message_id), "{:?}", d.body);
        }
        assert_eq!(
            deliveries.len(),
            messages.len(),
            "unexpected deliveries: {:?}",
            deliveries.keys().collect::<Vec<_>>()
        );

        // Each node counts the job runs it finished: together exactly one per message.
        let mut runs = Vec::new();
        for api in &apis {
            let text = api
                .http
                .get(format!("{}/metrics", api.base))
                .send()
                .await
                .expect("/metrics")
                .text()
                .await
                .expect("/metrics body");
            let done: u64 = text
                .lines()
                .filter(|l| l.starts_with("kontor_jobs_total{") && l.contains("kind=\"deliver_message\""))
                .filter(|l| l.contains("outcome=\"done\""))
                .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
                .sum();
            runs.push(done);
        }
        eprintln!("delivery jobs run per node (a, b): {runs:?}");
        assert_eq!(runs.iter().sum::<u64>(), messages.len() as u64, "finished delivery jobs per node: {runs:?}");

        // The log records each delivery once, as sent.
        let events = apis[0].all_events().await;
        let mut delivery_events: HashMap<i64, Vec<String>> = HashMap::new();
        for e in events.iter().filter(|e| e["type"] == "message.delivery") {
            let id = e["payload"]["message_id"].as_i64().unwrap_or(0);
            delivery_events.entry(id).or_default().push(e["payload"]["state"].as_str().unwrap_or("").to_string());
        }
        for (_, message_id) in &messages {
            assert_eq!(
                delivery_events.get(message_id),
                Some(&vec!["sent".to_string()]),
                "delivery events of {message_id}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_webhook_is_retried_then_dead_lettered() {
    let dep = Deployment::sqlite();
    within(Duration::from_secs(120), "the failing webhook test", async {
        // Replies whose text asks for 400 are refused at once; all others meet a broken receiver.
        let webhook =
            Webhook::start(
                SECRET,
                |body| if body["text"].as_str().unwrap_or("").contains("[400]") { 400 } else { 500 },
            )
            .await;
        let token = dep.token();
        let mut env = webhook_env(&webhook, "solo");
        env.extend([
            ("KONTOR_JOBS__MAX_ATTEMPTS", "3"),
            ("KONTOR_JOBS__BACKOFF_BASE_MS", "50"),
            ("KONTOR_JOBS__BACKOFF_MAX_MS", "400"),
        ]);
        let node = dep.start_node("solo", &env).await;
        let api = Api::new(&node, &token);
        let retried = inbound_and_reply(&api, &api, "dead-1", "dead1@example.test", "Antwort, Empfänger kaputt").await;
        let refused = inbound_and_reply(&api, &api, "dead-2", "dead2@example.test", "Antwort [400]").await;

        let states = wait_delivered(std::slice::from_ref(&api), &[retried, refused], Duration::from_secs(60)).await;
        // Give further (wrong) attempts the chance to show.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let deliveries = by_key(&webhook);
        let attempts =
            |message_id: i64| deliveries.get(&format!("kontor-message-{message_id}")).map(Vec::len).unwrap_or(0);

        let m = &states[&retried.1];
        assert_eq!(m["delivery_state"], "failed", "{m}");
        let err = m["delivery_error"].as_str().unwrap_or("");
        assert!(err.contains("500"), "delivery_error should mention the 500: {m}");
        assert_eq!(attempts(retried.1), 3, "attempts for a receiver that always answers 500 (max_attempts = 3)");

        let m = &states[&refused.1];
        assert_eq!(m["delivery_state"], "failed", "{m}");
        let err = m["delivery_error"].as_str().unwrap_or("");
        assert!(err.contains("400"), "delivery_error should mention the 400: {m}");
        assert_eq!(attempts(refused.1), 1, "a 400 answer must not be retried");

        let bad_sigs: Vec<_> = webhook.deliveries().into_iter().filter(|d| d.signature.is_err()).collect();
        assert!(bad_sigs.is_empty(), "signatures that did not verify: {bad_sigs:?}");
    })
    .await;
}
