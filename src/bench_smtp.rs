//! `kontor bench smtp`: mails per second accepted over SMTP — durable, end to end into cases,
//! raw sources and attachments stored encrypted — by concurrent clients on kept-open sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use kontor_channel::ChannelRegistry;
use kontor_channels::email::keys::MailKeys;
use kontor_channels::email::smtp::SmtpListener;
use kontor_channels::email::EmailConfig;
use kontor_server::{AppState, Config};
use kontor_store::Store;
use mail_send::smtp::message::Parameters;

/// Options of `kontor bench smtp`.
#[derive(clap::Args, Debug, Clone)]
pub struct SmtpOptions {
    /// Concurrent SMTP clients, each on one session.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds of sustained load (after warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of warm-up load that are not counted.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Distinct senders.
    #[arg(long, default_value_t = 2000)]
    pub customers: u64,
    /// Every n-th mail carries a 20 kB PDF attachment (0: none).
    #[arg(long, default_value_t = 10)]
    pub attachment_every: u64,
}

/// A mail of a few kB, like the corpus: encoded headers, a German text, sometimes a PDF.
fn mail(run: u64, n: u64, o: &SmtpOptions, pdf: &str) -> (String, Vec<u8>) {
    let from = format!("kunde{}@bench-kunde.example", n % o.customers.max(1));
    let mut text = String::new();
    for i in 0..12 {
        text.push_str(&format!(
            "Zeile {i}: Guten Tag, mein Zählerstand ist {n} kWh, bitte passen Sie den Abschlag an. Grüße\r\n"
        ));
    }
    let with_file = o.attachment_every > 0 && n.is_multiple_of(o.attachment_every);
    let body = if with_file {
        format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XB\r\n\r\n--XB\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n--XB\r\n\
Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"Rechnung-{n}.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n--XB--\r\n"
        )
    } else {
        format!("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}")
    };
    let raw = format!(
        "From: =?utf-8?q?Kundin_{n}?= <{from}>\r\nTo: support@bench.example\r\n\
Subject: =?utf-8?q?Z=C3=A4hlerstand_{n}?=\r\nMessage-ID: <bench-{run}-{n}@bench-kunde.example>\r\n{body}"
    );
    (from, raw.into_bytes())
}

fn pdf_base64() -> String {
    use base64::Engine;
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let b64 = base64::engine::general_purpose::STANDARD.encode(pdf);
    b64.as_bytes().chunks(76).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("\r\n")
}

