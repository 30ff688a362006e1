//! SIP over TLS (rustls, TLS 1.2 and 1.3): the certificate and key (swapped on a reload
//! without touching open connections), client certificates from a CA for PBX trunks with
//! mutual TLS, and each connection's handshake within a time limit in a task of its own,
//! after which it is served as a TCP connection is (`tcp.rs`).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The files a TLS listener is set up from (`[sip] tls_certificate`, `tls_private_key`,
/// `tls_client_ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// Client certificates are required, and must be issued by a CA in this file.
    pub client_ca: Option<PathBuf>,
}

/// The certificate handed to every handshake, replaced whole by a reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }
}

/// The TLS side of the listeners: what accepts handshakes, and the certificate it shows.
#[derive(Clone)]
pub struct TlsServer {
    pub acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<Current>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServer")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `what` at `path`, for an error.
fn named(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// The certificate chain and key of `files`, checked to belong together.
fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.certificate)
        .map_err(|e| named("certificate", &files.certificate, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| named("certificate", &files.certificate, e))?;
    if chain.is_empty() {
        return Err(named(
            "certificate",
            &files.certificate,
            "no CERTIFICATE in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.private_key)
        .map_err(|e| named("private key", &files.private_key, e))?;
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| named("private key", &files.private_key, e))?;
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match().map_err(|e| {
        named(
            "certificate",
            &files.certificate,
            format!(
                "does not match the private key {} ({e})",
                files.private_key.display()
            ),
        )
    })?;
    Ok(certified)
}

impl TlsServer {
    /// Reads the files; the error names the file and what is wrong with it.
    pub fn load(files: &TlsFiles) -> Result<TlsServer, String> {
        let current = Arc::new(Current(RwLock::new(Arc::new(certified_key(files)?))));
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?;
        let builder = match &files.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in
                    CertificateDer::pem_file_iter(ca).map_err(|e| named("client CA", ca, e))?
                {
                    let cert = cert.map_err(|e| named("client CA", ca, e))?;
                    roots.add(cert).map_err(|e| named("client CA", ca, e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                        .build()
                        .map_err(|e| named("client CA", ca, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_cert_resolver(current.clone());
        Ok(TlsServer {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            current,
        })
    }

    /// Reads the certificate and key again and shows them to every new handshake; the
    /// connections open keep theirs. On an error the old ones stay.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), String> {
        let key = Arc::new(certified_key(files)?);
        if let Ok(mut current) = self.current.0.write() {
            *current = key;
        }
        Ok(())
    }
}
