//! Runs [`kontor_vault::bench_put_get`] on a local vault in a temporary directory.
//!
//! `cargo run --release -p kontor-vault --example bench_blobs -- [objects] [size] [concurrency]`
//! (defaults: 2000 objects of 100 kB, 16 in flight). Set `KONTOR_BENCH_DIR` to bench another
//! file system than the temporary directory's.

use kontor_vault::{bench_put_get, BlobsConfig, Vault, VaultConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let size: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let base = std::env::var_os("KONTOR_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match base {
        Some(b) => tempfile::tempdir_in(b)?,
        None => tempfile::tempdir()?,
    };
    let vault = Vault::open(&BlobsConfig::default(), &VaultConfig::default(), dir.path()).await?;
    println!("vault: {}", vault.describe());
    let r = bench_put_get(&vault, n, size, concurrency).await?;
    println!(
        "{} objects x {} B, {} in flight: stored {:.0}/s ({:.1} MiB/s, {:.2} s), read {:.0}/s ({:.1} MiB/s, {:.2} s)",
        r.objects,
        r.object_size,
        r.concurrency,
        r.stored_per_sec,
        r.stored_mib_per_sec,
        r.put_elapsed.as_secs_f64(),
        r.read_per_sec,
        r.read_mib_per_sec,
        r.get_elapsed.as_secs_f64()
    );
    Ok(())
}