pub async fn smtp(mut cfg: Config, o: SmtpOptions) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("kontor-bench-smtp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    if cfg.database_url.is_none() {
        cfg.data_dir = tmp.clone();
    }
    cfg.email = EmailConfig {
        smtp_listen: Some("127.0.0.1:0".into()),
        domains: vec!["bench.example".into()],
        // All clients come from 127.0.0.1.
        max_sessions_per_ip: o.clients.max(1),
        ..EmailConfig::default()
    };
    let url = cfg.database_url();
    eprintln!("Kontor SMTP benchmark ({})", kontor_server::config::redact_url(&url));
    let store = Store::open(&url, cfg.store_settings())?;
    let vault = kontor_server::blobs::open_vault(&store, &cfg).await.map_err(anyhow::Error::msg)?;
    let keys = MailKeys::new(*vault.derive_key(MailKeys::LABEL));
    let listener = Arc::new(
        SmtpListener::from_config(&cfg.email, &cfg.default_region, Some(keys))
            .map_err(anyhow::Error::msg)?
            .context("no listener")?,
    );
    let mut registry = ChannelRegistry::new();
    registry.add_listener(listener.clone());
    // An admin reads the live stream, as an agent's browser would.
    let (_t, token) = store.create_token("bench-stream".into(), kontor_core::Role::Admin).await?;
    let mut state = AppState::with_channels(store, cfg.clone(), registry);
    state.vault = Some(vault);
    let http = std::net::TcpListener::bind("127.0.0.1:0")?;
    http.set_nonblocking(true)?;
    let base = format!("http://{}", http.local_addr()?);
    // The server runs on its own runtime, as it would in its own process.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        if let Ok(rt) = rt {
            rt.block_on(async move {
                if let Ok(l) = tokio::net::TcpListener::from_std(http) {
                    let _ = kontor_server::serve(state, l, std::future::pending()).await;
                }
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Some(a) = listener.bound_address() {
            break a;
        }
        if Instant::now() > deadline {
            bail!("the SMTP listener did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let run = std::process::id() as u64 * 1_000_000 + (kontor_store::now_us() as u64 % 1_000_000);
    let pdf = Arc::new(pdf_base64());
    let acks: Acks = Arc::new(Mutex::new(HashMap::new()));
    if o.warmup > 0 {
        load(addr, &o, run, &pdf, Duration::from_secs(o.warmup), "warm-up", acks.clone()).await?;
    }
    acks.lock().map_err(|_| anyhow::anyhow!("lock"))?.clear();
    let stream = LiveStream::open(&base, &token).await?;
    let (ok, errors, hist, elapsed) =
        load(addr, &o, run + 1, &pdf, Duration::from_secs(o.seconds), "load", acks.clone()).await?;
    let acked = acks.lock().map(|a| a.clone()).unwrap_or_default();
    let live = stream.latency_after(&acked, Duration::from_secs(30)).await?;
    let rate = ok as f64 / elapsed.as_secs_f64();
    let ms = |us: u64| us as f64 / 1000.0;
    println!();
    println!("## SMTP benchmark — {} clients, every {}th mail with a 20 kB PDF", o.clients, o.attachment_every);
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| **mails accepted (250, durable)** | **{rate:.0} mails/s** |");
    println!("| mails | {ok} in {:.1} s, {errors} errors |", elapsed.as_secs_f64());
    println!(
        "| DATA→250 latency | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        ms(hist.value_at_quantile(0.5)),
        ms(hist.value_at_quantile(0.99)),
        ms(hist.max())
    );
    println!(
        "| 250→live stream latency | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} of {} mails seen on the stream) |",
        ms(live.hist.value_at_quantile(0.5)),
        ms(live.hist.value_at_quantile(0.99)),
        ms(live.hist.max()),
        live.seen,
        acked.len()
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

async fn load(
    addr: std::net::SocketAddr,
    o: &SmtpOptions,
    run: u64,
    pdf: &Arc<String>,
    dur: Duration,
    label: &str,
    acks: Acks,
) -> Result<(u64, u64, Histogram<u64>, Duration)> {
    let counter = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let bar = crate::bench::ticking_bar(label, dur);
    let start = Instant::now();
    let deadline = start + dur;
    let tls = {
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let mut tasks = Vec::new();
    for _ in 0..o.clients {
        let (counter, ok, errors, pdf, o, tls, acks) =
            (counter.clone(), ok.clone(), errors.clone(), pdf.clone(), o.clone(), tls.clone(), acks.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!());
            let builder = mail_send::SmtpClientBuilder::new_with_tls_connector(addr.ip().to_string(), addr.port(), tls)
                .helo_host("bench-client.example")
                .timeout(Duration::from_secs(60));
            let mut c = match builder.connect_plain().await {
                Ok(c) => {
                    // Like a real MTA, which writes a whole message before it waits: without
                    // this, mail-send's separate write of the final "." waits for the server's
                    // delayed ACK (Nagle), 40 ms a mail.
                    let _ = c.stream.set_nodelay(true);
                    c
                }
                Err(e) => {
                    eprintln!("a client could not connect: {e}");
                    errors.fetch_add(1, Ordering::Relaxed);
                    return h;
                }
            };
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let (from, raw) = mail(run, n, &o, &pdf);
                let t = Instant::now();
                let sent = async {
                    c.mail_from(&from, &Parameters::new()).await?;
                    c.rcpt_to("support@bench.example", &Parameters::new()).await?;
                    c.data(&raw).await
                }
                .await;
                match sent {
                    Ok(_) => {
                        let acked = Instant::now();
                        if let Ok(mut a) = acks.lock() {
                            a.insert(format!("bench-{run}-{n}@bench-kunde.example"), acked);
                        }
                        let _ = h.record(t.elapsed().as_micros() as u64);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("a mail was not taken: {e}");
                        }
                        let _ = c.rset().await;
                    }
                }
            }
            let _ = c.quit().await;
            h
        }));
    }
    let hist = crate::bench::collect(tasks, bar).await?;
    Ok((ok.load(Ordering::Relaxed), errors.load(Ordering::Relaxed), hist, start.elapsed()))
}

/// When each mail was answered `250`, by its Message-ID.
type Acks = Arc<Mutex<HashMap<String, Instant>>>;

/// The live stream (`GET /api/v1/events/stream`) read during the load: when each mail first
/// appeared on it, by its Message-ID.
struct LiveStream {
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    reader: tokio::task::JoinHandle<()>,
}

/// What the live stream showed of the acknowledged mails.
struct LiveLatency {
    /// Microseconds from a mail's `250` to its `message.received` on the stream (0 when the
    /// stream was faster than the client reading its `250`).
    hist: Histogram<u64>,
    seen: usize,
}

impl LiveStream {
    async fn open(base: &str, token: &str) -> Result<LiveStream> {
        let resp = reqwest::Client::new()
            .get(format!("{base}/api/v1/events/stream"))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .context("open the live stream")?;
        if !resp.status().is_success() {
            bail!("the live stream answered {}", resp.status());
        }
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let seen = arrivals.clone();
        let reader = crate::bench::on_received_messages(resp, move |id, at| {
            if let Ok(mut a) = seen.lock() {
                a.entry(id).or_insert(at);
            }
        });
        Ok(LiveStream { arrivals, reader })
    }

    /// Waits (at most `limit`) until every acknowledged mail was on the stream; the latency
    /// of each from its `250`.
    async fn latency_after(self, acked: &HashMap<String, Instant>, limit: Duration) -> Result<LiveLatency> {
        let deadline = Instant::now() + limit;
        loop {
            let done = self.arrivals.lock().map(|a| acked.keys().all(|k| a.contains_key(k))).unwrap_or(true);
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.reader.abort();
        let arrivals = self.arrivals.lock().map(|a| a.clone()).unwrap_or_default();
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut seen = 0;
        for (id, at) in &arrivals {
            if let Some(acked_at) = acked.get(id) {
                seen += 1;
                let _ = hist.record(at.saturating_duration_since(*acked_at).as_micros().max(1) as u64);
            }
        }
        Ok(LiveLatency { hist, seen })
    }
}
