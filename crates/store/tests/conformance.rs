//! Conformance suite: every behaviour is written once (`check_*`) and run against both
//! backends, SQLite (a temporary file) and PostgreSQL (a fresh database per test).
//!
//! PostgreSQL is taken from `KONTOR_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); the role must be allowed to create
//! databases. If the server cannot be reached, the PostgreSQL tests are skipped with a notice,
//! unless `CI=true`, where they fail. The fixtures are `kontor-testkit`'s.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use kontor_core::similarity::RelatedReason;
use kontor_core::{
    normalise_identity, CaseId, CaseStatus, Channel, CustomerId, DeliveryState, Direction, IdentityKind, Priority,
    Role, StaffUser, TeamId, UserId,
};
use kontor_store::{
    cases::{CaseFilter, CasePatch, NewReply, ReplyOutcome},
    ingest::{InboundReceipt, NewInbound},
    jobs::JobOutcome,
    messages::DeliveryUpdate,
    Backend, Store, StoreError, Val,
};
use kontor_testkit::StoreFixture as Fixture;

/// The argument a `check_*` function takes: `store` (a `&Store`) or `fixture` (a `&Fixture`).
macro_rules! argument {
    ($fx:ident, store) => {
        $fx.store()
    };
    ($fx:ident, fixture) => {
        &$fx
    };
}

/// Generates `$on_sqlite` and `$on_postgres` tests for each `check(argument)`, where the
/// argument is `store` (a `&Store`) or `fixture` (a `&Fixture`, for tests with several nodes).
macro_rules! conformance {
    ($($check:ident($arg:ident) => $on_sqlite:ident, $on_postgres:ident;)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $on_sqlite() {
            let fx = Fixture::sqlite().await;
            $check(argument!(fx, $arg)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $on_postgres() {
            let Some(fx) = Fixture::postgres().await else { return };
            $check(argument!(fx, $arg)).await;
        }
    )+};
}

conformance! {
    check_analysis_is_stored_in_parts_that_each_move_the_cursor(store) =>
        analysis_is_stored_in_parts_that_each_move_the_cursor_on_sqlite,
        analysis_is_stored_in_parts_that_each_move_the_cursor_on_postgres;
    check_analysis_follows_the_event_log_and_stores_each_message_once(store) =>
        analysis_follows_the_event_log_and_stores_each_message_once_on_sqlite,
        analysis_follows_the_event_log_and_stores_each_message_once_on_postgres;
    check_held_replies_wait_for_a_second_staff_user(store) =>
        held_replies_wait_for_a_second_staff_user_on_sqlite,
        held_replies_wait_for_a_second_staff_user_on_postgres;
    check_answers_thread_by_reference_then_by_subject_within_the_customer(store) =>
        answers_thread_by_reference_then_by_subject_within_the_customer_on_sqlite,
        answers_thread_by_reference_then_by_subject_within_the_customer_on_postgres;
    check_events_stored_before_references_are_rewritten_by_migration(store) =>
        events_stored_before_references_are_rewritten_by_migration_on_sqlite,
        events_stored_before_references_are_rewritten_by_migration_on_postgres;
    check_inbound_creates_customer_case_message_and_events(store) =>
        inbound_creates_customer_case_message_and_events_on_sqlite,
        inbound_creates_customer_case_message_and_events_on_postgres;
    check_duplicate_inbound_is_stored_once(store) =>
        duplicate_inbound_is_stored_once_on_sqlite,
        duplicate_inbound_is_stored_once_on_postgres;
    check_email_identity_threads_reopens_and_starts_new_cases(store) =>
        email_identity_threads_reopens_and_starts_new_cases_on_sqlite,
        email_identity_threads_reopens_and_starts_new_cases_on_postgres;
    check_explicit_case_id_must_exist_and_belong_to_the_customer(store) =>
        explicit_case_id_must_exist_and_belong_to_the_customer_on_sqlite,
        explicit_case_id_must_exist_and_belong_to_the_customer_on_postgres;
    check_list_cases_filters_and_pages_through_every_case_once(store) =>
        list_cases_filters_and_pages_through_every_case_once_on_sqlite,
        list_cases_filters_and_pages_through_every_case_once_on_postgres;
    check_patch_case_validates_normalises_tags_and_appends_event(store) =>
        patch_case_validates_normalises_tags_and_appends_event_on_sqlite,
        patch_case_validates_normalises_tags_and_appends_event_on_postgres;
    check_reply_detects_stale_views_and_queues_delivery(store) =>
        reply_detects_stale_views_and_queues_delivery_on_sqlite,
        reply_detects_stale_views_and_queues_delivery_on_postgres;
    check_jobs_are_leased_retried_dead_lettered_and_finished(store) =>
        jobs_are_leased_retried_dead_lettered_and_finished_on_sqlite,
        jobs_are_leased_retried_dead_lettered_and_finished_on_postgres;
    check_notes_are_internal_messages_with_an_event(store) =>
        notes_are_internal_messages_with_an_event_on_sqlite,
        notes_are_internal_messages_with_an_event_on_postgres;
    check_identities_conflict_and_merge_moves_everything(store) =>
        identities_conflict_and_merge_moves_everything_on_sqlite,
        identities_conflict_and_merge_moves_everything_on_postgres;
    check_search_finds_german_words_prefixes_and_customers_with_escaped_snippets(store) =>
        search_finds_german_words_prefixes_and_customers_with_escaped_snippets_on_sqlite,
        search_finds_german_words_prefixes_and_customers_with_escaped_snippets_on_postgres;
    check_subscribers_see_the_new_event_id(store) =>
        subscribers_see_the_new_event_id_on_sqlite,
        subscribers_see_the_new_event_id_on_postgres;
    check_latest_event_id_includes_a_write_once_it_returns(store) =>
        latest_event_id_includes_a_write_once_it_returns_on_sqlite,
        latest_event_id_includes_a_write_once_it_returns_on_postgres;
    check_tokens_and_passwords_authenticate(store) =>
        tokens_and_passwords_authenticate_on_sqlite,
        tokens_and_passwords_authenticate_on_postgres;
    check_concurrent_ingests_are_all_stored_once(store) =>
        concurrent_ingests_are_all_stored_once_on_sqlite,
        concurrent_ingests_are_all_stored_once_on_postgres;
    check_one_batch_of_inbound_messages_follows_the_single_message_rules(store) =>
        one_batch_of_inbound_messages_follows_the_single_message_rules_on_sqlite,
        one_batch_of_inbound_messages_follows_the_single_message_rules_on_postgres;
    check_a_failing_bulk_batch_is_redone_message_by_message(store) =>
        a_failing_bulk_batch_is_redone_message_by_message_on_sqlite,
        a_failing_bulk_batch_is_redone_message_by_message_on_postgres;
    check_a_merged_case_sends_work_to_the_case_it_was_merged_into(store) =>
        a_merged_case_sends_work_to_the_case_it_was_merged_into_on_sqlite,
        a_merged_case_sends_work_to_the_case_it_was_merged_into_on_postgres;
    check_failing_write_does_not_affect_others_in_its_group_commit(store) =>
        failing_write_does_not_affect_others_in_its_group_commit_on_sqlite,
        failing_write_does_not_affect_others_in_its_group_commit_on_postgres;
    check_two_nodes_never_claim_the_same_job(fixture) =>
        two_nodes_never_claim_the_same_job_on_sqlite,
        two_nodes_never_claim_the_same_job_on_postgres;
    check_event_ids_become_visible_in_order_across_nodes(fixture) =>
        event_ids_become_visible_in_order_across_nodes_on_sqlite,
        event_ids_become_visible_in_order_across_nodes_on_postgres;
    check_a_store_can_be_dropped_inside_the_async_runtime(fixture) =>
        a_store_can_be_dropped_inside_the_async_runtime_on_sqlite,
        a_store_can_be_dropped_inside_the_async_runtime_on_postgres;
    check_team_members_are_added_listed_and_removed_with_events(store) =>
        team_members_are_added_listed_and_removed_with_events_on_sqlite,
        team_members_are_added_listed_and_removed_with_events_on_postgres;
    check_agents_see_unteamed_and_own_team_cases_and_admins_see_all(store) =>
        agents_see_unteamed_and_own_team_cases_and_admins_see_all_on_sqlite,
        agents_see_unteamed_and_own_team_cases_and_admins_see_all_on_postgres;
    check_list_cases_filters_by_whole_tags_and_unassigned(store) =>
        list_cases_filters_by_whole_tags_and_unassigned_on_sqlite,
        list_cases_filters_by_whole_tags_and_unassigned_on_postgres;
    check_merge_cases_moves_messages_keeps_history_and_makes_old_views_stale(store) =>
        merge_cases_moves_messages_keeps_history_and_makes_old_views_stale_on_sqlite,
        merge_cases_moves_messages_keeps_history_and_makes_old_views_stale_on_postgres;
    check_merge_cases_refuses_itself_other_customers_and_merged_cases(store) =>
        merge_cases_refuses_itself_other_customers_and_merged_cases_on_sqlite,
        merge_cases_refuses_itself_other_customers_and_merged_cases_on_postgres;
    check_related_open_cases_find_the_same_request_across_channels_but_not_unrelated_ones(store) =>
        related_open_cases_find_the_same_request_across_channels_but_not_unrelated_ones_on_sqlite,
        related_open_cases_find_the_same_request_across_channels_but_not_unrelated_ones_on_postgres;
    check_canned_responses_crud_with_unique_shortcuts_and_language_lists(store) =>
        canned_responses_crud_with_unique_shortcuts_and_language_lists_on_sqlite,
        canned_responses_crud_with_unique_shortcuts_and_language_lists_on_postgres;
    check_settings_round_trip_and_reply_only_assignee_defaults_to_off(store) =>
        settings_round_trip_and_reply_only_assignee_defaults_to_off_on_sqlite,
        settings_round_trip_and_reply_only_assignee_defaults_to_off_on_postgres;
    check_small_raw_sources_are_kept_sealed_with_their_message(store) =>
        small_raw_sources_are_kept_sealed_with_their_message_on_sqlite,
        small_raw_sources_are_kept_sealed_with_their_message_on_postgres;
    check_channel_cursors_are_kept_per_source_without_events(store) =>
        channel_cursors_are_kept_per_source_without_events_on_sqlite,
        channel_cursors_are_kept_per_source_without_events_on_postgres;
    check_a_staff_user_can_change_the_password(store) =>
        a_staff_user_can_change_the_password_on_sqlite,
        a_staff_user_can_change_the_password_on_postgres;
    check_bytes_round_trip_unchanged(store) =>
        bytes_round_trip_unchanged_on_sqlite,
        bytes_round_trip_unchanged_on_postgres;
    check_a_job_effect_commits_only_with_the_claim_that_ran_it(store) =>
        a_job_effect_commits_only_with_the_claim_that_ran_it_on_sqlite,
        a_job_effect_commits_only_with_the_claim_that_ran_it_on_postgres;
    check_delivery_reports_only_move_a_message_forward(store) =>
        delivery_reports_only_move_a_message_forward_on_sqlite,
        delivery_reports_only_move_a_message_forward_on_postgres;
    check_a_corrupt_row_is_reported_not_defaulted(store) =>
        a_corrupt_row_is_reported_not_defaulted_on_sqlite,
        a_corrupt_row_is_reported_not_defaulted_on_postgres;
    check_a_corrupt_job_or_user_row_is_reported_not_defaulted(store) =>
        a_corrupt_job_or_user_row_is_reported_not_defaulted_on_sqlite,
        a_corrupt_job_or_user_row_is_reported_not_defaulted_on_postgres;
}

/// PostgreSQL only: a node learns of events committed by another node (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_nodes_events_reach_subscribers_on_postgres() {
    let Some(fx) = Fixture::postgres().await else {
        return;
    };
    let other = fx.open_node().await;
    let mut rx = other.subscribe();
    let r = fx.store().ingest(inbound("fern@example.de", "Hallo vom anderen Knoten")).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| *v >= r.event_id))
        .await
        .map(|seen| seen.map(|v| *v));
    assert!(seen.is_ok(), "node 2 never learned of event {} committed by node 1", r.event_id);
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An inbound API message from the (normalised) e-mail address `from`.
fn inbound(from: &str, text: &str) -> NewInbound {
    let from = normalise_identity(IdentityKind::Email, from, "DE").expect("valid e-mail address");
    NewInbound::text(Channel::Api, IdentityKind::Email, from, text)
}

fn reply(text: &str, based_on_event_id: i64, force: bool) -> NewReply {
    NewReply {
        text: text.to_string(),
        based_on_event_id,
        force,
        channel: None,
        author_id: None,
        only_assignee: false,
        attachments: Vec::new(),
        subject: None,
        cc: Vec::new(),
        public_channels: Vec::new(),
    }
}

