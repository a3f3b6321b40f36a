//! `kontor bench blobs`: durable puts and decrypting gets of many objects.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rand::RngCore;

use crate::{Vault, VaultError};

/// Figures from one [`bench_put_get`] run.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Objects written and read.
    pub objects: usize,
    /// Plaintext size of each object in bytes.
    pub object_size: usize,
    /// Operations in flight at once.
    pub concurrency: usize,
    /// Wall time of the put phase (encrypt + durable store).
    pub put_elapsed: Duration,
    /// Wall time of the get phase (fetch + decrypt + check).
    pub get_elapsed: Duration,
    /// Durable puts per second.
    pub stored_per_sec: f64,
    /// Decrypting gets per second.
    pub read_per_sec: f64,
    /// Plaintext MiB stored per second.
    pub stored_mib_per_sec: f64,
    /// Plaintext MiB read per second.
    pub read_mib_per_sec: f64,
}

/// Stores `n` random objects of `size` bytes with `concurrency` puts in flight, reads them all
/// back (checking content), then deletes them. Returns the rates of the put and get phases.
pub async fn bench_put_get(
    vault: &Vault,
    n: usize,
    size: usize,
    concurrency: usize,
) -> Result<BenchReport, VaultError> {
    let concurrency = concurrency.max(1);
    let mut base = vec![0u8; size];
    rand::rngs::OsRng.fill_bytes(&mut base);
    let base = Bytes::from(base);
    let object = |i: usize| -> Bytes {
        let mut v = base.to_vec();
        let tag = (i as u64).to_le_bytes();
        let k = tag.len().min(v.len());
        v[..k].copy_from_slice(&tag[..k]);
        Bytes::from(v)
    };

    let started = Instant::now();
    let stored: Vec<(usize, crate::StoredBlob)> = futures::stream::iter(0..n)
        .map(|i| {
            let body = object(i);
            async move { vault.put(body).await.map(|s| (i, s)) }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let put_elapsed = started.elapsed();

    let started = Instant::now();
    futures::stream::iter(stored.iter())
        .map(|(i, blob)| {
            let expected = object(*i);
            async move {
                let got = vault.get(&blob.id).await?;
                if got != expected {
                    return Err(VaultError::Damaged {
                        id: blob.id.clone(),
                        reason: "bench read back other bytes than it wrote".into(),
                    });
                }
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let get_elapsed = started.elapsed();

    futures::stream::iter(stored.iter())
        .map(|(_, blob)| vault.delete(&blob.id))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;

    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let mib = |d: Duration| (n * size) as f64 / (1024.0 * 1024.0) / d.as_secs_f64().max(1e-9);
    Ok(BenchReport {
        objects: n,
        object_size: size,
        concurrency,
        put_elapsed,
        get_elapsed,
        stored_per_sec: rate(put_elapsed),
        read_per_sec: rate(get_elapsed),
        stored_mib_per_sec: mib(put_elapsed),
        read_mib_per_sec: mib(get_elapsed),
    })
}
