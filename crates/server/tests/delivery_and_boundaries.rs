//! Boundaries found by a review of attachments, channels and delivery reports:
//! - markup uploads are never recorded or served as `text/html` / `text/xml`;
//! - a reply's attachments reach the channel's sender;
//! - a channel's webhook cannot change the delivery state of another channel's message;
//! - a delivery report that arrives before the send job recorded the provider id is kept and
//!   applied once it is.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use kontor_channel::{Outbound, OutboundMessage, SendError, SendReceipt};
use kontor_core::Channel;
use kontor_testkit::fake_sms::{FakeSmsWebhook, TOKEN};
use kontor_testkit::server::TestServer;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A sender that records what it sends; with a gate, it announces the provider id and waits
/// for the test before returning (a provider whose status callback is faster than Kontor).
struct Sender {
    channel: Channel,
    sent: Mutex<Vec<OutboundMessage>>,
    gate: Option<(mpsc::UnboundedSender<String>, Arc<Notify>)>,
}

#[async_trait::async_trait]
impl Outbound for Sender {
    fn channel(&self) -> Channel {
        self.channel
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let pid = format!("{}-{}", self.channel.as_str(), message.message_id);
        self.sent.lock().unwrap().push(message.clone());
        if let Some((announce, release)) = &self.gate {
            let _ = announce.send(pid.clone());
            release.notified().await;
        }
        Ok(SendReceipt { provider_message_id: Some(pid) })
    }
}

fn sender(channel: Channel) -> Arc<Sender> {
    Arc::new(Sender { channel, sent: Mutex::default(), gate: None })
}

async fn start(senders: Vec<Arc<Sender>>) -> TestServer {
    TestServer::start_with(
        |c| {
            c.jobs.poll_ms = 20;
            c.jobs.backoff_base_ms = 10;
            c.jobs.backoff_max_ms = 20;
        },
        move |state| {
            let mut channels = kontor_channels::registry(&state.config.channels()).unwrap();
            channels.add_webhook(Arc::new(FakeSmsWebhook));
            for s in senders {
                channels.add_outbound(s);
            }
            state.channels = Arc::new(channels);
        },
    )
    .await
}

