//! When a stream's user is changed (`user.updated`: demotion, deactivation), the hub must not
//! keep picking events with the old viewer until the stream has re-read its session: not later
//! in the same batch, and not in batches published while a slow client has deliveries queued
//! (found by a review).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kontor_core::{Channel, IdentityKind, Role};
use kontor_server::live::{Hub, Viewer};
use kontor_server::Config;
use kontor_store::{cases::CasePatch, ingest::NewInbound, Store};

fn inbound(from: &str, text: &str) -> NewInbound {
    NewInbound { subject: Some("Gehalt".into()), ..NewInbound::text(Channel::Api, IdentityKind::Email, from, text) }
}

async fn hub_reaches(hub: &Hub, store: &Store) {
    let want = store.max_event_id().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while hub.position() < want {
        assert!(Instant::now() < deadline, "hub never reached event {want}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn after_a_demotion_the_hub_hands_the_former_admin_no_event_of_a_hidden_team() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let store = Store::open(&cfg.database_url(), cfg.store_settings()).unwrap();
    store.create_user("root@example.de".into(), "Root".into(), Role::Admin, "geheim123".into()).await.unwrap();
    let ida = store.create_user("ida@example.de".into(), "Ida".into(), Role::Admin, "geheim123".into()).await.unwrap();
    let board = store.create_team("Vorstand".into()).await.unwrap();
    let case = store.ingest(inbound("hr@example.de", "first")).await.unwrap();
    store.patch_case(case.case_id, CasePatch { team_id: Some(Some(board.id)), ..Default::default() }).await.unwrap();

    let hub = Hub::new(store.clone());
    // Ida's stream, opened while she was an admin; its client has not read for a moment.
    let mut sub = hub.subscribe(Viewer { user_id: Some(ida.id), unrestricted: true, teams: HashSet::new() });
    hub_reaches(&hub, &store).await;

    store.update_user(ida.id, None, Some(Role::Agent), None).await.unwrap();
    let demoted_at = store.max_event_id().await.unwrap();
    let later = store.ingest(inbound("hr@example.de", "Gehaltsliste Vorstand")).await.unwrap();
    assert_eq!(later.case_id, case.case_id, "the message joins the board's case");
    hub_reaches(&hub, &store).await;

    let mut leaked = Vec::new();
    while let Some(Some(d)) = sub.recv().now_or_never() {
        for e in &d.events {
            if e.id > demoted_at && !e.audience.admits(&HashSet::new()) {
                leaked.push(e.data.clone());
            }
        }
    }
    assert!(leaked.is_empty(), "events after the demotion, picked as if still admin: {leaked:?}");
}
