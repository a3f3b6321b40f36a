//! Staff pages and the session realm over the real router: sign-in, CSRF, cookies, escaping.

use kontor_testkit::server::{set_cookies, TestServer};
use reqwest::header::{ACCEPT_LANGUAGE, COOKIE};
use reqwest::Method;
use serde_json::{json, Value};

/// A server with the staff users anna (admin) and ben (agent) and an admin token.
async fn start() -> TestServer {
    TestServer::start(|_| {}).await.with_staff().await
}

/// Posts an inbound message with the API token; returns the answer.
async fn inbound(app: &TestServer, body: Value) -> Value {
    let (s, v) = app.call("POST", "/api/v1/inbound", Some(body)).await;
    assert!((200..300).contains(&s), "inbound: {s} {v}");
    v
}

#[tokio::test]
async fn sign_in_page_speaks_the_browsers_language() {
    let app = start().await;
    let de = app.http.get(format!("{}/", app.base)).header(ACCEPT_LANGUAGE, "de-DE,de;q=0.9").send().await.unwrap();
    assert_eq!(de.status().as_u16(), 200);
    let html = de.text().await.unwrap();
    assert!(html.contains("Anmelden") && html.contains("Passwort") && html.contains("<form"), "{html}");
    let en = app.http.get(format!("{}/", app.base)).header(ACCEPT_LANGUAGE, "en-US,en;q=0.9").send().await.unwrap();
    let html = en.text().await.unwrap();
    assert!(html.contains("Sign in") && html.contains("Password"));
    // Pages need a session.
    let inbox = app.http.get(format!("{}/inbox", app.base)).send().await.unwrap();
    assert_eq!(inbox.status().as_u16(), 303);
}