async fn hook(server: &TestServer, path: &str, body: Value) -> u16 {
    let r = server
        .http
        .post(server.url(&format!("/webhooks/{path}")))
        .header("x-fake-token", TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

async fn last_event(server: &TestServer, case_id: &Value) -> Value {
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    case["last_event_id"].clone()
}

async fn message(server: &TestServer, case_id: &Value, id: &Value) -> Value {
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    case["messages"].as_array().unwrap().iter().find(|m| m["id"] == *id).cloned().unwrap()
}

#[tokio::test]
async fn markup_uploads_are_never_served_as_html_or_xml() {
    let server = TestServer::start(|_| {}).await;
    let files = [
        ("seite.txt", "text/plain", &b"<html><body><script>alert(document.cookie)</script></body></html>"[..]),
        (
            "bild.png",
            "image/png",
            &b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>"[..],
        ),
        ("x.txt", "text/plain", &b"<script>alert(1)</script>"[..]),
    ];
    let attachments: Vec<Value> = files
        .iter()
        .map(|(name, ty, bytes)| json!({ "filename": name, "content_type": ty, "content_base64": b64(bytes) }))
        .collect();
    let body = json!({ "from": { "email": "xss@example.de" }, "text": "Anhang", "attachments": attachments });
    let (s, r) = server.call("POST", "/api/v1/inbound", Some(body)).await;
    assert_eq!(s, 201, "{r}");
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{}", r["case_id"]), None).await;
    for a in case["messages"][0]["attachments"].as_array().unwrap() {
        let resp = server
            .with_token(&server.token, reqwest::Method::GET, &format!("/api/v1/attachments/{}", a["id"]))
            .send()
            .await
            .unwrap();
        let ty = resp.headers()["content-type"].to_str().unwrap().to_ascii_lowercase();
        assert!(
            !ty.contains("html") && !ty.contains("xml"),
            "{} is served as {ty} (recorded as {})",
            a["filename"],
            a["content_type"]
        );
    }
}

#[tokio::test]
async fn a_replys_attachments_reach_the_channels_sender() {
    let api = sender(Channel::Api);
    let server = start(vec![api.clone()]).await;
    let (s, r) = server
        .call("POST", "/api/v1/inbound", Some(json!({ "from": { "email": "kunde@example.de" }, "text": "Hallo" })))
        .await;
    assert_eq!(s, 201, "{r}");
    let file = json!([{ "filename": "Rechnung.pdf", "content_type": "application/pdf",
        "content_base64": b64(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\nrechnung") }]);
    let based_on = last_event(&server, &r["case_id"]).await;
    let (s, reply) = server
        .call(
            "POST",
            &format!("/api/v1/cases/{}/replies", r["case_id"]),
            Some(json!({ "text": "Anbei die Rechnung.", "based_on_event_id": based_on, "attachments": file })),
        )
        .await;
    assert_eq!(s, 202, "{reply}");
    server.wait_delivery(&r["case_id"], &reply["message_id"], "sent", Duration::from_secs(10)).await;
    let sent = api.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].attachments.len(),
        1,
        "the reply was stored with a file and marked sent, but the file was never handed to the sender"
    );
}

#[tokio::test]
async fn a_channels_webhook_cannot_change_another_channels_message() {
    let api = sender(Channel::Api);
    let server = start(vec![api.clone()]).await;
    let (_, r) = server
        .call("POST", "/api/v1/inbound", Some(json!({ "from": { "email": "api@example.de" }, "text": "Hallo" })))
        .await;
    let based_on = last_event(&server, &r["case_id"]).await;
    let (s, reply) = server
        .call(
            "POST",
            &format!("/api/v1/cases/{}/replies", r["case_id"]),
            Some(json!({ "text": "Antwort", "based_on_event_id": based_on })),
        )
        .await;
    assert_eq!(s, 202, "{reply}");
    let m = server.wait_delivery(&r["case_id"], &reply["message_id"], "sent", Duration::from_secs(10)).await;
    let pid = m["provider_message_id"].as_str().unwrap().to_string();
    // The SMS webhook reports on the API channel's message.
    let s = hook(&server, "sms/status", json!({ "id": pid, "status": "failed", "channel": "api" })).await;
    assert!(s == 200 || s >= 400, "{s}");
    let m = message(&server, &r["case_id"], &reply["message_id"]).await;
    assert_eq!(m["delivery_state"], "sent", "the sms webhook changed an api message: {m}");
}

#[tokio::test]
async fn a_delivery_report_faster_than_the_send_job_is_not_lost() {
    let (announce, mut announced) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let sms =
        Arc::new(Sender { channel: Channel::Sms, sent: Mutex::default(), gate: Some((announce, release.clone())) });
    let server = start(vec![sms]).await;
    assert_eq!(
        hook(&server, "sms/inbound", json!({ "from": "+491701234567", "text": "Hallo", "id": "in-1" })).await,
        200
    );
    let (_, cases) = server.call("GET", "/api/v1/cases", None).await;
    let case_id = cases["items"][0]["id"].clone();
    let based_on = last_event(&server, &case_id).await;
    let (s, reply) = server
        .call(
            "POST",
            &format!("/api/v1/cases/{case_id}/replies"),
            Some(json!({ "text": "Wir kommen morgen.", "based_on_event_id": based_on })),
        )
        .await;
    assert_eq!(s, 202, "{reply}");
    // The provider took the message and calls back before the send job has finished.
    let pid = tokio::time::timeout(Duration::from_secs(10), announced.recv()).await.unwrap().unwrap();
    let status = hook(&server, "sms/status", json!({ "id": pid, "status": "delivered" })).await;
    release.notify_one();
    // Wait until the send job has recorded its outcome (the provider id is known then).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = message(&server, &case_id, &reply["message_id"]).await;
        if !m["provider_message_id"].is_null() {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "the send job never finished: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status >= 500 || m["delivery_state"] == "delivered",
        "the early 'delivered' report was answered {status} (so the provider will not send it again) and dropped: {m}"
    );
}
