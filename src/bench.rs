//! `kontor bench ingest`: sustained ingest over HTTP with concurrent clients, ingest→stream
//! latency at a fixed rate, and the raw insert rate of the same database for comparison.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use kontor_core::{Role, TeamId, UserId};
use kontor_server::{AppState, Config};
use kontor_store::{Backend, Conn, Store};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Drive POST /api/v1/inbound and report messages/s, latency and stream latency.
    Ingest(IngestOptions),
    /// Mails per second accepted over SMTP (durable, into cases, sources and files encrypted).
    Smtp(crate::bench_smtp::SmtpOptions),
    /// The assistant's analysis behind ingest: ingest latency at a fixed offered load with
    /// analysis off and on, the backlog in /metrics, its drain, and an overload run.
    Assist(crate::bench_assist::AssistOptions),
    /// The blob store: attachments stored durably (encrypted) and read back (decrypted and
    /// checked) per second, in a fresh local store (or the configured `[blobs]`).
    Blobs {
        /// Objects to store and read.
        #[arg(long, default_value_t = 5_000)]
        objects: usize,
        /// Size of each object in bytes.
        #[arg(long, default_value_t = 100_000)]
        size: usize,
        /// Puts and gets in flight at once.
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
    },
    /// Server time of the inbox page and of a long case page for a signed-in agent.
    Pages {
        /// Cases in the store (one customer each).
        #[arg(long, default_value_t = 100_000)]
        cases: u64,
        /// Messages in the long case.
        #[arg(long, default_value_t = 1_000)]
        messages: u64,
        /// Requests per page.
        #[arg(long, default_value_t = 200)]
        requests: u64,
    },
}

pub async fn run(cmd: BenchCommand, cfg: Config) -> Result<()> {
    match cmd {
        BenchCommand::Blobs { objects, size, concurrency } => blobs(cfg, objects, size, concurrency).await,
        BenchCommand::Ingest(opts) => ingest(cfg, opts).await,
        BenchCommand::Smtp(opts) => crate::bench_smtp::smtp(cfg, opts).await,
        BenchCommand::Assist(opts) => crate::bench_assist::assist(cfg, opts).await,
        BenchCommand::Pages { cases, messages, requests } => pages(cfg, cases, messages, requests).await,
    }
}

