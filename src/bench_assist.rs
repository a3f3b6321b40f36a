//! `kontor bench assist`: the assistant's analysis runs behind ingest, never in its
//! transaction. The same open-loop load of inbound messages is offered to a fresh server with
//! analysis off and to one with analysis on; the ingest latencies are compared, the analysis
//! backlog is sampled from `/metrics`, and after the load the time until it drains and that
//! every message got its analysis are checked. An overload run shows the backlog growing in
//! `/metrics` and draining afterwards.
//!
//! Each run has its own SQLite database on disk in a temporary directory, so no run leaves
//! a backlog for the next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use kontor_core::Role;
use kontor_server::{AppState, Config};
use kontor_store::{Backend, Conn, Store};

/// Options of `kontor bench assist`.
#[derive(clap::Args, Debug, Clone)]
pub struct AssistOptions {
    /// Offered load: inbound messages per second, sent on schedule (open loop).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds of measured load per run.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Seconds of warm-up load at the same rate before each run (not counted; with analysis
    /// on, the backlog it leaves is drained before the measured load starts).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Pairs of runs (analysis off, then on, each on a fresh server and database); the p99
    /// compared is each mode's median over its runs, since one 20-second run on a shared
    /// two-core machine varies by more than the 10 % the target allows.
    #[arg(long, default_value_t = 3)]
    pub pairs: u64,
    /// Rate of the overload run with analysis on (0 skips it).
    #[arg(long, default_value_t = 4000)]
    pub overload_rate: u64,
    /// Seconds of the overload run.
    #[arg(long, default_value_t = 10)]
    pub overload_seconds: u64,
    /// Distinct customers the messages come from.
    #[arg(long, default_value_t = 2000)]
    pub customers: u64,
    /// Requests in flight at most (a request over it waits; the wait shows as client lag).
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Longest wait, in seconds, for the backlog to drain after a run.
    #[arg(long, default_value_t = 600)]
    pub drain_limit: u64,
    /// Milliseconds between samples of `/metrics` during runs with analysis on.
    #[arg(long, default_value_t = 500)]
    pub sample_ms: u64,
}

/// A server for one run, on its own runtime (as in its own process) and its own database.
struct Node {
    base: String,
    token: String,
    url: String,
    backend: Backend,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    async fn start(cfg: &Config, dir: &Path, analyse: bool) -> Result<Node> {
        std::fs::create_dir_all(dir)?;
        let mut cfg = cfg.clone();
        cfg.data_dir = dir.to_path_buf();
        cfg.database_url = None;
        cfg.assist.analyse = analyse;
        let url = cfg.database_url();
        let backend = kontor_store::backend_for(&url)?;
        let store = Store::open(&url, cfg.store_settings())?;
        let (_t, token) = store.create_token("bench-assist".into(), Role::Ingest).await?;
        let state = AppState::new(store, cfg);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                        let shutdown = async move {
                            let _ = stopped.await;
                        };
                        let _ = kontor_server::serve(state, l, shutdown).await;
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(5));
            }
        });
        let node = Node { base, token, url, backend, stop: Some(stop), thread: Some(thread) };
        wait_ready(&node.base).await?;
        Ok(node)
    }

    /// Stops the server and waits for its runtime to end (its background loops with it).
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Inbound messages in the database, and how many of them have no analysis.
    async fn analysis_counts(&self) -> Result<(i64, i64)> {
        let (backend, url) = (self.backend, self.url.clone());
        tokio::task::spawn_blocking(move || -> Result<(i64, i64)> {
            let mut c = Conn::open(backend, &url)?;
            let count = |c: &mut Conn, sql: &str| -> Result<i64> {
                Ok(c.query_opt(sql, &[])?.map(|r| r.req_i64(0, "COUNT(*)")).transpose()?.unwrap_or_default())
            };
            let inbound = count(&mut c, "SELECT COUNT(*) FROM messages WHERE direction = 'in'")?;
            let missing = count(
                &mut c,
                "SELECT COUNT(*) FROM messages m WHERE m.direction = 'in' \
                 AND NOT EXISTS (SELECT 1 FROM message_analysis a WHERE a.message_id = m.id)",
            )?;
            Ok((inbound, missing))
        })
        .await?
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn wait_ready(base: &str) -> Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.map(|r| r.status().is_success()).unwrap_or(false) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the benchmark server did not start")
}

/// What `/metrics` says about the assistant: (backlog, analysed on this node).
async fn assist_metrics(client: &reqwest::Client, base: &str) -> Result<(i64, u64)> {
    let text = client.get(format!("{base}/metrics")).send().await?.error_for_status()?.text().await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let backlog = value("kontor_assist_backlog").context("/metrics has no kontor_assist_backlog")?;
    let analysed = value("kontor_assist_analysed_total").unwrap_or(0.0);
    Ok((backlog as i64, analysed as u64))
}

