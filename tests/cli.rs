//! The `kontor` command line as an operator uses it.

mod common;

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
        let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(&token).send();
        let search: serde_json::Value = get("/api/v1/search?q=Goethestra%C3%9Fe").await.unwrap().json().await.unwrap();
        let cases: serde_json::Value = get("/api/v1/cases?limit=100").await.unwrap().json().await.unwrap();
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

#[test]
fn the_ingest_role_is_for_tokens_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = kontor(dir.path(), &["token", "create", "--name", "shop", "--role", "ingest"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("(ingest)"), "{}", text(&out.stderr));
    let user = kontor(
        dir.path(),
        &["user", "add", "--email", "bot@example.de", "--name", "Bot", "--role", "ingest", "--password", "geheim123"],
        None,
    );
    assert!(!user.status.success());
    let err = text(&user.stderr);
    assert!(err.contains("for API tokens only") && err.contains("admin or agent"), "{err}");
    let list = text(&kontor(dir.path(), &["user", "list"], None).stdout);
    assert!(!list.contains("bot@example.de"), "{list}");
}

#[test]
fn token_list_shows_tokens_without_secrets_and_token_revoke_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let created = kontor(dir.path(), &["token", "create", "--name", "crm", "--role", "ingest"], None);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let secret = text(&created.stdout).trim().to_string();
    let out = kontor(dir.path(), &["token", "list"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    let row = list.lines().find(|l| l.contains("crm")).unwrap_or_else(|| panic!("crm is listed: {list}"));
    assert!(row.contains("ingest") && row.contains("created 20") && row.contains("active"), "{row}");
    assert!(!list.contains(&secret) && !list.contains("kt_"), "no secrets: {list}");
    let id = row.split_whitespace().next().unwrap().to_string();

    let out = kontor(dir.path(), &["token", "revoke", &id], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("revoked"), "{}", text(&out.stdout));
    let list = text(&kontor(dir.path(), &["token", "list"], None).stdout);
    let row = list.lines().find(|l| l.contains("crm")).unwrap_or_default().to_string();
    assert!(row.contains("revoked 20") && !row.contains("active"), "{row}");

    let unknown = kontor(dir.path(), &["token", "revoke", "4711"], None);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("not found"), "{}", text(&unknown.stderr));
}

/// Runs `kontor ARGS` against a deployment's store (clean environment, its data directory).
fn kontor_on(dep: &common::Deployment, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kontor"));
    cmd.current_dir(dep.dir.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KONTOR_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).arg("--data-dir").arg(&dep.data_dir);
    if let Some(u) = &dep.database_url {
        cmd.arg("--database-url").arg(u);
    }
    cmd.stdin(Stdio::null()).output().expect("run kontor")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_with_the_cli_stops_working_at_once_on_every_node() {
    let Some(dep) = common::Deployment::postgres().await else { return };
    token_revoked_with_the_cli_stops_working(&dep, &["a", "b"]).await;
}

/// On SQLite the CLI is another process on the same file: the serving node must notice too.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_revoked_with_the_cli_stops_working_at_once_on_sqlite() {
    token_revoked_with_the_cli_stops_working(&common::Deployment::sqlite(), &["a"]).await;
}

async fn token_revoked_with_the_cli_stops_working(dep: &common::Deployment, names: &[&str]) {
    use futures::StreamExt;
    common::within(Duration::from_secs(120), "the token revocation test", async {
        let _admin = dep.token();
        let out = kontor_on(dep, &["token", "create", "--name", "crm", "--role", "agent"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let secret = text(&out.stdout).trim().to_string();
        let mut nodes = Vec::new();
        for name in names {
            nodes.push(dep.start_node(name, &[("KONTOR_NODE_NAME", name)]).await);
        }
        let (a, b) = (&nodes[0], nodes.last().expect("a node"));
        let http = reqwest::Client::builder().timeout(common::REQUEST_TIMEOUT).build().unwrap();
        let status = |node: &common::Node| {
            let rb = http.get(node.url("/api/v1/cases")).bearer_auth(&secret);
            async move { rb.send().await.expect("GET /api/v1/cases").status().as_u16() }
        };
        // Both nodes know (and cache) the token.
        assert_eq!(status(a).await, 200);
        assert_eq!(status(b).await, 200);
        let stream = reqwest::Client::new()
            .get(b.url("/api/v1/events/stream"))
            .bearer_auth(&secret)
            .send()
            .await
            .expect("open the event stream");
        assert_eq!(stream.status().as_u16(), 200);
        let mut body = stream.bytes_stream();

        // Revoked by another process: neither node's cache is touched directly.
        let list = text(&kontor_on(dep, &["token", "list"]).stdout);
        let id =
            list.lines().find(|l| l.contains("crm")).and_then(|l| l.split_whitespace().next()).unwrap().to_string();
        let out = kontor_on(dep, &["token", "revoke", &id]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let revoked = Instant::now();
        // Far sooner than the 30 s a node caches a token.
        let deadline = revoked + Duration::from_secs(3);
        for node in &nodes {
            loop {
                let s = status(node).await;
                if s == 401 {
                    break;
                }
                assert_eq!(s, 200);
                assert!(Instant::now() < deadline, "node {} still takes the revoked token", node.name);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            eprintln!("node {} refused the revoked token after {:?}", node.name, revoked.elapsed());
        }
        // The stream opened with it on b has ended.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, body.next()).await {
                Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(_))) => {}
                Err(_) => panic!("the event stream opened with the revoked token is still open"),
            }
        }
    })
    .await;
}