/// Seeds the store through the ingest path, then times the pages over HTTP.
async fn pages(mut cfg: Config, cases: u64, messages: u64, requests: u64) -> Result<()> {
    let tmp = tempdir_for(&cfg)?;
    if cfg.database_url.is_none() {
        cfg.data_dir = tmp.clone();
    }
    let url = cfg.database_url();
    let store = Store::open(&url, cfg.store_settings())?;
    eprintln!("Kontor page benchmark on {:?}", store.backend());
    let bar = ProgressBar::new(cases + messages);
    bar.set_style(
        ProgressStyle::with_template("{msg:>8} [{bar:30}] {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("seeding");
    let seed_start = Instant::now();
    let inbound = |from: String, n: u64| kontor_store::ingest::NewInbound {
        name: Some(format!("Kundin {n}")),
        subject: Some(format!("Anfrage {n}: Zählerstand und Abschlag")),
        provider_message_id: Some(format!("seed-{n}")),
        idempotency_scope: "bench".into(),
        ..kontor_store::ingest::NewInbound::text(
            kontor_core::Channel::Email,
            kontor_core::IdentityKind::Email,
            from,
            format!(
                "Guten Tag, mein Zählerstand ist {} kWh. Bitte passen Sie den Abschlag an. Kundennummer {}.",
                10_000 + n,
                500_000 + n
            ),
        )
    };
    let mut n = 0u64;
    while n < cases {
        let chunk: Vec<_> = (n..(n + 2000).min(cases))
            .map(|i| {
                let store = store.clone();
                let msg = inbound(format!("kundin{i}@seed.example.de"), i);
                tokio::spawn(async move { store.ingest(msg).await })
            })
            .collect();
        for t in chunk {
            t.await??;
            bar.inc(1);
        }
        n = (n + 2000).min(cases);
    }
    let mut long_case = 0;
    for i in 0..messages {
        let r = store.ingest(inbound("lang@seed.example.de".into(), cases + i)).await?;
        long_case = r.case_id;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "seeded {} cases and a case with {messages} messages in {:.1} s",
        cases + 1,
        seed_start.elapsed().as_secs_f64()
    );
    let user = match store
        .create_user("bench@kontor.example".into(), "Bench Agent".into(), Role::Admin, "bench-passwort".into())
        .await
    {
        Ok(u) => u,
        Err(_) => store.list_users().await?.into_iter().next().context("no user")?,
    };
    let session = store.create_session(user.id, 3600).await?;
    // An agent in a team sees unteamed cases and the team's: the inbox query gets the filter.
    let agent = match store
        .create_user("agent@kontor.example".into(), "Bench Agentin".into(), Role::Agent, "bench-passwort".into())
        .await
    {
        Ok(u) => u,
        Err(_) => store.list_users().await?.into_iter().find(|u| u.role == Role::Agent).context("no agent")?,
    };
    let team = store.create_team(format!("Bench {}", kontor_store::now_us())).await?;
    store.add_team_member(TeamId(team.id), UserId(agent.id)).await?;
    let agent_session = store.create_session(agent.id, 3600).await?;

    let state = AppState::new(store, cfg.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            rt.block_on(async move {
                if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                    let _ = kontor_server::serve(state, l, std::future::pending()).await;
                }
            });
        }
    });
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await?;
    println!();
    println!("## Page benchmark — {} cases, a case with {messages} messages", cases + 1);
    println!();
    println!("| page | requests | p50 | p95 | p99 | max | size |");
    println!("|---|---|---|---|---|---|---|");
    let long_label = format!("case with {messages} messages");
    let pages: [(&str, String, &str); 5] = [
        ("inbox (50 newest of all cases), admin", "/inbox".into(), &session),
        ("inbox, agent (team visibility filter)", "/inbox".into(), &agent_session),
        ("inbox, status=open & channel=email", "/inbox?status=open&channel=email".into(), &session),
        ("inbox with search \"Abschlag 10500\"", "/inbox?q=Abschlag+10500".into(), &session),
        (&long_label, format!("/cases/{long_case}"), &session),
    ];
    for (label, path, session) in pages {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut size = 0;
        for i in 0..requests + 5 {
            let t = Instant::now();
            let r = client
                .get(format!("{base}{path}"))
                .header("cookie", format!("kontor_session={session}"))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("{path} answered {}", r.status());
            }
            size = r.bytes().await?.len();
            if i >= 5 {
                let _ = h.record(t.elapsed().as_micros() as u64);
            }
        }
        println!(
            "| {label} | {requests} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} kB |",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.95)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            size / 1024
        );
    }
    if cfg.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// The flags of `kontor bench ingest`.