/// Samples the backlog from `/metrics` until stopped: (seconds since start, backlog).
struct BacklogSampler {
    samples: Arc<Mutex<Vec<(f64, i64)>>>,
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl BacklogSampler {
    fn start(client: &reqwest::Client, base: &str, every: Duration, start: Instant) -> BacklogSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn({
            let (client, base, samples, running) = (client.clone(), base.to_string(), samples.clone(), running.clone());
            async move {
                while running.load(Ordering::Relaxed) {
                    if let Ok((backlog, _)) = assist_metrics(&client, &base).await {
                        if let Ok(mut s) = samples.lock() {
                            s.push((start.elapsed().as_secs_f64(), backlog));
                        }
                    }
                    tokio::time::sleep(every).await;
                }
            }
        });
        BacklogSampler { samples, running, task }
    }

    async fn finish(self) -> Vec<(f64, i64)> {
        self.running.store(false, Ordering::Relaxed);
        let _ = self.task.await;
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Customer texts in German and English: the assistant's seed set (one per intent and
/// wording), or a few built-in ones if it is empty.
fn customer_texts() -> Vec<String> {
    let texts: Vec<String> = kontor_assist::analysis::seed_examples().into_iter().map(|(text, _)| text).collect();
    if !texts.is_empty() {
        return texts;
    }
    [
        "Guten Tag, meine Rechnung für November ist viel höher als sonst. Können Sie das prüfen?",
        "Ich möchte meinen Vertrag zum Monatsende kündigen.",
        "Hello, I moved house. My new address is 12 Mill Lane, Leeds LS1 4AB.",
        "I can't log in to the customer portal, the password reset mail never arrives.",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

fn inbound_body(texts: &[String], run: &str, n: u64, customers: u64) -> String {
    let c = n.wrapping_mul(7919) % customers.max(1);
    let text = &texts[(n as usize) % texts.len()];
    serde_json::json!({
        "from": { "email": format!("kunde{c}@bench-assist.example") },
        "name": format!("Kundin {c}"),
        "text": text,
        "provider_message_id": format!("bench-assist-{run}-{n}"),
    })
    .to_string()
}

/// The outcome of one load.
struct LoadResult {
    offered: u64,
    accepted: u64,
    /// Answers other than 201 (status, or `error` when no answer came).
    failures: BTreeMap<String, u64>,
    /// From sending to the answer.
    latency: Histogram<u64>,
    /// From the scheduled moment to sending (waiting for the client: it should be ~0).
    lag: Histogram<u64>,
    /// From the first scheduled send to the last answer.
    elapsed: Duration,
}

fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?)
}

/// Offers `rate` messages/s for `seconds` on a fixed schedule, whatever the answers take.
#[allow(clippy::too_many_arguments)]
async fn offer(
    client: &reqwest::Client,
    node: &Node,
    texts: &Arc<Vec<String>>,
    rate: u64,
    seconds: u64,
    customers: u64,
    max_in_flight: usize,
    run: &str,
) -> Result<LoadResult> {
    let total = rate.saturating_mul(seconds);
    let bar = crate::bench::ticking_bar(run, Duration::from_secs(seconds));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
    let url = format!("{}/api/v1/inbound", node.base);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    let mut n = 0u64;
    while n < total {
        let due = ((start.elapsed().as_micros() * u128::from(rate)) / 1_000_000) as u64 + 1;
        while n < due.min(total) {
            let scheduled = start + Duration::from_micros(n * 1_000_000 / rate.max(1));
            let request = client
                .post(&url)
                .bearer_auth(&node.token)
                .header("content-type", "application/json")
                .body(inbound_body(texts, run, n, customers));
            let in_flight = in_flight.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = in_flight.acquire_owned().await;
                let sent = Instant::now();
                let outcome = match request.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                (outcome, sent.saturating_duration_since(scheduled), sent.elapsed())
            }));
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut result = LoadResult {
        offered: total,
        accepted: 0,
        failures: BTreeMap::new(),
        latency: histogram()?,
        lag: histogram()?,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (status, lag, latency) = t.await?;
        let _ = result.lag.record((lag.as_micros() as u64).max(1));
        if status == 201 {
            result.accepted += 1;
            let _ = result.latency.record((latency.as_micros() as u64).max(1));
        } else {
            let key = if status == 0 { "error".to_string() } else { status.to_string() };
            *result.failures.entry(key).or_default() += 1;
        }
    }
    result.elapsed = start.elapsed();
    // No client histograms to merge here: this only stops and clears the bar.
    crate::bench::collect(Vec::new(), bar).await?;
    Ok(result)
}

/// Waits until `/metrics` shows no backlog; returns how long that took.
async fn drain(client: &reqwest::Client, base: &str, limit: Duration) -> Result<Option<Duration>> {
    let start = Instant::now();
    loop {
        if let Ok((0, _)) = assist_metrics(client, base).await {
            return Ok(Some(start.elapsed()));
        }
        if start.elapsed() > limit {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One run with its figures.
struct Run {
    label: String,
    analyse: bool,
    /// The overload run (its backlog over time is shown).
    overload: bool,
    rate: u64,
    load: LoadResult,
    /// Backlog samples during and after the load (seconds since the load started).
    samples: Vec<(f64, i64)>,
    drain: Option<Duration>,
    /// Inbound messages in the database (warm-up included) and those without analysis.
    inbound: i64,
    missing: i64,
    /// Messages the node counted as analysed (warm-up included).
    analysed_metric: u64,
    /// Messages accepted, warm-up included.
    accepted_total: u64,
}

impl Run {
    fn max_backlog(&self) -> Option<i64> {
        self.samples.iter().map(|(_, b)| *b).max()
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    cfg: &Config,
    dir: &Path,
    o: &AssistOptions,
    texts: &Arc<Vec<String>>,
    label: &str,
    analyse: bool,
    overload: bool,
    rate: u64,
    seconds: u64,
) -> Result<Run> {
    eprintln!("{label}: starting a fresh server (analysis {})", if analyse { "on" } else { "off" });
    let node = Node::start(cfg, dir, analyse).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(o.max_in_flight).build()?;
    let tag = label.split_whitespace().next().unwrap_or("run").to_string();
    let mut accepted_total = 0;
    if o.warmup > 0 {
        let w = offer(
            &client,
            &node,
            texts,
            rate.min(o.rate),
            o.warmup,
            o.customers,
            o.max_in_flight,
            &format!("{tag}-warm"),
        )
        .await?;
        accepted_total += w.accepted;
        if analyse && drain(&client, &node.base, Duration::from_secs(o.drain_limit)).await?.is_none() {
            bail!("{label}: the warm-up's backlog did not drain within {} s", o.drain_limit);
        }
    }
    let start = Instant::now();
    // `/metrics` is sampled with analysis off too, so both runs carry the same observer.
    let sampler = BacklogSampler::start(&client, &node.base, Duration::from_millis(o.sample_ms), start);
    let load = offer(&client, &node, texts, rate, seconds, o.customers, o.max_in_flight, &tag).await?;
    accepted_total += load.accepted;
    let mut drained = None;
    if analyse {
        drained = drain(&client, &node.base, Duration::from_secs(o.drain_limit)).await?;
    }
    let mut samples = sampler.finish().await;
    if let Ok((backlog, _)) = assist_metrics(&client, &node.base).await {
        samples.push((start.elapsed().as_secs_f64(), backlog));
    }
    let (_, analysed_metric) = assist_metrics(&client, &node.base).await.unwrap_or_default();
    let (inbound, missing) = node.analysis_counts().await?;
    node.stop().await;
    Ok(Run {
        label: label.to_string(),
        analyse,
        overload,
        rate,
        load,
        samples,
        drain: drained,
        inbound,
        missing,
        analysed_metric,
        accepted_total,
    })
}

/// The median (of an even count, the mean of the two middle values).
fn median(values: &[u64]) -> Option<u64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(v[n / 2 - 1] / 2 + v[n / 2] / 2 + (v[n / 2 - 1] % 2 + v[n / 2] % 2) / 2),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The bench's own directory for its databases, removed at the end.
fn bench_dir() -> Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("kontor-bench-assist-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

pub async fn assist(cfg: Config, o: AssistOptions) -> Result<()> {
    if o.rate == 0 || o.seconds == 0 || o.pairs == 0 {
        bail!("--rate, --seconds and --pairs must be at least 1");
    }
    let dir = bench_dir()?;
    let result = assist_in(&cfg, &o, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn assist_in(cfg: &Config, o: &AssistOptions, dir: &Path) -> Result<()> {
    let texts = Arc::new(customer_texts());
    eprintln!(
        "Kontor assistant benchmark: {} msg/s for {} s (open loop), {} customers, {} texts, SQLite on disk in {}",
        o.rate,
        o.seconds,
        o.customers,
        texts.len(),
        dir.display()
    );
    let mut runs = Vec::new();
    for i in 1..=o.pairs {
        let n = if o.pairs > 1 { format!(" #{i}") } else { String::new() };
        let (off, on) = (format!("baseline (analysis off){n}"), format!("analysis on{n}"));
        runs.push(run(cfg, &dir.join(format!("off-{i}")), o, &texts, &off, false, false, o.rate, o.seconds).await?);
        runs.push(run(cfg, &dir.join(format!("on-{i}")), o, &texts, &on, true, false, o.rate, o.seconds).await?);
    }
    if o.overload_rate > 0 && o.overload_seconds > 0 {
        runs.push(
            run(
                cfg,
                &dir.join("overload"),
                o,
                &texts,
                "overload (analysis on)",
                true,
                true,
                o.overload_rate,
                o.overload_seconds,
            )
            .await?,
        );
    }
    report(o, &runs);
    let failed: Vec<&Run> = runs.iter().filter(|r| r.analyse && (r.missing > 0 || r.drain.is_none())).collect();
    if let Some(r) = failed.first() {
        bail!("{}: {} of {} inbound messages have no analysis", r.label, r.missing, r.inbound);
    }
    Ok(())
}

fn report(o: &AssistOptions, runs: &[Run]) {
    println!();
    println!("## Assistant benchmark — analysis behind ingest (SQLite on disk, open-loop load)");
    println!();
    println!(
        "| run | offered | accepted (201) | other answers | achieved | p50 | p95 | p99 | max | client lag p99 | max backlog | drain after load | analysed / inbound |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let l = &r.load;
        let failures = if l.failures.is_empty() {
            "0".to_string()
        } else {
            l.failures.iter().map(|(k, v)| format!("{v}× {k}")).collect::<Vec<_>>().join(", ")
        };
        let (backlog, drain, analysed) = if r.analyse {
            (
                r.max_backlog().map_or("–".into(), |b| b.to_string()),
                r.drain.map_or("not within the limit".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                format!("{} / {}", r.inbound - r.missing, r.inbound),
            )
        } else {
            ("–".into(), "–".into(), format!("off (0 / {})", r.inbound))
        };
        println!(
            "| {} | {} msg/s × {:.0} s = {} | {} | {failures} | {:.0} msg/s | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {backlog} | {drain} | {analysed} |",
            r.label,
            r.rate,
            l.offered as f64 / r.rate.max(1) as f64,
            l.offered,
            l.accepted,
            l.accepted as f64 / l.elapsed.as_secs_f64().max(1e-9),
            ms(l.latency.value_at_quantile(0.5)),
            ms(l.latency.value_at_quantile(0.95)),
            ms(l.latency.value_at_quantile(0.99)),
            ms(l.latency.max()),
            ms(l.lag.value_at_quantile(0.99)),
        );
    }
    println!();
    let p99 = |analyse: bool| -> Vec<u64> {
        runs.iter()
            .filter(|r| r.analyse == analyse && !r.overload)
            .map(|r| r.load.latency.value_at_quantile(0.99))
            .collect()
    };
    let (offs, ons) = (p99(false), p99(true));
    if let (Some(p_off), Some(p_on)) = (median(&offs), median(&ons)) {
        let ratio = p_on as f64 / p_off.max(1) as f64;
        let pairs: Vec<String> =
            offs.iter().zip(&ons).map(|(a, b)| format!("{:.2}", *b as f64 / (*a).max(1) as f64)).collect();
        println!(
            "- ingest p99 at {} msg/s, median of {} runs each: {:.2} ms without analysis, {:.2} ms with: ratio {ratio:.2} (target ≤ 1.10: {}); the pairs' own ratios: {}",
            o.rate,
            offs.len(),
            ms(p_off),
            ms(p_on),
            if ratio <= 1.10 { "met" } else { "NOT met" },
            pairs.join(", ")
        );
    }
    for r in runs.iter().filter(|r| r.analyse) {
        println!(
            "- {}: accepted {} (warm-up included), inbound in the database {}, without analysis {}, analysed per /metrics {}",
            r.label, r.accepted_total, r.inbound, r.missing, r.analysed_metric
        );
    }
    if let Some(over) = runs.iter().find(|r| r.overload) {
        // The backlog over time, about one sample a second.
        let mut line = Vec::new();
        let mut next = 0.0;
        for (t, b) in &over.samples {
            if *t >= next {
                line.push(format!("{t:.0}s:{b}"));
                next = t.floor() + 1.0;
            }
        }
        println!(
            "- {} backlog in /metrics over time (load for {} s): {}",
            over.label,
            o.overload_seconds,
            line.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_value() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7]), Some(7));
        assert_eq!(median(&[9, 1, 5]), Some(5));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(median(&[4, 1, 3, 6]), Some(3));
    }

    #[test]
    fn bodies_vary_customers_and_texts() {
        let texts = customer_texts();
        assert!(texts.len() > 100, "the seed set has many texts");
        let a: serde_json::Value = serde_json::from_str(&inbound_body(&texts, "r", 1, 2000)).unwrap();
        let b: serde_json::Value = serde_json::from_str(&inbound_body(&texts, "r", 2, 2000)).unwrap();
        assert_ne!(a["from"]["email"], b["from"]["email"]);
        assert_ne!(a["text"], b["text"]);
        assert_ne!(a["provider_message_id"], b["provider_message_id"]);
    }
}
