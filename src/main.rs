//! `kontor`: the command-line face of Kontor (serve, migrate, users, tokens, benchmarks).

mod assist_cli;
mod bench;
mod bench_assist;
mod bench_smtp;
mod demo;
mod vault_cli;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use kontor_core::Role;
use kontor_server::{AppState, Config};
use kontor_store::Store;

#[derive(Parser)]
#[command(name = "kontor", version, about = "Kontor — omnichannel customer communication")]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives; every subcommand that touches the store takes these.
#[derive(Args, Clone)]
struct StoreArgs {
    /// Data directory (the embedded SQLite database lives here).
    #[arg(long, global = true, env = "KONTOR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite:PATH or postgres://USER@HOST/DB (overrides --data-dir for the database).
    #[arg(long, global = true, env = "KONTOR_DATABASE_URL")]
    database_url: Option<String>,
    /// TOML configuration file (default: ./kontor.toml if present).
    #[arg(long, global = true, env = "KONTOR_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server and job workers.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, env = "KONTOR_LISTEN")]
        listen: Option<String>,
        /// Load a small German/English demo data set if the store is empty.
        #[arg(long)]
        demo: bool,
        /// Address of the inbound SMTP listener (config `email.smtp_listen`).
        #[arg(long, env = "KONTOR_EMAIL__SMTP_LISTEN")]
        smtp_listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage staff users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The encrypted blob store (attachments).
    Vault {
        #[command(subcommand)]
        command: vault_cli::VaultCommand,
    },
    /// The digital assistant: train and evaluate intent models.
    Assist {
        #[command(subcommand)]
        command: assist_cli::AssistCommand,
    },
    /// Measure performance.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a staff user (asks for the password, or reads it from stdin when not a terminal).
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// admin or agent (ingest is a role for API tokens only)
        #[arg(long, default_value = "agent")]
        role: String,
        /// The password (prefer the prompt: command lines end up in shell history).
        #[arg(long)]
        password: Option<String>,
    },
    /// List staff users.
    List,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token; prints it once, alone on the last line.
    Create {
        #[arg(long)]
        name: String,
        /// admin, agent, or ingest (may only post inbound messages: for a CRM or a shop)
        #[arg(long, default_value = "agent")]
        role: String,
    },
    /// List API tokens (id, name, role, created, revoked; never the secret).
    List,
    /// Revoke an API token: it stops working at once on every node.
    Revoke {
        /// The token's id (see `kontor token list`).
        id: i64,
    },
}

fn load_config(args: &StoreArgs) -> Result<Config> {
    let mut cfg = Config::load(args.config.as_deref()).map_err(anyhow::Error::msg)?;
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(u) = &args.database_url {
        cfg.database_url = Some(u.clone());
    }
    Ok(cfg)
}

pub(crate) fn open_store(cfg: &Config) -> Result<Store> {
    let url = cfg.database_url();
    Store::open(&url, cfg.store_settings())
        .with_context(|| format!("cannot open the store at {}", kontor_server::config::redact_url(&url)))
}

fn parse_role(s: &str) -> Result<Role> {
    Role::parse(s).with_context(|| format!("unknown role {s:?}; allowed: {}", Role::allowed()))
}

fn read_password() -> Result<String> {
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Repeat password: ")?;
        if p != again {
            bail!("the passwords differ");
        }
        Ok(p)
    } else {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s.lines().next().unwrap_or("").to_string())
    }
}

fn main() {
    return_large_blocks_to_the_system();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async_main());
}