#[derive(clap::Args)]
pub struct IngestOptions {
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds of sustained load (after warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of warm-up load that are not counted.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Distinct customers the messages come from.
    #[arg(long, default_value_t = 2000)]
    pub customers: u64,
    /// Rate (messages/s) for the ingest→stream latency phase; 0 skips it.
    #[arg(long, default_value_t = 1000)]
    pub stream_rate: u64,
    /// Seconds of the stream latency phase.
    #[arg(long, default_value_t = 10)]
    pub stream_seconds: u64,
    /// Skip the raw insert comparison.
    #[arg(long)]
    pub no_raw: bool,
    /// Event streams kept open during the load, each with its own staff session of an
    /// agent in a team that cannot see the benchmark's cases (sessions made directly in
    /// the store).
    #[arg(long, default_value_t = 0)]
    pub idle_streams: usize,
}

/// Open idle streams: how many opened, and how many events they were sent (should be none:
/// their agents cannot see the benchmark's cases).
struct IdleStreams {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    delivered: Arc<AtomicU64>,
}

impl Drop for IdleStreams {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// This process's resident memory and threads (the benchmark runs the server in-process,
/// so this includes the HTTP clients).
fn process_figures() -> (f64, f64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") as f64 / 1024.0, field("VmHWM:") as f64 / 1024.0, field("Threads:"))
}

/// Gives every benchmark customer an open case in the team `own` before the load, so the
/// load's messages thread into cases that agents of other teams cannot see.
async fn seed_team_cases(store: &Store, customers: u64, own: i64) -> Result<()> {
    let mut c = 0;
    while c < customers {
        let chunk: Vec<_> = (c..(c + 500).min(customers))
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let r = store
                        .ingest(kontor_store::ingest::NewInbound {
                            name: Some(format!("Kunde {i}")),
                            subject: Some("Zählerstand".into()),
                            provider_message_id: Some(format!("bench-seed-{i}")),
                            idempotency_scope: "bench-seed".into(),
                            ..kontor_store::ingest::NewInbound::text(
                                kontor_core::Channel::Api,
                                kontor_core::IdentityKind::Email,
                                format!("kunde{i}@bench.example.de"),
                                format!("Erste Nachricht von Kunde {i}."),
                            )
                        })
                        .await?;
                    let patch = kontor_store::cases::CasePatch { team_id: Some(Some(own)), ..Default::default() };
                    store.patch_case(r.case_id, patch).await?;
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in chunk {
            t.await??;
        }
        c = (c + 500).min(customers);
    }
    Ok(())
}

/// Creates `n` staff sessions of agents in team `other` (a few agents, many sessions).
async fn idle_sessions(store: &Store, n: usize, other: i64, run: u64) -> Result<Vec<String>> {
    let mut agents = Vec::new();
    for i in 0..n.min(10) {
        let user = store
            .create_user(
                format!("idle{i}-{run}@bench.example"),
                format!("Idle Agent {i}"),
                Role::Agent,
                "bench-passwort".into(),
            )
            .await?;
        store.add_team_member(TeamId(other), UserId(user.id)).await?;
        agents.push(user.id);
    }
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = store.clone();
            let user = agents[i % agents.len()];
            tokio::spawn(async move { store.create_session(user, 3600).await })
        })
        .collect();
    let mut sessions = Vec::with_capacity(n);
    for t in tasks {
        sessions.push(t.await??);
    }
    Ok(sessions)
}

