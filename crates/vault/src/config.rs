//! Configuration sections `[blobs]` (where objects live) and `[vault]` (the master key).

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

/// Where blobs are stored: a local directory (default) or an S3-compatible bucket.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobsConfig {
    /// `s3://bucket/optional/prefix` for S3, `file:///absolute/dir` for a local directory;
    /// unset means the local directory `<data_dir>/blobs`.
    #[serde(default)]
    pub url: Option<String>,
    /// S3 endpoint, e.g. `http://127.0.0.1:9000` for MinIO (default: AWS, or `AWS_ENDPOINT`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3 region (default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// S3 access key id (default: `AWS_ACCESS_KEY_ID`).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// S3 secret access key (default: `AWS_SECRET_ACCESS_KEY`); hidden in `Debug`.
    #[serde(default)]
    pub secret_access_key: Option<SecretString>,
    /// Allow a plain `http://` endpoint (tests, a local MinIO); also `AWS_ALLOW_HTTP=true`.
    #[serde(default)]
    pub allow_http: bool,
}

/// The master key that wraps every object's data key.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Path of the master key file (default `<data_dir>/master.key`); back it up apart from
    /// the data: without it no object can be read.
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_access_key_is_hidden_in_debug() {
        let c = BlobsConfig { secret_access_key: Some(SecretString::from("very-secret-value")), ..Default::default() };
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<BlobsConfig, _> = serde_json::from_str(r#"{"url":"s3://b","bucket":"x"}"#);
        assert!(r.is_err());
        let r: Result<VaultConfig, _> = serde_json::from_str(r#"{"key":"x"}"#);
        assert!(r.is_err());
        let ok: BlobsConfig =
            serde_json::from_str(r#"{"url":"s3://b/p","allow_http":true,"secret_access_key":"s"}"#).unwrap();
        assert!(ok.allow_http);
        assert_eq!(ok.url.as_deref(), Some("s3://b/p"));
    }
}
