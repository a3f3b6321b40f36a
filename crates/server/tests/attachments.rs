//! Attachments end to end over the real router: bytes inline (`content_base64`) or as
//! multipart `file` parts, stored encrypted in the blob store, listed in the case with id, size
//! and SHA-256, downloaded with safe headers under the case's visibility, never stored twice
//! for a retry, and swept when their message never committed.

use base64::Engine;
use kontor_core::Role;
use kontor_testkit::server::TestServer;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A PDF-looking file with bytes that are not UTF-8.
fn pdf() -> Vec<u8> {
    let mut v = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    v.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    v.extend_from_slice(b"\n%%EOF\n");
    v
}

/// Objects in the local blob store (the key check not counted).
fn blob_count(server: &TestServer) -> usize {
    fn walk(dir: &std::path::Path, n: &mut usize) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|f| f != "_kontor") {
                    walk(&p, n);
                }
            } else if !p.file_name().is_some_and(|f| f.to_string_lossy().starts_with('.')) {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&server.data_dir().join("blobs"), &mut n);
    n
}

async fn download(server: &TestServer, token: &str, id: &Value) -> reqwest::Response {
    server.with_token(token, reqwest::Method::GET, &format!("/api/v1/attachments/{id}")).send().await.unwrap()
}

#[tokio::test]
async fn an_inline_attachment_is_stored_encrypted_listed_and_downloaded_with_safe_headers() {
    let server = TestServer::start(|_| {}).await;
    let bytes = pdf();
    let msg = json!({
        "from": { "email": "anna@example.de" }, "text": "Anbei der Vertrag.",
        "attachments": [
            { "filename": "../Vertrag \"neu\".pdf", "content_type": "text/html", "content_base64": b64(&bytes) },
            { "filename": "Foto.jpg", "content_type": "image/jpeg", "size": 1234, "url": "https://crm.example/f/1" }
        ]
    });
    let (s, r) = server.call("POST", "/api/v1/inbound", Some(msg)).await;
    assert_eq!(s, 201, "{r}");
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{}", r["case_id"]), None).await;
    let atts = case["messages"][0]["attachments"].as_array().cloned().unwrap();
    assert_eq!(atts.len(), 2, "{atts:?}");
    let a = &atts[0];
    assert!(a["id"].is_i64(), "{a}");
    assert_eq!(a["size"], bytes.len());
    assert_eq!(a["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(a["content_type"], "application/pdf", "the type comes from the bytes, not the sender");
    assert!(a["url"].is_null());
    assert!(a.get("blob_id").is_none(), "the blob id stays internal");

    let resp = download(&server, &server.token, &a["id"]).await;
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let disposition = h["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.starts_with("attachment; filename=\"Vertrag _neu_.pdf\""), "{disposition}");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // The bytes on disk are not the plaintext.
    let needle = &bytes[20..60];
    let mut found_plain = false;
    for e in walkdir(&server.data_dir().join("blobs")) {
        let data = std::fs::read(&e).unwrap();
        found_plain |= data.windows(needle.len()).any(|w| w == needle);
    }
    assert!(!found_plain, "the blob store holds plaintext");

    // A link has an id but no bytes here.
    assert!(atts[1]["id"].is_i64());
    assert_eq!(atts[1]["url"], "https://crm.example/f/1");
    assert_eq!(download(&server, &server.token, &atts[1]["id"]).await.status().as_u16(), 404);
    assert_eq!(download(&server, &server.token, &json!(999_999)).await.status().as_u16(), 404);
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn an_agent_of_another_team_gets_404_for_an_attachment_of_a_hidden_case() {
    let server = TestServer::start(|_| {}).await;
    let (s, r) = server
        .call(
            "POST",
            "/api/v1/inbound",
            Some(json!({ "from": { "email": "vip@example.de" }, "text": "Geheim",
                "attachments": [{ "filename": "a.txt", "content_type": "text/plain", "content_base64": b64(b"geheim") }] })),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{}", r["case_id"]), None).await;
    let id = case["messages"][0]["attachments"][0]["id"].clone();
    let (_, team) = server.call("POST", "/api/v1/teams", Some(json!({ "name": "Vorstand" }))).await;
    let (s, _) =
        server.call("PATCH", &format!("/api/v1/cases/{}", r["case_id"]), Some(json!({ "team_id": team["id"] }))).await;
    assert_eq!(s, 200);
    let ben = server.staff("ben@example.de", "Ben Berger", Role::Agent).await;
    let session = server.store.create_session(ben.id, 3600).await.unwrap();
    let r =
        server.with_session(&session, reqwest::Method::GET, &format!("/api/v1/attachments/{id}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let agent_token = server.token("agent", Role::Agent).await;
    assert_eq!(download(&server, &agent_token, &id).await.status().as_u16(), 200, "agent tokens see all cases");
}

#[tokio::test]
async fn a_retry_with_the_same_key_stores_no_second_copy_and_other_content_conflicts() {
    let server = TestServer::start(|_| {}).await;
    let body = |text: &str| {
        json!({ "from": { "email": "retry@example.de" }, "text": text, "provider_message_id": "crm-1",
                "attachments": [{ "filename": "scan.pdf", "content_type": "application/pdf", "content_base64": b64(&pdf()) }] })
    };
    let (s, first) = server.call("POST", "/api/v1/inbound", Some(body("Scan"))).await;
    assert_eq!(s, 201, "{first}");
    let objects = blob_count(&server);
    assert_eq!(objects, 1);
    let (s, again) = server.call("POST", "/api/v1/inbound", Some(body("Scan"))).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["message_id"], first["message_id"]);
    assert_eq!(blob_count(&server), objects, "a retry stored a second copy");
    let (s, conflict) = server.call("POST", "/api/v1/inbound", Some(body("Anderer Text"))).await;
    assert_eq!(s, 409, "{conflict}");
    assert_eq!(blob_count(&server), objects);
}

#[tokio::test]
async fn multipart_uploads_carry_the_message_and_files_within_their_limits() {
    let server = TestServer::start(|c| c.max_attachment_bytes = 64 * 1024).await;
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRfake-image-bytes".to_vec();
    let form = Form::new()
        .part("message", Part::text(json!({ "from": { "email": "multi@example.de" }, "subject": "Fotos" }).to_string()))
        .part("file", Part::bytes(png.clone()).file_name("zähler.png").mime_str("application/octet-stream").unwrap())
        .part("file", Part::bytes(pdf()).file_name("brief.pdf").mime_str("application/pdf").unwrap());
    let r = server
        .with_token(&server.token, reqwest::Method::POST, "/api/v1/inbound")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let receipt: Value = r.json().await.unwrap();
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{}", receipt["case_id"]), None).await;
    let atts = case["messages"][0]["attachments"].as_array().cloned().unwrap();
    assert_eq!(atts.iter().map(|a| a["filename"].as_str().unwrap()).collect::<Vec<_>>(), ["zähler.png", "brief.pdf"]);
    assert_eq!(atts[0]["content_type"], "image/png");
    let got = download(&server, &server.token, &atts[0]["id"]).await;
    assert!(got.headers()["content-disposition"].to_str().unwrap().contains("filename*=UTF-8''z%C3%A4hler%2Epng"));
    assert_eq!(got.bytes().await.unwrap().as_ref(), png.as_slice());

    // Too large a file, no message part, an unknown part.
    let big = Form::new()
        .part("message", Part::text(json!({ "from": { "email": "multi@example.de" } }).to_string()))
        .part("file", Part::bytes(vec![7u8; 64 * 1024 + 1]).file_name("big.bin"));
    let r =
        server.with_token(&server.token, reqwest::Method::POST, "/api/v1/inbound").multipart(big).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let lonely = Form::new().part("file", Part::bytes(vec![1, 2, 3]).file_name("x.bin"));
    let r = server
        .with_token(&server.token, reqwest::Method::POST, "/api/v1/inbound")
        .multipart(lonely)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let odd = Form::new()
        .part("message", Part::text(json!({ "from": { "email": "multi@example.de" }, "text": "x" }).to_string()))
        .part("virus", Part::bytes(vec![1]).file_name("x.bin"));
    let r =
        server.with_token(&server.token, reqwest::Method::POST, "/api/v1/inbound").multipart(odd).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    // Inline content over the limit, not base64, both content and url.
    for (att, field) in [
        (
            json!({ "filename": "b", "content_type": "x/y", "content_base64": b64(&vec![0u8; 64 * 1024 + 1]) }),
            "content_base64",
        ),
        (json!({ "filename": "b", "content_type": "x/y", "content_base64": "***" }), "content_base64"),
        (
            json!({ "filename": "b", "content_type": "x/y", "content_base64": b64(b"x"), "url": "https://x" }),
            "content_base64",
        ),
        (json!({ "filename": "b", "content_type": "x/y", "url": "https://x" }), "size"),
    ] {
        let body = json!({ "from": { "email": "multi@example.de" }, "text": "x", "attachments": [att] });
        let (s, r) = server.call("POST", "/api/v1/inbound", Some(body)).await;
        assert_eq!(s, 422, "{r}");
        assert!(r["error"].to_string().contains(field), "{r}");
    }
}

#[tokio::test]
async fn replies_notes_and_contacts_carry_attachments() {
    let server = TestServer::start(|_| {}).await;
    let (_, r) = server
        .call("POST", "/api/v1/inbound", Some(json!({ "from": { "email": "x@example.de" }, "text": "Hallo" })))
        .await;
    let file =
        json!([{ "filename": "Antwort.txt", "content_type": "text/plain", "content_base64": b64("Grüße".as_bytes()) }]);
    let (s, note) = server
        .call(
            "POST",
            &format!("/api/v1/cases/{}/notes", r["case_id"]),
            Some(json!({ "text": "Notiz", "attachments": file })),
        )
        .await;
    assert_eq!(s, 201, "{note}");
    let (s, reply) = server
        .call(
            "POST",
            &format!("/api/v1/cases/{}/replies", r["case_id"]),
            Some(json!({ "text": "Antwort", "based_on_event_id": note["event_id"], "attachments": file })),
        )
        .await;
    assert_eq!(s, 202, "{reply}");
    let letter = json!({ "channel": "letter", "direction": "in", "text": "Brief", "attachments": file });
    let (s, contact) =
        server.call("POST", &format!("/api/v1/customers/{}/contacts", r["customer_id"]), Some(letter)).await;
    assert_eq!(s, 201, "{contact}");
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{}", r["case_id"]), None).await;
    let with_files: Vec<&Value> = case["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["attachments"].as_array().is_some_and(|a| !a.is_empty()))
        .collect();
    assert_eq!(with_files.len(), 3, "{case}");
    for m in with_files {
        let resp = download(&server, &server.token, &m["attachments"][0]["id"]).await;
        assert_eq!(resp.bytes().await.unwrap().as_ref(), "Grüße".as_bytes());
    }
}

#[tokio::test]
async fn objects_whose_message_never_committed_are_swept_and_referenced_ones_kept() {
    let server = TestServer::start(|_| {}).await;
    let body = json!({ "from": { "email": "kept@example.de" }, "text": "x",
        "attachments": [{ "filename": "k.txt", "content_type": "text/plain", "content_base64": b64(b"kept") }] });
    assert_eq!(server.call("POST", "/api/v1/inbound", Some(body)).await.0, 201);
    let vault = kontor_server::blobs::open_vault(&server.store, &server.config).await.unwrap();
    let orphan = vault.put(bytes::Bytes::from_static(b"never committed")).await.unwrap();
    assert_eq!(blob_count(&server), 2);
    // Young objects are left alone (their message may be committing right now).
    let young = kontor_server::blobs::sweep_orphans(&vault, &server.store, std::time::Duration::from_secs(3600)).await;
    assert_eq!(young.unwrap(), 0);
    let swept = kontor_server::blobs::sweep_orphans(&vault, &server.store, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(swept, 1);
    assert!(matches!(vault.get(&orphan.id).await, Err(kontor_vault::VaultError::NotFound(_))));
    assert_eq!(blob_count(&server), 1);
}

#[tokio::test]
async fn a_master_key_other_than_the_databases_is_refused() {
    let server = TestServer::start(|_| {}).await;
    // Another key file, and an empty blob store: the vault alone would accept it, the
    // database remembers the key the store was created with.
    let other = tempfile::tempdir().unwrap();
    let mut cfg = server.config.clone();
    cfg.vault.master_key_file = Some(other.path().join("other.key"));
    cfg.blobs.url = Some(format!("file://{}", other.path().join("blobs").display()));
    std::fs::create_dir_all(other.path().join("blobs")).unwrap();
    let err = kontor_server::blobs::open_vault(&server.store, &cfg).await.unwrap_err();
    assert!(err.contains("not the one this database was created with"), "{err}");
}

#[tokio::test]
async fn the_case_page_links_each_stored_attachment_for_download() {
    let server = TestServer::start(|_| {}).await.with_staff().await;
    let body = json!({ "from": { "email": "page@example.de" }, "text": "Mit Anhang",
        "attachments": [{ "filename": "Zählerfoto.png", "content_type": "image/png", "content_base64": b64(b"\x89PNG\r\n\x1a\nxx") }] });
    let (_, r) = server.call("POST", "/api/v1/inbound", Some(body)).await;
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{}", r["case_id"]), None).await;
    let id = case["messages"][0]["attachments"][0]["id"].clone();
    let (session, _) = server.sign_in("anna@example.de", kontor_testkit::server::PASSWORD).await.unwrap();
    let (status, html) = server.page(&session, &format!("/cases/{}", r["case_id"])).await;
    assert_eq!(status, 200);
    // minijinja writes `/` in attributes as `&#x2f;`.
    let href = format!("/api/v1/attachments/{id}").replace('/', "&#x2f;");
    assert!(html.contains(&format!("href=\"{href}\" download>Zählerfoto.png</a>")), "{html}");
}