/// Opens one event stream per session and keeps reading them; returns once all are open.
async fn open_idle_streams(base: &str, sessions: &[String]) -> Result<IdleStreams> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let delivered = Arc::new(AtomicU64::new(0));
    let mut opening = Vec::new();
    for chunk in sessions.chunks(100) {
        let mut wave = Vec::new();
        for session in chunk {
            let request = client
                .get(format!("{base}/api/v1/events/stream"))
                .header("cookie", format!("kontor_session={session}"))
                .header("accept", "text/event-stream");
            wave.push(tokio::spawn(async move { request.send().await }));
        }
        for w in wave {
            opening.push(w.await?.context("open idle stream")?);
        }
    }
    let mut tasks = Vec::new();
    for resp in opening {
        if !resp.status().is_success() {
            bail!("idle event stream answered {}", resp.status());
        }
        let delivered = delivered.clone();
        tasks.push(tokio::spawn(async move {
            let mut bytes = resp.bytes_stream();
            while let Some(Ok(chunk)) = bytes.next().await {
                let text = String::from_utf8_lossy(&chunk);
                let n = text.lines().filter(|l| l.starts_with("id:")).count() as u64;
                delivered.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    Ok(IdleStreams { tasks, delivered })
}

async fn ingest(mut cfg: Config, o: IngestOptions) -> Result<()> {
    let tmp = tempdir_for(&cfg)?;
    if cfg.database_url.is_none() {
        cfg.data_dir = tmp.clone();
    }
    let url = cfg.database_url();
    let backend = kontor_store::backend_for(&url)?;
    eprintln!("Kontor ingest benchmark on {:?} ({})", backend, kontor_server::config::redact_url(&url));
    let raw = if o.no_raw { None } else { Some(raw_insert(backend, &url).await?) };

    // The server runs on its own runtime, as it would in its own process.
    let store = Store::open(&url, cfg.store_settings())?;
    let run_id = std::process::id() as u64 * 1_000_000 + (kontor_store::now_us() as u64 % 1_000_000);
    // Messages come in with an ingest token, as from an integration, and thread into cases
    // of the team "own". The latency stream is read by an agent of that team; the idle
    // streams by agents of another team, who see none of it.
    let (_t, token) = store.create_token("bench".into(), Role::Ingest).await?;
    let own = store.create_team(format!("Bench Eigene {run_id}")).await?;
    let other = store.create_team(format!("Bench Andere {run_id}")).await?;
    eprintln!("seeding {} customers' cases in team {:?}", o.customers, own.name);
    seed_team_cases(&store, o.customers, own.id).await?;
    let reader_user = store
        .create_user(
            format!("reader-{run_id}@bench.example"),
            "Bench Reader".into(),
            Role::Agent,
            "bench-passwort".into(),
        )
        .await?;
    store.add_team_member(TeamId(own.id), UserId(reader_user.id)).await?;
    let reader = store.create_session(reader_user.id, 3600).await?;
    let sessions =
        if o.idle_streams > 0 { idle_sessions(&store, o.idle_streams, other.id, run_id).await? } else { vec![] };
    let stats_store = store.clone();
    let state = AppState::new(store, cfg.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        if let Ok(rt) = rt {
            rt.block_on(async move {
                if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                    let _ = kontor_server::serve(state, l, std::future::pending()).await;
                }
            });
        }
    });
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder().pool_max_idle_per_host(o.clients * 2).build()?;
    wait_ready(&client, &base).await?;
    let (_, _, threads_before) = process_figures();
    let idle = if sessions.is_empty() {
        None
    } else {
        eprintln!("opening {} idle event streams", sessions.len());
        Some(open_idle_streams(&base, &sessions).await?)
    };

    // Phase 1: sustained throughput.
    if o.warmup > 0 {
        load(&client, &base, &token, o.clients, Duration::from_secs(o.warmup), o.customers, run_id, "warm-up").await?;
    }
    let stats_before = stats_store.writer_stats();
    let (ok, errors, hist, elapsed) =
        load(&client, &base, &token, o.clients, Duration::from_secs(o.seconds), o.customers, run_id + 1, "load")
            .await?;
    let rate = ok as f64 / elapsed.as_secs_f64();
    let stats = stats_store.writer_stats();
    let batches = stats.batches - stats_before.batches;
    let per_batch = (stats.ops - stats_before.ops) as f64 / batches.max(1) as f64;
    let (rss, peak_rss, threads) = process_figures();

    // Phase 2: ingest→stream latency at a fixed rate (idle streams still open).
    let stream = if o.stream_rate > 0 {
        Some(
            stream_latency(
                &client,
                &base,
                &token,
                &reader,
                o.stream_rate,
                Duration::from_secs(o.stream_seconds),
                run_id + 2,
            )
            .await?,
        )
    } else {
        None
    };
    let idle_delivered = idle.as_ref().map(|i| i.delivered.load(Ordering::Relaxed));
    drop(idle);

    println!();
    println!("## Ingest benchmark — {:?}", backend);
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| clients | {} |", o.clients);
    println!("| idle event streams (agents of another team) | {} |", o.idle_streams);
    println!("| accepted messages (201) | {ok} in {:.1} s |", elapsed.as_secs_f64());
    println!("| errors | {errors} |");
    println!("| **sustained ingest** | **{rate:.0} msg/s** |");
    println!(
        "| request latency p50 / p90 / p99 / max | {:.2} / {:.2} / {:.2} / {:.2} ms |",
        ms(hist.value_at_quantile(0.5)),
        ms(hist.value_at_quantile(0.9)),
        ms(hist.value_at_quantile(0.99)),
        ms(hist.max())
    );
    println!(
        "| group commit | {batches} transactions, {per_batch:.1} requests each; {} fallbacks |",
        stats.bulk_fallbacks - stats_before.bulk_fallbacks
    );
    println!(
        "| process (server + bench clients) after the load: RSS / peak RSS / threads | {rss:.0} MB / {peak_rss:.0} MB / {threads} (threads before streams: {threads_before}) |"
    );
    if let Some(n) = idle_delivered {
        println!("| events delivered to idle streams | {n} |");
    }
    if let Some(s) = &stream {
        println!(
            "| stream phase | {} msg at {} msg/s target, {:.0} msg/s achieved, {} seen on stream |",
            s.sent, o.stream_rate, s.achieved, s.seen
        );
        println!(
            "| ingest→stream latency (after 201) p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
            ms(s.after_ack.value_at_quantile(0.5)),
            ms(s.after_ack.value_at_quantile(0.99)),
            ms(s.after_ack.max())
        );
        println!(
            "| send→stream latency (incl. ingest) p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
            ms(s.from_send.value_at_quantile(0.5)),
            ms(s.from_send.value_at_quantile(0.99)),
            ms(s.from_send.max())
        );
    }
    if let Some(r) = &raw {
        println!("| raw insert, 1 row per commit (same durability) | {:.0} rows/s |", r.single);
        println!("| raw insert, 100 rows per commit | {:.0} rows/s |", r.batched);
        println!("| ingest / raw single-row commit rate | {:.2} |", rate / r.single);
    }
    if cfg.database_url.is_none() || url.starts_with("sqlite:") && url.contains(tmp.to_string_lossy().as_ref()) {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn tempdir_for(_cfg: &Config) -> Result<std::path::PathBuf> {
    let p = std::env::temp_dir().join(format!("kontor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> Result<()> {
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.map(|r| r.status().is_success()).unwrap_or(false) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("benchmark server did not start")
}

fn body(run: u64, n: u64, customers: u64) -> String {
    let c = n % customers.max(1);
    serde_json::json!({
        "from": { "email": format!("kunde{c}@bench.example.de") },
        "name": format!("Kunde {c}"),
        "subject": "Zählerstand",
        "text": format!("Mein Zählerstand am 1. Mai ist {} kWh, Kundennummer {}.", 10_000 + n, 500_000 + c),
        "provider_message_id": format!("bench-{run}-{n}"),
    })
    .to_string()
}

#[allow(clippy::too_many_arguments)]
async fn load(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    clients: usize,
    dur: Duration,
    customers: u64,
    run: u64,
    label: &str,
) -> Result<(u64, u64, Histogram<u64>, Duration)> {
    let counter = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let bar = ticking_bar(label, dur);
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, token) = (client.clone(), format!("{base}/api/v1/inbound"), token.to_string());
        let (counter, ok, errors) = (counter.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!());
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body(run, n, customers))
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().as_u16() == 201 => {
                        let _ = resp.bytes().await;
                        let _ = h.record(t.elapsed().as_micros() as u64);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            h
        }));
    }
    let hist = collect(tasks, bar).await?;
    Ok((ok.load(Ordering::Relaxed), errors.load(Ordering::Relaxed), hist, start.elapsed()))
}

/// A progress bar for a timed load phase, ticking once a second by itself.
pub(crate) struct TickingBar {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

pub(crate) fn ticking_bar(label: &str, dur: Duration) -> TickingBar {
    let bar = ProgressBar::new(dur.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} s")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(label.to_string());
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
        })
    };
    TickingBar { bar, ticker }
}

