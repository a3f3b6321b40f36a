//! One story, run against the local directory backend and against S3 (a real `moto_server`).
//!
//! The S3 run needs `KONTOR_MOTO_SERVER` (path of the `moto_server` executable). Without it the
//! S3 test prints a notice and passes, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use kontor_vault::{BlobsConfig, Vault, VaultConfig, VaultError};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

/// A backend under test: its config and raw (unencrypted-layer) access to what is stored.
struct Backend {
    blobs: BlobsConfig,
    raw: Arc<dyn ObjectStore>,
}

fn object_path(id: &str) -> ObjectPath {
    ObjectPath::from(format!("{}/{}/{}", &id[..2], &id[2..4], id))
}

impl Backend {
    async fn read_raw(&self, id: &str) -> Vec<u8> {
        self.raw.get(&object_path(id)).await.unwrap().bytes().await.unwrap().to_vec()
    }

    async fn write_raw(&self, id: &str, bytes: Vec<u8>) {
        self.raw.put(&object_path(id), PutPayload::from(bytes)).await.unwrap();
    }
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // xorshift: varied content without pulling a RNG into the test's expectations.
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn vault_config(key: &Path) -> VaultConfig {
    VaultConfig { master_key_file: Some(key.to_path_buf()) }
}

fn assert_damaged<T: std::fmt::Debug>(r: Result<T, VaultError>, what: &str) {
    match r {
        Err(VaultError::Damaged { .. }) => {}
        other => panic!("{what}: expected Damaged, got {other:?}"),
    }
}

/// The story both backends must tell the same way.
async fn story(backend: &Backend) {
    let data = tempfile::tempdir().unwrap();
    // Two nodes create the same new store at once, each with its own key file: one key wins,
    // the other node is refused and keeps no key file.
    let key_a = data.path().join("keys/a/master.key");
    let key_b = data.path().join("keys/b/master.key");
    let (config_a, config_b) = (vault_config(&key_a), vault_config(&key_b));
    let (a, b) = tokio::join!(
        Vault::open(&backend.blobs, &config_a, data.path()),
        Vault::open(&backend.blobs, &config_b, data.path())
    );
    let (vault, key_file, loser_key, loser) = match (a, b) {
        (Ok(v), Err(e)) => (v, key_a, key_b, e),
        (Err(e), Ok(v)) => (v, key_b, key_a, e),
        (a, b) => panic!("exactly one of two concurrent creators must win: {a:?} / {b:?}"),
    };
    assert!(matches!(loser, VaultError::MissingMasterKey { .. }), "{loser:?}");
    assert!(!loser_key.exists(), "the losing creator removes its unused key file");
    assert_eq!(vault.key_id().len(), 16);
    assert!(vault.key_id().bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a new store creates its key file with mode 0600");
    }
    let described = vault.describe();
    assert!(!described.contains("secret"), "{described}");

    // Round trips: small, empty, around the chunk edge, several MiB.
    let mut stored = Vec::new();
    for (n, seed) in [(5, 1), (0, 2), (65536 - 32, 3), (65536, 4), (3 * 1024 * 1024 + 17, 5)] {
        let content = random_bytes(n, seed);
        let blob = vault.put(Bytes::from(content.clone())).await.unwrap();
        assert_eq!(blob.size, n as u64);
        assert_eq!(blob.sha256, sha_hex(&content));
        assert_eq!(blob.id.len(), 26);
        let back = vault.get(&blob.id).await.unwrap();
        assert_eq!(back.as_ref(), content.as_slice(), "size {n}");
        vault.verify(&blob.id, None).await.unwrap();
        vault.verify(&blob.id, Some(&blob.sha256)).await.unwrap();
        let raw = backend.read_raw(&blob.id).await;
        assert!(n < 16 || !raw.windows(16).any(|w| w == &content[..16]), "plaintext visible in the stored object");
        stored.push((blob, content));
    }
    let (small, small_content) = stored[0].clone();
    let (big, _) = stored[4].clone();
    assert_damaged(vault.verify(&small.id, Some(&sha_hex(b"other"))).await, "verify with another expected sha");

    // Missing and malformed ids.
    let absent = "zzzzzzzzzzzzzzzzzzzzzzzzzz";
    assert!(matches!(vault.get(absent).await, Err(VaultError::NotFound(_))));
    assert!(matches!(vault.verify(absent, None).await, Err(VaultError::NotFound(_))));
    for bad in ["../../master.key", "", "_kontor/keycheck", "ABCDEFGHJKMNPQRSTVWXYZ0123"] {
        assert!(matches!(vault.get(bad).await, Err(VaultError::NotFound(_))), "{bad}");
        assert!(matches!(vault.delete(bad).await, Err(VaultError::NotFound(_))), "{bad}");
    }

    // Damage: every case must give Damaged, never bytes.
    let fresh = |seed| {
        let vault = vault.clone();
        async move { vault.put(Bytes::from(random_bytes(200 * 1024, seed))).await.unwrap() }
    };
    let flipped = fresh(10).await;
    let mut raw = backend.read_raw(&flipped.id).await;
    let mid = raw.len() / 2;
    raw[mid] ^= 0x40;
    backend.write_raw(&flipped.id, raw).await;
    assert_damaged(vault.get(&flipped.id).await, "flipped body byte");
    assert_damaged(vault.verify(&flipped.id, None).await, "verify flipped body byte");

    let header_flip = fresh(11).await;
    let mut raw = backend.read_raw(&header_flip.id).await;
    raw[90] ^= 0x01; // inside the STREAM nonce prefix
    backend.write_raw(&header_flip.id, raw).await;
    assert_damaged(vault.get(&header_flip.id).await, "flipped header byte");

    let truncated = fresh(12).await;
    let raw = backend.read_raw(&truncated.id).await;
    backend.write_raw(&truncated.id, raw[..raw.len() - 10].to_vec()).await;
    assert_damaged(vault.get(&truncated.id).await, "truncated object");

    // 200 KiB + 32 trailer bytes = 3 full chunks + a last chunk of 8,224 bytes.
    let dropped = fresh(13).await;
    let raw = backend.read_raw(&dropped.id).await;
    let last_chunk = (200 * 1024 + 32) % 65536 + 16;
    backend.write_raw(&dropped.id, raw[..raw.len() - last_chunk].to_vec()).await;
    assert_damaged(vault.get(&dropped.id).await, "last chunk dropped");
    assert_damaged(vault.verify(&dropped.id, None).await, "verify last chunk dropped");

    let (a, b) = (fresh(14).await, fresh(15).await);
    let (raw_a, raw_b) = (backend.read_raw(&a.id).await, backend.read_raw(&b.id).await);
    backend.write_raw(&a.id, raw_b).await;
    backend.write_raw(&b.id, raw_a).await;
    assert_damaged(vault.get(&a.id).await, "swapped object a");
    assert_damaged(vault.get(&b.id).await, "swapped object b");

    // Listing for the orphan sweep: blobs only, never the key check.
    let cutoff_future = SystemTime::now() + Duration::from_secs(120);
    let listed = vault.list(cutoff_future).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
    for (blob, _) in &stored {
        assert!(ids.contains(&blob.id.as_str()), "{} not listed", blob.id);
    }
    assert!(ids.iter().all(|id| id.len() == 26), "{ids:?}");
    assert_eq!(listed.len(), stored.len() + 6, "{ids:?}");
    let none = vault.list(SystemTime::UNIX_EPOCH + Duration::from_secs(1)).await.unwrap();
    assert!(none.is_empty(), "nothing is older than 1970: {none:?}");

    // Delete: gone, idempotent, no longer listed.
    vault.delete(&big.id).await.unwrap();
    assert!(matches!(vault.get(&big.id).await, Err(VaultError::NotFound(_))));
    vault.delete(&big.id).await.unwrap();
    let listed = vault.list(cutoff_future).await.unwrap();
    assert!(listed.iter().all(|(id, _)| id != &big.id));

    // Sealed for the caller to keep (a mail's source in the database): opens only under its
    // own id and unchanged, and never touches the store.
    let listed_before = vault.list(cutoff_future).await.unwrap().len();
    let sealed = vault.seal_small(b"From: a@b.example\r\n\r\nHallo").unwrap();
    assert_eq!((sealed.size, sealed.sha256.as_str()), (26, sha_hex(b"From: a@b.example\r\n\r\nHallo").as_str()));
    assert!(!sealed.sealed.windows(5).any(|w| w == b"Hallo"), "the plaintext is not in the sealed bytes");
    assert_eq!(&vault.open_sealed(&sealed.id, &sealed.sealed).unwrap()[..], b"From: a@b.example\r\n\r\nHallo");
    let other = vault.seal_small(b"x").unwrap();
    assert_damaged(vault.open_sealed(&other.id, &sealed.sealed), "sealed bytes under another id");
    let mut flipped = sealed.sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_damaged(vault.open_sealed(&sealed.id, &flipped), "a changed byte");
    assert_eq!(vault.list(cutoff_future).await.unwrap().len(), listed_before, "nothing was stored");

    // Reopen with the same key: same key id, data readable.
    let again = Vault::open(&backend.blobs, &vault_config(&key_file), data.path()).await.unwrap();
    assert_eq!(again.key_id(), vault.key_id());
    assert_eq!(again.get(&small.id).await.unwrap().as_ref(), small_content.as_slice());

    // Wrong key: refused at open.
    let other = tempfile::tempdir().unwrap();
    let wrong_key = other.path().join("master.key");
    std::fs::write(&wrong_key, format!("{}\n", hex::encode([0x5au8; 32]))).unwrap();
    match Vault::open(&backend.blobs, &vault_config(&wrong_key), other.path()).await {
        Err(VaultError::WrongMasterKey { store_key_id, file_key_id, .. }) => {
            assert_eq!(store_key_id, vault.key_id());
            assert_ne!(file_key_id, vault.key_id());
        }
        other => panic!("wrong key: expected WrongMasterKey, got {other:?}"),
    }

    // Missing key file for an existing store: refused, and no new key is made.
    let missing = other.path().join("nowhere/master.key");
    match Vault::open(&backend.blobs, &vault_config(&missing), other.path()).await {
        Err(VaultError::MissingMasterKey { .. }) => {}
        other => panic!("missing key: expected MissingMasterKey, got {other:?}"),
    }
    assert!(!missing.exists(), "a missing key file must not be created");

    // Without the key check, existing blobs decide which key fits.
    backend.raw.delete(&ObjectPath::from("_kontor/keycheck")).await.unwrap();
    match Vault::open(&backend.blobs, &vault_config(&wrong_key), other.path()).await {
        Err(VaultError::WrongMasterKey { .. }) => {}
        other => panic!("wrong key, no key check: expected WrongMasterKey, got {other:?}"),
    }
    match Vault::open(&backend.blobs, &vault_config(&missing), other.path()).await {
        Err(VaultError::MissingMasterKey { .. }) => {}
        other => panic!("missing key, no key check: expected MissingMasterKey, got {other:?}"),
    }
    let healed = Vault::open(&backend.blobs, &vault_config(&key_file), data.path()).await.unwrap();
    assert_eq!(healed.get(&small.id).await.unwrap().as_ref(), small_content.as_slice());
    assert!(backend.raw.head(&ObjectPath::from("_kontor/keycheck")).await.is_ok(), "the key check is written again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend_tells_the_story() {
    let blobs_dir = tempfile::tempdir().unwrap();
    let raw = LocalFileSystem::new_with_prefix(blobs_dir.path()).unwrap();
    let backend = Backend {
        blobs: BlobsConfig { url: Some(format!("file://{}", blobs_dir.path().display())), ..Default::default() },
        raw: Arc::new(raw),
    };
    story(&backend).await;
}

/// A `moto_server` child process on a free loopback port, killed on drop.
struct Moto {
    _child: tokio::process::Child,
    endpoint: String,
}

async fn start_moto() -> Option<Moto> {
    let Some(exe) = std::env::var_os("KONTOR_MOTO_SERVER").map(PathBuf::from) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("KONTOR_MOTO_SERVER is not set, and CI=true: the S3 backend must be tested");
        }
        eprintln!("NOTICE: KONTOR_MOTO_SERVER is not set; skipping the S3 backend test");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new(&exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("moto_server exited early: {status}");
        }
        if http.get(format!("{endpoint}/")).send().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "moto_server did not answer within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = http.put(format!("{endpoint}/kontor-test")).send().await.unwrap();
    assert!(created.status().is_success(), "create bucket: {}", created.status());
    Some(Moto { _child: child, endpoint })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backend_tells_the_story() {
    let Some(moto) = start_moto().await else {
        return;
    };
    let blobs = BlobsConfig {
        url: Some("s3://kontor-test/tenant-a/blobs".into()),
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".to_string().into()),
        allow_http: true,
    };
    let raw = AmazonS3Builder::new()
        .with_bucket_name("kontor-test")
        .with_endpoint(&moto.endpoint)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_allow_http(true)
        .build()
        .unwrap();
    let backend = Backend { blobs, raw: Arc::new(object_store::prefix::PrefixStore::new(raw, "tenant-a/blobs")) };
    story(&backend).await;
}

#[tokio::test]
async fn default_local_store_lives_under_the_data_dir() {
    let data = tempfile::tempdir().unwrap();
    let vault = Vault::open(&BlobsConfig::default(), &VaultConfig::default(), data.path()).await.unwrap();
    assert!(vault.is_local());
    let key = data.path().join("master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let blob = vault.put(Bytes::from_static(b"attachment")).await.unwrap();
    let file = data.path().join("blobs").join(&blob.id[..2]).join(&blob.id[2..4]).join(&blob.id);
    assert!(file.is_file(), "{}", file.display());
    assert!(data.path().join("blobs/_kontor/keycheck").is_file());
    assert!(vault.describe().starts_with("local "), "{}", vault.describe());

    // Damage the stored file directly on disk.
    let mut raw = std::fs::read(&file).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0xff;
    std::fs::write(&file, raw).unwrap();
    assert_damaged(vault.get(&blob.id).await, "flipped last byte on disk");

    // A key file shared with group/others still opens (with a warning).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        Vault::open(&BlobsConfig::default(), &VaultConfig::default(), data.path()).await.unwrap();
    }
}

#[tokio::test]
async fn a_store_with_objects_but_no_key_file_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let blobs = data.path().join("blobs/aa/bb");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join("aabbccddeeffgghhjjkkmmnnpp"), b"x").unwrap();
    match Vault::open(&BlobsConfig::default(), &VaultConfig::default(), data.path()).await {
        Err(VaultError::MissingMasterKey { .. }) => {}
        other => panic!("expected MissingMasterKey, got {other:?}"),
    }
    assert!(!data.path().join("master.key").exists());
}

#[tokio::test]
async fn misconfiguration_is_a_config_error() {
    let data = tempfile::tempdir().unwrap();
    for blobs in [
        BlobsConfig { url: Some("ftp://x/y".into()), ..Default::default() },
        BlobsConfig { url: Some("s3:///prefix".into()), ..Default::default() },
        BlobsConfig { endpoint: Some("http://127.0.0.1:1".into()), ..Default::default() },
    ] {
        match Vault::open(&blobs, &VaultConfig::default(), data.path()).await {
            Err(VaultError::Config(_)) => {}
            other => panic!("{blobs:?}: expected Config, got {other:?}"),
        }
    }
    assert!(!data.path().join("master.key").exists());
}
