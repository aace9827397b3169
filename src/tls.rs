//! TLS for every connection the harness makes: one rustls `ClientConfig` per run, built
//! here from `--cacert`, `--insecure`, `--cert/--key` and `--http2`, and shared by the
//! load engine's connections and the conformance client alike (its in-memory session
//! cache then makes reconnects resumptions). Also the words for what went wrong: a
//! certificate problem names the host, what failed and the flag that fixes it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// What the user asked for (flags, environment, plan), before any file is read.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of CA certificates trusted besides the system's.
    pub cacert: Option<PathBuf>,
    /// Skip certificate verification altogether.
    pub insecure: bool,
    /// PEM file of the client certificate (chain) and of its private key.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Speak HTTP/2 (ALPN `h2` on https, prior knowledge on http).
    pub http2: bool,
}

/// The resolved TLS settings of a run: cheap to clone, one config behind them.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    insecure: bool,
    http2: bool,
}

/// A TLS option the harness cannot use; exit 2. Never holds a private key's content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {}: cannot read: {why}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("{flag} {}: {why}", path.display())]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// The protocol name reports use.
pub const HTTP1: &str = "http/1.1";
pub const HTTP2: &str = "h2";

impl Tls {
    /// Verification against the system's roots, HTTP/1.1: what a run without TLS options
    /// gets. Built once per process (reading the system store takes a while).
    pub fn system() -> Tls {
        static SYSTEM: OnceLock<Tls> = OnceLock::new();
        SYSTEM
            .get_or_init(|| Tls::new(&TlsOptions::default()).expect("no files to read"))
            .clone()
    }

    pub fn new(options: &TlsOptions) -> Result<Tls, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Usage(format!("TLS setup: {err}")))?;
        let builder = if options.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
        } else {
            let mut roots = RootCertStore::empty();
            // The system store may be empty or partly unreadable (a bare container):
            // that is not an error, --cacert can still add the CA that matters.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if let Some(path) = &options.cacert {
                let certs = read_certs("--cacert", path)?;
                for cert in certs {
                    roots.add(cert).map_err(|err| TlsError::Invalid {
                        flag: "--cacert",
                        path: path.clone(),
                        why: format!("not a usable CA certificate ({err}); give the PEM of the CA that signed the target's certificate"),
                    })?;
                }
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match (&options.client_cert, &options.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs("--cert", cert)?;
                let key = read_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|err| TlsError::Invalid {
                        flag: "--key",
                        path: options.client_key.clone().unwrap_or_default(),
                        // rustls' words here are about the key's kind, never its bytes.
                        why: format!(
                            "does not go with --cert {} ({err}); give the private key of that certificate",
                            cert.display()
                        ),
                    })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsError::Usage(
                    "--cert and --key go together (the client certificate and its private key)"
                        .into(),
                ));
            }
        };
        config.alpn_protocols = vec![if options.http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        Ok(Tls {
            config: Arc::new(config),
            insecure: options.insecure,
            http2: options.http2,
        })
    }

    /// The shared config: every connection of the run uses this one.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    pub fn insecure(&self) -> bool {
        self.insecure
    }

    pub fn http2(&self) -> bool {
        self.http2
    }

    /// `h2` or `http/1.1`, as reports name the protocol.
    pub fn protocol(&self) -> &'static str {
        if self.http2 { HTTP2 } else { HTTP1 }
    }
}

/// aws-lc-rs where the default feature builds it, ring otherwise.
fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "aws-lc")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc"))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

fn read_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|err| TlsError::Read {
        flag,
        path: path.to_owned(),
        why: err.to_string(),
    })
}

fn read_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(flag, path)?;
    let invalid = |why: String| TlsError::Invalid {
        flag,
        path: path.to_owned(),
        why,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(format!("not valid PEM ({err}); give a PEM file of certificates (-----BEGIN CERTIFICATE-----)")))?;
    if certs.is_empty() {
        return Err(invalid(
            "holds no certificate; give a PEM file with -----BEGIN CERTIFICATE----- blocks".into(),
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = zeroize::Zeroizing::new(read_file("--key", path)?);
    // The parser's error names the PEM section at most, never the key's bytes.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| TlsError::Invalid {
        flag: "--key",
        path: path.to_owned(),
        why: format!(
            "no usable private key ({}); give the PEM of the client certificate's key (PKCS#8, PKCS#1 or SEC1)",
            pem_error_kind(&err)
        ),
    })
}

/// The PEM error without anything read from the file.
fn pem_error_kind(err: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;
    match err {
        Error::NoItemsFound => "no PRIVATE KEY section found",
        Error::MissingSectionEnd { .. } => "a section has no END line",
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        Error::Base64Decode(_) => "a section is not valid base64",
        _ => "unreadable PEM",
    }
}

/// `--insecure`: any certificate is accepted, but the handshake's signatures are still
/// checked (so the connection is at least to whoever holds that certificate's key).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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

/// What an https:// client reads when the port speaks plain HTTP.
pub const PLAIN_HTTP_ON_TLS: &str =
    "the target answered plain HTTP on a TLS connection: use http://";
/// What an http:// client reads when the port speaks TLS.
pub const TLS_ON_PLAIN_HTTP: &str = "the target answered with TLS to a plain HTTP request: it speaks HTTPS on this port, use https://";