/// Waits for the load's clients, merges their latency histograms and clears the bar.
pub(crate) async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Histogram<u64>>>,
    bar: TickingBar,
) -> Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        hist.add(t.await?)?;
    }
    bar.ticker.abort();
    bar.bar.finish_and_clear();
    Ok(hist)
}

/// Per provider message id: when it was sent and when its 201 came back.
type SendTimes = Arc<Mutex<HashMap<String, (Instant, Option<Instant>)>>>;

struct StreamResult {
    sent: u64,
    seen: u64,
    achieved: f64,
    after_ack: Histogram<u64>,
    from_send: Histogram<u64>,
}

/// Reads an event stream (`GET /api/v1/events/stream`) in the background and calls `on` with
/// the provider id of every message it announces and the moment its frame arrived.
pub(crate) fn on_received_messages(
    resp: reqwest::Response,
    mut on: impl FnMut(String, Instant) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut bytes = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = bytes.next().await {
            let now = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                for data in frame.lines().filter_map(|l| l.strip_prefix("data:")) {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else { continue };
                    if let Some(p) = v.pointer("/payload/message/provider_message_id").and_then(|p| p.as_str()) {
                        on(p.to_string(), now);
                    }
                }
            }
        }
    })
}

async fn stream_latency(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    reader: &str,
    rate: u64,
    dur: Duration,
    run: u64,
) -> Result<StreamResult> {
    let times: SendTimes = Arc::new(Mutex::new(HashMap::new()));
    let arrivals: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let resp = client
        .get(format!("{base}/api/v1/events/stream"))
        .header("cookie", format!("kontor_session={reader}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .context("open event stream")?;
    if !resp.status().is_success() {
        bail!("event stream answered {}", resp.status());
    }
    let reader = {
        let arrivals = arrivals.clone();
        on_received_messages(resp, move |id, at| {
            if let Ok(mut a) = arrivals.lock() {
                a.push((id, at));
            }
        })
    };
    let total = rate * dur.as_secs();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} msg")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("stream");
    let start = Instant::now();
    let mut sends = Vec::new();
    for n in 0..total {
        let due = start + Duration::from_micros(n * 1_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let pmid = format!("bench-{run}-{n}");
        let (client, url, token, times) =
            (client.clone(), format!("{base}/api/v1/inbound"), token.to_string(), times.clone());
        sends.push(tokio::spawn(async move {
            let sent = Instant::now();
            if let Ok(mut t) = times.lock() {
                t.insert(pmid.clone(), (sent, None));
            }
            let r = client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body(run, n, 500))
                .send()
                .await;
            if let Ok(resp) = r {
                if resp.status().as_u16() == 201 {
                    let acked = Instant::now();
                    if let Ok(mut t) = times.lock() {
                        t.insert(pmid, (sent, Some(acked)));
                    }
                }
            }
        }));
        bar.inc(1);
    }
    for s in sends {
        let _ = s.await;
    }
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_millis(500)).await;
    reader.abort();
    let times = times.lock().map(|t| t.clone()).unwrap_or_default();
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    let mut after_ack = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut from_send = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut seen = 0;
    for (pmid, at) in arrivals {
        if let Some((sent, acked)) = times.get(&pmid) {
            seen += 1;
            let _ = from_send.record(at.saturating_duration_since(*sent).as_micros().max(1) as u64);
            if let Some(acked) = acked {
                // The stream may deliver before the client has read its 201: count that as 0.
                let _ = after_ack.record(at.saturating_duration_since(*acked).as_micros().max(1) as u64);
            }
        }
    }
    Ok(StreamResult { sent: total, seen, achieved, after_ack, from_send })
}