#[test]
fn assist_train_and_eval_work_on_any_labelled_csv_and_name_a_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("frage,thema\n");
    for (text, label) in [
        ("Ich möchte meinen Vertrag kündigen", "kuendigung"),
        ("Hiermit kündige ich fristgerecht", "kuendigung"),
        ("Bitte bestätigen Sie meine Kündigung", "kuendigung"),
        ("\"Kündigung, bitte\"", "kuendigung"),
        ("Mein Zählerstand ist 4711 kWh", "zaehler"),
        ("Zählerstand heute: 12345", "zaehler"),
        ("Hier der Stand meines Stromzählers", "zaehler"),
        ("Zählerstand für März", "zaehler"),
    ] {
        csv.push_str(&format!("{text},{label}\n"));
    }
    let seed = dir.path().join("seed.csv");
    std::fs::write(&seed, csv).unwrap();
    let seed = seed.display().to_string();
    let model = dir.path().join("model.bin");
    let model_arg = model.display().to_string();
    let out = kontor(
        dir.path(),
        &["assist", "train", "--csv", &seed, "--out", &model_arg, "--text-column", "frage", "--label-column", "thema"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Trained on 8 examples (2 labels"), "{}", text(&out.stdout));
    let args =
        ["assist", "eval", "--model", &model_arg, "--csv", &seed, "--text-column", "frage", "--label-column", "thema"];
    let json = kontor(dir.path(), &[&args[..], &["--json"]].concat(), None);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&json.stdout).trim()).unwrap();
    assert_eq!((v["n"].as_u64(), v["accuracy"].as_f64()), (Some(8), Some(1.0)), "{v}");
    assert!(v["macro_f1"].as_f64().is_some() && v["ms_per_message"].as_f64().is_some(), "{v}");
    let human = kontor(dir.path(), &args, None);
    assert!(text(&human.stdout).contains("accuracy        1.0000"), "{}", text(&human.stdout));
    let missing = kontor(dir.path(), &["assist", "eval", "--model", &model_arg, "--csv", &seed], None);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no column \"text\""), "{}", text(&missing.stderr));
}

#[test]
fn bench_assist_runs_a_tiny_load_with_and_without_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let args =
        ["bench", "assist", "--rate", "40", "--seconds", "1", "--warmup", "0", "--sample-ms", "100", "--pairs", "2"];
    let out = kontor(dir.path(), &[&args[..], &["--overload-rate", "120", "--overload-seconds", "1"]].concat(), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for row in [
        "| baseline (analysis off) #1 | 40 msg/s × 1 s = 40 | 40 |",
        "| analysis on #1 | 40 msg/s × 1 s = 40 | 40 |",
        "| baseline (analysis off) #2 | 40 msg/s × 1 s = 40 | 40 |",
        "| analysis on #2 | 40 msg/s × 1 s = 40 | 40 |",
    ] {
        assert!(table.contains(row), "{row}: {table}");
    }
    assert!(table.contains("median of 2 runs each"), "{table}");
    assert!(table.contains("| overload (analysis on) | 120 msg/s × 1 s = 120 | 120 |"), "{table}");
    assert!(table.contains("| 40 / 40 |") && table.contains("| 120 / 120 |"), "every message analysed: {table}");
    assert!(table.contains("ingest p99 at 40 msg/s") && table.contains("backlog in /metrics over time"), "{table}");

    let bad = kontor(dir.path(), &["bench", "assist", "--rate", "0"], None);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("--rate, --seconds and --pairs must be at least 1"), "{}", text(&bad.stderr));
    let unknown = kontor(dir.path(), &["bench", "assist", "--rat", "10"], None);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("--rat"), "{}", text(&unknown.stderr));
}