#[tokio::test]
async fn sign_in_sets_a_safe_session_cookie_and_sign_out_ends_it() {
    let app = start().await;
    assert_eq!(app.sign_in("anna@example.de", "falsch123").await.err(), Some(401));
    // Without the login page's cookie the form is refused (login CSRF).
    let r = app
        .http
        .post(format!("{}/login", app.base))
        .form(&[("email", "anna@example.de"), ("password", "geheim123"), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    let (login_cookie, csrf) = app.login_page().await;
    let r = app
        .http
        .post(format!("{}/login", app.base))
        .header(COOKIE, format!("kontor_login={login_cookie}"))
        .header("x-forwarded-proto", "https")
        .form(&[("email", "Anna@Example.DE"), ("password", "geheim123"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let set = set_cookies(r.headers());
    let session_cookie = set.iter().find(|c| c.starts_with("kontor_session=")).unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(session_cookie.contains(flag), "{session_cookie} lacks {flag}");
    }
    let (session, page_csrf) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    // Without TLS in front, the cookie cannot be Secure (the browser would drop it).
    let (plain_login, plain_csrf) = app.login_page().await;
    let plain = app
        .http
        .post(format!("{}/login", app.base))
        .header(COOKIE, format!("kontor_login={plain_login}"))
        .form(&[("email", "anna@example.de"), ("password", "geheim123"), ("csrf", &plain_csrf)])
        .send()
        .await
        .unwrap();
    let plain_cookie = set_cookies(plain.headers()).into_iter().find(|c| c.starts_with("kontor_session=")).unwrap();
    assert!(plain_cookie.contains("HttpOnly") && !plain_cookie.contains("Secure"), "{plain_cookie}");
    let (s, html) = app.page(&session, "/inbox").await;
    assert_eq!(s, 200);
    assert!(html.contains("Anna Admin"));

    // Sign-out needs the page's CSRF token, then the session is gone.
    let bad = app.post_form(&session, "/logout", &[("csrf", "wrong")]).await;
    assert_eq!(bad.status().as_u16(), 403);
    let ok = app.post_form(&session, "/logout", &[("csrf", page_csrf.as_str())]).await;
    assert_eq!(ok.status().as_u16(), 303);
    assert_eq!(app.page(&session, "/inbox").await.0, 303);
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_slowed_down() {
    let app = start().await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(app.sign_in("ben@example.de", "falsch123").await.err().unwrap_or(303));
    }
    assert!(codes[..10].iter().all(|c| *c == 401), "{codes:?}");
    assert_eq!(codes[10], 429, "{codes:?}");
    // Even the right password waits out the window.
    assert_eq!(app.sign_in("ben@example.de", "geheim123").await.err(), Some(429));
}

#[tokio::test]
async fn session_api_calls_that_change_things_need_the_csrf_token() {
    let app = start().await;
    let r: Value = inbound(&app, json!({ "from": { "email": "k@example.de" }, "text": "Hallo" })).await;
    let (session, csrf) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let note = |csrf: Option<String>| {
        let mut rb = app
            .with_session(&session, Method::POST, &format!("/api/v1/cases/{}/notes", r["case_id"]))
            .json(&json!({ "text": "Rückruf vereinbart" }));
        if let Some(c) = csrf {
            rb = rb.header("x-csrf-token", c);
        }
        rb.send()
    };
    let without = note(None).await.unwrap();
    assert_eq!(without.status().as_u16(), 403);
    assert_eq!(without.json::<Value>().await.unwrap()["error"]["code"], "csrf");
    assert_eq!(note(Some("falsch".into())).await.unwrap().status().as_u16(), 403);
    let with = note(Some(csrf.clone())).await.unwrap();
    assert_eq!(with.status().as_u16(), 201);
    let body: Value = with.json().await.unwrap();
    assert!(body["message"]["author_id"].is_i64(), "notes carry their author: {body}");
    // Reading needs no CSRF token.
    let (s, _) = app.page(&session, &format!("/api/v1/cases/{}", r["case_id"])).await;
    assert_eq!(s, 200);
    // Presence: sessions may announce themselves, API tokens may not.
    let presence = format!("/api/v1/cases/{}/presence", r["case_id"]);
    let typing = Some(json!({ "state": "typing" }));
    assert_eq!(app.call_in((&session, &csrf), "POST", &presence, typing.clone()).await.0, 204);
    assert_eq!(app.call("POST", &presence, typing).await.0, 422);
}

#[tokio::test]
async fn message_content_is_escaped_and_html_mail_sanitised() {
    let app = start().await;
    let r: Value = inbound(&app, json!({
            "from": { "email": "x@example.de" }, "name": "<b>Mallory</b>", "subject": "<i>Betreff</i>",
            "text": "Hallo <script>alert(1)</script>",
            "html": "<p onclick=\"x()\">Formatiert<script>alert(2)</script><img src=\"https://tracker.example/p.gif\"></p>"
        })).await;
    let (session, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    for path in [format!("/cases/{}", r["case_id"]), "/inbox".to_string()] {
        let (s, html) = app.page(&session, &path).await;
        assert_eq!(s, 200, "{path}");
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(!html.contains("<b>Mallory") && !html.contains("<i>Betreff"), "{path}");
        assert!(html.contains("&lt;b&gt;Mallory"), "{path}");
    }
    let (_, html) = app.page(&session, &format!("/cases/{}", r["case_id"])).await;
    assert!(html.contains("Formatiert") && !html.contains("tracker.example") && !html.contains("onclick"));
    let page = app.with_session(&session, Method::GET, &format!("/cases/{}", r["case_id"])).send().await.unwrap();
    let csp =
        page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    // Unknown or foreign ids are a friendly 404 page.
    assert_eq!(app.page(&session, "/cases/999999").await.0, 404);
    assert_eq!(app.page(&session, "/cases/abc").await.0, 404);
}

#[tokio::test]
async fn agents_see_only_cases_of_their_teams_and_admins_see_all() {
    let app = start().await;
    let api = |method: Method, path: &str, body: Value| app.with_token(&app.token, method, path).json(&body).send();
    let team: Value =
        api(Method::POST, "/api/v1/teams", json!({ "name": "Schaden" })).await.unwrap().json().await.unwrap();
    let mut cases = Vec::new();
    for who in ["team@example.de", "open@example.de"] {
        let r: Value =
            api(Method::POST, "/api/v1/inbound", json!({ "from": { "email": who }, "text": format!("von {who}") }))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        cases.push(r["case_id"].as_i64().unwrap());
    }
    api(Method::PATCH, &format!("/api/v1/cases/{}", cases[0]), json!({ "team_id": team["id"] })).await.unwrap();

    let (ben, _) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    let (_, inbox) = app.page(&ben, "/inbox").await;
    assert!(inbox.contains("open@example.de") && !inbox.contains("team@example.de"), "{inbox}");
    // Nor through search or the event log.
    let (_, found) = app.page(&ben, "/api/v1/search?q=von").await;
    assert!(found.contains("open@example.de") || found.contains(&format!("\"case_id\":{}", cases[1])), "{found}");
    assert!(!found.contains(&format!("\"case_id\":{}", cases[0])), "search hides the team's case: {found}");
    let (_, page) = app.page(&ben, "/inbox?q=team").await;
    assert!(!page.contains(&format!("/cases/{}\"", cases[0])), "{page}");
    let (_, log) = app.page(&ben, "/api/v1/events?after=0&limit=1000").await;
    let log: Value = serde_json::from_str(&log).unwrap();
    assert!(log["items"].as_array().unwrap().iter().all(|e| e["case_id"] != cases[0]), "event log hides it");
    assert!(log["items"].as_array().unwrap().iter().any(|e| e["case_id"] == cases[1]));
    assert_eq!(app.page(&ben, &format!("/cases/{}", cases[0])).await.0, 404);
    assert_eq!(app.page(&ben, &format!("/api/v1/cases/{}", cases[0])).await.0, 404);
    let (_, list) = app.page(&ben, "/api/v1/cases").await;
    let list: Value = serde_json::from_str(&list).unwrap();
    let ids: Vec<i64> = list["items"].as_array().unwrap().iter().filter_map(|c| c["id"].as_i64()).collect();
    assert!(ids.contains(&cases[1]) && !ids.contains(&cases[0]), "{ids:?}");

    // In the team, Ben sees the case.
    let users: Value = app.call("GET", "/api/v1/users", None).await.1;
    let ben_id = users.as_array().unwrap().iter().find(|u| u["email"] == "ben@example.de").unwrap()["id"].clone();
    let r = api(Method::POST, &format!("/api/v1/teams/{}/members", team["id"]), json!({ "user_id": ben_id }))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(app.page(&ben, &format!("/cases/{}", cases[0])).await.0, 200);

    let (anna, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (_, inbox) = app.page(&anna, "/inbox").await;
    assert!(inbox.contains("team@example.de") && inbox.contains("open@example.de"));
}

#[tokio::test]
async fn only_the_assignee_may_reply_when_the_setting_is_on() {
    let app = start().await;
    let r: Value = inbound(&app, json!({ "from": { "email": "k@example.de" }, "text": "Frage" })).await;
    let (anna, anna_csrf) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (ben, ben_csrf) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    let send = |session: String, csrf: String, method: Method, path: String, body: Value| {
        app.with_session(&session, method, &path).header("x-csrf-token", csrf).json(&body).send()
    };
    // Agents may not change settings.
    let s = send(
        ben.clone(),
        ben_csrf.clone(),
        Method::PUT,
        "/api/v1/settings".into(),
        json!({ "reply_only_assignee": true }),
    );
    assert_eq!(s.await.unwrap().status().as_u16(), 403);
    let s = send(
        anna.clone(),
        anna_csrf.clone(),
        Method::PUT,
        "/api/v1/settings".into(),
        json!({ "reply_only_assignee": true }),
    );
    assert_eq!(s.await.unwrap().status().as_u16(), 200);
    let me: Value = app.call("GET", "/api/v1/users", None).await.1;
    let anna_id = me.as_array().unwrap().iter().find(|u| u["email"] == "anna@example.de").unwrap()["id"].clone();
    let case = format!("/api/v1/cases/{}", r["case_id"]);
    let p = send(anna.clone(), anna_csrf.clone(), Method::PATCH, case.clone(), json!({ "assignee_id": anna_id }));
    assert_eq!(p.await.unwrap().status().as_u16(), 200);
    let reply = json!({ "text": "Antwort", "based_on_event_id": 0, "force": true });
    let by_ben = send(ben, ben_csrf, Method::POST, format!("{case}/replies"), reply.clone()).await.unwrap();
    assert_eq!(by_ben.status().as_u16(), 403);
    let body: Value = by_ben.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("assignee"), "{body}");
    let by_anna = send(anna, anna_csrf, Method::POST, format!("{case}/replies"), reply).await.unwrap();
    assert_eq!(by_anna.status().as_u16(), 202);
}

#[tokio::test]
async fn a_case_is_unread_until_the_agent_opens_it_and_again_after_news() {
    let app = start().await;
    let ingest = |text: &'static str| {
        app.with_token(&app.token, Method::POST, "/api/v1/inbound")
            .json(&json!({ "from": { "email": "u@example.de" }, "subject": "Ungelesen?", "text": text }))
            .send()
    };
    let r: Value = ingest("erste").await.unwrap().json().await.unwrap();
    let (anna, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (ben, _) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    let row_is_unread =
        |html: &str| html.contains(&format!("class=\"case unread awaiting\" data-id=\"{}\"", r["case_id"]));
    assert!(row_is_unread(&app.page(&anna, "/inbox/rows").await.1));
    assert_eq!(app.page(&anna, &format!("/cases/{}", r["case_id"])).await.0, 200);
    assert!(!row_is_unread(&app.page(&anna, "/inbox/rows").await.1), "Anna has read it");
    assert!(row_is_unread(&app.page(&ben, "/inbox/rows").await.1), "Ben has not");
    ingest("zweite").await.unwrap();
    assert!(row_is_unread(&app.page(&anna, "/inbox/rows").await.1), "news make it unread again");
}

#[tokio::test]
async fn a_new_password_ends_the_other_sessions() {
    let app = start().await;
    let (laptop, csrf) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (phone, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let r = app
        .post_form(
            &laptop,
            "/profile",
            &[
                ("csrf", csrf.as_str()),
                ("language", "en"),
                ("current_password", "geheim123"),
                ("password", "neues-geheimnis"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(app.page(&laptop, "/inbox").await.0, 200, "the session that changed it stays");
    assert_eq!(app.page(&phone, "/inbox").await.0, 303, "other sessions end");
    assert!(app.page(&laptop, "/inbox").await.1.contains("Inbox"), "the chosen language applies");
    assert_eq!(app.sign_in("anna@example.de", "geheim123").await.err(), Some(401));
    assert!(app.sign_in("anna@example.de", "neues-geheimnis").await.is_ok());
    // Too short: refused with the reason, nothing changes.
    let too_short =
        [("csrf", csrf.as_str()), ("language", "de"), ("current_password", "neues-geheimnis"), ("password", "kurz")];
    let s = app.post_form(&laptop, "/profile", &too_short).await.status().as_u16();
    assert_eq!(s, 422);
    let (_, page) = app.page(&laptop, "/profile").await;
    assert!(page.contains("<option value=\"en\" selected"), "a refused change changes nothing, not even the language");
}

#[tokio::test]
async fn nothing_of_another_teams_cases_reaches_an_agent() {
    let app = start().await;
    let admin = |method: Method, path: &str, body: Value| app.with_token(&app.token, method, path).json(&body).send();
    let team: Value =
        admin(Method::POST, "/api/v1/teams", json!({ "name": "Geheim" })).await.unwrap().json().await.unwrap();
    // One customer with a case of the secret team, and a second customer with a case in view.
    let secret: Value = inbound(&app, json!({ "from": { "email": "vip@example.de" }, "name": "Vera VIP", "subject": "Scheidung", "text": "vertraulich" })).await;
    admin(Method::PATCH, &format!("/api/v1/cases/{}", secret["case_id"]), json!({ "team_id": team["id"] }))
        .await
        .unwrap();
    admin(Method::PATCH, &format!("/api/v1/cases/{}", secret["case_id"]), json!({ "status": "closed" })).await.unwrap();
    // The same customer writes again: a new, unteamed case the agent may see.
    let open: Value =
        inbound(&app, json!({ "from": { "email": "vip@example.de" }, "subject": "Adresse", "text": "neue Adresse" }))
            .await;
    assert_ne!(open["case_id"], secret["case_id"]);
    let hidden_customer: Value = inbound(
        &app,
        json!({ "from": { "email": "hidden@example.de" }, "name": "Hanna Hidden", "text": "nur fürs Team" }),
    )
    .await;
    admin(Method::PATCH, &format!("/api/v1/cases/{}", hidden_customer["case_id"]), json!({ "team_id": team["id"] }))
        .await
        .unwrap();

    let (ben, ben_csrf) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    // The case page's sidebar lists only the customer's cases Ben may see.
    let (s, page) = app.page(&ben, &format!("/cases/{}", open["case_id"])).await;
    assert_eq!(s, 200);
    assert!(!page.contains(&format!("/cases/{}\"", secret["case_id"])) && !page.contains("Scheidung"), "sidebar leaks");
    // Customers: only those with a visible case.
    assert_eq!(app.page(&ben, &format!("/api/v1/customers/{}", hidden_customer["customer_id"])).await.0, 404);
    assert_eq!(app.page(&ben, &format!("/api/v1/customers/{}", open["customer_id"])).await.0, 200);
    let (_, customers) = app.page(&ben, "/api/v1/customers").await;
    assert!(!customers.contains("hidden@example.de") && customers.contains("vip@example.de"), "{customers}");
    let rename = format!("/api/v1/customers/{}", hidden_customer["customer_id"]);
    let (s, _) = app.call_in((&ben, &ben_csrf), "PATCH", &rename, Some(json!({ "name": "Umbenannt" }))).await;
    assert_eq!(s, 404);
    // Search shows neither the hidden customer nor its messages.
    let (_, found) = app.page(&ben, "/api/v1/search?q=Hanna").await;
    let found: Value = serde_json::from_str(&found).unwrap();
    assert_eq!(found["customers"].as_array().map(Vec::len), Some(0), "{found}");
    // The event log has no events of hidden cases or customers, nor staff or token events.
    let (_, log) = app.page(&ben, "/api/v1/events?after=0&limit=1000").await;
    let log: Value = serde_json::from_str(&log).unwrap();
    for e in log["items"].as_array().unwrap() {
        assert_ne!(e["customer_id"], hidden_customer["customer_id"], "{e}");
        assert_ne!(e["case_id"], secret["case_id"], "{e}");
        assert!(!["user.created", "token.created", "team.created"].contains(&e["type"].as_str().unwrap_or("")), "{e}");
    }
    // Team members are for admins.
    assert_eq!(app.page(&ben, &format!("/api/v1/teams/{}/members", team["id"])).await.0, 403);
}

#[tokio::test]
async fn an_open_event_stream_ends_when_its_session_ends() {
    use futures::StreamExt;
    let app = start().await;
    let (anna, csrf) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let stream = app.with_session(&anna, Method::GET, "/api/v1/events/stream").send().await.unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let out = app.post_form(&anna, "/logout", &[("csrf", csrf.as_str())]).await;
    assert_eq!(out.status().as_u16(), 303);
    // Within the re-check interval (5 s) plus the idle wake-up (2 s) the stream closes.
    let mut body = stream.bytes_stream();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(12), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived the session");
}

#[tokio::test]
async fn admins_manage_staff_and_teams_and_one_active_admin_remains() {
    let app = start().await;
    let admin =
        |method: Method, path: String, body: Value| app.with_token(&app.token, method, &path).json(&body).send();
    let users: Value = app.call("GET", "/api/v1/users", None).await.1;
    let id_of =
        |email: &str| users.as_array().unwrap().iter().find(|u| u["email"] == email).unwrap()["id"].as_i64().unwrap();
    let (anna_id, ben_id) = (id_of("anna@example.de"), id_of("ben@example.de"));
    let (ben, _) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    assert_eq!(app.page(&ben, "/inbox").await.0, 200);

    // Deactivating ends Ben's sessions and keeps him out.
    let r = admin(Method::PATCH, format!("/api/v1/users/{ben_id}"), json!({ "active": false })).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["active"], false);
    assert_eq!(app.page(&ben, "/inbox").await.0, 303);
    assert_eq!(app.sign_in("ben@example.de", "geheim123").await.err(), Some(401));
    let r = admin(
        Method::PATCH,
        format!("/api/v1/users/{ben_id}"),
        json!({ "active": true, "role": "admin", "name": "Ben B." }),
    )
    .await
    .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "Ben B.");
    assert!(app.sign_in("ben@example.de", "geheim123").await.is_ok());

    // Demoting both admins is refused at the last one.
    let r = admin(Method::PATCH, format!("/api/v1/users/{ben_id}"), json!({ "role": "agent" })).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = admin(Method::PATCH, format!("/api/v1/users/{anna_id}"), json!({ "active": false })).await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let r = admin(Method::PATCH, format!("/api/v1/users/{anna_id}"), json!({ "role": "agent" })).await.unwrap();
    assert_eq!(r.status().as_u16(), 409);

    // Teams: rename, and deleting one releases its cases to everyone.
    let team: Value =
        admin(Method::POST, "/api/v1/teams".into(), json!({ "name": "Alt" })).await.unwrap().json().await.unwrap();
    let renamed: Value = admin(Method::PATCH, format!("/api/v1/teams/{}", team["id"]), json!({ "name": "Neu" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "Neu");
    let case: Value = inbound(&app, json!({ "from": { "email": "t@example.de" }, "text": "x" })).await;
    admin(Method::PATCH, format!("/api/v1/cases/{}", case["case_id"]), json!({ "team_id": team["id"] })).await.unwrap();
    let (ben, _) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    assert_eq!(app.page(&ben, &format!("/cases/{}", case["case_id"])).await.0, 404);
    let r = admin(Method::DELETE, format!("/api/v1/teams/{}", team["id"]), json!(null)).await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(app.page(&ben, &format!("/cases/{}", case["case_id"])).await.0, 200);
    // The settings page shows it all to admins, and to nobody else.
    let (anna, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (s, page) = app.page(&anna, "/settings").await;
    assert_eq!(s, 200);
    assert!(page.contains("Ben B.") && page.contains("PATCH /api/v1/users/"));
    assert_eq!(app.page(&ben, "/settings").await.0, 403);
}

#[tokio::test]
async fn an_agents_live_stream_carries_only_what_the_agent_may_see() {
    use futures::StreamExt;
    let app = start().await;
    let (_, team) = app.call("POST", "/api/v1/teams", Some(json!({ "name": "Intern" }))).await;
    let hidden = inbound(&app, json!({ "from": { "email": "intern@example.de" }, "text": "erste" })).await;
    app.call("PATCH", &format!("/api/v1/cases/{}", hidden["case_id"]), Some(json!({ "team_id": team["id"] }))).await;
    let (ben, _) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    let stream = app.with_session(&ben, Method::GET, "/api/v1/events/stream").send().await.unwrap();
    // News in the hidden case first, then in a visible one.
    inbound(&app, json!({ "from": { "email": "intern@example.de" }, "text": "geheime Fortsetzung" })).await;
    let visible = inbound(&app, json!({ "from": { "email": "offen@example.de" }, "text": "für alle" })).await;
    let mut body = stream.bytes_stream();
    let mut seen = String::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains(&format!("id: {}", visible["event_id"]))
                || seen.contains(&format!("id:{}", visible["event_id"]))
            {
                break;
            }
        }
    })
    .await;
    assert!(seen.contains("für alle"), "the visible message arrives: {seen}");
    assert!(!seen.contains("geheime Fortsetzung"), "the hidden case's message does not: {seen}");
}

/// A closed port on this machine (nothing listens there: a relay or mailbox that is away).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server that sends e-mail (through a relay that is away: replies stay queued) and a sink
/// that stores mail as the SMTP listener does (files and source in the blob store).
async fn email_server() -> (TestServer, kontor_server::channels::StoreSink) {
    email_server_with(|c| {
        c.email.outbound.relay = Some(format!("smtp://127.0.0.1:{}", closed_port()));
        c.email.outbound.from = Some("Kontor Support <support@support.example.de>".into());
    })
    .await
}

/// A server configured by `configure`, with staff, and the sink the e-mail channel would use.
async fn email_server_with(
    configure: impl FnOnce(&mut kontor_server::Config),
) -> (TestServer, kontor_server::channels::StoreSink) {
    let slot: std::sync::Arc<std::sync::Mutex<Option<kontor_server::channels::StoreSink>>> = Default::default();
    let put = slot.clone();
    let app = TestServer::start_with(configure, move |state| {
        *put.lock().unwrap() = Some(kontor_server::channels::StoreSink::new(state.store.clone(), state.vault.clone()));
    })
    .await
    .with_staff()
    .await;
    let sink = slot.lock().unwrap().take().unwrap();
    (app, sink)
}

/// A mail as the e-mail channel hands it over: sender, subject, source, maybe a file.
fn mail(subject: &str, text: &str, auto_submitted: bool) -> kontor_channel::InboundMessage {
    use kontor_channel::{InboundMessage, RawSource};
    let source = format!(
        "From: Jana Müller <jana.mueller@kunde.example>\r\nTo: support@support.example.de\r\n\
         Subject: {subject}\r\nMessage-ID: <{}@kunde.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n",
        subject.len() + text.len()
    );
    let mut m = InboundMessage::text(
        kontor_core::Channel::Email,
        kontor_core::IdentityKind::Email,
        "jana.mueller@kunde.example",
        text,
    );
    m.name = Some("Jana Müller".into());
    m.subject = Some(subject.into());
    m.auto_submitted = auto_submitted;
    m.to = vec!["support@support.example.de".into()];
    if !auto_submitted {
        m.cc = vec!["kollegin@kunde.example".into()];
    }
    m.raw_source = Some(RawSource::Bytes(source.into_bytes().into()));
    m
}

/// The value of the attribute `attr` of the element with `id` in `html`.
fn attribute(html: &str, id: &str, attr: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..start].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let at = tag.find(&format!(" {attr}=\""))? + attr.len() + 3;
    Some(tag[at..].split('"').next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn an_email_case_shows_the_mail_and_its_composer_sends_subject_and_cc() {
    use kontor_channel::InboundSink;
    let (app, sink) = email_server().await;
    let first =
        sink.accept(mail("Lieferung fehlt – Bestellung 4711", "Die Lieferung 4711 fehlt.", false)).await.unwrap();
    let auto = sink.accept(mail("Abwesenheitsnotiz", "Ich bin bis Montag nicht im Büro.", true)).await.unwrap();
    assert_eq!(first.case_id, auto.case_id, "the auto-reply joins the open case");
    let case_id = first.case_id;
    let (anna, csrf) = app.sign_in("anna@example.de", "geheim123").await.unwrap();

    // The case shows each mail's sender, subject, an auto-reply badge and the source link.
    let (s, page) = app.page(&anna, &format!("/cases/{case_id}")).await;
    assert_eq!(s, 200);
    assert!(page.contains("<dt>Von</dt><dd>Jana Müller &lt;jana.mueller@kunde.example&gt;</dd>"), "{page}");
    assert!(page.contains("<dt>Betreff</dt><dd>Lieferung fehlt – Bestellung 4711</dd>"), "{page}");
    assert!(page.contains("<dt>Betreff</dt><dd>Abwesenheitsnotiz</dd>"), "{page}");
    assert!(page.contains("<dt>An</dt><dd>support@support.example.de</dd>"), "a received mail's To: {page}");
    assert_eq!(page.matches("<dd>kollegin@kunde.example</dd>").count(), 1, "a received mail's Cc: {page}");
    assert_eq!(page.matches("class=\"badge auto-reply\"").count(), 1, "only the auto-reply is marked: {page}");
    assert!(page.contains(">Automatische Antwort</span>"), "{page}");
    for id in [first.message_id, auto.message_id] {
        assert!(page.contains(&format!("href=\"/api/v1/messages/{id}/raw\" download")), "{page}");
    }
    assert!(page.contains(">Quelltext</a>"), "{page}");
    // The source link works for the signed-in agent (the browser sends the session cookie).
    let raw = app
        .with_session(&anna, Method::GET, &format!("/api/v1/messages/{}/raw", first.message_id))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 200);
    assert_eq!(raw.headers()["content-type"], "message/rfc822");
    assert!(raw.text().await.unwrap().contains("Subject: Lieferung fehlt – Bestellung 4711"));

    // The composer answers by e-mail, with the subject as `Re: …` and an empty CC field.
    assert_eq!(attribute(&page, "mail-fields", "hidden"), None, "the e-mail fields are shown: {page}");
    assert!(page.contains("<option value=\"email\" selected>✉ E-Mail</option>"), "{page}");
    let subject = attribute(&page, "reply-subject", "value").unwrap();
    assert_eq!(subject, "Re: Lieferung fehlt – Bestellung 4711");
    assert_eq!(attribute(&page, "reply-cc", "value"), None);
    assert!(attribute(&page, "reply-cc", "data-invalid").unwrap().contains("ist keine gültige E-Mail-Adresse"));
    let en = app
        .with_session(&anna, Method::GET, &format!("/cases/{case_id}"))
        .header(ACCEPT_LANGUAGE, "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(en.contains("<dt>From</dt>") && en.contains(">Auto-reply</span>") && en.contains(">Source</a>"), "{en}");
    assert!(attribute(&en, "reply-cc", "data-invalid").unwrap().contains("is not a valid e-mail address"));
    assert_eq!(attribute(&en, "reply-cc", "placeholder").as_deref(), Some("more recipients, separated by commas"));

    // What the composer posts: an address that is none is refused naming it (the page says
    // which one from the API's message), and nothing is sent.
    let based_on: i64 = attribute(&page, "case", "data-last-event-id").unwrap().parse().unwrap();
    let replies = format!("/api/v1/cases/{case_id}/replies");
    let reply = |cc: Vec<&str>| {
        json!({ "text": "Die Lieferung ist unterwegs.", "based_on_event_id": based_on, "force": false,
                "channel": "email", "subject": subject, "cc": cc })
    };
    let (s, err) = app
        .call_in((&anna, &csrf), "POST", &replies, Some(reply(vec!["buchhaltung@kunde.example", "keine Adresse"])))
        .await;
    assert_eq!((s, err["error"]["details"]["field"].as_str()), (422, Some("cc")), "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("\"keine Adresse\""), "{err}");
    let (_, case) = app.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    assert_eq!(case["messages"].as_array().unwrap().len(), 2, "nothing was sent");

    let (s, sent) = app
        .call_in((&anna, &csrf), "POST", &replies, Some(reply(vec!["Buchhaltung@Kunde.Example", "chef@kunde.example"])))
        .await;
    assert_eq!(s, 202, "{sent}");
    assert_eq!(sent["channel"], "email");
    let (_, case) = app.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    let out = case["messages"].as_array().unwrap().iter().find(|m| m["id"] == sent["message_id"]).unwrap().clone();
    assert_eq!(out["cc"], json!(["buchhaltung@kunde.example", "chef@kunde.example"]), "{out}");
    assert_eq!(out["subject"], "Re: Lieferung fehlt – Bestellung 4711", "not `Re: Re:`: {out}");
    assert_eq!(out["channel"], "email");
    // The timeline shows the reply's recipients.
    let (_, timeline) = app.page(&anna, &format!("/cases/{case_id}/timeline")).await;
    assert!(timeline.contains("<dt>CC</dt><dd>buchhaltung@kunde.example, chef@kunde.example</dd>"), "{timeline}");
    assert!(timeline.contains("<dt>An</dt><dd>Jana Müller &lt;jana.mueller@kunde.example&gt;</dd>"), "{timeline}");
    assert!(timeline.contains("<dt>Von</dt><dd>Kontor Support &lt;support@support.example.de&gt;</dd>"), "{timeline}");
}

#[tokio::test]
async fn the_composer_of_a_case_on_another_channel_hides_the_email_fields() {
    let app = start().await;
    let r = inbound(&app, json!({ "from": { "email": "k@example.de" }, "subject": "Frage", "text": "Hallo" })).await;
    let (anna, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (_, page) = app.page(&anna, &format!("/cases/{}", r["case_id"])).await;
    assert!(page.contains("id=\"mail-fields\" hidden>"), "{page}");
    assert!(page.contains("<option value=\"api\" selected>"), "{page}");
    // E-mail is not set up on this server: it is not offered.
    assert!(!page.contains("<option value=\"email\""), "{page}");
}

#[tokio::test]
async fn the_inbox_preview_shows_what_is_new_in_a_mail_not_the_quoted_conversation() {
    use kontor_channel::InboundSink;
    let (app, sink) = email_server().await;
    let text = "Danke, passt so.\n\nAm 3. März 2025 um 10:00 schrieb Kundenservice <support@support.example.de>:\n\
                > Ihre Rechnung 4711 ist unterwegs.";
    let r = sink.accept(mail("Re: Rechnung", text, false)).await.unwrap();
    let (anna, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (s, inbox) = app.page(&anna, "/inbox").await;
    assert_eq!(s, 200);
    assert!(inbox.contains("<span class=\"preview\">Danke, passt so.</span>"), "{inbox}");
    assert!(!inbox.contains("Ihre Rechnung 4711"), "the quote is not in the preview: {inbox}");
    // The message keeps all of it.
    let (_, case) = app.call("GET", &format!("/api/v1/cases/{}", r.case_id), None).await;
    assert!(case["messages"][0]["text"].as_str().unwrap().contains("> Ihre Rechnung 4711 ist unterwegs."));
}

#[tokio::test]
async fn an_email_case_without_a_relay_offers_email_marked_as_not_set_up() {
    use kontor_channel::InboundSink;
    let (app, sink) = email_server_with(|_| {}).await;
    let r = sink.accept(mail("Re: Rechnung", "Und die Rechnung?", false)).await.unwrap();
    let (anna, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (_, page) = app.page(&anna, &format!("/cases/{}", r.case_id)).await;
    assert!(page.contains("<option value=\"email\" selected>✉ E-Mail (nicht eingerichtet)</option>"), "{page}");
    assert_eq!(attribute(&page, "reply-subject", "value").as_deref(), Some("Re: Rechnung"), "no `Re: Re:`");
}

#[tokio::test]
async fn the_settings_page_says_when_email_is_not_set_up() {
    let app = start().await;
    let (anna, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (s, page) = app.page(&anna, "/settings").await;
    assert_eq!(s, 200);
    assert!(page.contains("<h2>E-Mail</h2>"), "{page}");
    assert!(page.contains("E-Mail ist nicht eingerichtet — siehe README, Abschnitt [email]."), "{page}");
    let en = app
        .with_session(&anna, Method::GET, "/settings")
        .header(ACCEPT_LANGUAGE, "en-GB")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(en.contains("E-mail is not set up — see the README, section [email]."), "{en}");
}

#[tokio::test]
async fn the_settings_page_shows_the_email_channels_settings_and_health_without_passwords() {
    let (relay, mailbox) = (closed_port(), closed_port());
    let app = TestServer::start(|c| {
        c.email.smtp_listen = Some("127.0.0.1:0".into());
        c.email.domains = vec!["support.example.de".into()];
        c.email.outbound.relay = Some(format!("smtp://kontor:Relay-Geheimnis-1@127.0.0.1:{relay}"));
        c.email.outbound.from = Some("Kontor Support <support@support.example.de>".into());
        c.email.imap = vec![serde_json::from_value(json!({
            "name": "info", "url": format!("imap://postfach:Imap-Geheimnis-2@127.0.0.1:{mailbox}/INBOX"),
        }))
        .unwrap()];
    })
    .await
    .with_staff()
    .await;
    let (anna, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    // Wait until the listener runs and the mailbox (away) has reported its error.
    let row = |page: &str, name: &str| {
        let start = page.find(&format!("data-listener=\"{name}\"")).unwrap_or_else(|| panic!("no {name}: {page}"));
        page[start..start + page[start..].find("</tr>").unwrap()].to_string()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let page = loop {
        let (s, page) = app.page(&anna, "/settings").await;
        assert_eq!(s, 200);
        let smtp_runs = row(&page, "email.smtp").contains("listener l-running");
        let imap_failed = row(&page, "email.imap.info").contains("class=\"error-text\">");
        if smtp_runs && imap_failed {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "the listeners never reached their states: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(!page.contains("nicht eingerichtet"), "{page}");
    let smtp = row(&page, "email.smtp");
    assert!(
        smtp.contains("SMTP-Empfang") && smtp.contains("127.0.0.1:0") && smtp.contains("support.example.de"),
        "{smtp}"
    );
    assert!(smtp.contains(">läuft<") && smtp.contains("class=\"last-error\">—"), "no error: {smtp}");
    let imap = row(&page, "email.imap.info");
    assert!(imap.contains("Postfach info") && imap.contains("postfach:***@127.0.0.1"), "{imap}");
    assert!(imap.contains("<time datetime="), "the error has its time: {imap}");
    // (minijinja writes `/` as `&#x2f;`.)
    assert!(page.contains(&format!("smtp:&#x2f;&#x2f;kontor:***@127.0.0.1:{relay}<")), "{page}");
    assert!(page.contains("Kontor Support &lt;support@support.example.de&gt;"), "{page}");
    assert!(page.contains("Letzte E-Mail empfangen: noch nie"), "{page}");
    assert!(!page.contains("Geheimnis"), "no password on the page: {page}");
    // Agents do not see it.
    let (ben, _) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    assert_eq!(app.page(&ben, "/settings").await.0, 403);
}

/// The case page of `case_id` once the message `message_id` shows its analysis (waits for that
/// state, up to `limit`): the analysis job runs after ingest.
async fn page_once_analysed(app: &TestServer, session: &str, lang: &str, case_id: i64, message_id: i64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, case) = app.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
        let analysed = case["messages"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["id"] == message_id))
            .is_some_and(|m| m.get("analysis").is_some_and(|a| !a.is_null()));
        if analysed {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "message {message_id} was never analysed: {case}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let r = app
        .with_session(session, Method::GET, &format!("/cases/{case_id}"))
        .header(ACCEPT_LANGUAGE, lang)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn the_case_page_shows_the_assistants_analysis_with_chips_and_the_style_check() {
    let app = TestServer::start(|c| c.jobs.poll_ms = 20).await.with_staff().await;
    let r = inbound(
        &app,
        json!({
            "from": { "email": "jonas@example.de" }, "name": "Jonas Albrecht", "subject": "Neue Bankverbindung",
            "text": "Guten Tag, ich habe mein Girokonto gewechselt. Bitte buchen Sie die Abschläge künftig von \
                     meiner neuen IBAN DE02 1203 0000 0000 2020 51 ab. Freundliche Grüße, Jonas Albrecht"
        }),
    )
    .await;
    let (case_id, message_id) = (r["case_id"].as_i64().unwrap(), r["message_id"].as_i64().unwrap());
    let (ben, _) = app.sign_in("ben@example.de", "geheim123").await.unwrap();

    let html = page_once_analysed(&app, &ben, "de-DE", case_id, message_id).await;
    // The strip: intent with label and confidence, language, sentiment, the IBAN as a chip.
    assert!(html.contains(r#"class="assist" role="group" aria-label="Digitaler Assistent""#), "{html}");
    assert!(html.contains(r#"data-intent="bank_details_change">Bankverbindung ändern</strong>"#), "{html}");
    let confidence = shown_confidence(&html);
    assert!(confidence.is_some_and(|p| p <= 100), "a confidence in percent: {html}");
    assert!(html.contains("Deutsch") && html.contains("Stimmung"), "{html}");
    assert!(
        html.contains(r#"<button type="button" class="chip" data-insert="DE02120300000000202051" data-kind="iban""#),
        "{html}"
    );
    assert!(html.contains(r#"aria-label="IBAN DE02120300000000202051: In die Antwort einfügen""#), "{html}");
    // The case's intent in its head; the composer's style check with its empty state.
    assert!(html.contains(r#"class="case-intent""#) && html.contains("vom Assistenten erkannt"), "{html}");
    assert!(html.contains(r#"id="style-check""#) && html.contains(r#"data-ok="Keine Auffälligkeiten""#), "{html}");
    assert!(html.contains(r#"data-lang="de""#), "the customer's language is the style check's hint: {html}");
    // The page's live stream starts where the page was read (nothing that happens while it
    // loads is missed): at an event no older than the analysis the page shows.
    let (_, events) = app.call("GET", "/api/v1/events?limit=1000", None).await;
    let analysed = events["items"].as_array().unwrap().iter().find(|e| e["type"] == "message.analysed").unwrap();
    let after: i64 =
        html.split(r#"data-events-after=""#).nth(1).and_then(|r| r.split('"').next()).unwrap().parse().unwrap();
    assert!(after >= analysed["id"].as_i64().unwrap(), "{after} {analysed}");

    // In English, with the same hooks.
    let html = page_once_analysed(&app, &ben, "en-US", case_id, message_id).await;
    assert!(html.contains(r#"data-intent="bank_details_change">Change of bank details</strong>"#), "{html}");
    assert!(html.contains("German") && html.contains(r#"data-ok="No style issues""#), "{html}");
    assert!(html.contains(r#"aria-label="IBAN DE02120300000000202051: Insert into the reply""#), "{html}");

    // The live fragments carry the same: the timeline and the head.
    let (_, timeline) = app.page(&ben, &format!("/cases/{case_id}/timeline")).await;
    assert!(timeline.contains(r#"data-kind="iban""#), "{timeline}");
    let (_, meta) = app.page(&ben, &format!("/cases/{case_id}/meta")).await;
    assert!(meta.contains(r#"class="case-intent""#) && meta.contains("Bankverbindung ändern"), "{meta}");

    // Staff's own writing has no strip: only the customer's message.
    let (s, _) =
        app.call("POST", &format!("/api/v1/cases/{case_id}/notes"), Some(json!({ "text": "IBAN geprüft" }))).await;
    assert_eq!(s, 201);
    let (_, timeline) = app.page(&ben, &format!("/cases/{case_id}/timeline")).await;
    assert_eq!(timeline.matches(r#"class="assist""#).count(), 1, "{timeline}");
}

/// The intent's confidence the page shows ("87 %"), if any.
fn shown_confidence(html: &str) -> Option<u32> {
    let at = html.find(r#"<span class="assist-conf""#)?;
    let rest = &html[at..];
    let text = &rest[rest.find('>')? + 1..rest.find("</span>")?];
    text.strip_suffix(" %")?.trim().parse().ok()
}

#[tokio::test]
async fn messages_without_an_analysis_show_no_assistant_strip() {
    let app = TestServer::start(|c| c.assist.analyse = false).await.with_staff().await;
    let r = inbound(
        &app,
        json!({
            "from": { "email": "jonas@example.de" }, "subject": "Neue Bankverbindung",
            "text": "Meine neue IBAN ist DE02 1203 0000 0000 2020 51."
        }),
    )
    .await;
    let (ben, _) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    let (s, html) = app.page(&ben, &format!("/cases/{}", r["case_id"])).await;
    assert_eq!(s, 200);
    assert!(html.contains("Meine neue IBAN"), "{html}");
    assert!(!html.contains(r#"class="assist""#) && !html.contains("class=\"chip\""), "{html}");
    assert!(!html.contains(r#"class="case-intent""#), "{html}");
    assert!(html.contains(r#"data-lang="""#), "no language hint without an analysis: {html}");
}

#[tokio::test]
async fn a_held_reply_the_alert_and_the_approvals_page() {
    let app = TestServer::start(|c| {
        c.jobs.poll_ms = 20;
        c.assist.public_channels = vec![kontor_core::Channel::Api];
    })
    .await
    .with_staff()
    .await;
    let r = inbound(
        &app,
        json!({ "from": { "email": "kritik@example.de" }, "subject": "Bewertung",
                "text": "Schrecklicher Service, ich bin sehr enttäuscht und wütend!" }),
    )
    .await;
    let (case_id, message_id) = (r["case_id"].as_i64().unwrap(), r["message_id"].as_i64().unwrap());
    let ben = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    let anna = app.sign_in("anna@example.de", "geheim123").await.unwrap();

    // The alert in the case's head; the intent can be corrected there and in the strip.
    let html = page_once_analysed(&app, &ben.0, "de-DE", case_id, message_id).await;
    assert!(html.contains(r#"class="case-alert""#) && html.contains("negative message on a public channel"), "{html}");
    assert!(html.contains(&format!(r#"class="intent-set" data-message-id="{message_id}""#)), "{html}");
    assert!(html.contains(r#"class="intent-set" data-head"#), "{html}");
    assert_eq!(html.matches(r#"<option value="bank_details_change""#).count(), 2, "13 intents in each select: {html}");
    assert!(html.contains(">Bankverbindung ändern</option>"), "{html}");
    assert!(!html.contains(r#"id="draft""#), "no draft button without a language model: {html}");

    // The inbox marks the case; the approvals list is one click (or key) away.
    let (_, inbox) = app.page(&anna.0, "/inbox").await;
    assert!(inbox.contains(r#"class="alert-mark""#), "{inbox}");
    assert!(inbox.contains(r#"<span class="count" id="approvals-count" hidden>0</span>"#), "{inbox}");
    let (_, empty) = app.page(&anna.0, "/approvals").await;
    assert!(empty.contains(r#"id="approvals-empty""#), "{empty}");

    // Ben's reply is held: the case shows it waiting; the list shows it to Anna with buttons,
    // to Ben without.
    let (_, case) = app.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    let (s, r) = app
        .call_in(
            (&ben.0, &ben.1),
            "POST",
            &format!("/api/v1/cases/{case_id}/replies"),
            Some(json!({ "text": "Das tut uns leid, wir melden uns.", "based_on_event_id": case["last_event_id"] })),
        )
        .await;
    assert_eq!((s, r["delivery_state"].as_str()), (202, Some("pending_approval")), "{r}");
    let (_, timeline) = app.page(&ben.0, &format!("/cases/{case_id}/timeline")).await;
    assert!(timeline.contains(r#"class="delivery d-pending_approval">wartet auf Freigabe"#), "{timeline}");
    assert!(timeline.contains("msg out held"), "{timeline}");
    let (_, inbox) = app.page(&anna.0, "/inbox").await;
    assert!(inbox.contains(r#"<span class="count" id="approvals-count">1</span>"#), "{inbox}");
    let (_, count) = app.page(&anna.0, "/approvals/count").await;
    assert_eq!(count, "1");
    let (s, list) = app.page(&anna.0, "/approvals").await;
    assert_eq!(s, 200);
    assert!(
        list.contains("Das tut uns leid, wir melden uns.") && list.contains(&format!(r#"href="/cases/{case_id}""#))
    );
    assert!(list.contains("Antwort auf einem öffentlichen Kanal") && list.contains("Verfasst von Ben"), "{list}");
    assert!(list.contains(r#"class="approve""#) && list.contains(r#"class="reject secondary""#), "{list}");
    let (_, own) = app.page(&ben.0, "/approvals/items").await;
    assert!(own.contains(r#"class="approval-own""#) && !own.contains(r#"class="approve""#), "{own}");

    // Rejected: the case says so and the list is empty again.
    let (_, pending) = app.call_in((&anna.0, &anna.1), "GET", "/api/v1/approvals", None).await;
    let id = pending["items"][0]["id"].as_i64().unwrap();
    let (s, r) = app
        .call_in(
            (&anna.0, &anna.1),
            "POST",
            &format!("/api/v1/approvals/{id}/reject"),
            Some(json!({ "comment": "Ton" })),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (_, timeline) = app.page(&ben.0, &format!("/cases/{case_id}/timeline")).await;
    assert!(timeline.contains(r#"class="delivery d-rejected">abgelehnt"#), "{timeline}");
    let (_, list) = app.page(&anna.0, "/approvals/items").await;
    assert!(list.contains(r#"id="approvals-empty""#), "{list}");
}

#[tokio::test]
async fn automatic_answers_carry_a_badge_and_a_suggest_intent_offers_its_canned_response() {
    let (app, sink) = email_server_with(|c| {
        c.email.outbound.relay = Some(format!("smtp://127.0.0.1:{}", closed_port()));
        c.email.outbound.from = Some("Kontor Support <support@support.example.de>".into());
        c.jobs.poll_ms = 20;
        c.assist.auto_answer_min_confidence = 0.0;
    })
    .await;
    let (s, canned) = app
        .call(
            "POST",
            "/api/v1/canned",
            Some(json!({ "title": "Zählerstand erhalten", "body": "Vielen Dank für Ihren Zählerstand.", "language": "de" })),
        )
        .await;
    assert_eq!(s, 201, "{canned}");
    let set =
        |level: &str| json!({ "intents": [{ "intent": "meter_reading", "level": level, "canned_id": canned["id"] }] });
    let (s, r) = app.call("PUT", "/api/v1/assist/intents", Some(set("auto"))).await;
    assert_eq!(s, 200, "{r}");
    let reading = "Hallo, mein Zählerstand für den Stromzähler beträgt heute 12345 kWh. Zählernummer 1ESY1160";
    use kontor_channel::InboundSink;
    let got = sink.accept(mail("Zählerstand", reading, false)).await.unwrap();
    let anna = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    page_once_analysed(&app, &anna.0, "de-DE", got.case_id, got.message_id).await;
    let (_, timeline) = app.page(&anna.0, &format!("/cases/{}/timeline", got.case_id)).await;
    assert!(timeline.contains(r#"class="badge automatic""#) && timeline.contains("automatisch"), "{timeline}");
    assert_eq!(timeline.matches(r#"class="badge automatic""#).count(), 1, "only the answer: {timeline}");

    // `suggest`: the canned response waits for the agent in the composer, marked as such.
    let (s, r) = app.call("PUT", "/api/v1/assist/intents", Some(set("suggest"))).await;
    assert_eq!(s, 200, "{r}");
    let r =
        inbound(&app, json!({ "from": { "email": "erika@example.de" }, "subject": "Zählerstand", "text": reading }))
            .await;
    let (case_id, message_id) = (r["case_id"].as_i64().unwrap(), r["message_id"].as_i64().unwrap());
    let html = page_once_analysed(&app, &anna.0, "de-DE", case_id, message_id).await;
    assert!(html.contains(r#"id="suggestion""#) && html.contains("Vorschlag des Assistenten"), "{html}");
    assert_eq!(attribute(&html, "suggestion", "data-body").as_deref(), Some("Vielen Dank für Ihren Zählerstand."));
    assert!(html.contains(r#"id="suggestion-clear""#), "{html}");
}

#[tokio::test]
async fn the_settings_page_has_the_assistants_levels_business_hours_and_rules() {
    let app = start().await;
    let (s, canned) = app
        .call(
            "POST",
            "/api/v1/canned",
            Some(json!({ "title": "Kündigung erhalten", "body": "Wir bestätigen Ihre Kündigung." })),
        )
        .await;
    assert_eq!(s, 201, "{canned}");
    let (s, r) = app
        .call(
            "PUT",
            "/api/v1/assist/intents",
            Some(json!({ "intents": [{ "intent": "cancellation", "level": "suggest", "canned_id": canned["id"] }] })),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = app
        .call(
            "PUT",
            "/api/v1/assist/business-hours",
            Some(json!({ "business_hours": { "timezone": "Europe/Berlin", "days": { "mon": [["08:00", "12:00"], ["13:00", "17:00"]] } } })),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = app
        .call(
            "POST",
            "/api/v1/rules",
            Some(json!({ "name": "Kündigungen prüfen", "enabled": false,
                         "conditions": { "intents": ["cancellation"], "sentiments": ["negative"], "keywords": ["sofort"] },
                         "actions": [{ "type": "require_approval" }, { "type": "add_tag", "tag": "kuendigung" }] })),
        )
        .await;
    assert_eq!(s, 201, "{r}");

    let (anna, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (s, html) = app.page(&anna, "/settings").await;
    assert_eq!(s, 200);
    assert!(html.contains(r#"id="assistant-settings""#) && html.contains("<h2>Assistent</h2>"), "{html}");
    assert_eq!(html.matches("<tr data-intent=").count(), 13, "one row per intent: {html}");
    assert!(html.contains(r#"<tr data-intent="cancellation"><th scope="row">Kündigung</th>"#), "{html}");
    assert!(html.contains(r#"<option value="suggest" selected>Vorschlag</option>"#), "{html}");
    assert!(html.contains(&format!(r#"<option value="{}" selected>Kündigung erhalten"#, canned["id"])), "{html}");
    // Business hours: Monday's two spans, closed on the other days.
    assert_eq!(attribute(&html, "hours-mon", "value").as_deref(), Some("08:00-12:00, 13:00-17:00"));
    assert_eq!(attribute(&html, "hours-tue", "value").as_deref(), Some(""));
    assert_eq!(attribute(&html, "hours-zone", "value").as_deref(), Some("Europe&#x2f;Berlin"), "escaped as HTML");
    // The rule, disabled, in words; its data for the edit form.
    assert!(html.contains(r#"<li class="rule off""#) && html.contains("Kündigungen prüfen"), "{html}");
    assert!(
        html.contains("Anliegen: Kündigung · Stimmung: negativ · Stichwörter: „sofort“ → Antworten brauchen Freigabe, Schlagwort kuendigung"),
        "{html}"
    );
    assert!(html.contains(r#"class="secondary rule-dry-run">Probelauf</button>"#), "{html}");
    assert!(html.contains(r#"id="rules-json""#) && html.contains(r#""require_approval""#), "{html}");
    assert!(html.contains(r#"id="rule-form""#) && html.contains(r#"name="require_approval""#), "{html}");

    // Agents do not get the settings.
    let (ben, _) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    let (s, _) = app.page(&ben, "/settings").await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn the_composer_offers_a_draft_only_where_a_language_model_is_configured() {
    let app = TestServer::start(|c| c.assist.llm.base_url = Some(format!("http://127.0.0.1:{}/v1", closed_port())))
        .await
        .with_staff()
        .await;
    let r =
        inbound(&app, json!({ "from": { "email": "jonas@example.de" }, "text": "Wo bleibt meine Rechnung?" })).await;
    let (ben, _) = app.sign_in("ben@example.de", "geheim123").await.unwrap();
    let (s, html) = app.page(&ben, &format!("/cases/{}", r["case_id"])).await;
    assert_eq!(s, 200);
    assert!(html.contains(r#"<button type="button" id="draft" class="secondary""#), "{html}");
    assert_eq!(attribute(&html, "draft", "data-failed").as_deref(), Some("Kein Entwurf möglich"));
}
