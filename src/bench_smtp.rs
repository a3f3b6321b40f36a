//! `kontor bench smtp`: mails per second accepted over SMTP — durable, end to end into cases,
//! raw sources and attachments stored encrypted — by concurrent clients on kept-open sessions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    let mut state = AppState::with_channels(store, cfg.clone(), registry);
    state.vault = Some(vault);
    let http = std::net::TcpListener::bind("127.0.0.1:0")?;
    http.set_nonblocking(true)?;
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
    if o.warmup > 0 {
        load(addr, &o, run, &pdf, Duration::from_secs(o.warmup), "warm-up").await?;
    }
    let (ok, errors, hist, elapsed) = load(addr, &o, run + 1, &pdf, Duration::from_secs(o.seconds), "load").await?;
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
        let (counter, ok, errors, pdf, o, tls) =
            (counter.clone(), ok.clone(), errors.clone(), pdf.clone(), o.clone(), tls.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!());
            let builder = mail_send::SmtpClientBuilder::new_with_tls_connector(addr.ip().to_string(), addr.port(), tls)
                .helo_host("bench-client.example")
                .timeout(Duration::from_secs(60));
            let mut c = match builder.connect_plain().await {
                Ok(c) => c,
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
