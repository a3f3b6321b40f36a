//! The live event stream fed by the node's hub, over a real SQLite store: many streams on
//! one node each get every event they may see exactly once and in order (and never one of
//! another team's case), a stream that falls behind the hub catches up from the database
//! with no gap and no duplicate, `Last-Event-ID` resumes exactly, and events are stored by
//! reference (no message text or address in the events table) while readers get the
//! message as it is now.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::StreamExt;
use kontor_core::{CaseId, Channel, IdentityKind, Role, TeamId, UserId};
use kontor_server::{AppState, Config};
use kontor_store::{cases::CasePatch, ingest::NewInbound, Store};
use serde_json::Value;

fn inbound(from: &str, text: &str) -> NewInbound {
    NewInbound {
        name: Some("Erika Mustermann".into()),
        subject: Some("Zählerstand".into()),
        ..NewInbound::text(Channel::Api, IdentityKind::Email, from, text)
    }
}

/// Reads Server-Sent Events from any byte stream (a socket or an in-process body).
struct Sse {
    body: BoxStream<'static, Result<bytes::Bytes, String>>,
    buf: String,
}

impl Sse {
    async fn open(rb: reqwest::RequestBuilder) -> Sse {
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "event stream status");
        Sse { body: r.bytes_stream().map(|c| c.map_err(|e| e.to_string())).boxed(), buf: String::new() }
    }

    /// The next event with an id (presence signals and keep-alives are skipped).
    async fn next_event(&mut self) -> (i64, Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if let Some(id) = id {
                    return (id, serde_json::from_str(&data).unwrap());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                other => panic!("stream ended or stalled before the next event: {other:?}"),
            }
        }
    }

    /// Event ids up to and including `last`.
    async fn ids_until(&mut self, last: i64) -> Vec<i64> {
        let mut ids = Vec::new();
        loop {
            let (id, _) = self.next_event().await;
            ids.push(id);
            if id >= last {
                return ids;
            }
        }
    }
}

async fn open_store() -> (Store, Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let store = Store::open(&cfg.database_url(), cfg.store_settings()).unwrap();
    (store, cfg, dir)
}

async fn serve(state: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(kontor_server::serve(state, listener, std::future::pending()));
    base
}

/// Every event id after `after`, oldest first, as the event log has them.
async fn all_ids_after(store: &Store, mut after: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        let page = store.events_after(after, 1000).await.unwrap();
        let Some(last) = page.last() else { return ids };
        after = last.id;
        ids.extend(page.iter().map(|e| e.id));
    }
}

