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
