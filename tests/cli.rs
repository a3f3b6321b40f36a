//! The `kontor` command line as an operator uses it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn kontor(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("KONTOR_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kontor");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kontor output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn user_add_reads_the_password_from_stdin_and_user_list_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = kontor(
        dir.path(),
        &["user", "add", "--email", "Eva@Example.DE", "--name", "Eva Meier", "--role", "admin"],
        Some("geheim123\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = kontor(dir.path(), &["user", "list"], None);
    let list = text(&out.stdout);
    assert!(list.contains("eva@example.de") && list.contains("admin") && list.contains("Eva Meier"), "{list}");

    let short = kontor(dir.path(), &["user", "add", "--email", "x@example.de", "--name", "X"], Some("kurz\n"));
    assert!(!short.status.success());
    assert!(text(&short.stderr).contains("password"), "{}", text(&short.stderr));
    let dup = kontor(
        dir.path(),
        &["user", "add", "--email", "eva@example.de", "--name", "Eva", "--password", "geheim123"],
        None,
    );
    assert!(!dup.status.success());
    let bad_role = kontor(
        dir.path(),
        &["user", "add", "--email", "y@example.de", "--name", "Y", "--role", "boss", "--password", "geheim123"],
        None,
    );
    assert!(text(&bad_role.stderr).contains("unknown role"), "{}", text(&bad_role.stderr));
}

#[test]
fn token_create_prints_the_token_alone_on_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = kontor(dir.path(), &["token", "create", "--name", "crm", "--role", "agent"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("kt_") && last.len() == 67 && !last.contains(' '), "{stdout:?}");
    let migrate = kontor(dir.path(), &["migrate"], None);
    assert!(migrate.status.success());
    let bad = kontor(dir.path(), &["migrate", "--database-url", "mysql://x"], None);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("unsupported database URL"), "{}", text(&bad.stderr));
}

#[test]
fn serve_demo_loads_searchable_demo_data() {
    let dir = tempfile::tempdir().unwrap();
    let token = text(&kontor(dir.path(), &["token", "create", "--name", "t", "--role", "admin"], None).stdout)
        .trim()
        .to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .env_remove("KONTOR_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let search: serde_json::Value = http
            .get(format!("{base}/api/v1/search?q=Goethestra%C3%9Fe"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let cases: serde_json::Value = http
            .get(format!("{base}/api/v1/cases?limit=100"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (search, cases)
    });
    let _ = child.kill();
    let _ = child.wait();
    let (search, cases) = result;
    assert!(search["messages"].as_array().is_some_and(|m| !m.is_empty()), "{search}");
    let n = cases["items"].as_array().map(Vec::len).unwrap_or(0);
    assert!(n >= 6, "demo cases: {n}");
    assert!(cases.to_string().contains("wasserschaden"));
}