/// Keeps memory that large allocations used from staying with the process. A password check
/// (Argon2id) takes 19 MiB; glibc serves the first such block by `mmap` but then raises its
/// mmap threshold, so later ones come from per-thread arenas and their memory is kept after
/// they are freed: 1,000 sign-ins left a server at 641 MB RSS (docs/benchmarks.md). A fixed
/// threshold of 1 MiB keeps large blocks mapped and returns them when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks_to_the_system() {
    // SAFETY: `mallopt` only sets an allocator parameter. It runs first in `main`, before
    // any other thread exists (glibc documents it as not safe to call concurrently with
    // allocator initialisation).
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
    if ok != 1 {
        eprintln!("warning: could not set the allocator's mmap threshold; memory use may grow");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks_to_the_system() {}

async fn async_main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KONTOR_LOG").unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { listen, demo, smtp_listen } => {
            let mut cfg = load_config(&cli.store)?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(l) = smtp_listen {
                cfg.email.smtp_listen = Some(l);
                cfg.email.validate().map_err(anyhow::Error::msg)?;
            }
            serve(cfg, demo).await
        }
        Command::Migrate => {
            let cfg = load_config(&cli.store)?;
            open_store(&cfg)?;
            println!("migrations applied to {}", kontor_server::config::redact_url(&cfg.database_url()));
            Ok(())
        }
        Command::User { command } => {
            let store = open_store(&load_config(&cli.store)?)?;
            match command {
                UserCommand::Add { email, name, role, password } => {
                    let role = parse_role(&role)?;
                    if !role.is_staff() {
                        bail!(
                            "the role {role} is for API tokens only (kontor token create --role {role}); \
                             a staff user is admin or agent"
                        );
                    }
                    let password = match password {
                        Some(p) => p,
                        None => read_password()?,
                    };
                    let u = store.create_user(email, name, role, password).await?;
                    println!("user {} created: {} <{}> ({})", u.id, u.name, u.email, u.role);
                }
                UserCommand::List => {
                    let users = store.list_users().await?;
                    if users.is_empty() {
                        println!("no users yet — add one with: kontor user add --email E --name N --role admin");
                    }
                    for u in users {
                        println!("{:>5}  {:<6}  {:<32}  {}", u.id, u.role.as_str(), u.email, u.name);
                    }
                }
            }
            Ok(())
        }
        Command::Token { command } => {
            let store = open_store(&load_config(&cli.store)?)?;
            match command {
                TokenCommand::Create { name, role } => {
                    let (t, secret) = store.create_token(name, parse_role(&role)?).await?;
                    eprintln!("token {} \"{}\" ({}) created; it is shown only this once:", t.id, t.name, t.role);
                    println!("{secret}");
                }
                TokenCommand::List => {
                    let tokens = store.list_tokens().await?;
                    if tokens.is_empty() {
                        println!("no API tokens yet — create one with: kontor token create --name N --role ingest");
                    }
                    for t in tokens {
                        let state = match &t.revoked_at {
                            Some(at) => format!("revoked {at}"),
                            None => "active".to_string(),
                        };
                        println!(
                            "{:>5}  {:<6}  {:<24}  created {}  {}",
                            t.id,
                            t.role.as_str(),
                            t.name,
                            t.created_at,
                            state
                        );
                    }
                }
                TokenCommand::Revoke { id } => {
                    let t = store.revoke_token(id).await?;
                    println!("token {} \"{}\" ({}) revoked", t.id, t.name, t.role);
                }
            }
            Ok(())
        }
        Command::Vault { command } => vault_cli::run(command, load_config(&cli.store)?).await,
        Command::Assist { command } => assist_cli::run(command),
        Command::Bench { command } => bench::run(command, load_config(&cli.store)?).await,
    }
}

async fn serve(cfg: Config, demo: bool) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    let store = open_store(&cfg)?;
    if demo {
        demo::load(&store).await?;
    }
    let listener =
        tokio::net::TcpListener::bind(&cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, database = %kontor_server::config::redact_url(&cfg.database_url()), "Kontor is listening.");
    let vault = kontor_server::blobs::open_vault(&store, &cfg).await.map_err(anyhow::Error::msg)?;
    tracing::info!(blobs = %vault.describe(), key_id = vault.key_id(), "Blob store open.");
    // A channel that is configured but cannot start (a bad relay URL, a missing certificate)
    // stops the start: it must not become a silent outage.
    let mut channels_config = cfg.channels();
    // Bounce addresses and case tokens are keyed from the master key: nothing to configure,
    // the same on every node.
    channels_config.mail_keys = Some(kontor_channels::email::keys::MailKeys::new(
        *vault.derive_key(kontor_channels::email::keys::MailKeys::LABEL),
    ));
    let channels = kontor_channels::registry(&channels_config).map_err(|e| anyhow::anyhow!("channels: {e}"))?;
    let mut state = AppState::with_channels(store, cfg, channels);
    state.vault = Some(vault);
    kontor_server::serve(state, listener, shutdown_signal()).await?;
    tracing::info!("Kontor stopped.");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
