//! The OpenAPI document says exactly what the server accepts: schemathesis (4.x, in the test
//! suite's own virtualenv, see `scripts/test.sh`) generates requests from `/api/openapi.json`
//! against a real `kontor serve` and runs every check (no server errors, no response outside
//! its schema, schema-valid requests accepted, schema-violating ones refused, ...).
//!
//! The run is reproducible: a fixed seed, a bounded number of examples per operation, no
//! example database. `KONTOR_SCHEMATHESIS` names the executable (default: the virtualenv in
//! `$HOME/.cache/kontor-venv`); without it the test is skipped with a notice, unless
//! `CI=true`, where it fails.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Deployment;

fn schemathesis() -> Option<PathBuf> {
    let path = std::env::var_os("KONTOR_SCHEMATHESIS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kontor-venv/bin/schemathesis")))?;
    path.exists().then_some(path)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_generated_request_gets_the_answer_the_openapi_document_promises() {
    let Some(st) = schemathesis() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "schemathesis is not installed (scripts/test.sh installs it into $HOME/.cache/kontor-venv)"
        );
        eprintln!("SKIP: schemathesis not installed; run scripts/test.sh once");
        return;
    };
    let d = Deployment::sqlite();
    let token = d.token();
    let node = d.start_node("fuzz", &[]).await;
    let report = tempfile::tempdir().expect("report dir");
    let out = tokio::task::spawn_blocking({
        let st = st.clone();
        let url = node.url("/api/openapi.json");
        let report = report.path().to_path_buf();
        move || {
            let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
            Command::new(st)
                .args([
                    "--config-file",
                    config,
                    "run",
                    &url,
                    "--checks",
                    "all",
                    "--seed",
                    "20261201",
                    "--max-examples",
                    "15",
                ])
                // One worker: hypothesis is not thread-safe (a "recursion depth mismatch" runtime
                // error seen with two), and one worker keeps the seeded run reproducible. The
                // stateful phase is left out: what it tries depends on the ids earlier answers
                // returned, so the same seed does not give the same run (its one finding so far,
                // a 404 for an unknown user when adding a team member, is listed in the note of
                // issue 12).
                .args(["--generation-database", "none", "--no-color", "--workers", "1"])
                .args(["--phases", "examples,coverage,fuzzing"])
                // NUL characters are refused in every JSON string (documented in the
                // document's description): not worth a pattern on every field.
                .args(["--generation-allow-x00", "false"])
                .args(["--request-timeout", "10", "--report-dir"])
                .arg(&report)
                .args(["-H", &format!("Authorization: Bearer {token}")])
                .env("NO_COLOR", "1")
                .output()
        }
    })
    .await
    .expect("schemathesis task")
    .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        out.status,
        node.log_tail(40)
    );
    assert!(stdout.contains("generated"), "schemathesis ran no test case:\n{stdout}");
    // The closing summary, for the test log.
    eprintln!("{}", stdout.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
}
