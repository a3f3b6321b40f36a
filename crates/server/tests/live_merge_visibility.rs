//! Events are rendered at read time with the current message, and their audience comes from
//! the case the event was written for. After a case merge the messages live in the target
//! case: an agent who sees the (merged) source case but not the target must not get the moved
//! messages' text through the source case's old message events (found by a review).

use kontor_core::Role;
use kontor_testkit::server::TestServer;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn an_agent_gets_no_message_text_of_a_hidden_case_through_events_of_a_case_merged_into_it() {
    let server = TestServer::start(|_| {}).await;
    let ben = server.staff("ben@example.de", "Ben Berger", Role::Agent).await;
    let session = server.store.create_session(ben.id, 3600).await.unwrap();
    let csrf = server.store.session(&session).await.unwrap().unwrap().csrf;
    let admin = |m: Method, p: String, b: Value| {
        let server = &server;
        async move { server.call(m, &p, Some(b)).await }
    };
    let (s, team) = admin(Method::POST, "/api/v1/teams".into(), json!({ "name": "Geschäftsleitung" })).await;
    assert_eq!(s, 201, "{team}");
    let team = team["id"].as_i64().unwrap();
    let inbound = |email: &'static str, text: &'static str| {
        let admin = &admin;
        async move {
            let (s, r) =
                admin(Method::POST, "/api/v1/inbound".into(), json!({ "from": { "email": email }, "text": text }))
                    .await;
            assert!(s == 200 || s == 201, "inbound: {s} {r}");
            (r["customer_id"].as_i64().unwrap(), r["case_id"].as_i64().unwrap())
        }
    };

    // One customer with two cases: the target goes to a team Ben is not in; the source has
    // no team (Ben sees it) and holds a confidential message.
    let (customer, target) = inbound("kurt@example.de", "Hallo").await;
    let (second, source) = inbound("kurt.privat@example.de", "VERTRAULICH-IBAN-DE12").await;
    let (s, r) =
        admin(Method::POST, format!("/api/v1/customers/{customer}/merge"), json!({ "source_id": second })).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = admin(Method::PATCH, format!("/api/v1/cases/{target}"), json!({ "team_id": team })).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = admin(Method::POST, format!("/api/v1/cases/{target}/merge"), json!({ "source_id": source })).await;
    assert_eq!(s, 200, "{r}");

    // The message now lives in the hidden case: Ben cannot read it there.
    let (s, r) =
        server.call_in((&session, &csrf), Method::GET, &format!("/api/v1/cases/{target}/messages"), None).await;
    assert_eq!(s, 404, "{r}");

    // ... but the event log hands it to him.
    let (s, page) = server.call_in((&session, &csrf), Method::GET, "/api/v1/events?after=0&limit=1000", None).await;
    assert_eq!(s, 200, "{page}");
    let leaked: Vec<&Value> =
        page["items"].as_array().unwrap().iter().filter(|e| e.to_string().contains("VERTRAULICH-IBAN-DE12")).collect();
    assert!(
        leaked.is_empty(),
        "an agent reads a hidden case's message through the events of a merged case: {leaked:?}"
    );
}
