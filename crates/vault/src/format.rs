//! The sealed object format: pure functions, no I/O.
//!
//! See the crate documentation for the byte layout. `seal` turns plaintext into a sealed object
//! bound to its object id; `unseal` returns the plaintext only after every tag, the chunk order,
//! the last-chunk flag and the SHA-256 trailer have been checked.

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// First bytes of every sealed object.
pub(crate) const MAGIC: &[u8; 4] = b"KVLT";
/// Format version written by this code.
pub(crate) const VERSION: u8 = 1;
/// Algorithm 1: XChaCha20-Poly1305, STREAM (big-endian 32-bit counter + last-chunk flag).
pub(crate) const ALG_XCHACHA20POLY1305_STREAM_BE32: u8 = 1;
/// Plaintext bytes per chunk written by this code.
pub(crate) const CHUNK_SIZE: usize = 64 * 1024;
/// Poly1305 tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Length of the SHA-256 trailer that ends the plaintext stream.
pub(crate) const SHA_LEN: usize = 32;

const WRAP_NONCE_LEN: usize = 24;
const WRAPPED_KEY_LEN: usize = 32 + TAG_LEN;
const STREAM_PREFIX_LEN: usize = 19;
/// Bytes of the header that are fixed before any key material (magic, version, alg, chunk size).
const FIXED_LEN: usize = 4 + 1 + 1 + 4;
/// Total header length.
pub(crate) const HEADER_LEN: usize = FIXED_LEN + WRAP_NONCE_LEN + WRAPPED_KEY_LEN + STREAM_PREFIX_LEN;
/// Smallest and largest chunk size a reader accepts from a header.
const MIN_CHUNK: usize = 1024;
const MAX_CHUNK: usize = 16 * 1024 * 1024;
/// Domain separation for the wrapped data key's associated data.
const WRAP_AAD_LABEL: &[u8] = b"kontor-vault/wrap/v1\0";

/// A sealed object with the facts the caller reports back.
pub(crate) struct Sealed {
    /// The bytes to store.
    pub bytes: Vec<u8>,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
}

/// Plaintext recovered from a sealed object after all checks passed.
pub(crate) struct Unsealed {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// SHA-256 of the plaintext (checked against the trailer).
    pub sha256: [u8; 32],
}

fn wrap_aad(fixed: &[u8], id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_AAD_LABEL.len() + fixed.len() + id.len());
    aad.extend_from_slice(WRAP_AAD_LABEL);
    aad.extend_from_slice(fixed);
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// Bytes `[start, end)` of the virtual stream `content || trailer`.
fn stream_slice<'a>(content: &'a [u8], trailer: &[u8], start: usize, end: usize) -> std::borrow::Cow<'a, [u8]> {
    if end <= content.len() {
        std::borrow::Cow::Borrowed(&content[start..end])
    } else {
        let mut v = Vec::with_capacity(end - start);
        if start < content.len() {
            v.extend_from_slice(&content[start..]);
        }
        let t_start = start.saturating_sub(content.len());
        v.extend_from_slice(&trailer[t_start..end - content.len()]);
        std::borrow::Cow::Owned(v)
    }
}

/// Encrypts `content` for object `id` under the key-encryption key `kek`.
pub(crate) fn seal(kek: &[u8; 32], id: &str, content: &[u8]) -> Result<Sealed, String> {
    seal_with_chunk_size(kek, id, content, CHUNK_SIZE)
}

pub(crate) fn seal_with_chunk_size(
    kek: &[u8; 32],
    id: &str,
    content: &[u8],
    chunk_size: usize,
) -> Result<Sealed, String> {
    let chunk_u32 = u32::try_from(chunk_size).map_err(|_| "chunk size too large".to_string())?;
    let sha256: [u8; 32] = Sha256::digest(content).into();

    let mut data_key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(data_key.as_mut());
    let mut wrap_nonce = [0u8; WRAP_NONCE_LEN];
    OsRng.fill_bytes(&mut wrap_nonce);
    let mut stream_prefix = [0u8; STREAM_PREFIX_LEN];
    OsRng.fill_bytes(&mut stream_prefix);

    let total = content.len() + SHA_LEN;
    let chunks = total.div_ceil(chunk_size);
    let mut out = Vec::with_capacity(HEADER_LEN + total + chunks * TAG_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(ALG_XCHACHA20POLY1305_STREAM_BE32);
    out.extend_from_slice(&chunk_u32.to_be_bytes());
    let wrapped = XChaCha20Poly1305::new(GenericArray::from_slice(kek))
        .encrypt(
            GenericArray::from_slice(&wrap_nonce),
            Payload { msg: data_key.as_ref(), aad: &wrap_aad(&out[..FIXED_LEN], id) },
        )
        .map_err(|_| "wrapping the data key failed".to_string())?;
    out.extend_from_slice(&wrap_nonce);
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&stream_prefix);
    debug_assert_eq!(out.len(), HEADER_LEN);
    let header = out.clone();

    let cipher = XChaCha20Poly1305::new(GenericArray::from_slice(data_key.as_ref()));
    let mut enc = EncryptorBE32::from_aead(cipher, GenericArray::from_slice(&stream_prefix));
    let mut start = 0;
    loop {
        let end = (start + chunk_size).min(total);
        let msg = stream_slice(content, &sha256, start, end);
        let payload = Payload { msg: &msg, aad: &header };
        if end == total {
            let ct = enc.encrypt_last(payload).map_err(|_| "encryption failed".to_string())?;
            out.extend_from_slice(&ct);
            break;
        }
        let ct = enc.encrypt_next(payload).map_err(|_| "encryption failed".to_string())?;
        out.extend_from_slice(&ct);
        start = end;
    }
    Ok(Sealed { bytes: out, sha256 })
}

