//! The blob store as an operator meets it: `kontor serve` creates the master key (mode 0600),
//! `kontor vault verify` names each damaged or missing object and exits non-zero, and a node
//! with another master key refuses to start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::{Api, Deployment};
use serde_json::json;

fn kontor(dep: &Deployment, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(args)
        .arg("--data-dir")
        .arg(&dep.data_dir)
        .env_remove("KONTOR_DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run kontor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The object files of the local blob store (the key check not counted).
fn objects(dep: &Deployment) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && p.file_name().is_some_and(|f| f != "_kontor") {
                walk(&p, out);
            } else if p.is_file() && !p.file_name().is_some_and(|f| f.to_string_lossy().starts_with('.')) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dep.data_dir.join("blobs"), &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn vault_verify_names_damaged_and_missing_objects_and_a_foreign_master_key_is_refused() {
    use base64::Engine;
    let dep = Deployment::sqlite();
    let token = dep.token();
    let mut node = dep.start_node("a", &[]).await;
    let api = Api::new(&node, &token);
    for (name, bytes) in
        [("Vertrag.pdf", b"%PDF-1.4 Vertrag".to_vec()), ("Foto.png", b"\x89PNG\r\n\x1a\nFoto".to_vec())]
    {
        let body = json!({ "from": { "email": "kunde@example.de" }, "text": name, "attachments": [
            { "filename": name, "content_type": "application/octet-stream",
              "content_base64": base64::engine::general_purpose::STANDARD.encode(&bytes) }] });
        let (s, r) = api.post("/api/v1/inbound", &body).await.expect("inbound");
        assert_eq!(s, 201, "{r}");
    }
    node.kill();

    let key = dep.data_dir.join("master.key");
    let mode = std::fs::metadata(&key).expect("master.key exists after the first start").permissions().mode();
    assert_eq!(mode & 0o077, 0, "master.key is readable by others: {mode:o}");

    let (ok, stdout, stderr) = kontor(&dep, &["vault", "verify"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("2 of 2 objects verified, 0 damaged, 0 missing"), "{stdout}");

    // Damage one object (a byte in its encrypted body), remove the other.
    let files = objects(&dep);
    assert_eq!(files.len(), 2, "{files:?}");
    let mut data = std::fs::read(&files[0]).unwrap();
    let mid = data.len() - 20;
    data[mid] ^= 0x01;
    std::fs::write(&files[0], data).unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    let (ok, stdout, _) = kontor(&dep, &["vault", "verify"]);
    assert!(!ok, "verify passed over damage: {stdout}");
    assert_eq!(stdout.matches("DAMAGED attachment").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("MISSING attachment").count(), 1, "{stdout}");
    assert!(stdout.contains("Vertrag.pdf") && stdout.contains("Foto.png"), "{stdout}");

    // Another master key: the node refuses to start, and so does verify.
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    let (ok, _, stderr) = kontor(&dep, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(stderr.to_lowercase().contains("master key"), "{stderr}");
    let (ok, _, stderr) = kontor(&dep, &["vault", "verify"]);
    assert!(!ok);
    assert!(stderr.to_lowercase().contains("master key"), "{stderr}");
    // And a missing one as well.
    std::fs::remove_file(&key).unwrap();
    let (ok, _, stderr) = kontor(&dep, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(stderr.to_lowercase().contains("master key"), "{stderr}");
}
