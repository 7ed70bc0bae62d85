//! TLS for every listener: the certificate, the rustls server configuration, reload.
//!
//! A configured `[tls]` pair is loaded as is; without one, a self-signed certificate
//! for the hostname (plus `localhost` and 127.0.0.1/::1) is generated on first run into
//! the data folder and its SHA-256 fingerprint printed, so a mail client can be told to
//! trust exactly it. TLS 1.2 and 1.3 only (RFC 8996 retired 1.0 and 1.1). SIGHUP
//! reloads the pair without dropping sessions: new handshakes use the new one.

use crate::config::Config;
use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio_rustls::TlsAcceptor;

/// File names of the generated pair inside the data folder.
pub const GENERATED_CERT: &str = "cert.pem";
pub const GENERATED_KEY: &str = "key.pem";

/// The current acceptor; swapped whole on reload.
#[derive(Debug)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<ServerConfig>>,
}

/// What a completed handshake negotiated, for the session's TlsStarted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub version: String,
    pub cipher: String,
}

impl Tls {
    /// Load the configured pair, or the generated one (creating it on first run).
    /// Returns the fingerprint line to print when a pair was generated.
    pub fn load(config: &Config) -> anyhow::Result<(Tls, Option<String>)> {
        let (cert, key, generated) = match &config.tls {
            Some(t) => (t.cert.clone(), t.key.clone(), None),
            None => {
                let cert = config.data_dir.join(GENERATED_CERT);
                let key = config.data_dir.join(GENERATED_KEY);
                let generated = if cert.exists() && key.exists() {
                    None
                } else {
                    Some(generate(&config.hostname, &cert, &key)?)
                };
                (cert, key, generated)
            }
        };
        let acceptor = acceptor(&cert, &key)?;
        Ok((
            Tls {
                cert,
                key,
                config: RwLock::new(acceptor),
            },
            generated,
        ))
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.config
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    /// Re-read the pair (SIGHUP). On error the old pair stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = acceptor(&self.cert, &self.key)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

/// Describe what a server connection negotiated.
pub fn negotiated(conn: &rustls::ServerConnection) -> Negotiated {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_owned(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown")
        .to_owned();
    Negotiated { version, cipher }
}

fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificate {}", cert.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    Ok(Arc::new(config))
}

/// Generate a self-signed pair (key 0600) and return the line announcing it.
fn generate(hostname: &str, cert_path: &Path, key_path: &Path) -> anyhow::Result<String> {
    let names = vec![
        hostname.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .context("generating a self-signed certificate")?;
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    crate::maildir::write_atomic(key_path, key_pem.as_bytes())
        .with_context(|| format!("writing {}", key_path.display()))?;
    crate::maildir::write_atomic(cert_path, cert_pem.as_bytes())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok(format!(
        "generated a self-signed certificate for {hostname} in {} (SHA-256 fingerprint {})",
        cert_path.display(),
        fingerprint(certified.cert.der())
    ))
}

/// A client configuration that encrypts without authenticating the server: STARTTLS to
/// a next hop that is not required to verify (opportunistic TLS, RFC 7435), and the
/// benchmark's clients. TLS 1.2 and 1.3, the ring provider.
pub fn unauthenticated_client_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}

/// Accepts any certificate but still checks the handshake's signatures, so the
/// session keys are bound to the certificate the peer showed.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// SHA-256 of a DER certificate as colon-separated hex, as `openssl x509 -fingerprint
/// -sha256` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::embedded();
        config.data_dir = dir.path().to_path_buf();
        let (tls, line) = Tls::load(&config).expect("first load generates");
        let line = line.expect("announces the generated pair");
        assert!(line.contains("SHA-256 fingerprint"), "{line}");
        let (_, again) = Tls::load(&config).expect("second load");
        assert_eq!(again, None, "an existing pair is reused, not regenerated");
        tls.reload().expect("reload");
        let key_mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(GENERATED_KEY))
                .expect("key")
                .permissions(),
        );
        assert_eq!(key_mode & 0o777, 0o600);
    }

    #[test]
    fn a_broken_pair_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not a certificate").expect("write");
        let err = acceptor(&cert, &dir.path().join("k.pem")).expect_err("must fail");
        assert!(format!("{err:#}").contains("c.pem"), "{err:#}");
    }
}