fn assert_exact(got: &[i64], want: &[i64], who: &str) {
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "{who}: an event came twice: {got:?}");
    assert_eq!(got, want, "{who}: events differ from the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_each_get_every_visible_event_once_in_order_and_never_a_hidden_one() {
    let (store, cfg, _dir) = open_store().await;
    let (_, admin_token) = store.create_token("admin".into(), Role::Admin).await.unwrap();
    let team_a = store.create_team("Team A".into()).await.unwrap();
    let team_b = store.create_team("Team B".into()).await.unwrap();
    let ada = store.create_user("ada@example.de".into(), "Ada".into(), Role::Agent, "geheim123".into()).await.unwrap();
    let bob = store.create_user("bob@example.de".into(), "Bob".into(), Role::Agent, "geheim123".into()).await.unwrap();
    store.add_team_member(TeamId(team_a.id), UserId(ada.id)).await.unwrap();
    store.add_team_member(TeamId(team_b.id), UserId(bob.id)).await.unwrap();
    let x = store.ingest(inbound("x@example.de", "X 0")).await.unwrap();
    let y = store.ingest(inbound("y@example.de", "Y 0")).await.unwrap();
    store.patch_case(x.case_id, CasePatch { team_id: Some(Some(team_a.id)), ..Default::default() }).await.unwrap();
    store.patch_case(y.case_id, CasePatch { team_id: Some(Some(team_b.id)), ..Default::default() }).await.unwrap();
    let base = serve(AppState::new(store.clone(), cfg)).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/events/stream");

    let mut streams: Vec<(&str, Sse)> = Vec::new();
    for _ in 0..6 {
        for (who, user) in [("ada", ada.id), ("bob", bob.id)] {
            let session = store.create_session(user, 3600).await.unwrap();
            let rb = http.get(&url).header("cookie", format!("kontor_session={session}"));
            streams.push((who, Sse::open(rb).await));
        }
    }
    for _ in 0..3 {
        streams.push(("admin", Sse::open(http.get(&url).bearer_auth(&admin_token)).await));
    }
    let start = store.max_event_id().await.unwrap();

    // Single commits and concurrent bursts (several messages per batch), both teams mixed.
    for i in 0..10 {
        store
            .ingest(inbound(if i % 2 == 0 { "x@example.de" } else { "y@example.de" }, &format!("single {i}")))
            .await
            .unwrap();
    }
    let burst: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            let from = if i % 3 == 0 { "x@example.de" } else { "y@example.de" };
            tokio::spawn(async move { store.ingest(inbound(from, &format!("burst {i}"))).await.unwrap() })
        })
        .collect();
    for b in burst {
        b.await.unwrap();
    }
    // A last event everyone sees (a case without a team): once it arrived, nothing hidden
    // came before it.
    let last = store.ingest(inbound("z@example.de", "für alle")).await.unwrap();

    let events = store.events_after(start, 1000).await.unwrap();
    // Events of the team's case, and of the last case without a team and its new customer.
    let visible_to = |cases: &[i64]| -> Vec<i64> {
        events
            .iter()
            .filter(|e| match e.case_id {
                Some(c) => cases.contains(&c),
                None => e.customer_id == Some(last.customer_id),
            })
            .map(|e| e.id)
            .collect()
    };
    let all: Vec<i64> = events.iter().map(|e| e.id).collect();
    let for_ada = visible_to(&[x.case_id, last.case_id]);
    let for_bob = visible_to(&[y.case_id, last.case_id]);
    assert!(for_ada.len() > 10 && for_bob.len() > 10, "both teams got messages");
    for (who, sse) in &mut streams {
        let got = sse.ids_until(last.event_id).await;
        let want = match *who {
            "ada" => &for_ada,
            "bob" => &for_bob,
            _ => &all,
        };
        assert_exact(&got, want, who);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_falls_behind_the_hub_catches_up_from_the_database_without_gap_or_duplicate() {
    use axum::body::Body;
    use tower::ServiceExt;

    let (store, cfg, _dir) = open_store().await;
    let (_, token) = store.create_token("admin".into(), Role::Admin).await.unwrap();
    store.ingest(inbound("vorher@example.de", "vorher")).await.unwrap();
    let start = store.max_event_id().await.unwrap();
    // A hub that keeps a single batch: any stream not polled between two batches lags.
    let mut state = AppState::new(store.clone(), cfg);
    state.live = kontor_server::live::Hub::with_capacity(store.clone(), 1);
    let hub = state.live.clone();
    let metrics = state.metrics.clone();
    // In process, so the stream runs only while this test reads it: it is certainly behind
    // while the test writes.
    let req = axum::http::Request::get(format!("/api/v1/events/stream?after={start}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = kontor_server::router(state).oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.into_body().into_data_stream().map(|c| c.map_err(|e| e.to_string())).boxed();
    let mut sse = Sse { body, buf: String::new() };

    let published = |id: i64| {
        let hub = hub.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while hub.position() < id {
                assert!(Instant::now() < deadline, "hub never published event {id}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let first = store.ingest(inbound("a@example.de", "erste")).await.unwrap();
    let mut got = sse.ids_until(first.event_id).await;
    published(first.event_id).await;
    let catchups_before = metrics.stream_catchups.get();

    // Several batches published while the stream does not run, then a burst larger than a
    // page of the hub.
    for i in 0..5 {
        let r = store.ingest(inbound("b@example.de", &format!("einzeln {i}"))).await.unwrap();
        published(r.event_id).await;
    }
    let burst: Vec<_> = (0..700)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(inbound(&format!("k{i}@example.de"), "Stoß")).await.unwrap() })
        })
        .collect();
    let mut newest = 0;
    for b in burst {
        newest = newest.max(b.await.unwrap().event_id);
    }
    let last = store.ingest(inbound("c@example.de", "letzte")).await.unwrap();
    published(last.event_id).await;
    assert!(newest < last.event_id);

    got.extend(sse.ids_until(last.event_id).await);
    assert_exact(&got, &all_ids_after(&store, start).await, "lagging stream");
    assert!(metrics.stream_catchups.get() > catchups_before, "the stream read the database after lagging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_last_event_id_across_a_reconnect_stays_exact() {
    let (store, cfg, _dir) = open_store().await;
    let (_, token) = store.create_token("admin".into(), Role::Admin).await.unwrap();
    let base = serve(AppState::new(store.clone(), cfg)).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/events/stream");
    let start = store.max_event_id().await.unwrap();

    let mut sse = Sse::open(http.get(format!("{url}?after={start}")).bearer_auth(&token)).await;
    let mut got = Vec::new();
    for i in 0..5 {
        let r = store.ingest(inbound("r@example.de", &format!("vor {i}"))).await.unwrap();
        got.extend(sse.ids_until(r.event_id).await);
    }
    drop(sse);
    // Written while the client is away, some of it together.
    let away: Vec<_> = (0..30)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(inbound(&format!("w{i}@example.de"), "weg")).await.unwrap() })
        })
        .collect();
    for a in away {
        a.await.unwrap();
    }
    let resume_from = *got.last().unwrap();
    let mut sse = Sse::open(http.get(&url).bearer_auth(&token).header("last-event-id", resume_from.to_string())).await;
    let after = store.ingest(inbound("r@example.de", "danach")).await.unwrap();
    got.extend(sse.ids_until(after.event_id).await);
    assert_exact(&got, &all_ids_after(&store, start).await, "resumed stream");
}

