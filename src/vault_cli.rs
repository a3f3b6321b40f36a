//! `kontor vault verify`: decrypts every object the database refers to and compares its
//! SHA-256 with the one recorded at write; names each damaged or missing object.

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kontor_server::Config;
use kontor_vault::VaultError;

/// What `vault` can do.
#[derive(clap::Subcommand)]
pub enum VaultCommand {
    /// Check every stored object: decrypt it, compare its SHA-256; exits non-zero naming each
    /// damaged or missing one.
    Verify,
}

/// Runs a `vault` subcommand.
pub async fn run(command: VaultCommand, cfg: Config) -> Result<()> {
    match command {
        VaultCommand::Verify => verify(cfg).await,
    }
}

async fn verify(cfg: Config) -> Result<()> {
    let store = crate::open_store(&cfg)?;
    let vault = kontor_server::blobs::open_vault_to_check(&store, &cfg).await.map_err(anyhow::Error::msg)?;
    let refs = store.blob_refs().await?;
    eprintln!("Verifying {} objects in {} …", refs.len(), vault.describe());
    let bar = ProgressBar::new(refs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} objects, {per_sec}, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut ok, mut damaged, mut missing) = (0usize, Vec::new(), Vec::new());
    for r in &refs {
        match vault.verify(&r.blob_id, r.sha256.as_deref()).await {
            Ok(()) => ok += 1,
            Err(VaultError::NotFound(_)) => missing.push(format!("{} (object {})", r.owner, r.blob_id)),
            Err(e @ VaultError::Damaged { .. }) => damaged.push(format!("{}: {e}", r.owner)),
            Err(e) => bail!("cannot read the blob store: {e}"),
        }
        bar.inc(1);
    }
    // Small raw sources kept sealed in the database, page by page.
    let mut after = 0i64;
    let mut inline = 0usize;
    loop {
        let page = store.inline_sources_after(after, 500).await?;
        let Some(last) = page.last().map(|(id, _, _)| *id) else { break };
        bar.inc_length(page.len() as u64);
        for (message_id, blob_id, sealed) in page {
            match vault.open_sealed(&blob_id, &sealed) {
                Ok(_) => ok += 1,
                Err(e) => damaged.push(format!("raw source of message {message_id} (in the database): {e}")),
            }
            inline += 1;
            bar.inc(1);
        }
        after = last;
    }
    bar.finish_and_clear();
    for d in &damaged {
        println!("DAMAGED {d}");
    }
    for m in &missing {
        println!("MISSING {m}");
    }
    if inline > 0 {
        println!("{inline} raw sources of received mails are kept in the database (counted below).");
    }
    println!("{ok} of {} objects verified, {} damaged, {} missing.", refs.len() + inline, damaged.len(), missing.len());
    if !damaged.is_empty() || !missing.is_empty() {
        bail!("{} objects damaged, {} missing", damaged.len(), missing.len());
    }
    Ok(())
}