/// Every event in the log, oldest first.
async fn all_events(store: &Store) -> Vec<kontor_core::Event> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map(|e: &kontor_core::Event| e.id).unwrap_or(0);
        let page = store.events_after(after, 1000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Every event in the log as stored (payloads by reference, not rendered), oldest first.
async fn stored_events(store: &Store) -> Vec<kontor_core::Event> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map(|e: &kontor_core::Event| e.id).unwrap_or(0);
        let page = store.stored_events_after(after, 1000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

async fn event_count(store: &Store) -> usize {
    all_events(store).await.len()
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(r: Result<T, StoreError>, want_field: &str) {
    match r {
        Err(StoreError::Invalid { field, .. }) if field == want_field => {}
        other => panic!("expected Invalid {{ field: {want_field:?} }}, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::NotFound(_))), "expected NotFound, got {r:?}");
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::Conflict(_))), "expected Conflict, got {r:?}");
}

/// Sends a write to the writer without waiting for it (polls the future once), so that
/// several writes reach the writer in a known order.
async fn submit<F: Future + Unpin>(fut: &mut F) {
    std::future::poll_fn(|cx| {
        let _ = std::pin::Pin::new(&mut *fut).poll(cx);
        Poll::Ready(())
    })
    .await;
}

/// Queues a reply on `case_id` regardless of staleness; returns (message id, job id).
async fn queue_reply(store: &Store, case_id: i64, text: &str) -> (i64, i64) {
    match store.reply(case_id, reply(text, 0, true), vec![Channel::Api]).await.unwrap() {
        ReplyOutcome::Queued { message_id, job_id, .. } => (message_id, job_id),
        other => panic!("forced reply was not queued: {other:?}"),
    }
}

async fn message(store: &Store, case_id: i64, message_id: i64) -> kontor_core::Message {
    store
        .case_detail(case_id)
        .await
        .unwrap()
        .messages
        .into_iter()
        .find(|m| m.id == message_id)
        .unwrap_or_else(|| panic!("message {message_id} not in case {case_id}"))
}

// ---------------------------------------------------------------------------------------------
// Behaviours
// ---------------------------------------------------------------------------------------------

async fn check_inbound_creates_customer_case_message_and_events(store: &Store) {
    assert_eq!(event_count(store).await, 0, "a fresh database has no events");
    let r = store
        .ingest(NewInbound {
            name: Some("Anna Schmidt".into()),
            subject: Some("Umzug".into()),
            ..inbound("Anna.Schmidt@Example.DE", "Hallo, ich ziehe um.")
        })
        .await
        .unwrap();
    assert!(r.created);

    let events = store.events_after(0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["customer.created", "case.created", "message.received"]);
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "event ids grow: {events:?}");
    assert_eq!(events[0].customer_id, Some(r.customer_id));
    assert_eq!(events[1].case_id, Some(r.case_id));
    assert_eq!(events[2].id, r.event_id);
    assert_eq!(events[2].case_id, Some(r.case_id));
    assert_eq!(events[2].payload["message"]["id"].as_i64(), Some(r.message_id));

    let detail = store.case_detail(r.case_id).await.unwrap();
    assert_eq!(detail.case.customer_id, r.customer_id);
    assert_eq!(detail.case.status, CaseStatus::Open);
    assert_eq!(detail.case.priority, Priority::Normal);
    assert_eq!(detail.case.channel, Channel::Api);
    assert_eq!(detail.case.subject.as_deref(), Some("Umzug"));
    assert_eq!(detail.case.last_event_id, r.event_id);
    assert!(detail.case.last_message_at.is_some());
    assert_eq!(detail.customer.name.as_deref(), Some("Anna Schmidt"));
    let ids: Vec<(IdentityKind, &str)> =
        detail.customer.identities.iter().map(|i| (i.kind, i.address.as_str())).collect();
    assert_eq!(ids, [(IdentityKind::Email, "anna.schmidt@example.de")]);
    assert_eq!(detail.messages.len(), 1);
    let m = &detail.messages[0];
    assert_eq!((m.id, m.direction, m.internal), (r.message_id, Direction::In, false));
    assert_eq!(m.text, "Hallo, ich ziehe um.");

    // A second message only appends message.received, with a larger id.
    let r2 = store.ingest(inbound("anna.schmidt@example.de", "Noch eine Frage.")).await.unwrap();
    assert!(r2.created);
    assert!(r2.event_id > r.event_id);
    assert_eq!((r2.customer_id, r2.case_id), (r.customer_id, r.case_id));
    let newer = store.events_after(r.event_id, 100).await.unwrap();
    assert_eq!(newer.iter().map(|e| (e.id, e.kind.as_str())).collect::<Vec<_>>(), [(r2.event_id, "message.received")]);
    assert_eq!(store.max_event_id().await.unwrap(), r2.event_id);
}

async fn check_duplicate_inbound_is_stored_once(store: &Store) {
    let first = store
        .ingest(NewInbound { provider_message_id: Some("prov-1".into()), ..inbound("dup@example.de", "Original") })
        .await
        .unwrap();
    assert!(first.created);
    let events = event_count(store).await;
    let again = store
        .ingest(NewInbound { provider_message_id: Some("prov-1".into()), ..inbound("dup@example.de", "Original") })
        .await
        .unwrap();
    assert_eq!(again, InboundReceipt { created: false, ..first });
    assert_eq!(event_count(store).await, events, "a duplicate appends no events");
    assert_eq!(store.case_detail(first.case_id).await.unwrap().messages.len(), 1);

    // The same key with another text or sender is not a retry: refused, and nothing stored.
    for other in [inbound("dup@example.de", "Redelivery?"), inbound("someone.else@example.de", "Original")] {
        let conflict = store.ingest(NewInbound { provider_message_id: Some("prov-1".into()), ..other }).await;
        assert!(matches!(conflict, Err(StoreError::IdempotencyConflict(_))), "{conflict:?}");
    }
    assert_eq!(event_count(store).await, events, "a refused message appends no events");

    // Keys belong to their sending client: another client's "prov-1" is its own message.
    let other_client = store
        .ingest(NewInbound {
            provider_message_id: Some("prov-1".into()),
            idempotency_scope: "token:other".into(),
            ..inbound("dup@example.de", "Original")
        })
        .await
        .unwrap();
    assert!(other_client.created, "another client's key is not swallowed");
    assert_ne!(other_client.message_id, first.message_id);

    let keyed = store
        .ingest(NewInbound { idempotency_key: Some("key-1".into()), ..inbound("dup@example.de", "Mit Schlüssel") })
        .await
        .unwrap();
    assert!(keyed.created);
    assert_ne!(keyed.message_id, first.message_id);
    let events = event_count(store).await;
    let again = store
        .ingest(NewInbound { idempotency_key: Some("key-1".into()), ..inbound("dup@example.de", "Mit Schlüssel") })
        .await
        .unwrap();
    assert_eq!(again, InboundReceipt { created: false, ..keyed });
    assert_eq!(event_count(store).await, events);
    assert_eq!(store.case_detail(first.case_id).await.unwrap().messages.len(), 3);

    // Keys are scoped to the channel.
    let other_channel = store
        .ingest(NewInbound {
            channel: Channel::Email,
            idempotency_key: Some("key-1".into()),
            ..inbound("dup@example.de", "Per E-Mail")
        })
        .await
        .unwrap();
    assert!(other_channel.created);
    assert_ne!(other_channel.message_id, keyed.message_id);
}

async fn check_email_identity_threads_reopens_and_starts_new_cases(store: &Store) {
    let a = store.ingest(inbound("Kunde@Beispiel.de", "eins")).await.unwrap();
    let b = store.ingest(inbound(" kunde@BEISPIEL.DE ", "zwei")).await.unwrap();
    assert!(b.created);
    assert_ne!(b.message_id, a.message_id);
    assert_eq!((b.customer_id, b.case_id), (a.customer_id, a.case_id), "same address, same open case");

    let resolved = store
        .patch_case(a.case_id, CasePatch { status: Some(CaseStatus::Resolved), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(resolved.status, CaseStatus::Resolved);
    assert!(resolved.resolved_at.is_some());

    let c = store.ingest(inbound("kunde@beispiel.de", "drei")).await.unwrap();
    assert_eq!(c.case_id, a.case_id, "a recently resolved case takes the message");
    let case = store.case_detail(a.case_id).await.unwrap().case;
    assert_eq!(case.status, CaseStatus::Open, "and is open again");
    assert_eq!(case.resolved_at, None);
    assert_eq!(case.last_event_id, c.event_id);
    let reopened = store.events_after(resolved.last_event_id, 100).await.unwrap();
    assert!(
        reopened.iter().any(|e| e.kind == "case.updated" && e.payload["changes"]["status"] == "open"),
        "re-opening appends case.updated: {reopened:?}"
    );

    store.patch_case(a.case_id, CasePatch { status: Some(CaseStatus::Closed), ..Default::default() }).await.unwrap();
    let d = store.ingest(inbound("kunde@beispiel.de", "vier")).await.unwrap();
    assert_eq!(d.customer_id, a.customer_id);
    assert_ne!(d.case_id, a.case_id, "a closed case is never re-opened");
    assert_eq!(store.case_detail(a.case_id).await.unwrap().case.status, CaseStatus::Closed);
    assert_eq!(store.case_detail(d.case_id).await.unwrap().case.status, CaseStatus::Open);
}

async fn check_explicit_case_id_must_exist_and_belong_to_the_customer(store: &Store) {
    let anna = store.ingest(inbound("anna@example.de", "Anna")).await.unwrap();
    let bob = store.ingest(inbound("bob@example.de", "Bob")).await.unwrap();
    let events = event_count(store).await;

    let foreign = store.ingest(NewInbound { case_id: Some(anna.case_id), ..inbound("bob@example.de", "x") }).await;
    assert_not_found(foreign);
    // An unknown case is answered like another customer's: nothing tells them apart.
    let unknown =
        store.ingest(NewInbound { case_id: Some(anna.case_id + 10_000), ..inbound("carl@example.de", "y") }).await;
    assert_not_found(unknown);
    assert_eq!(event_count(store).await, events, "rejected messages leave nothing behind");
    let customers = store.list_customers(None, 100).await.unwrap().items;
    assert_eq!(customers.len(), 2, "no customer was created for the rejected message: {customers:?}");

    // The customer's own case is accepted, and re-opened if it was closed.
    store.patch_case(bob.case_id, CasePatch { status: Some(CaseStatus::Closed), ..Default::default() }).await.unwrap();
    let own = store.ingest(NewInbound { case_id: Some(bob.case_id), ..inbound("bob@example.de", "z") }).await.unwrap();
    assert_eq!(own.case_id, bob.case_id);
    assert_eq!(store.case_detail(bob.case_id).await.unwrap().case.status, CaseStatus::Open);
}

async fn check_list_cases_filters_and_pages_through_every_case_once(store: &Store) {
    let mut receipts = Vec::new();
    for i in 0..5 {
        let channel = if i % 2 == 1 { Channel::Email } else { Channel::Api };
        let msg = NewInbound { channel, ..inbound(&format!("liste{i}@example.de"), &format!("Fall {i}")) };
        receipts.push(store.ingest(msg).await.unwrap());
    }
    for r in &receipts[..2] {
        store
            .patch_case(r.case_id, CasePatch { status: Some(CaseStatus::Resolved), ..Default::default() })
            .await
            .unwrap();
    }
    let case_ids = |items: &[kontor_core::Case]| items.iter().map(|c| c.id).collect::<HashSet<_>>();
    let filter = |f: CaseFilter| CaseFilter { limit: 50, ..f };

    let resolved =
        store.list_cases(filter(CaseFilter { status: Some(CaseStatus::Resolved), ..Default::default() })).await;
    assert_eq!(case_ids(&resolved.unwrap().items), HashSet::from([receipts[0].case_id, receipts[1].case_id]));
    let open = store.list_cases(filter(CaseFilter { status: Some(CaseStatus::Open), ..Default::default() })).await;
    assert_eq!(open.unwrap().items.len(), 3);
    let by_customer = store
        .list_cases(filter(CaseFilter { customer_id: Some(receipts[2].customer_id), ..Default::default() }))
        .await
        .unwrap();
    assert_eq!(by_customer.items.iter().map(|c| c.id).collect::<Vec<_>>(), [receipts[2].case_id]);
    let by_email = store.list_cases(filter(CaseFilter { channel: Some(Channel::Email), ..Default::default() })).await;
    assert_eq!(case_ids(&by_email.unwrap().items), HashSet::from([receipts[1].case_id, receipts[3].case_id]));
    let resolved_api = store
        .list_cases(filter(CaseFilter {
            status: Some(CaseStatus::Resolved),
            channel: Some(Channel::Api),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(case_ids(&resolved_api.items), HashSet::from([receipts[0].case_id]));

    // Pages of two: every case exactly once, in the order of the unpaged list.
    let everything = store.list_cases(filter(CaseFilter::default())).await.unwrap();
    assert_eq!(everything.items.len(), 5);
    assert_eq!(everything.next_cursor, None);
    let mut paged = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page =
            store.list_cases(CaseFilter { cursor: cursor.take(), limit: 2, ..Default::default() }).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        paged.extend(page.items.iter().map(|c| c.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, everything.items.iter().map(|c| c.id).collect::<Vec<_>>());

    // Pages respect filters too.
    let mut open_paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_cases(CaseFilter {
                status: Some(CaseStatus::Open),
                cursor: cursor.take(),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        open_paged.extend(page.items.iter().map(|c| c.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(open_paged.len(), 3);
    assert_eq!(
        open_paged.iter().copied().collect::<HashSet<_>>(),
        HashSet::from([receipts[2].case_id, receipts[3].case_id, receipts[4].case_id])
    );

    let bad = store.list_cases(CaseFilter { cursor: Some("garbage".into()), limit: 2, ..Default::default() }).await;
    assert_invalid(bad, "cursor");
}

async fn check_patch_case_validates_normalises_tags_and_appends_event(store: &Store) {
    let r = store.ingest(inbound("patch@example.de", "Bitte zuordnen")).await.unwrap();
    let events = event_count(store).await;
    let unknown_user = store.patch_case(r.case_id, CasePatch { assignee_id: Some(Some(9_999)), ..Default::default() });
    assert_invalid(unknown_user.await, "assignee_id");
    let unknown_team = store.patch_case(r.case_id, CasePatch { team_id: Some(Some(9_999)), ..Default::default() });
    assert_invalid(unknown_team.await, "team_id");
    assert_not_found(store.patch_case(r.case_id + 10_000, CasePatch::default()).await);
    assert_eq!(event_count(store).await, events, "rejected patches append nothing");

    let team = store.create_team("Vertrieb".into()).await.unwrap();
    let user = store
        .create_user("agentin@example.de".into(), "Agentin".into(), Role::Agent, "sehr geheim 123".into())
        .await
        .unwrap();
    let tags = [" vip", "umzug", "vip", "", "b2b ", "umzug"].map(String::from).to_vec();
    let case = store
        .patch_case(
            r.case_id,
            CasePatch {
                priority: Some(Priority::High),
                assignee_id: Some(Some(user.id)),
                team_id: Some(Some(team.id)),
                tags: Some(tags),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(case.tags, ["b2b", "umzug", "vip"]);
    assert_eq!(case.priority, Priority::High);
    assert_eq!((case.assignee_id, case.team_id), (Some(user.id), Some(team.id)));

    let last = store.events_after(case.last_event_id - 1, 10).await.unwrap();
    let ev = &last[0];
    assert_eq!((ev.id, ev.kind.as_str(), ev.case_id), (case.last_event_id, "case.updated", Some(r.case_id)));
    let changes = &ev.payload["changes"];
    assert_eq!(changes["tags"], serde_json::json!(["b2b", "umzug", "vip"]));
    assert_eq!(changes["priority"], "high");
    assert_eq!(changes["assignee_id"], user.id);
    assert_eq!(changes["team_id"], team.id);
    assert!(changes.get("status").is_none(), "only real changes are listed: {changes}");
    assert_eq!(store.case_detail(r.case_id).await.unwrap().case, case);

    // Nothing changed: no event.
    let events = event_count(store).await;
    let same = CasePatch { tags: Some(vec!["vip".into(), "b2b".into(), "umzug".into()]), ..Default::default() };
    let unchanged = store.patch_case(r.case_id, same).await.unwrap();
    assert_eq!(unchanged.last_event_id, case.last_event_id);
    assert_eq!(event_count(store).await, events);

    // Clearing a field.
    let cleared =
        store.patch_case(r.case_id, CasePatch { assignee_id: Some(None), ..Default::default() }).await.unwrap();
    assert_eq!(cleared.assignee_id, None);
    let ev = store.events_after(cleared.last_event_id - 1, 1).await.unwrap().remove(0);
    assert_eq!(ev.kind, "case.updated");
    assert!(ev.payload["changes"]["assignee_id"].is_null());
}

async fn check_reply_detects_stale_views_and_queues_delivery(store: &Store) {
    let first = store.ingest(inbound("reply@example.de", "Wann kommt meine Lieferung?")).await.unwrap();
    let second = store.ingest(inbound("reply@example.de", "Bitte an die neue Adresse liefern!")).await.unwrap();
    assert_eq!(second.case_id, first.case_id);
    let case_id = first.case_id;

    let stale = store.reply(case_id, reply("Morgen.", first.event_id, false), vec![Channel::Api]).await.unwrap();
    match stale {
        ReplyOutcome::Stale { events, messages } => {
            assert!(events.iter().any(|e| e.id == second.event_id), "{events:?}");
            assert!(events.iter().all(|e| e.id > first.event_id));
            assert!(
                messages.iter().any(|m| m.id == second.message_id && m.text == "Bitte an die neue Adresse liefern!"),
                "the stale outcome shows the newer message: {messages:?}"
            );
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    assert_eq!(store.queue_stats().await.unwrap().queued, 0, "a stale reply queues nothing");
    assert_eq!(store.case_detail(case_id).await.unwrap().messages.len(), 2, "a stale reply stores nothing");

    let forced = store.reply(case_id, reply("Morgen.", first.event_id, true), vec![Channel::Api]).await.unwrap();
    let ReplyOutcome::Queued { message_id, event_id, job_id, channel } = forced else {
        panic!("expected Queued, got {forced:?}")
    };
    assert_eq!(channel, Channel::Api);
    assert!(job_id > 0);
    assert_eq!(store.queue_stats().await.unwrap().queued, 1);
    let detail = store.case_detail(case_id).await.unwrap();
    assert_eq!(detail.case.last_event_id, event_id);
    assert!(detail.case.first_response_at.is_some());
    let out = detail.messages.iter().find(|m| m.id == message_id).expect("reply stored");
    assert_eq!((out.direction, out.internal, out.delivery_state), (Direction::Out, false, Some(DeliveryState::Queued)));
    assert_eq!(out.text, "Morgen.");

    // A view that saw the newest event is current (the agent's own reply does not make it stale).
    let fresh = store.reply(case_id, reply("Und noch etwas.", event_id, false), vec![Channel::Api]).await.unwrap();
    let ReplyOutcome::Queued { event_id: fresh_event, .. } = fresh else { panic!("expected Queued, got {fresh:?}") };
    assert_eq!(store.queue_stats().await.unwrap().queued, 2);

    // An internal note is part of the conversation too.
    store.add_note(CaseId(case_id), "Achtung: Adresse geändert".into(), None).await.unwrap();
    let after_note = store.reply(case_id, reply("Noch was.", fresh_event, false), vec![Channel::Api]).await.unwrap();
    assert!(matches!(after_note, ReplyOutcome::Stale { .. }), "{after_note:?}");

    // Channels without an outbound adapter are refused.
    let sms = NewReply { channel: Some(Channel::Sms), ..reply("SMS?", 0, true) };
    assert_invalid(store.reply(case_id, sms, vec![Channel::Api]).await, "channel");
    assert_invalid(store.reply(case_id, reply("Default?", 0, true), vec![Channel::Email]).await, "channel");
    assert_eq!(store.queue_stats().await.unwrap().queued, 2);
    assert_not_found(store.reply(case_id + 10_000, reply("?", 0, true), vec![Channel::Api]).await);
}

async fn check_jobs_are_leased_retried_dead_lettered_and_finished(store: &Store) {
    let r = store.ingest(inbound("jobs@example.de", "Bitte antworten")).await.unwrap();
    let case_id = r.case_id;
    let lease = 30_000;

    // Claimed once; a retry waits for its time.
    let (msg_a, job_a) = queue_reply(store, case_id, "A").await;
    let claimed = store.claim_jobs("node-a".into(), 10, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let job = &claimed[0];
    assert_eq!((job.id, job.kind.as_str(), job.attempts), (job_a, "deliver_message", 1));
    assert_eq!(job.payload["message_id"].as_i64(), Some(msg_a));
    assert!(
        store.claim_jobs("node-b".into(), 10, lease).await.unwrap().is_empty(),
        "leased jobs are not claimed again"
    );
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.queued, stats.running), (0, 1));
    assert!(
        !store.finish_job(job_a, "node-b".into(), JobOutcome::Done, None).await.unwrap(),
        "only the lease holder finishes"
    );
    let retry = JobOutcome::Retry { error: "timeout".into(), delay_ms: 60_000 };
    assert!(store.finish_job(job_a, "node-a".into(), retry, None).await.unwrap());
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.queued, stats.running), (1, 0));
    assert!(store.claim_jobs("node-a".into(), 10, lease).await.unwrap().is_empty(), "the retry is not due yet");
    assert_eq!(message(store, case_id, msg_a).await.delivery_state, Some(DeliveryState::Queued));

    // Fail: dead letter, and the message shows the failure.
    let (msg_b, job_b) = queue_reply(store, case_id, "B").await;
    let claimed = store.claim_jobs("node-a".into(), 10, lease).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [job_b]);
    let update =
        DeliveryUpdate { message_id: msg_b, state: DeliveryState::Sent, error: None, provider_message_id: None };
    let fail = JobOutcome::Fail { error: "address rejected".into() };
    assert!(store.finish_job(job_b, "node-a".into(), fail, Some(update.into_effect())).await.unwrap());
    let m = message(store, case_id, msg_b).await;
    assert_eq!(m.delivery_state, Some(DeliveryState::Failed));
    assert_eq!(m.delivery_error.as_deref(), Some("address rejected"));
    assert_eq!(store.queue_stats().await.unwrap().dead, 1);
    let last = store.events_after(store.max_event_id().await.unwrap() - 1, 1).await.unwrap().remove(0);
    assert_eq!(last.kind, "message.delivery");
    assert_eq!((last.payload["message_id"].as_i64(), last.payload["state"].as_str()), (Some(msg_b), Some("failed")));
    // The reason is rendered from the message; the stored event holds no provider text.
    assert_eq!(last.payload["error"], "address rejected");
    let stored = store.stored_events_after(last.id - 1, 1).await.unwrap().remove(0);
    assert!(stored.payload.get("error").is_none(), "{}", stored.payload);

    // Done with a delivery update.
    let (msg_c, job_c) = queue_reply(store, case_id, "C").await;
    let claimed = store.claim_jobs("node-a".into(), 10, lease).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [job_c]);
    let sent = DeliveryUpdate {
        message_id: msg_c,
        state: DeliveryState::Sent,
        error: None,
        provider_message_id: Some("prov-out-1".into()),
    };
    assert!(store.finish_job(job_c, "node-a".into(), JobOutcome::Done, Some(sent.into_effect())).await.unwrap());
    let m = message(store, case_id, msg_c).await;
    assert_eq!(m.delivery_state, Some(DeliveryState::Sent));
    assert_eq!(m.provider_message_id.as_deref(), Some("prov-out-1"));
    assert!(!store.finish_job(job_c, "node-a".into(), JobOutcome::Done, None).await.unwrap(), "finished only once");

    // An expired lease lets another node take over; the first node can no longer finish.
    let (_msg_d, job_d) = queue_reply(store, case_id, "D").await;
    let claimed = store.claim_jobs("node-a".into(), 10, -1).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [job_d]);
    let taken = store.claim_jobs("node-b".into(), 10, lease).await.unwrap();
    assert_eq!(taken.iter().map(|j| (j.id, j.attempts)).collect::<Vec<_>>(), [(job_d, 2)]);
    assert!(!store.finish_job(job_d, "node-a".into(), JobOutcome::Done, None).await.unwrap());
    assert!(store.finish_job(job_d, "node-b".into(), JobOutcome::Done, None).await.unwrap());

    // Retries stop after max_attempts.
    let (msg_e, job_e) = queue_reply(store, case_id, "E").await;
    let mut attempts = 0;
    loop {
        let claimed = store.claim_jobs("node-a".into(), 10, lease).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [job_e]);
        attempts = claimed[0].attempts;
        assert!(attempts <= claimed[0].max_attempts);
        let update =
            DeliveryUpdate { message_id: msg_e, state: DeliveryState::Sent, error: None, provider_message_id: None };
        let retry = JobOutcome::Retry { error: "503".into(), delay_ms: 0 };
        assert!(store.finish_job(job_e, "node-a".into(), retry, Some(update.into_effect())).await.unwrap());
        assert!(attempts < 100, "retries never end");
    }
    assert_eq!(attempts, 8, "a reply's delivery is tried eight times");
    let m = message(store, case_id, msg_e).await;
    assert_eq!((m.delivery_state, m.delivery_error.as_deref()), (Some(DeliveryState::Failed), Some("503")));

    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.queued, stats.running, stats.dead, stats.done), (1, 0, 2, 2));
}

async fn check_notes_are_internal_messages_with_an_event(store: &Store) {
    let r = store.ingest(inbound("notiz@example.de", "Hallo")).await.unwrap();
    let author = store
        .create_user("notizen@example.de".into(), "Nora".into(), Role::Agent, "sehr geheim 123".into())
        .await
        .unwrap();
    let (note, ev) = store.add_note(CaseId(r.case_id), "Kunde ist VIP".into(), Some(UserId(author.id))).await.unwrap();
    assert!(note.internal);
    assert_eq!((note.channel, note.direction, note.case_id), (Channel::Note, Direction::Out, r.case_id));
    assert_eq!((note.author_id, note.text.as_str()), (Some(author.id), "Kunde ist VIP"));

    let detail = store.case_detail(r.case_id).await.unwrap();
    assert_eq!(detail.messages.iter().map(|m| m.id).collect::<Vec<_>>(), [r.message_id, note.id]);
    assert_eq!(detail.messages[1], note);
    assert_eq!(detail.case.last_event_id, ev);

    let event = store.events_after(ev - 1, 1).await.unwrap().remove(0);
    assert_eq!((event.id, event.kind.as_str(), event.case_id), (ev, "note.added", Some(r.case_id)));
    assert_eq!(event.payload["message"]["id"].as_i64(), Some(note.id));
    assert_eq!(event.payload["message"]["internal"], true);

    assert_not_found(store.add_note(CaseId(r.case_id + 10_000), "?".into(), None).await);
}

async fn check_identities_conflict_and_merge_moves_everything(store: &Store) {
    let anna =
        store.ingest(NewInbound { name: Some("Anna".into()), ..inbound("anna@example.de", "Von Anna") }).await.unwrap();
    let anne = store
        .ingest(NewInbound { name: Some("Anne B.".into()), ..inbound("anne.b@example.org", "Von Anne") })
        .await
        .unwrap();
    assert_ne!(anna.customer_id, anne.customer_id);

    let taken =
        store.add_identity(CustomerId(anna.customer_id), IdentityKind::Email, "anne.b@example.org".into()).await;
    assert_conflict(taken);
    let phone = normalise_identity(IdentityKind::Phone, "0170 1234567", "DE").unwrap();
    let with_phone =
        store.add_identity(CustomerId(anna.customer_id), IdentityKind::Phone, phone.clone()).await.unwrap();
    assert_eq!(with_phone.identities.len(), 2);
    let again = store.add_identity(CustomerId(anna.customer_id), IdentityKind::Phone, phone.clone()).await.unwrap();
    assert_eq!(again.identities.len(), 2, "adding an own identity again changes nothing");
    assert_not_found(
        store.add_identity(CustomerId(anna.customer_id + 10_000), IdentityKind::Phone, "+4930123456".into()).await,
    );
    assert_invalid(
        store.merge_customers(CustomerId(anna.customer_id), CustomerId(anna.customer_id)).await,
        "source_id",
    );

    let merged = store.merge_customers(CustomerId(anna.customer_id), CustomerId(anne.customer_id)).await.unwrap();
    let mut addresses: Vec<&str> = merged.identities.iter().map(|i| i.address.as_str()).collect();
    addresses.sort();
    assert_eq!(addresses, ["+491701234567", "anna@example.de", "anne.b@example.org"]);
    assert!(merged.identities.iter().all(|i| i.customer_id == anna.customer_id));
    assert_eq!(merged.merged_into, None);

    let source = store.customer(anne.customer_id).await.unwrap();
    assert_eq!(source.merged_into, Some(anna.customer_id));
    assert!(source.identities.is_empty());
    let moved = store.case_detail(anne.case_id).await.unwrap();
    assert_eq!(moved.case.customer_id, anna.customer_id);
    assert!(moved.messages.iter().all(|m| m.customer_id == anna.customer_id));
    let target_cases = store
        .list_cases(CaseFilter { customer_id: Some(anna.customer_id), limit: 50, ..Default::default() })
        .await
        .unwrap();
    let target_case_ids: HashSet<i64> = target_cases.items.iter().map(|c| c.id).collect();
    assert_eq!(target_case_ids, HashSet::from([anna.case_id, anne.case_id]));
    let source_cases = store
        .list_cases(CaseFilter { customer_id: Some(anne.customer_id), limit: 50, ..Default::default() })
        .await
        .unwrap();
    assert!(source_cases.items.is_empty());
    let listed: Vec<i64> = store.list_customers(None, 100).await.unwrap().items.iter().map(|c| c.id).collect();
    assert_eq!(listed, [anna.customer_id], "merged customers are not listed");
    let last = store.events_after(store.max_event_id().await.unwrap() - 1, 1).await.unwrap().remove(0);
    assert_eq!((last.kind.as_str(), last.customer_id), ("customer.merged", Some(anna.customer_id)));
    assert_eq!(last.payload["merged_customer_id"].as_i64(), Some(anne.customer_id));

    assert_conflict(store.merge_customers(CustomerId(anna.customer_id), CustomerId(anne.customer_id)).await);

    let later = store.ingest(inbound("Anne.B@example.org", "Ich bin es wieder")).await.unwrap();
    assert!(later.created);
    assert_eq!(later.customer_id, anna.customer_id, "the source's address now leads to the target");
    assert!(target_case_ids.contains(&later.case_id), "threaded into one of the target's open cases");
}

async fn check_search_finds_german_words_prefixes_and_customers_with_escaped_snippets(store: &Store) {
    let hit = store
        .ingest(NewInbound {
            name: Some("Dorothea Krüger & Söhne".into()),
            subject: Some("Adressänderung".into()),
            ..inbound("d.krueger@example.de", "Bitte liefern Sie an die <b>Goethestraße</b> 12 & danke.")
        })
        .await
        .unwrap();
    let other = store.ingest(inbound("other@example.de", "Keine Adresse in dieser Nachricht.")).await.unwrap();

    for q in ["Goethestraße", "goethestraße", "Goethe"] {
        let res = store.search(q.into(), 10).await.unwrap();
        let ids: Vec<i64> = res.messages.iter().map(|m| m.message_id).collect();
        assert_eq!(ids, [hit.message_id], "search {q:?}: {res:?}");
        let m = &res.messages[0];
        assert_eq!((m.case_id, m.customer_id), (hit.case_id, hit.customer_id));
        assert!(m.snippet.contains("<mark>") && m.snippet.contains("</mark>"), "search {q:?}: {}", m.snippet);
        assert!(!m.snippet.contains("<b>"), "no raw HTML from the text: {}", m.snippet);
        assert!(
            m.snippet.contains("&lt;b&gt;") && m.snippet.contains("&lt;/b&gt;"),
            "text that looks like HTML is shown escaped, not dropped: {}",
            m.snippet
        );
    }
    let both = store.search("Adresse".into(), 10).await.unwrap();
    assert!(both.messages.iter().any(|m| m.message_id == other.message_id), "{both:?}");
    assert!(store.search("Schillerstraße".into(), 10).await.unwrap().messages.is_empty());
    let empty = store.search(" -- ".into(), 10).await.unwrap();
    assert!(empty.messages.is_empty() && empty.customers.is_empty());

    let res = store.search("Krüger".into(), 10).await.unwrap();
    let customers: Vec<i64> = res.customers.iter().map(|c| c.customer_id).collect();
    assert_eq!(customers, [hit.customer_id], "{res:?}");
    let c = &res.customers[0];
    assert_eq!(c.name.as_deref(), Some("Dorothea Krüger & Söhne"));
    assert!(c.snippet.contains("<mark>"), "{}", c.snippet);
    assert!(c.snippet.contains("&amp;") && !c.snippet.contains(" & "), "the name is escaped: {}", c.snippet);
    let by_prefix = store.search("doro".into(), 10).await.unwrap();
    assert_eq!(by_prefix.customers.iter().map(|c| c.customer_id).collect::<Vec<_>>(), [hit.customer_id]);
}

async fn check_subscribers_see_the_new_event_id(store: &Store) {
    let mut rx = store.subscribe();
    let start = *rx.borrow_and_update();
    let r = store.ingest(inbound("watch@example.de", "Beobachtet")).await.unwrap();
    assert!(r.event_id > start);
    let seen = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|v| *v >= r.event_id))
        .await
        .map(|seen| seen.map(|v| *v));
    assert!(seen.is_ok(), "the watch never reached event {}", r.event_id);
    assert_eq!(*rx.borrow(), r.event_id);
    assert_eq!(store.latest_event_id(), r.event_id);

    let mut rx2 = store.subscribe();
    assert_eq!(*rx2.borrow_and_update(), r.event_id, "a new subscriber starts at the newest event");
    let (note, ev) = store.add_note(CaseId(r.case_id), "Notiz".into(), None).await.unwrap();
    assert!(ev > r.event_id && note.internal);
    let seen =
        tokio::time::timeout(Duration::from_secs(5), rx2.wait_for(|v| *v >= ev)).await.map(|seen| seen.map(|v| *v));
    assert!(seen.is_ok(), "the watch never reached event {ev}");
}

/// Read-your-writes for the node's event watch: once a write has returned, the node's newest
/// known event id includes it (otherwise a client that takes `latest_event_id()` as its view
/// right after its own reply is told that its next reply is stale).
async fn check_latest_event_id_includes_a_write_once_it_returns(store: &Store) {
    let mut behind = Vec::new();
    for i in 0..300 {
        let r = store.ingest(inbound(&format!("neu{}@example.de", i % 5), &format!("Nachricht {i}"))).await.unwrap();
        let latest = store.latest_event_id();
        if latest < r.event_id {
            behind.push((r.event_id, latest));
        }
    }
    assert!(
        behind.is_empty(),
        "latest_event_id() was behind a returned write {} of 300 times, (event, latest): {:?}",
        behind.len(),
        &behind[..behind.len().min(5)]
    );
}

async fn check_tokens_and_passwords_authenticate(store: &Store) {
    let (token, secret) = store.create_token("ci".into(), Role::Admin).await.unwrap();
    assert_eq!((token.name.as_str(), token.role), ("ci", Role::Admin));
    assert!(secret.starts_with("kt_"));
    assert_eq!(store.authenticate_token(&secret).await.unwrap(), Some((token.id, Role::Admin)));
    assert_eq!(store.authenticate_token("kt_wrong").await.unwrap(), None);
    assert_eq!(store.authenticate_token(&format!("{secret}x")).await.unwrap(), None);
    let (agent_token, agent_secret) = store.create_token("bot".into(), Role::Agent).await.unwrap();
    assert_eq!(store.authenticate_token(&agent_secret).await.unwrap(), Some((agent_token.id, Role::Agent)));
    assert_invalid(store.create_token("  ".into(), Role::Agent).await, "name");

    let user = store
        .create_user(" Agent.Smith@Example.DE ".into(), "Agent Smith".into(), Role::Agent, "correct horse".into())
        .await
        .unwrap();
    assert_eq!((user.email.as_str(), user.role), ("agent.smith@example.de", Role::Agent));
    let ok = store.verify_password("agent.smith@example.de".into(), "correct horse".into()).await.unwrap();
    assert_eq!(ok.map(|u| u.id), Some(user.id));
    let ok = store.verify_password("AGENT.SMITH@example.de".into(), "correct horse".into()).await.unwrap();
    assert_eq!(ok.map(|u| u.id), Some(user.id), "e-mail is case-insensitive");
    assert_eq!(store.verify_password("agent.smith@example.de".into(), "Correct horse".into()).await.unwrap(), None);
    assert_eq!(store.verify_password("nobody@example.de".into(), "correct horse".into()).await.unwrap(), None);

    let dup = store.create_user("AGENT.smith@example.de".into(), "Other".into(), Role::Admin, "another one".into());
    assert_conflict(dup.await);
    let short = store.create_user("new@example.de".into(), "New".into(), Role::Agent, "short".into());
    assert_invalid(short.await, "password");
    let bad = store.create_user("not-an-address".into(), "X".into(), Role::Agent, "long enough".into());
    assert_invalid(bad.await, "email");
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

async fn check_concurrent_ingests_are_all_stored_once(store: &Store) {
    async fn run(store: &Store) -> Vec<InboundReceipt> {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let msg = NewInbound {
                        provider_message_id: Some(format!("conc-{i}")),
                        ..inbound(&format!("kunde{}@example.de", i % 20), &format!("Nachricht {i}"))
                    };
                    store.ingest(msg).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            out.push(t.await.expect("task").unwrap_or_else(|e| panic!("ingest {i} failed: {e}")));
        }
        out
    }

    let first = run(store).await;
    assert!(first.iter().all(|r| r.created));
    assert_eq!(first.iter().map(|r| r.message_id).collect::<HashSet<_>>().len(), 200);
    assert_eq!(first.iter().map(|r| r.event_id).collect::<HashSet<_>>().len(), 200);
    let mut case_of: HashMap<i64, i64> = HashMap::new();
    for r in &first {
        let case = *case_of.entry(r.customer_id).or_insert(r.case_id);
        assert_eq!(case, r.case_id, "all messages of a customer thread into one case");
    }
    assert_eq!(case_of.len(), 20, "one customer per address");
    let customers_of_address: HashSet<(usize, i64)> =
        first.iter().enumerate().map(|(i, r)| (i % 20, r.customer_id)).collect();
    assert_eq!(customers_of_address.len(), 20);
    let events = all_events(store).await;
    assert_eq!(events.len(), 20 + 20 + 200, "customer.created, case.created and message.received");
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));

    let second = run(store).await;
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(*b, InboundReceipt { created: false, ..*a });
    }
    assert_eq!(event_count(store).await, events.len(), "duplicates append nothing");
}

/// Keeps the writer busy for `ms` so that the writes submitted meanwhile form one batch.
async fn park_writer(store: &Store, ms: u64) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let store = store.clone();
    let parked = tokio::spawn(async move {
        store
            .write(move |_tx| {
                std::thread::sleep(Duration::from_millis(ms));
                Ok(())
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    parked
}

/// Inbound messages that arrive together are stored by one bulk operation; the outcome must
/// be what storing them one by one would give: threading, re-opening, duplicates inside the
/// batch and against earlier messages, events in order, search index.
async fn check_one_batch_of_inbound_messages_follows_the_single_message_rules(store: &Store) {
    let keyed = |from: &str, text: &str, key: &str| NewInbound {
        provider_message_id: Some(key.to_string()),
        name: Some(format!("Name {from}")),
        subject: Some(format!("Betreff {key}")),
        ..inbound(from, text)
    };
    // Before: A has an open case, R a resolved one, C a closed one.
    let a0 = store.ingest(keyed("a@example.de", "A erste", "pre-a")).await.expect("a");
    let r0 = store.ingest(keyed("r@example.de", "R erste", "pre-r")).await.expect("r");
    store
        .patch_case(r0.case_id, CasePatch { status: Some(CaseStatus::Resolved), ..Default::default() })
        .await
        .expect("resolve");
    let c0 = store.ingest(keyed("c@example.de", "C erste", "pre-c")).await.expect("c");
    store
        .patch_case(c0.case_id, CasePatch { status: Some(CaseStatus::Closed), ..Default::default() })
        .await
        .expect("close");
    let before = all_events(store).await.last().map(|e| e.id).unwrap_or(0);
    let stats_before = store.writer_stats();

    // Park the writer so that everything below lands in one batch.
    let parked = park_writer(store, 300).await;
    let batch = vec![
        keyed("a@example.de", "A erste", "pre-a"), // 0: duplicate of an earlier message
        keyed("n@example.de", "Neukundin Wärmepumpe", "n-1"), // 1: new customer
        keyed("n@example.de", "Neukundin zweite", "n-2"), // 2: same new customer
        keyed("n@example.de", "Neukundin Wärmepumpe", "n-1"), // 3: duplicate inside the batch
        keyed("a@example.de", "A zweite", "a-2"),  // 4: existing open case
        keyed("r@example.de", "R zweite", "r-2"),  // 5: re-opens the resolved case
        inbound("c@example.de", "C zweite ohne Schlüssel"), // 6: closed case: a new one
        NewInbound { idempotency_key: Some("idem-7".into()), ..inbound("k@example.de", "mit Idempotency-Key") },
        keyed("x@example.de", "A erste", "pre-a"), // 8: a known key with another sender
        keyed("n@example.de", "Anderer Text", "n-1"), // 9: a key of this batch with another text
    ];
    // Submitted in this order (polling a future once queues it), so "first" is well defined.
    let mut pending: Vec<_> = batch.iter().cloned().map(|m| Box::pin(store.ingest(m))).collect();
    for p in pending.iter_mut() {
        submit(p).await;
    }
    let mut got = Vec::new();
    let mut refused = Vec::new();
    for (i, p) in pending.into_iter().enumerate() {
        match p.await {
            Ok(r) => got.push(r),
            Err(e) => refused.push((i, e)),
        }
    }
    parked.await.expect("task").expect("parked write");
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused.iter().zip([8, 9]).all(|((i, e), want)| *i == want && matches!(e, StoreError::IdempotencyConflict(_))),
        "keys reused for other messages are refused one by one: {refused:?}"
    );
    let stats = store.writer_stats();
    assert_eq!(stats.bulk_messages - stats_before.bulk_messages, 10, "the batch went through the bulk path");
    assert_eq!(stats.bulk_fallbacks, stats_before.bulk_fallbacks, "the bulk path did not fall back");

    assert_eq!(got[0], InboundReceipt { created: false, ..a0 });
    assert!(got[1].created && got[2].created && got[4].created && got[5].created && got[6].created && got[7].created);
    assert_eq!((got[1].customer_id, got[1].case_id), (got[2].customer_id, got[2].case_id));
    assert_eq!(got[3], InboundReceipt { created: false, ..got[1] });
    assert_ne!(got[1].customer_id, a0.customer_id);
    assert_eq!((got[4].customer_id, got[4].case_id), (a0.customer_id, a0.case_id));
    assert_eq!(got[5].case_id, r0.case_id);
    assert_ne!(got[6].case_id, c0.case_id);
    assert_eq!(got[6].customer_id, c0.customer_id);

    let events: Vec<_> = all_events(store).await.into_iter().filter(|e| e.id > before).collect();
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    let received: Vec<_> = events.iter().filter(|e| e.kind == "message.received").collect();
    assert_eq!(received.len(), 6, "one message.received per stored message");
    for r in got.iter().filter(|r| r.created) {
        let e = events.iter().find(|e| e.id == r.event_id).expect("receipt event exists");
        assert_eq!(e.kind, "message.received");
        assert_eq!(e.payload["message"]["id"], r.message_id);
        assert_eq!(e.case_id, Some(r.case_id));
    }
    let first_of = |kind: &str, customer: i64| {
        events.iter().find(|e| e.kind == kind && e.customer_id == Some(customer)).map(|e| e.id).expect(kind)
    };
    let n = got[1].customer_id;
    assert!(first_of("customer.created", n) < first_of("case.created", n));
    assert!(first_of("case.created", n) < got[1].event_id);
    assert!(got[1].event_id < got[2].event_id, "messages keep their order");
    let reopened =
        events.iter().find(|e| e.kind == "case.updated" && e.case_id == Some(r0.case_id)).expect("re-open event");
    assert!(reopened.id < got[5].event_id);

    let n_case = store.case_detail(got[1].case_id).await.expect("case");
    assert_eq!(n_case.case.status, CaseStatus::Open);
    assert_eq!(n_case.case.last_event_id, got[2].event_id);
    assert_eq!(n_case.case.subject.as_deref(), Some("Betreff n-1"));
    assert_eq!(n_case.customer.name.as_deref(), Some("Name n@example.de"));
    assert_eq!(
        n_case.messages.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["Neukundin Wärmepumpe", "Neukundin zweite"]
    );
    assert_eq!(store.case_detail(r0.case_id).await.expect("case").case.status, CaseStatus::Open);

    let hits = store.search("Wärmepumpe".into(), 10).await.expect("search");
    assert_eq!(hits.messages.len(), 1, "bulk-stored messages are indexed once");
    assert_eq!(hits.messages[0].message_id, got[1].message_id);

    // And the same batch again is all duplicates.
    let again: Vec<_> = batch
        .into_iter()
        .map(|m| {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(m).await })
        })
        .collect();
    for (i, p) in again.into_iter().enumerate() {
        let r = p.await.expect("task");
        match i {
            6 => assert!(r.is_ok()),
            8 | 9 => assert!(matches!(r, Err(StoreError::IdempotencyConflict(_))), "item {i}: {r:?}"),
            _ => assert!(!r.expect("ingest").created, "item {i} is a duplicate"),
        }
    }
}

/// If the bulk statements fail (here: PostgreSQL refuses a NUL character in text), the batch
/// is redone message by message and only the offending message fails.
async fn check_a_failing_bulk_batch_is_redone_message_by_message(store: &Store) {
    let stats_before = store.writer_stats();
    let parked = park_writer(store, 200).await;
    let batch = vec![
        inbound("ok1@example.de", "gut eins"),
        inbound("nul@example.de", "kaputt \u{0} hier"),
        inbound("ok2@example.de", "gut zwei"),
    ];
    let mut pending: Vec<_> = batch.into_iter().map(|m| Box::pin(store.ingest(m))).collect();
    for p in pending.iter_mut() {
        submit(p).await;
    }
    let mut got = Vec::new();
    for p in pending {
        got.push(p.await);
    }
    parked.await.expect("task").expect("parked write");
    let stats = store.writer_stats();
    assert!(got[0].is_ok() && got[2].is_ok(), "{got:?}");
    assert_eq!(stats.bulk_messages - stats_before.bulk_messages, 3);
    match store.backend() {
        Backend::Postgres => {
            assert!(got[1].is_err(), "PostgreSQL refuses NUL in text");
            assert_eq!(stats.bulk_fallbacks - stats_before.bulk_fallbacks, 1);
            let events = all_events(store).await;
            assert_eq!(events.iter().filter(|e| e.kind == "message.received").count(), 2);
        }
        Backend::Sqlite => {
            assert!(got[1].is_ok(), "SQLite stores NUL in text");
            assert_eq!(stats.bulk_fallbacks, stats_before.bulk_fallbacks);
        }
    }
}

/// After a merge, the source case takes no notes or changes, and an inbound message that names
/// it lands in the case it was merged into.
async fn check_a_merged_case_sends_work_to_the_case_it_was_merged_into(store: &Store) {
    let a = store.ingest(inbound("merge.me@example.de", "erste Anfrage")).await.expect("a");
    // A second case of the same customer: the first is closed, so a new one opens.
    store
        .patch_case(a.case_id, CasePatch { status: Some(CaseStatus::Closed), ..Default::default() })
        .await
        .expect("close");
    let b = store.ingest(inbound("merge.me@example.de", "zweite Anfrage")).await.expect("b");
    assert_ne!(a.case_id, b.case_id);
    store.merge_cases(CaseId(b.case_id), CaseId(a.case_id), None).await.expect("merge a into b");
    assert_conflict(store.add_note(CaseId(a.case_id), "Notiz".into(), None).await);
    assert_conflict(
        store.patch_case(a.case_id, CasePatch { priority: Some(Priority::High), ..Default::default() }).await,
    );
    let late = store
        .ingest(NewInbound { case_id: Some(a.case_id), ..inbound("merge.me@example.de", "Nachtrag zum alten Vorgang") })
        .await
        .expect("late");
    assert_eq!(late.case_id, b.case_id, "the message follows the merge");
    assert_eq!(store.case_merged_into(a.case_id).await.expect("merged"), Some(b.case_id));
}

async fn check_failing_write_does_not_affect_others_in_its_group_commit(store: &Store) {
    let anchor = store.ingest(inbound("anker@example.de", "Anker")).await.unwrap();
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let store = store.clone();
            let foreign_case = (i % 3 == 0).then_some(anchor.case_id);
            tokio::spawn(async move {
                let msg = NewInbound {
                    provider_message_id: Some(format!("iso-{i}")),
                    case_id: foreign_case,
                    ..inbound(&format!("iso{i}@example.de"), &format!("Nachricht {i}"))
                };
                store.ingest(msg).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    for (i, r) in results.iter().enumerate() {
        if i % 3 == 0 {
            assert!(matches!(r, Err(StoreError::NotFound(_))), "{i}: {r:?}");
        } else {
            assert!(matches!(r, Ok(x) if x.created), "{i}: {r:?}");
        }
    }
    // Nothing of the failed writes remains: their keys are free and no customer was kept.
    assert_eq!(store.list_customers(None, 200).await.unwrap().items.len(), 1 + 40);
    for i in (0..60).step_by(3) {
        let msg = NewInbound {
            provider_message_id: Some(format!("iso-{i}")),
            ..inbound(&format!("iso{i}@example.de"), &format!("Nachricht {i}"))
        };
        assert!(store.ingest(msg).await.unwrap().created, "iso-{i} was not stored before");
    }
    let events = all_events(store).await;
    let created = events.iter().filter(|e| e.kind == "customer.created").count();
    assert_eq!(created, 61);
    assert_eq!(events.iter().filter(|e| e.kind == "message.received").count(), 61);
}

async fn check_two_nodes_never_claim_the_same_job(fx: &Fixture) {
    let store = fx.store();
    let r = store.ingest(inbound("knoten@example.de", "Viele Antworten")).await.unwrap();
    let mut jobs = HashSet::new();
    for i in 0..30 {
        jobs.insert(queue_reply(store, r.case_id, &format!("Antwort {i}")).await.1);
    }
    let other = fx.open_node().await;
    let worker = |store: Store, node: &'static str| {
        tokio::spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let batch = store.claim_jobs(node.into(), 3, 30_000).await.unwrap();
                if batch.is_empty() {
                    return claimed;
                }
                for j in batch {
                    assert!(store.finish_job(j.id, node.into(), JobOutcome::Done, None).await.unwrap());
                    claimed.push(j.id);
                }
            }
        })
    };
    let a = worker(store.clone(), "node-a");
    let b = worker(other.clone(), "node-b");
    let mut all = a.await.expect("node a");
    let from_b = b.await.expect("node b");
    all.extend(from_b);
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a job was claimed twice: {all:?}");
    assert_eq!(distinct, jobs);
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.queued, stats.running, stats.done), (0, 0, 30));
}