struct RawRates {
    single: f64,
    batched: f64,
}

/// Inserts rows straight into the same database with the same durability settings.
async fn raw_insert(backend: Backend, url: &str) -> Result<RawRates> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || -> Result<RawRates> {
        let mut c = Conn::open(backend, &url)?;
        c.batch("DROP TABLE IF EXISTS bench_raw; CREATE TABLE bench_raw (id BIGINT, payload TEXT NOT NULL)")?;
        let payload = "Mein Zählerstand am 1. Mai ist 12345 kWh, Kundennummer 500123.".to_string();
        let measure = |c: &mut Conn, per_commit: usize| -> Result<f64> {
            let start = Instant::now();
            let mut rows = 0u64;
            while start.elapsed() < Duration::from_secs(2) {
                c.batch("BEGIN")?;
                for _ in 0..per_commit {
                    c.execute(
                        "INSERT INTO bench_raw (id, payload) VALUES (?, ?)",
                        &kontor_store::params![rows as i64, payload.as_str()],
                    )?;
                    rows += 1;
                }
                c.batch("COMMIT")?;
            }
            Ok(rows as f64 / start.elapsed().as_secs_f64())
        };
        let single = measure(&mut c, 1)?;
        let batched = measure(&mut c, 100)?;
        c.batch("DROP TABLE bench_raw")?;
        Ok(RawRates { single, batched })
    })
    .await?
}

/// `kontor bench blobs`: a fresh data directory unless `[blobs]` names a store.
async fn blobs(mut cfg: Config, objects: usize, size: usize, concurrency: usize) -> Result<()> {
    let dir = tempdir_for(&cfg)?;
    if cfg.blobs.url.is_none() {
        cfg.data_dir = dir.clone();
        cfg.vault.master_key_file = Some(dir.join("master.key"));
    }
    let vault = kontor_vault::Vault::open(&cfg.blobs, &cfg.vault, &cfg.data_dir).await?;
    println!("blob store: {} · {objects} objects of {size} B · {concurrency} in flight", vault.describe());
    let r = kontor_vault::bench_put_get(&vault, objects, size, concurrency).await?;
    println!(
        "stored (encrypted, durable): {:.0}/s ({:.1} MiB/s) · read (decrypted, checked): {:.0}/s ({:.1} MiB/s)",
        r.stored_per_sec, r.stored_mib_per_sec, r.read_per_sec, r.read_mib_per_sec
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