/// The clear words for a TLS failure anywhere in `err`'s chain of causes (a rustls
/// error, directly or inside an `io::Error`), or `None` when it is no TLS failure.
pub fn explain(err: &(dyn std::error::Error + 'static), host: &str) -> Option<String> {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(tls) = rustls_error(current) {
            return Some(explain_rustls(tls, host));
        }
        cause = current.source();
    }
    None
}

/// The rustls error `err` is, or holds inside `io::Error`s (which hide it from
/// `source()`, and which reqwest's stack nests two deep).
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = err.downcast_ref::<std::io::Error>()?.get_ref()?;
    rustls_error(inner)
}

/// The words for one rustls error at `host`.
pub fn explain_rustls(err: &rustls::Error, host: &str) -> String {
    const FIX: &str = "pass the CA that signed it with --cacert FILE (or --insecure for a quick test, which skips verification)";
    let mut text = String::new();
    match err {
        rustls::Error::InvalidCertificate(cert) => {
            let what = match cert {
                CertificateError::UnknownIssuer => {
                    "is signed by an unknown CA (not in the system roots nor --cacert)".to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "has expired".to_owned()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "is not valid yet (check the clocks)".to_owned()
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    format!("is not valid for the name {host} (name mismatch)")
                }
                CertificateError::Other(other)
                    if other.to_string().contains("CaUsedAsEndEntity") =>
                {
                    "is a CA certificate used as the server's own (end-entity) certificate"
                        .to_owned()
                }
                other => format!("was rejected ({other})"),
            };
            let fix = match cert {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "connect by a name the certificate holds, or use --insecure for a quick test (it skips verification)"
                }
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => {
                    "renew the server's certificate, or use --insecure for a quick test (it skips verification)"
                }
                CertificateError::Other(_) => {
                    "give the server a certificate issued by that CA and pass the CA with --cacert FILE (or --insecure for a quick test)"
                }
                _ => FIX,
            };
            write!(text, "TLS: the certificate of {host} {what}: {fix}").ok();
        }
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            write!(text, "{PLAIN_HTTP_ON_TLS} ({host})").ok();
        }
        rustls::Error::AlertReceived(alert)
            if matches!(
                alert,
                rustls::AlertDescription::CertificateRequired
                    | rustls::AlertDescription::BadCertificate
                    | rustls::AlertDescription::UnknownCA
                    | rustls::AlertDescription::HandshakeFailure
            ) =>
        {
            write!(
                text,
                "TLS: {host} refused the handshake ({alert:?}): if it requires a client certificate, pass --cert FILE and --key FILE"
            )
            .ok();
        }
        rustls::Error::NoApplicationProtocol => {
            write!(
                text,
                "TLS: {host} agreed on no application protocol (does it speak h2? drop --http2)"
            )
            .ok();
        }
        other => {
            write!(text, "TLS with {host} failed: {other}").ok();
        }
    }
    text
}

/// Whether the first bytes a server sent are a TLS record (an alert 0x15 or a
/// handshake 0x16, version 3.x): the answer a TLS port gives to plain HTTP.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [0x15 | 0x16, 0x03, ..])
}

/// The host name rustls checks the certificate against (SNI too), from a URL's host:
/// IP addresses work as IP addresses, `[::1]` without its brackets.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .map_err(|err| format!("{host} is no TLS server name: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_records_are_told_from_http() {
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02]));
        assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
        assert!(!looks_like_tls(b"HTTP/1.1 400 Bad Request"));
        assert!(!looks_like_tls(&[0x15]));
    }

    #[test]
    fn ip_hosts_are_ip_server_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("example.test"),
            Ok(ServerName::DnsName(_))
        ));
    }

    #[test]
    fn certificate_errors_name_the_host_and_the_fix() {
        let unknown = explain_rustls(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "api.test",
        );
        assert!(
            unknown.contains("api.test") && unknown.contains("unknown CA"),
            "{unknown}"
        );
        assert!(
            unknown.contains("--cacert") && unknown.contains("--insecure"),
            "{unknown}"
        );
        let plain = explain_rustls(
            &rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            "api.test",
        );
        assert!(plain.contains("use http://"), "{plain}");
    }

    #[test]
    fn missing_or_bad_files_name_the_file_and_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = Tls::new(&TlsOptions {
            cacert: Some(missing.clone()),
            ..TlsOptions::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("--cacert ") && err.contains("nope.pem"),
            "{err}"
        );
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        let err = Tls::new(&TlsOptions {
            cacert: Some(garbage),
            ..TlsOptions::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("garbage.pem") && err.contains("no certificate"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_key_file_never_shows_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nSECRETSECRET!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = Tls::new(&TlsOptions {
            client_cert: Some(cert),
            client_key: Some(key),
            ..TlsOptions::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn alpn_follows_http2() {
        let h2 = Tls::new(&TlsOptions {
            http2: true,
            ..TlsOptions::default()
        })
        .unwrap();
        assert_eq!(h2.config().alpn_protocols, vec![b"h2".to_vec()]);
        assert_eq!(h2.protocol(), "h2");
        assert_eq!(Tls::system().protocol(), "http/1.1");
    }
}
