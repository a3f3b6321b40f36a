//! DKIM signatures on outbound mail (RFC 6376; `email.outbound.dkim_key_file` and
//! `email.outbound.dkim_selector`), made by `mail-auth`: relaxed/relaxed canonicalisation,
//! `rsa-sha256` or `ed25519-sha256`, over the headers that say who a mail is from, to whom,
//! about what and in answer to what. The signing domain is that of `email.outbound.from`.
//!
//! Nothing here does I/O except reading the key file once, when the configuration is checked
//! and the sender is built.

use std::path::Path;

use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

/// The headers signed (those a mail lacks are signed as absent, so they cannot be added
/// later without breaking the signature). Each is named twice in `h=` ("oversigning"): one
/// more instance than a mail has is signed as absent, so nobody can add a second `From`,
/// `Subject` or `Reply-To` to a signed mail either.
pub const SIGNED_HEADERS: [&str; 11] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
];

/// Signs outbound mail for one domain with one key and selector.
pub struct DkimSigning {
    signer: DkimSigner<DkimKey, Done>,
    domain: String,
    selector: String,
    algorithm: &'static str,
}

impl std::fmt::Debug for DkimSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigning")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl DkimSigning {
    /// Reads the PEM key in `path` (the error names the file and why it cannot be used).
    pub fn load(path: &Path, domain: &str, selector: &str) -> Result<DkimSigning, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("email.outbound.dkim_key_file {}: cannot be read: {e}", path.display()))?;
        DkimSigning::from_pem(&pem, domain, selector)
            .map_err(|e| format!("email.outbound.dkim_key_file {}: {e}", path.display()))
    }

    /// A signer from a PEM private key: RSA (`RSA PRIVATE KEY`, PKCS#1, or `PRIVATE KEY`,
    /// PKCS#8) or Ed25519 (PKCS#8). Encrypted keys are not read.
    pub fn from_pem(pem: &[u8], domain: &str, selector: &str) -> Result<DkimSigning, String> {
        check_selector(selector)?;
        let der =
            PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no unencrypted private key in PEM form ({e})"))?;
        let (key, algorithm) = match der {
            PrivateKeyDer::Pkcs1(_) => {
                let rsa = RsaKey::<Sha256>::from_key_der(der).map_err(|e| format!("not a usable RSA key: {e}"))?;
                (DkimKey::Rsa(rsa), "rsa-sha256")
            }
            PrivateKeyDer::Pkcs8(ref pkcs8) => {
                let bytes = pkcs8.secret_pkcs8_der().to_vec();
                match RsaKey::<Sha256>::from_key_der(der) {
                    Ok(rsa) => (DkimKey::Rsa(rsa), "rsa-sha256"),
                    Err(rsa_error) => {
                        // OpenSSL writes Ed25519 keys as PKCS#8 v1 (without the public key).
                        let ed = Ed25519Key::from_pkcs8_der(&bytes)
                            .or_else(|_| Ed25519Key::from_pkcs8_maybe_unchecked_der(&bytes))
                            .map_err(|_| format!("neither an RSA nor an Ed25519 key ({rsa_error})"))?;
                        (DkimKey::Ed25519(ed), "ed25519-sha256")
                    }
                }
            }
            _ => return Err("only RSA and Ed25519 keys can sign (this is another kind of key)".into()),
        };
        let signer = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS.iter().chain(SIGNED_HEADERS.iter()).copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Ok(DkimSigning { signer, domain: domain.to_string(), selector: selector.to_string(), algorithm })
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector (`s=`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The mail with its `DKIM-Signature` header in front.
    pub fn sign(&self, mail: &[u8]) -> Result<Vec<u8>, String> {
        let signature = self.signer.sign(mail).map_err(|e| format!("DKIM signing failed: {e}"))?;
        let header = signature.to_header();
        let mut signed = Vec::with_capacity(header.len() + mail.len());
        signed.extend_from_slice(header.as_bytes());
        signed.extend_from_slice(mail);
        Ok(signed)
    }
}

/// A selector is one or more DNS labels (`s=` names `<selector>._domainkey.<domain>`).
pub fn check_selector(selector: &str) -> Result<(), String> {
    let ok = !selector.is_empty()
        && selector.len() <= 200
        && selector.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("email.outbound.dkim_selector: {selector:?} is not a DNS label (e.g. \"kontor2026\")"))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Borrow;
    use std::hash::Hash;
    use std::io::Write;
    use std::process::{Command, Stdio};

    use base64::Engine;
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};

    use super::*;

    const MAIL: &str = "From: Kontor Support <support@support.example.de>\r\n\
        To: Jana =?utf-8?q?M=C3=BCller?= <jana@kunde.example>\r\n\
        Subject: Re: Lieferung fehlt\r\n\
        Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
        Message-ID: <kontor.3.7.abc@support.example.de>\r\n\
        In-Reply-To: <first@kunde.example>\r\n\
        References: <first@kunde.example>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=\"utf-8\"\r\n\
        Content-Transfer-Encoding: 7bit\r\n\
        \r\n\
        Guten Tag, wir kuemmern uns.\r\n";

    /// `openssl` with `stdin`, its output.
    fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// A new key pair: (private key PEM, the `p=` of its DNS record).
    fn key_pair(algorithm: &str) -> (Vec<u8>, String) {
        let pem = match algorithm {
            "rsa" => openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], b""),
            _ => openssl(&["genpkey", "-algorithm", "ed25519"], b""),
        };
        let spki = openssl(&["pkey", "-pubout", "-outform", "DER"], &pem);
        // RSA: the SubjectPublicKeyInfo; Ed25519: the raw key (RFC 8463), its last 32 bytes.
        let p = if algorithm == "rsa" { &spki[..] } else { &spki[spki.len() - 32..] };
        (pem, base64::engine::general_purpose::STANDARD.encode(p))
    }

    /// The one DNS record the verifier is given.
    struct OneRecord(Box<str>, Txt);

    impl ResolverCache<Box<str>, Txt> for OneRecord {
        fn get<Q>(&self, name: &Q) -> Option<Txt>
        where
            Box<str>: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            (self.0.borrow() == name).then(|| self.1.clone())
        }

        fn remove<Q>(&self, _: &Q) -> Option<Txt>
        where
            Box<str>: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            None
        }

        fn insert(&self, _: Box<str>, _: Txt, _: std::time::Instant) {}
    }

    /// mail-auth's verdict on `mail` with the record `record` at `kontor._domainkey.<domain>`.
    fn verify(mail: &[u8], record: &str) -> DkimResult {
        let key = DomainKey::parse(record.as_bytes()).expect("a DKIM record");
        let dns = OneRecord("kontor._domainkey.support.example.de.".into(), Txt::from(key));
        let message = AuthenticatedMessage::parse(mail).expect("a mail");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            // The record is in the cache: no DNS server is asked.
            let resolver = MessageAuthenticator::new(Default::default(), Default::default()).unwrap();
            let outputs = resolver.verify_dkim(Parameters::new(&message).with_txt_cache(&dns)).await;
            outputs.first().map(|o| o.result().clone()).unwrap_or(DkimResult::None)
        })
    }

    /// The tags of the `DKIM-Signature` header in front of `signed`.
    fn tags(signed: &[u8]) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(signed);
        let (first, _) = text.split_once("\r\n\r\n").unwrap();
        let mut header = String::new();
        for (i, line) in first.split("\r\n").enumerate() {
            if i > 0 && !line.starts_with([' ', '\t']) {
                break;
            }
            header.push_str(line.trim());
        }
        let value = header.strip_prefix("DKIM-Signature:").expect("the signature comes first");
        value
            .split(';')
            .filter_map(|t| t.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.split_whitespace().collect::<String>()))
            .collect()
    }

    #[test]
    fn a_mail_is_signed_for_the_senders_domain_and_verifies_and_a_change_breaks_it() {
        for (algorithm, a, pkcs1) in
            [("rsa", "rsa-sha256", false), ("rsa", "rsa-sha256", true), ("ed25519", "ed25519-sha256", false)]
        {
            let (mut pem, p) = key_pair(algorithm);
            if pkcs1 {
                pem = openssl(&["pkey", "-traditional"], &pem);
                assert!(pem.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));
            }
            let signing = DkimSigning::from_pem(&pem, "support.example.de", "kontor").unwrap();
            let signed = signing.sign(MAIL.as_bytes()).unwrap();
            assert!(signed.ends_with(MAIL.as_bytes()), "the mail follows unchanged");
            let tags = tags(&signed);
            let tag = |name: &str| tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
            assert_eq!(
                (tag("v"), tag("a"), tag("d"), tag("s"), tag("c")),
                ("1", a, "support.example.de", "kontor", "relaxed/relaxed"),
                "{tags:?}"
            );
            let signed_headers: Vec<String> = tag("h").split(':').map(str::to_ascii_lowercase).collect();
            for h in SIGNED_HEADERS {
                assert!(signed_headers.contains(&h.to_ascii_lowercase()), "{h} is signed: {signed_headers:?}");
            }
            assert!(!tag("bh").is_empty() && !tag("b").is_empty(), "{tags:?}");

            let k = if algorithm == "rsa" { "rsa" } else { "ed25519" };
            let record = format!("v=DKIM1; k={k}; p={p}");
            assert_eq!(verify(&signed, &record), DkimResult::Pass, "{algorithm} (pkcs1: {pkcs1})");
            // Any change to a signed header or to the body, or another key, fails.
            let text = String::from_utf8(signed.clone()).unwrap();
            for changed in [
                text.replace("Subject: Re: Lieferung fehlt", "Subject: Re: Lieferung da"),
                text.replace("wir kuemmern uns", "wir kuemmern uns nicht"),
                text.replacen("\r\n\r\n", "\r\nCc: mithoerer@example.org\r\n\r\n", 1),
                // A second Subject or Reply-To above the signed one, where mail programs look
                // first and a verifier without oversigning would not (it reads from the bottom).
                format!("Subject: Dringend: neue Bankverbindung\r\n{text}"),
                format!("Reply-To: betrueger@example.org\r\n{text}"),
            ] {
                let verdict = verify(changed.as_bytes(), &record);
                // (mail-auth calls a body that no longer matches its hash "neutral".)
                assert!(matches!(verdict, DkimResult::Fail(_) | DkimResult::Neutral(_)), "{verdict:?}: {changed}");
            }
            let (_, other) = key_pair(algorithm);
            let other = format!("v=DKIM1; k={k}; p={other}");
            assert!(matches!(verify(&signed, &other), DkimResult::Fail(_)), "another key");
        }
    }

    #[test]
    fn a_key_that_cannot_sign_is_refused_with_the_reason() {
        let err = DkimSigning::from_pem(b"kein Schluessel", "a.example", "s1").unwrap_err();
        assert!(err.contains("no unencrypted private key"), "{err}");
        let ec = openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], b"");
        let err = DkimSigning::from_pem(&ec, "a.example", "s1").unwrap_err();
        assert!(err.contains("neither an RSA nor an Ed25519 key"), "{err}");
        let (rsa, _) = key_pair("rsa");
        for bad in ["", "zwei worte", "-s", "a..b"] {
            let err = DkimSigning::from_pem(&rsa, "a.example", bad).unwrap_err();
            assert!(err.contains("email.outbound.dkim_selector"), "{bad:?}: {err}");
        }
        let missing = Path::new("/nonexistent/kontor-dkim.pem");
        let err = DkimSigning::load(missing, "a.example", "s1").unwrap_err();
        assert!(err.contains("/nonexistent/kontor-dkim.pem") && err.contains("cannot be read"), "{err}");
    }
}
