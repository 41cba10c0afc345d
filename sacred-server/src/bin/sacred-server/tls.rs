//! TLS in the binary: rustls on the ring provider, the certificate and key
//! read from PEM files and reloaded without a restart, on SIGHUP and when
//! either file changes (checked every 10 s). A reload that fails keeps the
//! certificate in use and logs why; connections already open are not
//! touched, new handshakes get the new certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// How often the files are checked for a change.
const WATCH_EVERY: Duration = Duration::from_secs(10);

/// The certificate in use, swapped by a reload.
#[derive(Debug)]
pub(crate) struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when last loaded.
    stamps: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The certificate chain and key in `cert` and `key`, checked to match.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("cannot read the TLS certificate {}: {err}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| format!("cannot read the TLS key {}: {err}", key.display()))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|err| {
        format!(
            "the TLS key {} does not go with the certificate {}: {err}",
            key.display(),
            cert.display()
        )
    })
}

impl Certificates {
    /// Loads the files; an error says which and why (never the key).
    pub(crate) fn open(cert: PathBuf, key: PathBuf) -> Result<Arc<Certificates>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load(&cert, &key, &provider)?;
        let stamps = (modified(&cert), modified(&key));
        Ok(Arc::new(Certificates {
            cert,
            key,
            provider,
            current: RwLock::new(Arc::new(loaded)),
            stamps: Mutex::new(stamps),
        }))
    }

    /// The acceptor for the listener, resolving through `self`.
    pub(crate) fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Loads the files again (`force`: whether or not they changed).
    fn reload(&self, force: bool) {
        let stamps = (modified(&self.cert), modified(&self.key));
        {
            let mut seen = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
            if !force && *seen == stamps {
                return;
            }
            *seen = stamps;
        }
        match load(&self.cert, &self.key, &self.provider) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(err) => {
                tracing::error!(%err, "cannot reload the TLS certificate: keeping the one in use")
            }
        }
    }

    /// Reloads on SIGHUP and when the files change, until dropped.
    pub(crate) async fn watch(self: Arc<Self>) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => drop(signal.recv().await),
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<()>();
            tokio::select! {
                () = hup => {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                    self.reload(true);
                }
                _ = tick.tick() => self.reload(false),
            }
        }
    }
}
