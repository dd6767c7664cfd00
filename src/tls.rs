//! TLS settings with otelcol's keys (`tls:`), built on rustls with the ring provider only.
//!
//! Client side (`otlp`, `otlphttp` exporters): TLS is on by default with the system's roots;
//! `ca_file`/`ca_pem` replace them, `cert_*`/`key_*` add a client certificate (mTLS),
//! `insecure_skip_verify` accepts any server certificate (still encrypted), and
//! `server_name_override` verifies the certificate against another name. Server side (`otlp`
//! receiver): `cert_*`/`key_*` and optionally `client_ca_file` to require client certificates.
//! `validate` reads and parses the files too, so `fovea validate` finds a missing or broken
//! certificate before `fovea run` would (it never opens a connection).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;

use crate::config::Checks;

/// Errors of loading TLS material or building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} file {path}: {source}; check the path and the agent's permissions")]
    Read {
        /// Which setting (`tls::ca_file` ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// PEM data without any usable item.
    #[error("{what} holds no PEM {kind}: {detail}")]
    Pem {
        /// Which setting.
        what: &'static str,
        /// `CERTIFICATE` or `PRIVATE KEY`.
        kind: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// The system's trust store could not be read.
    #[error("cannot load the system's CA certificates: {0}; set tls::ca_file")]
    SystemRoots(String),
    /// rustls refused the configuration (key does not match certificate ...).
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// `server_name_override` is not a DNS name or IP address.
    #[error("tls::server_name_override `{0}` is not a valid DNS name or IP address")]
    ServerName(String),
}

/// Makes ring the process's rustls provider (idempotent). Call before any TLS use; rustls cannot
/// choose by itself when a second provider is ever linked in.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct IdentityPem {
    /// The certificate chain.
    pub cert: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
}

/// Client `tls:` settings (otelcol's `configtls.ClientConfig`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTls {
    /// gRPC only: plain-text connection (no TLS). otlphttp decides by the URL scheme instead.
    pub insecure: bool,
    /// Encrypt but accept any server certificate (testing only).
    pub insecure_skip_verify: bool,
    /// CA bundle (PEM file) to verify the server with, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// CA bundle as inline PEM.
    pub ca_pem: Option<String>,
    /// Client certificate (PEM file) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client certificate as inline PEM.
    pub cert_pem: Option<String>,
    /// Client private key (PEM file) for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// Client private key as inline PEM.
    pub key_pem: Option<String>,
    /// Verify the server certificate against this name instead of the endpoint's host.
    pub server_name_override: Option<String>,
}

/// Server `tls:` settings of a receiver protocol.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTls {
    /// Server certificate chain (PEM file).
    pub cert_file: Option<PathBuf>,
    /// Server certificate chain as inline PEM.
    pub cert_pem: Option<String>,
    /// Server private key (PEM file).
    pub key_file: Option<PathBuf>,
    /// Server private key as inline PEM.
    pub key_pem: Option<String>,
    /// CA bundle (PEM file); when set, clients must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
}

fn one_of(checks: &mut Checks, prefix: &str, file: (&str, &Option<PathBuf>), pem: (&str, &Option<String>)) -> bool {
    if file.1.is_some() && pem.1.is_some() {
        checks.fail(&format!("{prefix}::{}", pem.0), format!("set either {} or {}, not both", file.0, pem.0));
    }
    file.1.is_some() || pem.1.is_some()
}

/// Reports a TLS error at the setting it names (`tls::cert_file` -> `<prefix>::cert_file`).
fn fail_at_file(checks: &mut Checks, prefix: &str, e: &TlsError) {
    let field = match e {
        TlsError::Read { what, .. } | TlsError::Pem { what, .. } => what.strip_prefix("tls::"),
        _ => None,
    };
    match field {
        Some(f) => checks.fail(&format!("{prefix}::{f}"), e.to_string()),
        None => checks.fail(prefix, e.to_string()),
    }
}

fn read_pem(what: &'static str, file: &Option<PathBuf>, pem: &Option<String>) -> Result<Option<Vec<u8>>, TlsError> {
    if let Some(pem) = pem {
        return Ok(Some(pem.as_bytes().to_vec()));
    }
    match file {
        Some(path) => {
            std::fs::read(path).map(Some).map_err(|source| TlsError::Read { what, path: path.clone(), source })
        }
        None => Ok(None),
    }
}

fn certificates(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| TlsError::Pem {
        what,
        kind: "CERTIFICATE",
        detail: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { what, kind: "CERTIFICATE", detail: "no certificate found".into() });
    }
    Ok(certs)
}

fn private_key(what: &'static str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem { what, kind: "PRIVATE KEY", detail: e.to_string() })
}

fn roots_from(what: &'static str, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(what, pem)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        return Err(TlsError::SystemRoots(if errors.is_empty() {
            "no certificates found".into()
        } else {
            errors.join("; ")
        }));
    }
    Ok(roots)
}

