//! The staff pages in a real browser: starts the real `kontor` binary (with the e-mail
//! channel: its SMTP listener, and a relay the scenarios run) and runs the browser scenarios
//! in `tests/e2e/*.test.js` one file after the other (Node's test runner, `playwright-core`
//! driving Debian's `chromium`). Needs `node`, `/usr/bin/chromium` and
//! `node_modules/playwright-core` (`npm ci`); without them the test is skipped with a notice,
//! unless `CI=true`, where it fails. `scripts/test.sh` installs all three.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The browser scenario files, run in this order against one server, and how long each may
/// take (together well below the harness's limit for one test).
const SCENARIOS: &[(&str, Duration)] = &[
    ("tests/e2e/inbox.test.js", Duration::from_secs(110)),
    ("tests/e2e/email.test.js", Duration::from_secs(50)),
    ("tests/e2e/assist.test.js", Duration::from_secs(60)),
    ("tests/e2e/assist_admin.test.js", Duration::from_secs(90)),
];
/// The domain the server takes mail for.
const MAIL_DOMAIN: &str = "support.example.de";

/// (e-mail, name, password, role): Anna administers, Ben is an agent (team visibility applies).
const ANNA: (&str, &str, &str, &str) = ("anna@example.de", "Anna Admin", "anna-e2e-Passwort-1", "admin");
const BEN: (&str, &str, &str, &str) = ("ben@example.de", "Ben Berger", "ben-e2e-Passwort-2", "agent");

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What is missing to run the browser tests (empty: all there).
fn missing_prerequisites(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let node = Command::new("node").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !node.is_ok_and(|s| s.success()) {
        missing.push("`node` (apt-get install nodejs npm)".to_string());
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (apt-get install chromium)"));
    }
    if !root.join("node_modules/playwright-core/package.json").exists() {
        missing.push("node_modules/playwright-core (npm ci --no-audit --no-fund)".to_string());
    }
    missing
}

/// A `kontor` command on `data_dir`, without the caller's `KONTOR_*` settings.
fn kontor(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kontor"));
    cmd.current_dir(data_dir.parent().expect("data dir has a parent"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KONTOR_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("KONTOR_LOG", "warn");
    cmd
}

fn run_ok(mut cmd: Command, what: &str) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn add_user(data_dir: &Path, (email, name, password, role): (&str, &str, &str, &str)) {
    let mut cmd = kontor(data_dir);
    cmd.args(["user", "add", "--email", email, "--name", name, "--role", role, "--password", password])
        .arg("--data-dir")
        .arg(data_dir);
    run_ok(cmd, "kontor user add");
}

fn create_token(data_dir: &Path) -> String {
    let mut cmd = kontor(data_dir);
    cmd.args(["token", "create", "--name", "e2e", "--role", "admin"]).arg("--data-dir").arg(data_dir);
    let out = run_ok(cmd, "kontor token create");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    assert!(!token.is_empty(), "kontor token create printed no token: {stdout:?}");
    token
}

/// A running `kontor serve`, killed when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// A plain HTTP/1.0 GET of `/healthz`; true on status 200.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

/// The ports of the e-mail channel: Kontor's SMTP listener, and the relay replies go to
/// (run by the e-mail scenarios).
struct MailPorts {
    smtp: u16,
    relay: u16,
}

/// A configuration file with the e-mail channel on `ports`.
fn mail_config(dir: &Path, ports: &MailPorts) -> PathBuf {
    let file = dir.join("kontor-e2e.toml");
    let toml = format!(
        "[email]\nsmtp_listen = \"127.0.0.1:{}\"\ndomains = [\"{MAIL_DOMAIN}\"]\n\n\
         [email.outbound]\nrelay = \"smtp://127.0.0.1:{}\"\nfrom = \"Kontor Support <support@{MAIL_DOMAIN}>\"\n",
        ports.smtp, ports.relay
    );
    std::fs::write(&file, toml).expect("write the configuration file");
    file
}

fn start_server(data_dir: &Path, config: &Path) -> (Server, String) {
    let port = free_port();
    let log = data_dir.parent().expect("parent").join("serve.log");
    let log_file = std::fs::File::create(&log).expect("create server log");
    let mut cmd = kontor(data_dir);
    cmd.env("KONTOR_LOG", "info,tower_http=warn")
        .env("NO_COLOR", "1")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone log file"))
        .stderr(log_file);
    let child = cmd.spawn().expect("start kontor serve");
    let mut server = Server { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !healthy(port) {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("kontor serve exited ({status}):\n{}", server.log());
        }
        assert!(Instant::now() < deadline, "kontor serve did not answer /healthz within 20 s:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}"))
}

/// Runs `cmd`, killing it after `limit`; returns (exit status or None on timeout, stdout+stderr).
fn run_with_timeout(mut cmd: Command, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start node");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("wait for node") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    (status, format!("{out}{err}"))
}

#[test]
fn the_staff_pages_work_in_a_real_browser() {
    let root = repo_root();
    let missing = missing_prerequisites(&root);
    if !missing.is_empty() {
        let msg = format!("browser tests need {}; scripts/test.sh installs them", missing.join(", "));
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg} (CI=true: the browser tests must run)");
        }
        eprintln!("notice: skipping the browser tests: {msg}");
        return;
    }

    let tmp = tempfile::tempdir().expect("temporary directory");
    let data_dir = tmp.path().join("data");
    add_user(&data_dir, ANNA);
    add_user(&data_dir, BEN);
    let token = create_token(&data_dir);
    let ports = MailPorts { smtp: free_port(), relay: free_port() };
    let config = mail_config(tmp.path(), &ports);
    let (server, base) = start_server(&data_dir, &config);

    for (file, limit) in SCENARIOS {
        let started = Instant::now();
        let mut node = Command::new("node");
        node.current_dir(&root)
            .args(["--test-reporter=spec", file])
            .env("BASE", &base)
            .env("TOKEN", &token)
            .env("ANNA_EMAIL", ANNA.0)
            .env("ANNA_PASSWORD", ANNA.2)
            .env("BEN_EMAIL", BEN.0)
            .env("BEN_PASSWORD", BEN.2)
            .env("SMTP_PORT", ports.smtp.to_string())
            .env("RELAY_PORT", ports.relay.to_string())
            .env("MAIL_DOMAIN", MAIL_DOMAIN)
            .env("CHROMIUM", CHROMIUM)
            // The committed screenshots in docs/screenshots change only on purpose:
            // KONTOR_E2E_SCREENSHOTS=docs/screenshots cargo test --test e2e
            .env(
                "SCREENSHOTS",
                std::env::var("KONTOR_E2E_SCREENSHOTS")
                    .map(|p| root.join(p))
                    .unwrap_or_else(|_| data_dir.join("screenshots")),
            )
            .env("NO_COLOR", "1");
        let (status, output) = run_with_timeout(node, *limit);
        println!("{output}");
        println!("browser scenarios of {file} took {:.1} s", started.elapsed().as_secs_f64());
        match status {
            Some(s) if s.success() => {}
            Some(s) => {
                panic!(
                    "browser scenarios of {file} failed ({s}):\n{output}\n--- kontor serve log ---\n{}",
                    server.log()
                )
            }
            None => panic!(
                "browser scenarios of {file} did not finish within {limit:?}:\n{output}\n--- kontor serve log ---\n{}",
                server.log()
            ),
        }
    }
}