/// A reader that saw event id N must never later find a new event with a smaller id, even
/// when another node commits in between and an operation in the same group commit failed.
async fn check_event_ids_become_visible_in_order_across_nodes(fx: &Fixture) {
    let node_a = fx.store();
    let node_b = fx.open_node().await;

    // Hold node A's writer so that the next two writes land in one group commit, in order.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let mut hold = Box::pin(node_a.write(move |_tx| {
        let _ = started_tx.send(());
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }));
    submit(&mut hold).await;
    started_rx.await.expect("writer started");
    // 1st: appends an event, then fails (rolled back to its savepoint).
    let mut failing = Box::pin(node_a.write(|tx| {
        tx.event(kontor_core::EventKind::SettingsUpdated, None, None, &serde_json::json!({ "key": "test.failing" }))?;
        Err::<(), _>(StoreError::invalid("test", "fails on purpose"))
    }));
    submit(&mut failing).await;
    // 2nd: appends an event and keeps its transaction open for a while.
    let (appended_tx, appended_rx) = tokio::sync::oneshot::channel();
    let mut slow = Box::pin(node_a.write(move |tx| {
        let id =
            tx.event(kontor_core::EventKind::SettingsUpdated, None, None, &serde_json::json!({ "key": "test.slow" }))?;
        let _ = appended_tx.send(id);
        std::thread::sleep(Duration::from_millis(1500));
        Ok(id)
    }));
    submit(&mut slow).await;
    let slow_id = tokio::time::timeout(Duration::from_secs(10), appended_rx)
        .await
        .expect("node A's second write ran")
        .expect("node A's second write appended its event");

    // Node B appends while node A's transaction is still open, then reads the log.
    let b_id = tokio::time::timeout(
        Duration::from_secs(20),
        node_b.write(|tx| {
            tx.event(
                kontor_core::EventKind::SettingsUpdated,
                None,
                None,
                &serde_json::json!({ "key": "test.other_node" }),
            )
        }),
    )
    .await
    .expect("node B's write finished")
    .unwrap();
    let seen: Vec<i64> = all_events(&node_b).await.iter().map(|e| e.id).collect();

    hold.await.unwrap();
    assert_invalid(failing.await, "test");
    assert_eq!(slow.await.unwrap(), slow_id);
    assert!(slow_id < b_id, "node A's event {slow_id} was appended before node B's {b_id}");
    assert!(
        seen.contains(&slow_id),
        "node B saw event {b_id} before event {slow_id} of node A was visible (seen: {seen:?}); \
         a reader polling events_after({b_id}) would never see event {slow_id}"
    );
    let all: Vec<i64> = all_events(node_a).await.iter().map(|e| e.id).collect();
    let max_seen = seen.iter().copied().max().unwrap_or(0);
    let late: Vec<i64> = all.iter().copied().filter(|id| *id <= max_seen && !seen.contains(id)).collect();
    assert!(late.is_empty(), "events {late:?} became visible after a reader had seen {max_seen}");
}

