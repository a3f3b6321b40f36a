//! What an agent's requests reveal about customers and cases of teams the agent is not in,
//! and what merges such an agent may do — over the real router, as a signed-in staff session
//! of role agent (API tokens and admins see everything).

use kontor_core::Role;
use kontor_testkit::server::{error_message, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

struct App {
    server: TestServer,
    /// Ben's session cookie and its CSRF token (an agent in no team).
    ben: (String, String),
    /// A team Ben is not in.
    team: i64,
}

async fn start() -> App {
    let server = TestServer::start(|_| {}).await;
    let ben = server.staff("ben@example.de", "Ben Berger", Role::Agent).await;
    let session = server.store.create_session(ben.id, 3600).await.unwrap();
    let csrf = server.store.session(&session).await.unwrap().unwrap().csrf;
    let mut app = App { server, ben: (session, csrf), team: 0 };
    let (s, team) = app.admin(Method::POST, "/api/v1/teams", json!({ "name": "Geschäftsleitung" })).await;
    assert_eq!(s, 201, "{team}");
    app.team = team["id"].as_i64().unwrap();
    app
}

impl App {
    /// A request with the admin API token.
    async fn admin(&self, method: Method, path: &str, body: Value) -> (u16, Value) {
        self.server.call(method, path, Some(body)).await
    }

    /// A request as Ben, the agent, with his session and CSRF token.
    async fn ben(&self, method: Method, path: &str, body: Value) -> (u16, Value) {
        self.server.call_in((&self.ben.0, &self.ben.1), method, path, Some(body)).await
    }

    /// A message from a new or known customer: (customer id, case id).
    async fn inbound(&self, email: &str, text: &str) -> (i64, i64) {
        let (s, r) =
            self.admin(Method::POST, "/api/v1/inbound", json!({ "from": { "email": email }, "text": text })).await;
        assert!(s == 200 || s == 201, "inbound: {s} {r}");
        (r["customer_id"].as_i64().unwrap(), r["case_id"].as_i64().unwrap())
    }

    /// Puts a case into the team Ben is not in.
    async fn hide(&self, case: i64) {
        let (s, r) = self.admin(Method::PATCH, &format!("/api/v1/cases/{case}"), json!({ "team_id": self.team })).await;
        assert_eq!(s, 200, "{r}");
    }

    /// The customer a case belongs to now (as the admin sees it).
    async fn customer_of(&self, case: i64) -> i64 {
        let (s, r) = self.admin(Method::GET, &format!("/api/v1/cases/{case}"), Value::Null).await;
        assert_eq!(s, 200, "{r}");
        r["customer_id"].as_i64().unwrap()
    }
}

#[tokio::test]
async fn adding_an_address_of_a_hidden_customer_names_that_customer_only_to_those_who_see_it() {
    let app = start().await;
    let (visible, _) = app.inbound("vera@example.de", "Hallo").await;
    let (other_visible, _) = app.inbound("otto@example.de", "Guten Tag").await;
    let (hidden, hidden_case) = app.inbound("hanna@example.de", "vertraulich").await;
    app.hide(hidden_case).await;

    let path = format!("/api/v1/customers/{visible}/identities");
    // The agent learns that the address cannot be added, but not whose it is.
    let (s, r) = app.ben(Method::POST, &path, json!({ "kind": "email", "address": "hanna@example.de" })).await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(error_message(&r), "this email address cannot be added to this customer", "{r}");
    assert!(!r.to_string().contains(&format!("customer {hidden}")), "reveals the hidden customer: {r}");
    // An owner the agent may see is named, so the agent can merge the two.
    let (s, r) = app.ben(Method::POST, &path, json!({ "kind": "email", "address": "otto@example.de" })).await;
    assert_eq!(s, 409, "{r}");
    assert!(error_message(&r).contains(&format!("belongs to customer {other_visible}")), "{r}");
    // Admins (and API tokens) are told the owner.
    let (s, r) = app.admin(Method::POST, &path, json!({ "kind": "email", "address": "hanna@example.de" })).await;
    assert_eq!(s, 409, "{r}");
    assert!(error_message(&r).contains(&format!("belongs to customer {hidden}")), "{r}");
    // A free address is added; the hidden customer itself answers like a missing one.
    let (s, r) = app.ben(Method::POST, &path, json!({ "kind": "email", "address": "vera.neu@example.de" })).await;
    assert_eq!(s, 200, "{r}");
    let missing = hidden + 10_000;
    for id in [hidden, missing] {
        let (s, r) = app
            .ben(
                Method::POST,
                &format!("/api/v1/customers/{id}/identities"),
                json!({ "kind": "email", "address": "x@example.de" }),
            )
            .await;
        assert_eq!((s, error_message(&r).to_string()), (404, format!("customer {id} not found")), "{r}");
    }
}

#[tokio::test]
async fn an_agent_cannot_merge_customers_when_a_case_of_either_is_hidden() {
    let app = start().await;
    let (target, _) = app.inbound("tom@example.de", "Bestellung 17").await;
    // The source customer has a visible case and one of a team Ben is not in.
    let (source, open_case) = app.inbound("sara@example.de", "Bestellung 17 fehlt").await;
    let (second, secret_case) = app.inbound("sara.privat@example.de", "vertraulich").await;
    let (s, r) =
        app.admin(Method::POST, &format!("/api/v1/customers/{source}/merge"), json!({ "source_id": second })).await;
    assert_eq!(s, 200, "{r}");
    app.hide(secret_case).await;
    assert_eq!(app.ben(Method::GET, &format!("/api/v1/customers/{source}"), Value::Null).await.0, 200);

    // Pulling the source into the target would move the hidden case: refused, nothing moves.
    let (s, r) =
        app.ben(Method::POST, &format!("/api/v1/customers/{target}/merge"), json!({ "source_id": source })).await;
    assert_eq!(s, 403, "{r}");
    assert!(!r.to_string().contains(&secret_case.to_string()), "names the hidden case: {r}");
    assert_eq!(app.customer_of(secret_case).await, source);
    assert_eq!(app.customer_of(open_case).await, source);
    // The other way round too: the hidden case is then the target's.
    let (s, r) =
        app.ben(Method::POST, &format!("/api/v1/customers/{source}/merge"), json!({ "source_id": target })).await;
    assert_eq!(s, 403, "{r}");

    // A customer whose every case is hidden answers like one that does not exist.
    let (hidden, hidden_case) = app.inbound("hanna@example.de", "geheim").await;
    app.hide(hidden_case).await;
    for id in [hidden, hidden + 10_000] {
        let (s, r) =
            app.ben(Method::POST, &format!("/api/v1/customers/{target}/merge"), json!({ "source_id": id })).await;
        assert_eq!((s, error_message(&r).to_string()), (404, format!("customer {id} not found")), "{r}");
    }
    assert_eq!(app.customer_of(hidden_case).await, hidden);

    // Customers whose cases the agent all sees can be merged by the agent; the admin merges any.
    let (plain, plain_case) = app.inbound("paul@example.de", "Frage").await;
    let (s, r) =
        app.ben(Method::POST, &format!("/api/v1/customers/{target}/merge"), json!({ "source_id": plain })).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(app.customer_of(plain_case).await, target);
    let (s, r) =
        app.admin(Method::POST, &format!("/api/v1/customers/{target}/merge"), json!({ "source_id": source })).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(app.customer_of(secret_case).await, target);
}

#[tokio::test]
async fn a_case_merge_treats_hidden_cases_like_missing_ones_and_names_none() {
    let app = start().await;
    let (customer, first) = app.inbound("kurt@example.de", "Rechnung falsch").await;
    // Three cases of one customer: two more customers merged into the first.
    let (c2, second) = app.inbound("kurt.mobil@example.de", "Rechnung falsch!").await;
    let (c3, third) = app.inbound("kurt.arbeit@example.de", "Rechnung").await;
    for source in [c2, c3] {
        let (s, r) = app
            .admin(Method::POST, &format!("/api/v1/customers/{customer}/merge"), json!({ "source_id": source }))
            .await;
        assert_eq!(s, 200, "{r}");
    }
    // The admin merges the second case into the third, and the third goes to a hidden team.
    let (s, r) = app.admin(Method::POST, &format!("/api/v1/cases/{third}/merge"), json!({ "source_id": second })).await;
    assert_eq!(s, 200, "{r}");
    app.hide(third).await;

    // A hidden source answers like a missing one.
    for id in [third, third + 10_000] {
        let (s, r) = app.ben(Method::POST, &format!("/api/v1/cases/{first}/merge"), json!({ "source_id": id })).await;
        assert_eq!((s, error_message(&r).to_string()), (404, format!("case {id} not found")), "{r}");
    }
    // The second case (still visible) was merged; the refusal does not name the hidden case.
    let (s, r) = app.ben(Method::POST, &format!("/api/v1/cases/{first}/merge"), json!({ "source_id": second })).await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(error_message(&r), format!("case {second} was already merged into another case"), "{r}");
    // The admin is told where it went.
    let (s, r) = app.admin(Method::POST, &format!("/api/v1/cases/{first}/merge"), json!({ "source_id": second })).await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(error_message(&r), format!("case {second} was already merged into case {third}"), "{r}");
}