impl ClientTls {
    /// Cross-field checks, reported under `prefix` (`tls`).
    pub fn validate(&self, prefix: &str, checks: &mut Checks) {
        one_of(checks, prefix, ("ca_file", &self.ca_file), ("ca_pem", &self.ca_pem));
        let cert = one_of(checks, prefix, ("cert_file", &self.cert_file), ("cert_pem", &self.cert_pem));
        let key = one_of(checks, prefix, ("key_file", &self.key_file), ("key_pem", &self.key_pem));
        if cert != key {
            let missing = if cert { "key_file" } else { "cert_file" };
            checks.fail(
                &format!("{prefix}::{missing}"),
                "a client certificate needs both cert_file (or cert_pem) and key_file (or key_pem)",
            );
        }
        if let Some(name) = &self.server_name_override
            && ServerName::try_from(name.as_str()).is_err()
        {
            checks.fail(&format!("{prefix}::server_name_override"), "must be a DNS name or an IP address");
        }
        // The system roots are read at start only: whether TLS is used at all can depend on the
        // endpoint's scheme.
        let ca = read_pem("tls::ca_file", &self.ca_file, &self.ca_pem).and_then(|pem| match pem {
            Some(pem) => roots_from("tls::ca_file", &pem).map(|_| ()),
            None => Ok(()),
        });
        if let Err(e) = ca.and_then(|()| self.identity_pem()).and_then(|identity| match identity {
            Some(IdentityPem { cert, key }) => {
                certificates("tls::cert_file", &cert)?;
                private_key("tls::key_file", &key).map(|_| ())
            }
            None => Ok(()),
        }) {
            fail_at_file(checks, prefix, &e);
        }
    }

    /// The verifier of server certificates these settings ask for.
    pub fn verifier(&self) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
        if self.insecure_skip_verify {
            return Ok(Arc::new(AcceptAnyCertificate(provider())));
        }
        let roots = match read_pem("tls::ca_file", &self.ca_file, &self.ca_pem)? {
            Some(pem) => roots_from("tls::ca_file", &pem)?,
            None => system_roots()?,
        };
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        match &self.server_name_override {
            None => Ok(webpki),
            Some(name) => {
                let name = ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name.clone()))?;
                Ok(Arc::new(OverrideServerName { inner: webpki, name }))
            }
        }
    }

    /// The client certificate chain and key as PEM, when configured.
    pub fn identity_pem(&self) -> Result<Option<IdentityPem>, TlsError> {
        let cert = read_pem("tls::cert_file", &self.cert_file, &self.cert_pem)?;
        let key = read_pem("tls::key_file", &self.key_file, &self.key_pem)?;
        Ok(cert.zip(key).map(|(cert, key)| IdentityPem { cert, key }))
    }

    /// A rustls client configuration (ring provider) advertising `alpn` protocols.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
        install_default_provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier()?);
        let mut config = match self.identity_pem()? {
            Some(id) => builder.with_client_auth_cert(
                certificates("tls::cert_file", &id.cert)?,
                private_key("tls::key_file", &id.key)?,
            )?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// tonic's TLS settings plus the verifier to give `Endpoint::tls_config_with_verifier`.
    pub fn tonic_config(&self) -> Result<(tonic::transport::ClientTlsConfig, Arc<dyn ServerCertVerifier>), TlsError> {
        install_default_provider();
        let mut config = tonic::transport::ClientTlsConfig::new().assume_http2(true);
        if let Some(id) = self.identity_pem()? {
            // Parse once here so a bad file is reported with its setting name.
            certificates("tls::cert_file", &id.cert)?;
            private_key("tls::key_file", &id.key)?;
            config = config.identity(tonic::transport::Identity::from_pem(id.cert, id.key));
        }
        if let Some(name) = &self.server_name_override {
            config = config.domain_name(name.clone());
        }
        Ok((config, self.verifier()?))
    }
}

impl ServerTls {
    /// Cross-field checks, reported under `prefix` (`protocols::grpc::tls`).
    pub fn validate(&self, prefix: &str, checks: &mut Checks) {
        let cert = one_of(checks, prefix, ("cert_file", &self.cert_file), ("cert_pem", &self.cert_pem));
        let key = one_of(checks, prefix, ("key_file", &self.key_file), ("key_pem", &self.key_pem));
        if !cert {
            checks.fail(&format!("{prefix}::cert_file"), "a TLS server needs cert_file (or cert_pem)");
        }
        if !key {
            checks.fail(&format!("{prefix}::key_file"), "a TLS server needs key_file (or key_pem)");
        }
        if cert
            && key
            && let Err(e) = self.rustls_config(&[])
        {
            fail_at_file(checks, prefix, &e);
        }
    }

    fn material(&self) -> Result<(IdentityPem, Option<Vec<u8>>), TlsError> {
        let cert = read_pem("tls::cert_file", &self.cert_file, &self.cert_pem)?.unwrap_or_default();
        let key = read_pem("tls::key_file", &self.key_file, &self.key_pem)?.unwrap_or_default();
        let ca = read_pem("tls::client_ca_file", &self.client_ca_file, &None)?;
        Ok((IdentityPem { cert, key }, ca))
    }

    /// A rustls server configuration (ring provider) offering `alpn` protocols.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
        install_default_provider();
        let (IdentityPem { cert, key }, ca) = self.material()?;
        let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
        let builder = match ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = roots_from("tls::client_ca_file", &ca)?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_single_cert(certificates("tls::cert_file", &cert)?, private_key("tls::key_file", &key)?)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// tonic's server TLS settings.
    pub fn tonic_config(&self) -> Result<tonic::transport::ServerTlsConfig, TlsError> {
        install_default_provider();
        let (IdentityPem { cert, key }, ca) = self.material()?;
        certificates("tls::cert_file", &cert)?;
        private_key("tls::key_file", &key)?;
        let mut config =
            tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key));
        if let Some(ca) = ca {
            certificates("tls::client_ca_file", &ca)?;
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        Ok(config)
    }
}

/// `insecure_skip_verify`: any certificate is accepted, but handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `server_name_override`: verifies the chain as usual, against the configured name.
#[derive(Debug)]
struct OverrideServerName {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for OverrideServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