/// Servers hold the store in async code (e.g. in `#[tokio::main]`), so dropping the last
/// handle there, with pooled connections, must work.
async fn check_a_store_can_be_dropped_inside_the_async_runtime(fx: &Fixture) {
    let node = fx.open_node().await;
    let r = node.ingest(inbound("drop@example.de", "Tschüss")).await.unwrap();
    node.ping().await.unwrap();
    assert_eq!(node.case_detail(r.case_id).await.unwrap().messages.len(), 1);
    let store = node.into_store();
    drop(store);
    assert_eq!(fx.store().max_event_id().await.unwrap(), r.event_id);
}

// ---------------------------------------------------------------------------------------------
// Agent inbox: teams and visibility, filters, case merge, duplicates, canned responses,
// settings, passwords
// ---------------------------------------------------------------------------------------------

/// An inbound message on `channel` from an address of `kind` (normalised here).
fn inbound_on(channel: Channel, kind: IdentityKind, from: &str, subject: Option<&str>, text: &str) -> NewInbound {
    NewInbound {
        channel,
        from_kind: kind,
        from_address: normalise_identity(kind, from, "DE").expect("valid address"),
        subject: subject.map(str::to_string),
        ..inbound("unused@example.de", text)
    }
}

async fn staff(store: &Store, email: &str, role: Role) -> StaffUser {
    store.create_user(email.into(), email.into(), role, "sehr geheim 123".into()).await.unwrap()
}