/// Parses the header and unwraps the data key; an error means the key or object id does not fit.
fn unwrap_key(kek: &[u8; 32], id: &str, sealed: &[u8]) -> Result<(Zeroizing<[u8; 32]>, usize), String> {
    if sealed.len() < HEADER_LEN {
        return Err(format!("too short for a header ({} bytes)", sealed.len()));
    }
    if &sealed[..4] != MAGIC {
        return Err("not a vault object (bad magic)".into());
    }
    if sealed[4] != VERSION {
        return Err(format!("unknown format version {}", sealed[4]));
    }
    if sealed[5] != ALG_XCHACHA20POLY1305_STREAM_BE32 {
        return Err(format!("unknown algorithm {}", sealed[5]));
    }
    let chunk_size = u32::from_be_bytes([sealed[6], sealed[7], sealed[8], sealed[9]]) as usize;
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
        return Err(format!("implausible chunk size {chunk_size}"));
    }
    let nonce = &sealed[FIXED_LEN..FIXED_LEN + WRAP_NONCE_LEN];
    let wrapped = &sealed[FIXED_LEN + WRAP_NONCE_LEN..FIXED_LEN + WRAP_NONCE_LEN + WRAPPED_KEY_LEN];
    let key = XChaCha20Poly1305::new(GenericArray::from_slice(kek))
        .decrypt(
            GenericArray::from_slice(nonce),
            Payload {
                msg: wrapped,
                aad: &wrap_aad(&sealed[..FIXED_LEN], id),
            },
        )
        .map_err(|_| {
            "the data key does not unwrap for this object id (damaged header, object stored under another id, or another master key)".to_string()
        })?;
    let key = Zeroizing::new(key);
    let mut out = Zeroizing::new([0u8; 32]);
    if key.len() != 32 {
        return Err("unwrapped data key has the wrong length".into());
    }
    out.copy_from_slice(&key);
    Ok((out, chunk_size))
}

/// True when `kek` unwraps the data key of this sealed object (used to check a master key
/// against existing data when the key-check object is gone).
pub(crate) fn key_fits(kek: &[u8; 32], id: &str, sealed: &[u8]) -> bool {
    unwrap_key(kek, id, sealed).is_ok()
}