#[tokio::test]
async fn events_store_references_while_readers_get_the_current_message() {
    let (store, cfg, _dir) = open_store().await;
    let (_, token) = store.create_token("admin".into(), Role::Admin).await.unwrap();
    let r = store
        .ingest(inbound("erika.mustermann@example.de", "Meine IBAN ist DE02 1203 0000 0000 2020 51"))
        .await
        .unwrap();
    let (note, _) = store.add_note(CaseId(r.case_id), "Rückruf bei Frau Mustermann".into(), None).await.unwrap();
    let base = serve(AppState::new(store.clone(), cfg)).await;

    let stored: Vec<(String, String)> = store
        .read(|c| {
            Ok(c.query("SELECT kind, payload FROM events ORDER BY id", &[])?
                .iter()
                .map(|r| (r.text(0), r.text(1)))
                .collect())
        })
        .await
        .unwrap();
    assert!(stored.iter().any(|(k, _)| k == "message.received") && stored.iter().any(|(k, _)| k == "note.added"));
    for (kind, payload) in &stored {
        for secret in ["IBAN", "erika.mustermann", "Mustermann", "Zählerstand", "Rückruf"] {
            assert!(!payload.contains(secret), "{kind} stores {secret:?}: {payload}");
        }
    }
    let received: Value =
        serde_json::from_str(&stored.iter().find(|(k, _)| k == "message.received").unwrap().1).unwrap();
    assert_eq!(received["message_id"], r.message_id);
    assert_eq!((received["case_id"].as_i64(), received["channel"].as_str()), (Some(r.case_id), Some("api")));

    let http = reqwest::Client::new();
    let page: Value = http
        .get(format!("{base}/api/v1/events?after=0"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    let by_kind = |kind: &str| items.iter().find(|e| e["type"] == kind).unwrap().clone();
    assert_eq!(by_kind("message.received")["payload"]["message"]["text"], "Meine IBAN ist DE02 1203 0000 0000 2020 51");
    assert_eq!(by_kind("note.added")["payload"]["message"]["id"], note.id);
    assert_eq!(
        by_kind("customer.created")["payload"]["customer"]["identities"][0]["address"],
        "erika.mustermann@example.de"
    );
    assert_eq!(by_kind("case.created")["payload"]["case"]["subject"], "Zählerstand");

    // Erasing the message from the messages table alone erases it from what readers get.
    let id = r.message_id;
    store
        .write(move |tx| {
            tx.conn.execute("DELETE FROM inbound_keys WHERE message_id = ?", &kontor_store::params![id])?;
            tx.conn.execute("DELETE FROM messages WHERE id = ?", &kontor_store::params![id])?;
            Ok(())
        })
        .await
        .unwrap();
    let mut sse = Sse::open(http.get(format!("{base}/api/v1/events/stream?after=0")).bearer_auth(&token)).await;
    loop {
        let (id, e) = sse.next_event().await;
        if e["type"] == "message.received" {
            assert_eq!(id, r.event_id);
            assert!(e["payload"]["message"].is_null(), "erased message still shown: {e}");
            assert_eq!(e["payload"]["message_id"], r.message_id);
            break;
        }
    }
}