/// Ids of the cases `filter` lists (all pages of up to 200).
async fn listed(store: &Store, filter: CaseFilter) -> HashSet<i64> {
    let page = store.list_cases(CaseFilter { limit: 200, ..filter }).await.unwrap();
    assert_eq!(page.next_cursor, None, "more than one page");
    page.items.iter().map(|c| c.id).collect()
}

async fn set_team(store: &Store, case_id: i64, team_id: i64) {
    store.patch_case(case_id, CasePatch { team_id: Some(Some(team_id)), ..Default::default() }).await.unwrap();
}

async fn last_event(store: &Store) -> kontor_core::Event {
    store.events_after(store.max_event_id().await.unwrap() - 1, 1).await.unwrap().remove(0)
}

async fn check_team_members_are_added_listed_and_removed_with_events(store: &Store) {
    let team = store.create_team("Umzüge".into()).await.unwrap();
    let other = store.create_team("Rechnungen".into()).await.unwrap();
    let anna = staff(store, "anna@kontor.example", Role::Agent).await;
    let bert = staff(store, "bert@kontor.example", Role::Agent).await;
    assert!(store.team_members(team.id).await.unwrap().is_empty());

    let before = store.max_event_id().await.unwrap();
    store.add_team_member(TeamId(team.id), UserId(bert.id)).await.unwrap();
    store.add_team_member(TeamId(team.id), UserId(anna.id)).await.unwrap();
    store.add_team_member(TeamId(other.id), UserId(anna.id)).await.unwrap();
    let events = store.events_after(before, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["team.member_added"; 3]);
    assert_eq!(events[0].payload, serde_json::json!({ "team_id": team.id, "user_id": bert.id }));

    let events = event_count(store).await;
    store.add_team_member(TeamId(team.id), UserId(anna.id)).await.unwrap();
    assert_eq!(event_count(store).await, events, "adding a member again changes nothing");

    let members = store.team_members(team.id).await.unwrap();
    assert_eq!(members, [anna.clone(), bert.clone()], "members by e-mail");
    assert_eq!(store.user_team_ids(UserId(anna.id)).await.unwrap(), [team.id, other.id]);
    assert_eq!(store.user_team_ids(UserId(bert.id)).await.unwrap(), [team.id]);
    assert!(store.user_team_ids(UserId(bert.id + 10_000)).await.unwrap().is_empty());

    assert_not_found(store.add_team_member(TeamId(other.id + 10_000), UserId(anna.id)).await);
    assert_not_found(store.add_team_member(TeamId(team.id), UserId(bert.id + 10_000)).await);
    assert_not_found(store.team_members(other.id + 10_000).await);
    assert_eq!(event_count(store).await, events, "refused changes append nothing");

    store.remove_team_member(TeamId(team.id), UserId(anna.id)).await.unwrap();
    let ev = last_event(store).await;
    assert_eq!(ev.kind, "team.member_removed");
    assert_eq!(ev.payload, serde_json::json!({ "team_id": team.id, "user_id": anna.id }));
    assert_eq!(store.team_members(team.id).await.unwrap(), [bert]);
    assert_eq!(store.user_team_ids(UserId(anna.id)).await.unwrap(), [other.id]);
    assert_not_found(store.remove_team_member(TeamId(team.id), UserId(anna.id)).await);
}