/// Decrypts and checks a sealed object; on any failure returns the reason and no bytes.
pub(crate) fn unseal(kek: &[u8; 32], id: &str, sealed: &[u8]) -> Result<Unsealed, String> {
    let (data_key, chunk_size) = unwrap_key(kek, id, sealed)?;
    let header = &sealed[..HEADER_LEN];
    let body = &sealed[HEADER_LEN..];
    let stored_chunk = chunk_size + TAG_LEN;
    let full = body.len() / stored_chunk;
    let rem = body.len() % stored_chunk;
    let chunks = match rem {
        0 if full > 0 => full,
        0 => return Err("no chunks after the header".into()),
        r if r <= TAG_LEN => {
            return Err(format!("truncated: last chunk has only {r} bytes"));
        }
        _ => full + 1,
    };
    let stream_prefix = &header[FIXED_LEN + WRAP_NONCE_LEN + WRAPPED_KEY_LEN..HEADER_LEN];
    let cipher = XChaCha20Poly1305::new(GenericArray::from_slice(data_key.as_ref()));
    let mut dec = DecryptorBE32::from_aead(cipher, GenericArray::from_slice(stream_prefix));
    let mut plain = Vec::with_capacity(body.len() - chunks * TAG_LEN);
    for i in 0..chunks {
        let start = i * stored_chunk;
        let end = (start + stored_chunk).min(body.len());
        let payload = Payload { msg: &body[start..end], aad: header };
        if i + 1 == chunks {
            let pt = dec
                .decrypt_last(payload)
                .map_err(|_| format!("chunk {i} (last) fails authentication: altered, truncated or reordered"))?;
            plain.extend_from_slice(&pt);
            break;
        }
        let pt = dec
            .decrypt_next(payload)
            .map_err(|_| format!("chunk {i} fails authentication: altered, truncated or reordered"))?;
        plain.extend_from_slice(&pt);
    }
    if plain.len() < SHA_LEN {
        return Err("plaintext shorter than its SHA-256 trailer".into());
    }
    let content_len = plain.len() - SHA_LEN;
    let mut stored_sha = [0u8; 32];
    stored_sha.copy_from_slice(&plain[content_len..]);
    plain.truncate(content_len);
    let sha256: [u8; 32] = Sha256::digest(&plain).into();
    if sha256 != stored_sha {
        return Err("SHA-256 of the plaintext does not match the stored SHA-256".into());
    }
    Ok(Unsealed { plaintext: plain, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEK: [u8; 32] = [7u8; 32];
    const ID: &str = "0123456789abcdefghjkmnpqrs";

    fn content(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trip_keeps_content_and_sha_for_sizes_around_chunk_edges() {
        let c = 1024;
        for n in [0, 1, 31, 32, 33, c - SHA_LEN - 1, c - SHA_LEN, c - SHA_LEN + 1, c, 3 * c + 5] {
            let data = content(n);
            let sealed = seal_with_chunk_size(&KEK, ID, &data, c).unwrap();
            let expected_chunks = (n + SHA_LEN).div_ceil(c);
            assert_eq!(sealed.bytes.len(), HEADER_LEN + n + SHA_LEN + expected_chunks * TAG_LEN, "size {n}");
            let un = unseal(&KEK, ID, &sealed.bytes).unwrap();
            assert_eq!(un.plaintext, data, "size {n}");
            assert_eq!(un.sha256, sealed.sha256);
            assert_eq!(hex::encode(un.sha256), hex::encode(Sha256::digest(&data)));
        }
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let sealed = seal_with_chunk_size(&KEK, ID, &content(2500), 1024).unwrap();
        for pos in 0..sealed.bytes.len() {
            let mut bad = sealed.bytes.clone();
            bad[pos] ^= 0x01;
            assert!(unseal(&KEK, ID, &bad).is_err(), "flip at {pos} accepted");
        }
    }

    #[test]
    fn truncation_at_any_length_is_refused() {
        let sealed = seal_with_chunk_size(&KEK, ID, &content(2500), 1024).unwrap();
        for len in 0..sealed.bytes.len() {
            assert!(unseal(&KEK, ID, &sealed.bytes[..len]).is_err(), "truncation to {len} accepted");
        }
    }

    #[test]
    fn dropped_reordered_or_appended_chunks_are_refused() {
        let c = 1024;
        let sealed = seal_with_chunk_size(&KEK, ID, &content(3 * c), c).unwrap();
        let header = &sealed.bytes[..HEADER_LEN];
        let chunks: Vec<&[u8]> = sealed.bytes[HEADER_LEN..].chunks(c + TAG_LEN).collect();
        assert_eq!(chunks.len(), 4);
        let join = |parts: &[&[u8]]| {
            let mut v = header.to_vec();
            for p in parts {
                v.extend_from_slice(p);
            }
            v
        };
        let cases = [
            ("drop last", join(&chunks[..3])),
            ("drop first", join(&chunks[1..])),
            ("swap 0 and 1", join(&[chunks[1], chunks[0], chunks[2], chunks[3]])),
            ("repeat chunk", join(&[chunks[0], chunks[0], chunks[2], chunks[3]])),
            ("append copy", join(&[chunks[0], chunks[1], chunks[2], chunks[3], chunks[2]])),
        ];
        for (name, bytes) in cases {
            assert!(unseal(&KEK, ID, &bytes).is_err(), "{name} accepted");
        }
        assert!(unseal(&KEK, ID, &join(&chunks)).is_ok());
    }

    #[test]
    fn another_id_or_another_key_is_refused() {
        let sealed = seal(&KEK, ID, b"hello").unwrap();
        assert!(unseal(&KEK, "0123456789abcdefghjkmnpqrt", &sealed.bytes).is_err());
        assert!(unseal(&[8u8; 32], ID, &sealed.bytes).is_err());
        assert!(key_fits(&KEK, ID, &sealed.bytes));
        assert!(!key_fits(&[8u8; 32], ID, &sealed.bytes));
    }

    #[test]
    fn chunks_from_another_object_are_refused() {
        let a = seal_with_chunk_size(&KEK, ID, &content(3000), 1024).unwrap();
        let b = seal_with_chunk_size(&KEK, ID, &content(3000), 1024).unwrap();
        let mut mixed = a.bytes[..HEADER_LEN].to_vec();
        mixed.extend_from_slice(&b.bytes[HEADER_LEN..]);
        assert!(unseal(&KEK, ID, &mixed).is_err());
    }
}
