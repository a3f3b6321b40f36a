//! The real `kontor` binary refuses unsafe settings at start-up and keeps secrets out of its
//! error messages.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kontor(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kontor"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir)
        .current_dir(dir)
        .env_remove("KONTOR_DATABASE_URL")
        .env_remove("KONTOR_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start kontor")
}

/// Waits for the process to end within `limit`; kills it and fails the test otherwise.
fn ends_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("poll kontor").is_some() {
            return child.wait_with_output().expect("kontor output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("kontor output");
            panic!("{what}: kontor still ran after {limit:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_refuses_a_webhook_timeout_not_well_below_the_job_lease() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("KONTOR_JOBS__LEASE_SECS", "2"), ("KONTOR_API_CHANNEL__TIMEOUT_SECS", "6")];
    let child = kontor(dir.path(), &["serve", "--listen", "127.0.0.1:0"], &env);
    let out = ends_within(child, Duration::from_secs(20), "serve with timeout 6 s and lease 2 s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("api_channel.timeout_secs") && stderr.contains("jobs.lease_secs"), "{stderr}");
}

#[test]
fn a_database_password_given_as_a_query_parameter_stays_out_of_error_messages() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: opening the store fails and names the URL.
    let url = "postgres://kontor@127.0.0.1:1/kontor?connect_timeout=2&password=geheim-im-query";
    let child = kontor(dir.path(), &["migrate", "--database-url", url], &[]);
    let out = ends_within(child, Duration::from_secs(30), "migrate against a closed port");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1/kontor"), "the error names the database: {stderr}");
    assert!(!stderr.contains("geheim-im-query"), "{stderr}");
    assert!(stderr.contains("password=***"), "{stderr}");
}