async fn check_agents_see_unteamed_and_own_team_cases_and_admins_see_all(store: &Store) {
    let team_a = store.create_team("Team A".into()).await.unwrap();
    let team_b = store.create_team("Team B".into()).await.unwrap();
    let agent = staff(store, "agent@kontor.example", Role::Agent).await;
    let loner = staff(store, "loner@kontor.example", Role::Agent).await;
    let admin = staff(store, "admin@kontor.example", Role::Admin).await;
    store.add_team_member(TeamId(team_a.id), UserId(agent.id)).await.unwrap();

    let unteamed = store.ingest(inbound("eins@example.de", "ohne Team")).await.unwrap().case_id;
    let in_a = store.ingest(inbound("zwei@example.de", "für Team A")).await.unwrap().case_id;
    let in_b = store.ingest(inbound("drei@example.de", "für Team B")).await.unwrap().case_id;
    set_team(store, in_a, team_a.id).await;
    set_team(store, in_b, team_b.id).await;
    let visible = |user: i64| CaseFilter { visible_to: Some(UserId(user)), ..Default::default() };
    let all = HashSet::from([unteamed, in_a, in_b]);

    assert_eq!(listed(store, visible(agent.id)).await, HashSet::from([unteamed, in_a]));
    assert_eq!(listed(store, visible(loner.id)).await, HashSet::from([unteamed]));
    assert_eq!(listed(store, CaseFilter::default()).await, all, "the admin path lists every case");
    assert_eq!(listed(store, visible(admin.id)).await, all, "an admin's id shows every case too");
    let open_for_agent = CaseFilter { status: Some(CaseStatus::Open), ..visible(agent.id) };
    assert_eq!(listed(store, open_for_agent).await, HashSet::from([unteamed, in_a]), "with other filters");
    let team_b_for_agent = CaseFilter { team_id: Some(team_b.id), ..visible(agent.id) };
    assert!(listed(store, team_b_for_agent).await.is_empty(), "asking for team B's cases does not reveal them");

    for (case, agent_sees, loner_sees) in [(unteamed, true, true), (in_a, true, false), (in_b, false, false)] {
        assert_eq!(
            store.case_visible_to(CaseId(case), UserId(agent.id)).await.unwrap(),
            agent_sees,
            "agent, case {case}"
        );
        assert_eq!(
            store.case_visible_to(CaseId(case), UserId(loner.id)).await.unwrap(),
            loner_sees,
            "loner, case {case}"
        );
        assert!(store.case_visible_to(CaseId(case), UserId(admin.id)).await.unwrap(), "admin, case {case}");
    }
    assert_not_found(store.case_visible_to(CaseId(in_b + 10_000), UserId(agent.id)).await);

    // Membership changes take effect at once.
    store.add_team_member(TeamId(team_b.id), UserId(agent.id)).await.unwrap();
    store.remove_team_member(TeamId(team_a.id), UserId(agent.id)).await.unwrap();
    assert_eq!(listed(store, visible(agent.id)).await, HashSet::from([unteamed, in_b]));
    assert!(!store.case_visible_to(CaseId(in_a), UserId(agent.id)).await.unwrap());
    assert!(store.case_visible_to(CaseId(in_b), UserId(agent.id)).await.unwrap());

    // Paging through an agent's view returns each visible case once.
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_cases(CaseFilter { cursor: cursor.take(), limit: 1, ..visible(agent.id) }).await.unwrap();
        paged.extend(page.items.iter().map(|c| c.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged.len(), 2);
    assert_eq!(paged.into_iter().collect::<HashSet<_>>(), HashSet::from([unteamed, in_b]));
}

async fn check_list_cases_filters_by_whole_tags_and_unassigned(store: &Store) {
    let agent = staff(store, "tags@kontor.example", Role::Agent).await;
    let vip = store.ingest(inbound("vip@example.de", "eins")).await.unwrap().case_id;
    let gold = store.ingest(inbound("gold@example.de", "zwei")).await.unwrap().case_id;
    let plain = store.ingest(inbound("plain@example.de", "drei")).await.unwrap().case_id;
    let tags = |t: &[&str]| Some(t.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let patch = CasePatch { tags: tags(&["vip", "umzug"]), assignee_id: Some(Some(agent.id)), ..Default::default() };
    store.patch_case(vip, patch).await.unwrap();
    let odd = "Zoë \"Quote\" 100%_";
    store.patch_case(gold, CasePatch { tags: tags(&["vip-gold", "a,b", odd]), ..Default::default() }).await.unwrap();

    let by_tag = |t: &str| CaseFilter { tag: Some(t.to_string()), ..Default::default() };
    let table: &[(&str, &[i64])] = &[
        ("vip", &[vip]),
        (" vip ", &[vip]),
        ("umzug", &[vip]),
        ("vip-gold", &[gold]),
        ("a,b", &[gold]),
        (odd, &[gold]),
        ("VIP", &[]),
        ("vi", &[]),
        ("a", &[]),
        ("\",\"", &[]),
        ("%", &[]),
        ("vip%", &[]),
        ("_ip", &[]),
    ];
    for (tag, want) in table {
        let want: HashSet<i64> = want.iter().copied().collect();
        assert_eq!(listed(store, by_tag(tag)).await, want, "tag {tag:?}");
    }
    assert_eq!(listed(store, by_tag("  ")).await, HashSet::from([vip, gold, plain]), "a blank tag filters nothing");

    let unassigned = CaseFilter { unassigned: true, ..Default::default() };
    assert_eq!(listed(store, unassigned.clone()).await, HashSet::from([gold, plain]));
    assert!(listed(store, CaseFilter { tag: Some("vip".into()), ..unassigned.clone() }).await.is_empty());
    assert_eq!(listed(store, CaseFilter { tag: Some("a,b".into()), ..unassigned }).await, HashSet::from([gold]));
}

async fn check_merge_cases_moves_messages_keeps_history_and_makes_old_views_stale(store: &Store) {
    let agent = staff(store, "merger@kontor.example", Role::Agent).await;
    let channels = vec![Channel::Api, Channel::Email, Channel::Whatsapp];
    // The same customer wrote by e-mail and by WhatsApp (two customers, merged).
    let mail = store
        .ingest(inbound_on(Channel::Email, IdentityKind::Email, "merge@example.de", Some("Umzug"), "Ich ziehe um."))
        .await
        .unwrap();
    let wa = store
        .ingest(inbound_on(Channel::Whatsapp, IdentityKind::WhatsappId, "+49 170 5550101", None, "Neue Adresse?"))
        .await
        .unwrap();
    let wa2 = store
        .ingest(NewInbound {
            provider_message_id: Some("wamid-2".into()),
            ..inbound_on(Channel::Whatsapp, IdentityKind::WhatsappId, "+49 170 5550101", None, "Goethestraße 5")
        })
        .await
        .unwrap();
    assert_eq!(wa2.case_id, wa.case_id);
    store.merge_customers(CustomerId(mail.customer_id), CustomerId(wa.customer_id)).await.unwrap();
    let patch = CasePatch { tags: Some(vec!["umzug".into()]), ..Default::default() };
    store.patch_case(wa.case_id, patch).await.unwrap();

    let view = store.case_detail(mail.case_id).await.unwrap().case.last_event_id;
    let history = stored_events(store).await;
    let target = store.merge_cases(CaseId(mail.case_id), CaseId(wa.case_id), Some(UserId(agent.id))).await.unwrap();
    assert_eq!((target.id, target.status), (mail.case_id, CaseStatus::Open));
    assert_eq!(target.tags, ["umzug"], "the target takes over the source's tags");
    assert!(target.last_message_at.is_some());

    let detail = store.case_detail(mail.case_id).await.unwrap();
    assert_eq!(detail.case, target);
    let moved: Vec<(i64, Channel)> = detail.messages.iter().map(|m| (m.id, m.channel)).collect();
    assert_eq!(
        moved,
        [(mail.message_id, Channel::Email), (wa.message_id, Channel::Whatsapp), (wa2.message_id, Channel::Whatsapp)],
        "one timeline across both channels"
    );
    assert!(detail.messages.iter().all(|m| m.case_id == mail.case_id));
    let source = store.case_detail(wa.case_id).await.unwrap();
    assert!(source.messages.is_empty());
    assert_eq!(source.case.status, CaseStatus::Closed);
    assert_eq!(store.case_merged_into(wa.case_id).await.unwrap(), Some(mail.case_id));
    assert_eq!(store.case_merged_into(mail.case_id).await.unwrap(), None);
    assert_not_found(store.case_merged_into(wa.case_id + 10_000).await);

    // History is kept: every earlier event is still there, and both cases got `case.merged`.
    let events = stored_events(store).await;
    assert_eq!(&events[..history.len()], &history[..], "earlier events are unchanged");
    let merged: Vec<_> = events[history.len()..].iter().collect();
    assert_eq!(
        merged.iter().map(|e| (e.kind.as_str(), e.case_id)).collect::<Vec<_>>(),
        [("case.merged", Some(wa.case_id)), ("case.merged", Some(mail.case_id))]
    );
    assert_eq!(target.last_event_id, merged[1].id);
    assert_eq!(source.case.last_event_id, merged[0].id);
    let p = &merged[1].payload;
    assert_eq!((p["target_case_id"].as_i64(), p["source_case_id"].as_i64()), (Some(mail.case_id), Some(wa.case_id)));
    assert_eq!(p["moved_messages"], 2);
    assert_eq!(p["message_ids"], serde_json::json!([wa.message_id, wa2.message_id]));
    assert_eq!(p["actor_id"], agent.id);
    assert_eq!(merged[1].customer_id, Some(mail.customer_id));

    // Lists and search follow the messages.
    let listed_cases = listed(store, CaseFilter { customer_id: Some(mail.customer_id), ..Default::default() }).await;
    assert_eq!(listed_cases, HashSet::from([mail.case_id]), "a merged case is not listed");
    let hits = store.search("Goethestraße".into(), 10).await.unwrap();
    assert_eq!(
        hits.messages.iter().map(|m| (m.message_id, m.case_id)).collect::<Vec<_>>(),
        [(wa2.message_id, mail.case_id)]
    );

    // A reply written against the view from before the merge is held, showing what came in.
    match store.reply(mail.case_id, reply("Danke!", view, false), channels.clone()).await.unwrap() {
        ReplyOutcome::Stale { events, messages } => {
            assert!(events.iter().any(|e| e.kind == "case.merged"), "{events:?}");
            let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
            assert_eq!(ids, [wa.message_id, wa2.message_id], "the moved messages are shown");
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    let fresh = store.reply(mail.case_id, reply("Danke!", target.last_event_id, false), channels.clone()).await;
    let ReplyOutcome::Queued { channel, .. } = fresh.unwrap() else { panic!("a current view replies") };
    assert_eq!(channel, Channel::Whatsapp, "answered on the channel of the latest inbound message");
    assert_conflict(store.reply(wa.case_id, reply("Hier?", 0, true), channels).await);

    // A redelivered message reports the case it is in now; new messages thread into the target.
    let again = store
        .ingest(NewInbound {
            provider_message_id: Some("wamid-2".into()),
            ..inbound_on(Channel::Whatsapp, IdentityKind::WhatsappId, "+49 170 5550101", None, "Goethestraße 5")
        })
        .await
        .unwrap();
    assert_eq!(again, InboundReceipt { created: false, case_id: mail.case_id, ..wa2 });
    let later = store
        .ingest(inbound_on(Channel::Whatsapp, IdentityKind::WhatsappId, "+49 170 5550101", None, "Und?"))
        .await
        .unwrap();
    assert_eq!(later.case_id, mail.case_id);
}

async fn check_merge_cases_refuses_itself_other_customers_and_merged_cases(store: &Store) {
    let a = store.ingest(inbound("a@example.de", "A")).await.unwrap();
    let b = store.ingest(inbound("b@example.de", "B")).await.unwrap();
    let events = event_count(store).await;
    assert_invalid(store.merge_cases(CaseId(a.case_id), CaseId(a.case_id), None).await, "source_id");
    assert_invalid(store.merge_cases(CaseId(a.case_id), CaseId(b.case_id), None).await, "source_id");
    assert_not_found(store.merge_cases(CaseId(a.case_id), CaseId(b.case_id + 10_000), None).await);
    assert_not_found(store.merge_cases(CaseId(b.case_id + 10_000), CaseId(a.case_id), None).await);
    assert_eq!(event_count(store).await, events, "refused merges append nothing");
    assert_eq!(store.case_detail(b.case_id).await.unwrap().messages.len(), 1);

    store.merge_customers(CustomerId(a.customer_id), CustomerId(b.customer_id)).await.unwrap();
    store.merge_cases(CaseId(a.case_id), CaseId(b.case_id), None).await.unwrap();
    assert_conflict(store.merge_cases(CaseId(a.case_id), CaseId(b.case_id), None).await);
    assert_conflict(store.merge_cases(CaseId(b.case_id), CaseId(a.case_id), None).await);

    // A resolved or closed target is re-opened when an active case is merged into it.
    let c = store.ingest(inbound("c@example.de", "C")).await.unwrap();
    store.merge_customers(CustomerId(a.customer_id), CustomerId(c.customer_id)).await.unwrap();
    store.patch_case(a.case_id, CasePatch { status: Some(CaseStatus::Closed), ..Default::default() }).await.unwrap();
    let target = store.merge_cases(CaseId(a.case_id), CaseId(c.case_id), None).await.unwrap();
    assert_eq!((target.status, target.resolved_at), (CaseStatus::Open, None));
    assert_eq!(last_event(store).await.payload["reopened"], true);
}

async fn check_related_open_cases_find_the_same_request_across_channels_but_not_unrelated_ones(store: &Store) {
    let email = |from: &str, subject: &str, text: &str| {
        inbound_on(Channel::Email, IdentityKind::Email, from, Some(subject), text)
    };
    let mail = store
        .ingest(email("dup@example.de", "Umzug zum 1. Mai", "Ich ziehe am 1. Mai um, neue Adresse Goethestraße 5"))
        .await
        .unwrap();
    let wa = store
        .ingest(inbound_on(
            Channel::Whatsapp,
            IdentityKind::WhatsappId,
            "+49 170 5550202",
            None,
            "Adressänderung: Umzug nach Berlin",
        ))
        .await
        .unwrap();
    let bill = store
        .ingest(email("dup.privat@example.de", "Rechnung doppelt abgebucht", "Sie haben März zweimal abgebucht."))
        .await
        .unwrap();
    let same = store
        .ingest(email("dup.arbeit@example.de", "Adressänderung", "Bitte ändern Sie meine Adresse, Umzug nach Berlin."))
        .await
        .unwrap();
    let old = store
        .ingest(inbound_on(Channel::Sms, IdentityKind::Phone, "+49 170 5550303", None, "Umzug, Adresse Berlin"))
        .await
        .unwrap();
    let stranger = store.ingest(email("fremd@example.de", "Umzug zum 1. Mai", "Neue Adresse")).await.unwrap();
    for r in [&wa, &bill, &same, &old] {
        store.merge_customers(CustomerId(mail.customer_id), CustomerId(r.customer_id)).await.unwrap();
    }
    // The SMS case was opened and last written two days ago.
    let two_days_ago = kontor_store::now_us() - 48 * 3_600_000_000;
    let old_case = old.case_id;
    store
        .write(move |tx| {
            tx.conn.execute(
                "UPDATE cases SET created_at = ?, last_message_at = ? WHERE id = ?",
                &kontor_store::params![two_days_ago, two_days_ago, old_case],
            )
        })
        .await
        .unwrap();

    let related = |case_id: i64| async move {
        let found = store.related_open_cases(case_id).await.unwrap();
        assert!(found.windows(2).all(|w| w[0].score >= w[1].score), "best match first: {found:?}");
        found.iter().map(|r| (r.id, r.reason)).collect::<HashMap<i64, RelatedReason>>()
    };
    let from_mail = store.related_open_cases(mail.case_id).await.unwrap();
    let wa_hit = from_mail.iter().find(|r| r.id == wa.case_id).expect("the WhatsApp case is related");
    assert_eq!(
        (wa_hit.channel, wa_hit.status, wa_hit.reason),
        (Channel::Whatsapp, CaseStatus::Open, RelatedReason::SimilarText)
    );
    assert!(wa_hit.score > 0.3 && wa_hit.score <= 1.0, "{wa_hit:?}");
    assert_eq!(wa_hit.subject, None);
    assert_eq!(Some(wa_hit.last_activity_at), store.case(wa.case_id).await.unwrap().last_message_at);
    assert_eq!(
        related(mail.case_id).await,
        HashMap::from([(wa.case_id, RelatedReason::SimilarText), (same.case_id, RelatedReason::SimilarText)]),
        "similar requests on any channel; not the unrelated e-mail, the old SMS or another customer's case"
    );
    assert!(!related(stranger.case_id).await.contains_key(&mail.case_id));
    assert_eq!(
        related(wa.case_id).await,
        HashMap::from([(mail.case_id, RelatedReason::SimilarText), (same.case_id, RelatedReason::SimilarText)]),
        "another channel the same day is not enough when the requests share no word (the bill)"
    );

    // Resolved and merged cases are not offered, and have no related cases themselves.
    store
        .patch_case(same.case_id, CasePatch { status: Some(CaseStatus::Resolved), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(related(mail.case_id).await, HashMap::from([(wa.case_id, RelatedReason::SimilarText)]));
    assert!(related(same.case_id).await.is_empty());
    store.merge_cases(CaseId(mail.case_id), CaseId(wa.case_id), None).await.unwrap();
    assert!(related(mail.case_id).await.is_empty());
    assert!(related(wa.case_id).await.is_empty());
    assert_not_found(store.related_open_cases(mail.case_id + 10_000).await);
}

async fn check_canned_responses_crud_with_unique_shortcuts_and_language_lists(store: &Store) {
    assert!(store.list_canned(None).await.unwrap().is_empty());
    let s = |v: &str| Some(v.to_string());
    let greet_de = store
        .create_canned("Begrüßung".into(), s(" /Hallo "), "Guten Tag,\n\nvielen Dank.".into(), s("DE"))
        .await
        .unwrap();
    assert_eq!((greet_de.shortcut.as_deref(), greet_de.language.as_deref()), (Some("/hallo"), Some("de")));
    assert_eq!(greet_de.body, "Guten Tag,\n\nvielen Dank.");
    let created = last_event(store).await;
    assert_eq!(
        (created.kind.as_str(), created.payload["canned"]["id"].as_i64()),
        ("canned.created", Some(greet_de.id))
    );
    let greet_en = store.create_canned("Greeting".into(), s("/hello"), "Hello,".into(), s("en")).await.unwrap();
    let sig = store.create_canned("Signatur".into(), None, "Ihr Kontor-Team".into(), None).await.unwrap();
    let blank = store.create_canned("Abschluss".into(), s("  "), "Mit freundlichen Grüßen".into(), s(" ")).await;
    let blank = blank.unwrap();
    assert_eq!((blank.shortcut, blank.language), (None, None), "blank shortcut and language are none");

    let titles = |list: Vec<kontor_core::CannedResponse>| list.into_iter().map(|c| c.title).collect::<Vec<_>>();
    assert_eq!(titles(store.list_canned(None).await.unwrap()), ["Abschluss", "Begrüßung", "Greeting", "Signatur"]);
    assert_eq!(titles(store.list_canned(Some("de")).await.unwrap()), ["Abschluss", "Begrüßung", "Signatur"]);
    assert_eq!(titles(store.list_canned(Some("EN")).await.unwrap()), ["Abschluss", "Greeting", "Signatur"]);
    assert_eq!(titles(store.list_canned(Some("fr")).await.unwrap()), ["Abschluss", "Signatur"]);

    let events = event_count(store).await;
    assert_conflict(store.create_canned("Doppelt".into(), s("/HALLO"), "x".into(), None).await);
    assert_conflict(store.update_canned(greet_en.id, "Greeting".into(), s("/hallo"), "Hello,".into(), s("en")).await);
    assert_invalid(store.create_canned(" ".into(), None, "x".into(), None).await, "title");
    assert_invalid(store.create_canned("T".into(), None, " \n ".into(), None).await, "body");
    assert_invalid(store.create_canned("T".into(), s("zwei worte"), "x".into(), None).await, "shortcut");
    assert_invalid(store.create_canned("T".into(), None, "x".into(), s("de_DE!")).await, "language");
    assert_not_found(store.update_canned(sig.id + 10_000, "T".into(), None, "x".into(), None).await);
    assert_eq!(event_count(store).await, events, "refused changes append nothing");

    // An update may keep its own shortcut; a shortcut given up is free again.
    let updated = store
        .update_canned(greet_de.id, "Begrüßung (Sie)".into(), s("/hallo"), "Sehr geehrte Kundin,".into(), s("de"))
        .await
        .unwrap();
    assert_eq!((updated.id, updated.created_at), (greet_de.id, greet_de.created_at));
    assert_eq!((updated.title.as_str(), updated.body.as_str()), ("Begrüßung (Sie)", "Sehr geehrte Kundin,"));
    assert_eq!(store.canned(greet_de.id).await.unwrap(), updated);
    assert_eq!(last_event(store).await.kind, "canned.updated");
    store.update_canned(greet_en.id, "Greeting".into(), s("/hi"), "Hello,".into(), s("en")).await.unwrap();
    let reused = store.create_canned("Hello again".into(), s("/hello"), "Hi!".into(), None).await.unwrap();
    assert_eq!(reused.shortcut.as_deref(), Some("/hello"));

    store.delete_canned(sig.id).await.unwrap();
    let deleted = last_event(store).await;
    assert_eq!((deleted.kind.as_str(), deleted.payload["canned_id"].as_i64()), ("canned.deleted", Some(sig.id)));
    assert_not_found(store.delete_canned(sig.id).await);
    assert_not_found(store.canned(sig.id).await);
    assert!(store.list_canned(None).await.unwrap().iter().all(|c| c.id != sig.id));
}

async fn check_settings_round_trip_and_reply_only_assignee_defaults_to_off(store: &Store) {
    assert_eq!(store.setting("reply_only_assignee").await.unwrap(), None);
    assert!(!store.reply_only_assignee().await.unwrap(), "off unless an admin turns it on");

    store.set_reply_only_assignee(true).await.unwrap();
    assert!(store.reply_only_assignee().await.unwrap());
    assert_eq!(store.setting("reply_only_assignee").await.unwrap().as_deref(), Some("true"));
    let ev = last_event(store).await;
    assert_eq!(ev.kind, "settings.updated");
    assert_eq!(ev.payload, serde_json::json!({ "key": "reply_only_assignee", "value": "true" }));
    let events = event_count(store).await;
    store.set_reply_only_assignee(true).await.unwrap();
    assert_eq!(event_count(store).await, events, "setting the same value again appends nothing");
    store.set_reply_only_assignee(false).await.unwrap();
    assert!(!store.reply_only_assignee().await.unwrap());

    store.set_setting("inbox.page_size", "50").await.unwrap();
    store.set_setting("inbox.page_size", "100").await.unwrap();
    assert_eq!(store.setting("inbox.page_size").await.unwrap().as_deref(), Some("100"));
    assert_eq!(store.setting("reply_only_assignee").await.unwrap().as_deref(), Some("false"));
    assert_invalid(store.set_setting("", "x").await, "key");
    assert_invalid(store.set_setting("Bad Key", "x").await, "key");
}

async fn check_small_raw_sources_are_kept_sealed_with_their_message(store: &Store) {
    use kontor_channel::RawSource;
    let sealed: Vec<u8> = (0..=255u8).chain([0, 0xff]).collect();
    let mut m = NewInbound::text(Channel::Email, IdentityKind::Email, "quelle@kunde.example", "Hallo");
    m.provider_message_id = Some("quelle-1@kunde.example".into());
    m.raw_source = Some(RawSource::Sealed { id: "abcdefghijklmnopqrstuvwxyz".into(), bytes: sealed.clone().into() });
    let r = store.ingest(m.clone()).await.unwrap();
    let msg = message(store, r.case_id, r.message_id).await;
    assert!(msg.has_raw_source);
    assert_eq!(msg.raw_blob_id.as_deref(), Some("abcdefghijklmnopqrstuvwxyz"));
    assert_eq!(store.inline_source(r.message_id).await.unwrap(), Some(sealed.clone()));
    let listed = store.inline_sources_after(r.message_id - 1, 10).await.unwrap();
    assert_eq!(listed, vec![(r.message_id, "abcdefghijklmnopqrstuvwxyz".to_string(), sealed.clone())]);
    assert!(
        store.blob_refs().await.unwrap().iter().all(|b| b.blob_id != "abcdefghijklmnopqrstuvwxyz"),
        "not a blob store object"
    );
    // A repeat stores nothing new.
    let again = store.ingest(m).await.unwrap();
    assert!(!again.created);
    assert_eq!(store.inline_sources_after(r.message_id - 1, 10).await.unwrap().len(), 1);
}

async fn check_channel_cursors_are_kept_per_source_without_events(store: &Store) {
    assert_eq!(store.channel_cursor("email.imap.support").await.unwrap(), None);
    let events = event_count(store).await;
    store.set_channel_cursor("email.imap.support", "1796507441:3").await.unwrap();
    store.set_channel_cursor("email.imap.support", "1796507441:7").await.unwrap();
    store.set_channel_cursor("email.imap.sales", "42:1").await.unwrap();
    assert_eq!(store.channel_cursor("email.imap.support").await.unwrap().as_deref(), Some("1796507441:7"));
    assert_eq!(store.channel_cursor("email.imap.sales").await.unwrap().as_deref(), Some("42:1"));
    assert_eq!(event_count(store).await, events, "a cursor moves with every mail: not an event");
    assert_invalid(store.set_channel_cursor("", "1:1").await, "cursor");
}

async fn check_a_staff_user_can_change_the_password(store: &Store) {
    let user =
        store.create_user("pw@kontor.example".into(), "PW".into(), Role::Agent, "altes passwort".into()).await.unwrap();
    store.set_user_password(user.id, "neues passwort 1".into()).await.unwrap();
    let verify = |password: &str| store.verify_password("pw@kontor.example".into(), password.into());
    assert_eq!(verify("altes passwort").await.unwrap(), None);
    assert_eq!(verify("neues passwort 1").await.unwrap().map(|u| u.id), Some(user.id));
    let ev = last_event(store).await;
    assert_eq!((ev.kind.as_str(), ev.payload["user_id"].as_i64()), ("user.password_changed", Some(user.id)));
    let logged = ev.payload.to_string();
    assert!(!logged.contains("neues passwort") && !logged.contains("argon2"), "no secret in the log: {logged}");

    assert_invalid(store.set_user_password(user.id, "kurz".into()).await, "password");
    assert_not_found(store.set_user_password(user.id + 10_000, "lang genug 123".into()).await);
    assert_eq!(verify("neues passwort 1").await.unwrap().map(|u| u.id), Some(user.id));
}

async fn check_bytes_round_trip_unchanged(store: &Store) {
    // Not UTF-8, a NUL, every byte value: nothing may be read as (lossy) text.
    let bytes: Vec<u8> = (0..=255u8).rev().chain([0xff, 0xfe, 0x00, 0xc3]).collect();
    let ddl = match store.backend() {
        Backend::Sqlite => "CREATE TABLE bytes_probe (id BIGINT PRIMARY KEY, b BLOB NOT NULL)",
        Backend::Postgres => "CREATE TABLE bytes_probe (id BIGINT PRIMARY KEY, b BYTEA NOT NULL)",
    };
    let stored = bytes.clone();
    store
        .write(move |tx| {
            tx.conn.batch(ddl)?;
            tx.conn.execute("INSERT INTO bytes_probe (id, b) VALUES (?, ?)", &[Val::Int(1), Val::Bytes(stored)])?;
            Ok(())
        })
        .await
        .unwrap();
    let back = store
        .read(|c| {
            let row = c.query_opt("SELECT b FROM bytes_probe WHERE id = ?", &[Val::Int(1)])?.expect("the row");
            Ok(row.opt_bytes(0).map(<[u8]>::to_vec))
        })
        .await
        .unwrap();
    assert_eq!(back.as_deref(), Some(bytes.as_slice()));
}

async fn check_a_job_effect_commits_only_with_the_claim_that_ran_it(store: &Store) {
    let r = store.ingest(inbound("effect@example.de", "Bitte antworten")).await.unwrap();
    let (_, job_id) = queue_reply(store, r.case_id, "Antwort").await;
    // The first claim's lease runs out and a second claim takes the job.
    let first = store.claim_jobs("node-a".into(), 10, 1).await.unwrap().remove(0);
    assert_eq!(first.id, job_id);
    let mut second = Vec::new();
    for _ in 0..200 {
        second = store.claim_jobs("node-a".into(), 10, 30_000).await.unwrap();
        if !second.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = second.pop().expect("the job is claimed again once its lease ran out");
    let effect = |label: &'static str| -> kontor_store::jobs::JobEffect {
        std::sync::Arc::new(move |tx, _| {
            tx.event(
                kontor_core::EventKind::SettingsUpdated,
                None,
                None,
                &serde_json::json!({ "key": "test.effect", "label": label }),
            )?;
            Ok(())
        })
    };
    // The older run cannot record its outcome or its effect.
    let stale = store.finish_claimed_job(&first, "node-a".into(), JobOutcome::Done, Some(effect("stale"))).await;
    assert!(!stale.unwrap());
    assert!(store
        .finish_claimed_job(&second, "node-a".into(), JobOutcome::Done, Some(effect("current")))
        .await
        .unwrap());
    let labels: Vec<String> = all_events(store)
        .await
        .into_iter()
        .filter(|e| e.payload["key"] == "test.effect")
        .map(|e| e.payload["label"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(labels, vec!["current".to_string()]);
}

async fn check_delivery_reports_only_move_a_message_forward(store: &Store) {
    use kontor_channel::DeliveryReport;
    let r = store.ingest(inbound("reports@example.de", "Status?")).await.unwrap();
    let (message_id, job_id) = queue_reply(store, r.case_id, "Antwort").await;
    store.claim_jobs("node-a".into(), 10, 30_000).await.unwrap();
    let sent = DeliveryUpdate {
        message_id,
        state: DeliveryState::Sent,
        error: None,
        provider_message_id: Some("prov-77".into()),
    };
    assert!(store.finish_job(job_id, "node-a".into(), JobOutcome::Done, Some(sent.into_effect())).await.unwrap());
    let report = |state| DeliveryReport {
        channel: Channel::Api,
        provider_message_id: "prov-77".into(),
        state,
        error: Some("mailbox full".into()),
    };
    assert_eq!(store.apply_delivery_report(report(DeliveryState::Read)).await.unwrap(), Some(message_id));
    assert_eq!(store.apply_delivery_report(report(DeliveryState::Sent)).await.unwrap(), None, "late sent");
    assert_eq!(store.apply_delivery_report(report(DeliveryState::Failed)).await.unwrap(), None, "failed after read");
    let other = DeliveryReport { provider_message_id: "nobody".into(), ..report(DeliveryState::Read) };
    assert_eq!(store.apply_delivery_report(other).await.unwrap(), None);
    let m = message(store, r.case_id, message_id).await;
    assert_eq!(m.delivery_state, Some(DeliveryState::Read));
    assert_eq!(m.delivery_error, None, "a read message carries no error");
}

async fn check_a_corrupt_row_is_reported_not_defaulted(store: &Store) {
    let r = store.ingest(inbound("corrupt@example.de", "Hallo")).await.unwrap();
    // An unknown status (what no code writes) is an error, not `open`.
    let case_id = r.case_id;
    store
        .write(move |tx| {
            tx.conn.execute("UPDATE cases SET status = 'sleeping' WHERE id = ?", &[Val::Int(case_id)])?;
            Ok(())
        })
        .await
        .unwrap();
    match store.case_detail(r.case_id).await {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("cases.status") && m.contains("sleeping"), "{m}"),
        other => panic!("a corrupt status was not reported: {other:?}"),
    }
    // A value of the wrong kind, or a NULL, where a value is required: SQLite keeps text in an
    // INTEGER column and refuses NULL there; on PostgreSQL the constraint is dropped first, as
    // in a damaged or hand-edited database.
    let message_id = r.message_id;
    let backend = store.backend();
    store
        .write(move |tx| {
            tx.conn.execute("UPDATE cases SET status = 'open' WHERE id = ?", &[Val::Int(case_id)])?;
            if backend == Backend::Postgres {
                tx.conn.batch("ALTER TABLE messages ALTER COLUMN direction DROP NOT NULL")?;
                tx.conn.execute("UPDATE messages SET direction = NULL WHERE id = ?", &[Val::Int(message_id)])?;
            } else {
                tx.conn.execute("UPDATE messages SET created_at = 'gestern' WHERE id = ?", &[Val::Int(message_id)])?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let want = if backend == Backend::Postgres {
        "messages.direction is NULL"
    } else {
        "messages.created_at is not an integer"
    };
    match store.message(r.message_id).await {
        Err(StoreError::Corrupt(m)) => assert!(m.contains(want), "{m}"),
        other => panic!("a corrupt message row was not reported: {other:?}"),
    }
}

async fn check_a_corrupt_job_or_user_row_is_reported_not_defaulted(store: &Store) {
    let r = store.ingest(inbound("kaputte-zeile@example.de", "Hallo")).await.unwrap();
    let (_, broken) = queue_reply(store, r.case_id, "Erste Antwort").await;
    let (_, sound) = queue_reply(store, r.case_id, "Zweite Antwort").await;
    let user = store
        .create_user("kaputt@example.de".into(), "Karl Kaputt".into(), Role::Agent, "sehr geheim 123".into())
        .await
        .unwrap();
    // What no code writes: on PostgreSQL a NULL where a value is required (the constraint is
    // dropped first, as in a damaged or hand-edited database); on SQLite, which refuses NULL
    // there, text in an integer column. Read leniently, both were a 0 (no attempts yet, a
    // user created in 1970 or deactivated).
    let backend = store.backend();
    let user_id = user.id;
    store
        .write(move |tx| {
            if backend == Backend::Postgres {
                tx.conn.batch(
                    "ALTER TABLE jobs ALTER COLUMN attempts DROP NOT NULL; \
                     ALTER TABLE users ALTER COLUMN created_at DROP NOT NULL",
                )?;
                tx.conn.execute("UPDATE jobs SET attempts = NULL WHERE id = ?", &[Val::Int(broken)])?;
                tx.conn.execute("UPDATE users SET created_at = NULL WHERE id = ?", &[Val::Int(user_id)])?;
            } else {
                tx.conn.execute("UPDATE jobs SET max_attempts = 'acht' WHERE id = ?", &[Val::Int(broken)])?;
                tx.conn.execute("UPDATE users SET active = 'ja' WHERE id = ?", &[Val::Int(user_id)])?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let (job_column, user_column, what) = match backend {
        Backend::Postgres => ("jobs.attempts", "users.created_at", "is NULL"),
        Backend::Sqlite => ("jobs.max_attempts", "users.active", "is not an integer"),
    };

    // The broken job is not run with made-up values: it goes to the dead letter with the
    // reason, and the rest of the queue goes on.
    let claimed = store.claim_jobs("node-a".into(), 10, 30_000).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [sound]);
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.running, stats.dead), (1, 1), "{stats:?}");
    let last_error = store
        .read(move |c| c.query_opt("SELECT last_error FROM jobs WHERE id = ?", &[Val::Int(broken)]))
        .await
        .unwrap()
        .and_then(|r| r.opt_text(0))
        .unwrap_or_default();
    assert!(last_error.starts_with("corrupt row: "), "{last_error}");
    assert!(last_error.contains(job_column) && last_error.contains(what), "{last_error}");
    assert!(store.claim_jobs("node-b".into(), 10, 30_000).await.unwrap().is_empty(), "never claimed again");

    // The user row is reported, not shown with a made-up value.
    match store.list_users().await {
        Err(StoreError::Corrupt(m)) => assert!(m.contains(user_column) && m.contains(what), "{m}"),
        other => panic!("a corrupt user row was not reported: {other:?}"),
    }
}

/// Events written before events were stored by reference (whole message, case, customer,
/// user, a provider's failure text) are rewritten to references by migration 12, so erasing
/// an object from its own table erases it everywhere; readers still get the current object;
/// running the migration again changes nothing.
async fn check_events_stored_before_references_are_rewritten_by_migration(store: &Store) {
    let r = store.ingest(inbound("erika.m@example.de", "Mein Zähler zeigt 4711 kWh")).await.unwrap();
    let m = store.message(r.message_id).await.unwrap();
    let case = store.case(r.case_id).await.unwrap();
    let customer = store.customer(r.customer_id).await.unwrap();
    let user = store
        .create_user("vera@example.de".into(), "Vera Agent".into(), Role::Agent, "geheim-genug-123".into())
        .await
        .unwrap();
    let mut renamed = user.clone();
    renamed.name = "Vera Neu".into();
    let legacy: Vec<(&str, Option<i64>, Option<i64>, serde_json::Value)> = vec![
        ("message.received", Some(case.id), Some(customer.id), serde_json::json!({ "message": m })),
        ("note.added", Some(case.id), Some(customer.id), serde_json::json!({ "message": m })),
        ("case.created", Some(case.id), Some(customer.id), serde_json::json!({ "case": case })),
        ("customer.created", None, Some(customer.id), serde_json::json!({ "customer": customer })),
        (
            "customer.updated",
            None,
            Some(customer.id),
            serde_json::json!({ "customer": customer, "before": { "name": "Alter Name", "language": customer.language } }),
        ),
        ("customer.updated", None, Some(customer.id), serde_json::json!({ "customer": customer })),
        (
            "case.updated",
            Some(case.id),
            Some(customer.id),
            serde_json::json!({ "case_id": case.id, "changes": { "status": "pending", "subject": "Zähler 4711 kaputt" } }),
        ),
        ("user.created", None, None, serde_json::json!({ "user": user })),
        ("user.updated", None, None, serde_json::json!({ "user": renamed, "before": user })),
        (
            "message.delivery",
            Some(case.id),
            Some(customer.id),
            serde_json::json!({ "message_id": m.id, "state": "failed", "error": "550 user vera@example.de unknown" }),
        ),
    ];
    let first_legacy = store.max_event_id().await.unwrap() + 1;
    store
        .write(move |tx| {
            for (kind, case_id, customer_id, payload) in &legacy {
                tx.conn.execute(
                    "INSERT INTO events (kind, case_id, customer_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                    &kontor_store::params![*kind, *case_id, *customer_id, payload.to_string(), tx.now],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let sql = kontor_store::schema::migration(store.backend(), 12).expect("migration 12");
    let migrate = || async {
        store.write(move |tx| tx.conn.batch(sql)).await.unwrap();
        stored_events(store).await.into_iter().filter(|e| e.id >= first_legacy).collect::<Vec<_>>()
    };
    let events = migrate().await;
    assert_eq!(events.len(), 10);
    let payload = |kind: &str| events.iter().find(|e| e.kind == kind).map(|e| e.payload.clone()).unwrap();
    let payloads = |kind: &str| events.iter().filter(|e| e.kind == kind).map(|e| e.payload.clone()).collect::<Vec<_>>();
    for e in &events {
        let text = e.payload.to_string();
        for personal in ["4711", "erika.m", "vera@example.de", "Vera", "Alter Name"] {
            assert!(!text.contains(personal), "{} still holds {personal:?}: {text}", e.kind);
        }
    }
    let message_ref = serde_json::json!({
        "message_id": m.id, "case_id": case.id, "customer_id": customer.id,
        "channel": "api", "direction": "in", "internal": false,
    });
    assert_eq!(payload("message.received"), message_ref);
    assert_eq!(payload("note.added"), message_ref);
    assert_eq!(
        payload("case.created"),
        serde_json::json!({ "case_id": case.id, "customer_id": customer.id, "channel": "api", "status": "open", "priority": "normal" })
    );
    assert_eq!(
        payload("customer.created"),
        serde_json::json!({ "customer_id": customer.id, "identity_id": customer.identities[0].id })
    );
    assert_eq!(
        payloads("customer.updated"),
        vec![
            serde_json::json!({ "customer_id": customer.id, "changed": ["name"] }),
            serde_json::json!({
                "customer_id": customer.id, "changed": ["identities"],
                "identity_id": customer.identities.last().map(|i| i.id),
            }),
        ]
    );
    assert_eq!(
        payload("case.updated"),
        serde_json::json!({ "case_id": case.id, "changes": { "status": "pending" }, "subject_changed": true })
    );
    assert_eq!(payload("user.created"), serde_json::json!({ "user_id": user.id, "role": "agent" }));
    assert_eq!(
        payload("user.updated"),
        serde_json::json!({
            "user_id": user.id, "role": "agent", "active": true, "changed": ["name"],
            "before": { "role": "agent", "active": true },
        })
    );
    assert_eq!(payload("message.delivery"), serde_json::json!({ "message_id": m.id, "state": "failed" }));

    // Readers still get the message as it is now.
    let rendered = store.client_events_after(first_legacy - 1, 100).await.unwrap();
    let received = rendered.iter().find(|e| e.event.kind == "message.received").unwrap();
    assert_eq!(received.event.payload["message"]["text"], "Mein Zähler zeigt 4711 kWh");

    // Idempotent.
    assert_eq!(migrate().await, events);
}

/// An answer (`refers_to`) joins the case of the message it answers — re-opening it — but only
/// the same customer's; an answer to a message Kontor does not know joins only a case with its
/// subject (so a newsletter reply starts its own case); two customers never share a case.
async fn check_answers_thread_by_reference_then_by_subject_within_the_customer(store: &Store) {
    let mail = |from: &str, subject: &str, id: &str, refers_to: &[&str]| NewInbound {
        channel: Channel::Email,
        subject: Some(subject.into()),
        provider_message_id: Some(id.into()),
        idempotency_scope: format!("from:{from}"),
        refers_to: refers_to.iter().map(|r| r.to_string()).collect(),
        ..inbound(from, &format!("Text zu {subject}"))
    };
    let first = store.ingest(mail("anna@kunde.example", "Rechnung", "a1@kunde.example", &[])).await.unwrap();
    store
        .patch_case(first.case_id, CasePatch { status: Some(CaseStatus::Resolved), ..Default::default() })
        .await
        .unwrap();
    // Another customer who knows the message id does not get into Anna's case.
    let stranger = store
        .ingest(mail("bernd@kunde.example", "Re: Rechnung", "b1@kunde.example", &["a1@kunde.example"]))
        .await
        .unwrap();
    assert_ne!(stranger.case_id, first.case_id);
    // Anna's answer joins her resolved case and opens it again.
    let answer = store
        .ingest(mail("anna@kunde.example", "AW: Rechnung", "a2@kunde.example", &["a1@kunde.example"]))
        .await
        .unwrap();
    assert_eq!(answer.case_id, first.case_id);
    assert_eq!(store.case(first.case_id).await.unwrap().status, CaseStatus::Open);
    // A reply to a newsletter (an id Kontor never saw) does not join her open case.
    let news = store
        .ingest(mail("anna@kunde.example", "Re: Newsletter März", "a3@kunde.example", &["news-99@shop.example"]))
        .await
        .unwrap();
    assert_ne!(news.case_id, first.case_id, "a newsletter reply starts its own case");
    // An answer to an unknown mail with the subject of an open case joins that one, not the
    // newer newsletter case.
    let by_subject = store
        .ingest(mail("anna@kunde.example", "WG: Re: Rechnung", "a4@kunde.example", &["elsewhere@kunde.example"]))
        .await
        .unwrap();
    assert_eq!(by_subject.case_id, first.case_id);
    // A case token (the recipient address) threads an answer without ids, to the same
    // customer's case only.
    let hinted = store
        .ingest(NewInbound {
            case_hint: Some(first.case_id),
            ..mail("anna@kunde.example", "Neu", "a5@kunde.example", &[])
        })
        .await
        .unwrap();
    assert_eq!(hinted.case_id, first.case_id);
    let foreign_hint = store
        .ingest(NewInbound {
            case_hint: Some(first.case_id),
            ..mail("bernd@kunde.example", "Neu", "b2@kunde.example", &[])
        })
        .await
        .unwrap();
    assert_ne!(foreign_hint.case_id, first.case_id, "another customer's token is ignored");
    // The same mail again is one message.
    let again = store
        .ingest(mail("anna@kunde.example", "AW: Rechnung", "a2@kunde.example", &["a1@kunde.example"]))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.message_id, answer.message_id);
}

fn analysis_of(intent: &str) -> kontor_core::MessageAnalysis {
    kontor_core::MessageAnalysis {
        language: Some("de".into()),
        intent: intent.into(),
        intent_confidence: 0.9,
        intent_source: "model".into(),
        intents: vec![],
        sentiment: "neutral".into(),
        sentiment_score: 0.0,
        entities: vec![],
        analysed_at: kontor_core::Timestamp::from_micros(0),
    }
}

/// Stores an analysis batch as the analysis job does.
async fn commit_batch(store: &Store, batch: kontor_store::assist::AnalysedBatch) {
    store.store_analysed(batch).await.unwrap();
}

async fn check_analysis_follows_the_event_log_and_stores_each_message_once(store: &Store) {
    let first = store.ingest(inbound("eins@example.de", "Neue IBAN bitte")).await.unwrap();
    store.add_note(kontor_core::CaseId(first.case_id), "intern".into(), None).await.unwrap();
    let second = store.ingest(inbound("eins@example.de", "Und noch eine Frage zur Rechnung")).await.unwrap();
    let third = store.ingest(inbound("zwei@example.de", "Kündigung")).await.unwrap();

    let batch = store.pending_analysis(2).await.unwrap();
    let ids: Vec<i64> = batch.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![first.message_id, second.message_id], "customer messages in order, no notes");
    assert!(batch.more);
    let make = |b: &kontor_store::assist::PendingAnalysis, intent: &str| kontor_store::assist::AnalysedBatch {
        from: b.from,
        upto: b.upto,
        analyses: b.messages.iter().map(|m| (m.id, analysis_of(intent))).collect(),
        auto: None,
        rules: HashMap::new(),
        public_channels: vec![],
        act_on: HashSet::new(),
    };
    commit_batch(store, make(&batch, "bank_details_change")).await;
    // A second run of the same batch (a lost lease) writes nothing.
    commit_batch(store, make(&batch, "praise")).await;
    let rest = store.pending_analysis(10).await.unwrap();
    assert_eq!(rest.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![third.message_id]);
    assert!(!rest.more);
    assert_eq!(store.analysis_backlog().await.unwrap(), 1);
    commit_batch(store, make(&rest, "cancellation")).await;
    assert_eq!(store.analysis_backlog().await.unwrap(), 0);
    assert!(store.pending_analysis(10).await.unwrap().messages.is_empty());

    let case = store.case_detail(first.case_id).await.unwrap();
    assert_eq!(case.case.intent.as_deref(), Some("bank_details_change"), "the first message's intent");
    let analysed: Vec<Option<&str>> =
        case.messages.iter().map(|m| m.analysis.as_ref().map(|a| a.intent.as_str())).collect();
    assert_eq!(analysed, vec![Some("bank_details_change"), None, Some("bank_details_change")], "notes have none");
    let events = all_events(store).await;
    assert_eq!(events.iter().filter(|e| e.kind == "message.analysed").count(), 3);

    // An agent's correction: the analysis, a training example, the case's intent.
    let corrected =
        store.correct_intent(first.message_id, "complaint".into(), "Neue IBAN bitte".into(), None).await.unwrap();
    assert!(corrected.case_intent_changed);
    assert_eq!(corrected.analysis.intent_source, "agent");
    let examples = store.training_examples().await.unwrap();
    assert_eq!((examples.len(), examples[0].label.as_str()), (1, "complaint"));
    let case = store.case_detail(first.case_id).await.unwrap().case;
    assert_eq!((case.intent.as_deref(), case.intent_source.as_deref()), (Some("complaint"), Some("agent")));
}

async fn check_analysis_is_stored_in_parts_that_each_move_the_cursor(store: &Store) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = store.ingest(inbound(&format!("k{i}@example.de"), &format!("Frage Nummer {i}"))).await.unwrap();
        ids.push(r.message_id);
        if i == 2 {
            // An event between two messages that is not a receipt (an internal note).
            store.add_note(kontor_core::CaseId(r.case_id), "intern".into(), None).await.unwrap();
        }
    }
    let pending = store.pending_analysis(100).await.unwrap();
    assert_eq!(pending.messages.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    let batch = kontor_store::assist::AnalysedBatch {
        from: pending.from,
        upto: pending.upto,
        analyses: pending.messages.iter().map(|m| (m.id, analysis_of("invoice_question"))).collect(),
        auto: None,
        rules: HashMap::new(),
        public_channels: vec![],
        act_on: HashSet::new(),
    };
    let parts = batch.clone().into_parts(&pending.received, 2);
    assert_eq!(parts.iter().map(|p| p.analyses.len()).collect::<Vec<_>>(), vec![2, 2, 1]);
    assert_eq!(parts[0].from, pending.from);
    assert_eq!(parts[2].upto, pending.upto, "the last part takes the cursor where the batch goes");
    for w in parts.windows(2) {
        assert_eq!(w[0].upto, w[1].from, "each part starts where the one before ends");
        assert_eq!(w[0].upto, pending.received[&w[0].analyses.last().unwrap().0]);
    }

    // The run stops after its first part (a crash, a lost lease): only that part is stored,
    // and the next read starts after it.
    assert!(store.store_analysed(parts[0].clone()).await.unwrap());
    assert_eq!(store.analysis_backlog().await.unwrap(), 3);
    let rest = store.pending_analysis(100).await.unwrap();
    assert_eq!(rest.from, parts[0].upto);
    assert_eq!(rest.messages.iter().map(|m| m.id).collect::<Vec<_>>(), ids[2..].to_vec());
    // The stopped run's later parts, or the whole batch again, would store nothing twice: the
    // whole batch no longer starts at the cursor.
    assert!(!store.store_analysed(batch).await.unwrap());
    for part in parts.into_iter().skip(1) {
        assert!(store.store_analysed(part).await.unwrap());
    }
    assert_eq!(store.analysis_backlog().await.unwrap(), 0);
    let events = all_events(store).await;
    assert_eq!(events.iter().filter(|e| e.kind == "message.analysed").count(), 5, "each message once");
}

async fn check_held_replies_wait_for_a_second_staff_user(store: &Store) {
    let author =
        store.create_user("a@example.de".into(), "A".into(), Role::Agent, "sehr geheim 123".into()).await.unwrap();
    let other =
        store.create_user("b@example.de".into(), "B".into(), Role::Agent, "sehr geheim 123".into()).await.unwrap();
    let r = store.ingest(inbound("kunde@example.de", "Hallo")).await.unwrap();
    let mut held = reply("Antwort", 0, true);
    held.author_id = Some(kontor_core::UserId(author.id));
    held.public_channels = vec![Channel::Api];
    let ReplyOutcome::Held { message_id, approval_id, .. } =
        store.reply(r.case_id, held, vec![Channel::Api]).await.unwrap()
    else {
        panic!("a reply on a public channel is held")
    };
    assert_eq!(store.queue_stats().await.unwrap().queued, 0, "no delivery job while held");
    let pending = store.pending_approvals(None).await.unwrap();
    assert_eq!((pending.len(), pending[0].message_id), (1, message_id));
    let by_author = store
        .decide_approval(approval_id, kontor_core::UserId(author.id), kontor_store::approvals::Decision::Approve, None)
        .await;
    assert!(matches!(by_author, Err(StoreError::Forbidden(_))), "{by_author:?}");
    let done = store
        .decide_approval(approval_id, kontor_core::UserId(other.id), kontor_store::approvals::Decision::Approve, None)
        .await
        .unwrap();
    assert_eq!(done.status, "approved");
    assert_eq!(store.queue_stats().await.unwrap().queued, 1, "queued for delivery once approved");
    let again = store
        .decide_approval(approval_id, kontor_core::UserId(other.id), kontor_store::approvals::Decision::Reject, None)
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert!(store.pending_approvals(None).await.unwrap().is_empty());
}
