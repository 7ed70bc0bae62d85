//! DKIM signing of relayed mail (RFC 6376) at relay time: core's `dkim` module
//! canonicalises and hashes; this holds the private key and signs the hash.

use crate::config::DkimSettings;
use anyhow::Context;
use popgate_core::dkim::{self, Algorithm, Params};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::Sha256;

/// The configured domain's key, ready to sign.
pub struct Signer {
    params: Params,
    key: RsaPrivateKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Signer")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Read the PEM key named by `[relay.dkim] key`: "PRIVATE KEY" (PKCS#8) or
    /// "RSA PRIVATE KEY" (PKCS#1).
    pub fn load(settings: &DkimSettings) -> anyhow::Result<Signer> {
        let pem = std::fs::read_to_string(&settings.key).with_context(|| {
            format!(
                "key `relay.dkim.key`: cannot read {}",
                settings.key.display()
            )
        })?;
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
            .map_err(|e| {
                anyhow::anyhow!(
                    "key `relay.dkim.key`: {} is not a PEM RSA private key (PKCS#8 or PKCS#1): {e}",
                    settings.key.display()
                )
            })?;
        Ok(Signer {
            params: Params {
                domain: settings.domain.clone(),
                selector: settings.selector.clone(),
                headers: settings.headers.clone(),
                algorithm: Algorithm::RsaSha256,
                timestamp: None,
            },
            key,
        })
    }

    /// Whether mail from `sender` (the envelope's reverse-path) with this header is
    /// the configured domain's to sign: its envelope sender or its From: is there.
    pub fn applies(&self, sender: &str, message: &[u8]) -> bool {
        let envelope = sender.rsplit_once('@').is_some_and(|(_, d)| {
            d.trim_end_matches('.')
                .eq_ignore_ascii_case(&self.params.domain)
        });
        envelope || dkim::from_domain(message).is_some_and(|d| d == self.params.domain)
    }

    /// `message` with a DKIM-Signature field at its top, signed at `now_unix_secs`.
    pub fn sign(&self, message: &[u8], now_unix_secs: u64) -> anyhow::Result<Vec<u8>> {
        let params = Params {
            timestamp: Some(now_unix_secs),
            ..self.params.clone()
        };
        let unsigned = dkim::prepare(message, &params);
        // RFC 6376 §3.3.1: RSASSA-PKCS1-v1_5 over the SHA-256 of the header data.
        let signature = self
            .key
            .sign(Pkcs1v15Sign::new::<Sha256>(), &unsigned.header_hash)
            .context("DKIM: RSA signing failed")?;
        let field = unsigned.finish(&signature);
        let mut out = Vec::with_capacity(field.len() + message.len());
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(message);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;

    fn settings(dir: &std::path::Path, pem: &str) -> DkimSettings {
        let key = dir.join("dkim.pem");
        std::fs::write(&key, pem).expect("write the key");
        DkimSettings {
            domain: "example.test".into(),
            selector: "popgate".into(),
            key,
            headers: vec!["from".into(), "subject".into()],
        }
    }

    /// Both PEM forms load, and what they sign verifies with the public key over
    /// the hash core computes.
    #[test]
    fn pkcs1_and_pkcs8_keys_sign_what_verifies() {
        let dir = tempfile::tempdir().expect("a folder");
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).expect("a test key");
        let pkcs1 = key
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .expect("PKCS#1");
        let pkcs8 = key
            .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .expect("PKCS#8");
        let message = b"From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n";
        for pem in [pkcs1.as_str(), pkcs8.as_str()] {
            let signer = Signer::load(&settings(dir.path(), pem)).expect("the key loads");
            assert!(signer.applies("a@example.test", message));
            assert!(signer.applies("", message), "From: alone is enough");
            assert!(!signer.applies("x@other.test", b"From: x@other.test\r\n\r\n"));
            let signed = signer.sign(message, 1_800_000_000).expect("signs");
            let text = String::from_utf8(signed).expect("ASCII");
            let (field, rest) = text.split_once("\r\nFrom:").expect("the field on top");
            assert_eq!(format!("From:{rest}").as_bytes(), message);
            assert!(field.contains(" t=1800000000;"), "{field}");
            let params = Params {
                timestamp: Some(1_800_000_000),
                ..signer.params.clone()
            };
            let unsigned = dkim::prepare(message, &params);
            // PKCS#1 v1.5 signatures are deterministic: the field holds this one.
            let sig = key
                .sign(Pkcs1v15Sign::new::<Sha256>(), &unsigned.header_hash)
                .expect("signs");
            assert_eq!(format!("{field}\r\n"), unsigned.finish(&sig));
            key.to_public_key()
                .verify(Pkcs1v15Sign::new::<Sha256>(), &unsigned.header_hash, &sig)
                .expect("the signature verifies");
        }
        let bad = settings(dir.path(), "not a key");
        let e = Signer::load(&bad).expect_err("garbage is refused");
        assert!(format!("{e:#}").contains("relay.dkim.key"), "{e:#}");
    }
}
