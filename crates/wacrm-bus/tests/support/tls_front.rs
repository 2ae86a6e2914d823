//! TLS in front of the test broker. tansu 0.6 takes `--cert` and `--key` but serves plaintext
//! all the same (the acceptor it builds is never used), so a small proxy on a loopback
//! port terminates TLS with a certificate made at test time and pipes the bytes on towards
//! tansu's plaintext port (through the broker's reply keeper). tansu advertises the proxy's
//! port (see [`Broker::start_behind`]): a client that follows the metadata to "the broker"
//! comes back to the proxy, on TLS, and never reaches the plaintext port.
#![allow(dead_code, clippy::unwrap_used)]

use std::any::Any;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::broker::Broker;

/// How long a client gets to finish its TLS handshake before the front gives up on it.
const HANDSHAKE_BOUND: Duration = Duration::from_secs(10);

/// A CA made at test time and a broker certificate it signed for `127.0.0.1` and `localhost`,
/// the CA's certificate written as a PEM file (what a client's `ssl.ca.location` names).
pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA's certificate, PEM.
    pub ca_file: PathBuf,
    cert: CertificateDer<'static>,
    /// The broker certificate's key, PKCS #8.
    key: Vec<u8>,
}

impl Pki {
    /// A new CA (named `name` in its subject) and a broker certificate it signed.
    pub fn generate(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        // An IP address SAN and a DNS one: librdkafka checks the broker's name (as the metadata
        // gives it, 127.0.0.1 here) against the certificate by default
        // (`ssl.endpoint.identification.algorithm=https`).
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        server.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = server.signed_by(&key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        Pki {
            dir,
            ca_file,
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    /// The CA file's path as a property value.
    pub fn ca_location(&self) -> String {
        self.ca_file.to_string_lossy().into_owned()
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        // The provider named, not the process default: which rustls providers are compiled in
        // depends on the rest of the build.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .unwrap();
        Arc::new(config)
    }
}

/// What the front saw of its clients.
#[derive(Default)]
pub struct TlsSeen {
    handshakes: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl TlsSeen {
    /// TLS handshakes completed.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Why handshakes failed, as rustls put it (a client that refused the certificate sends
    /// an alert: "received fatal alert: UnknownCA").
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }
}

/// The running front: stops when dropped (with the broker that holds it).
struct TlsFront {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Broker {
    /// A broker (SQLite storage, behind a reply keeper) reached only through TLS with `pki`'s
    /// broker certificate, and what its TLS front sees.
    pub fn start_behind_tls(pki: &Pki) -> Option<(Broker, Arc<TlsSeen>)> {
        let seen = Arc::new(TlsSeen::default());
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
        let front_seen = seen.clone();
        let broker = Broker::start_behind(move |listener, upstream_port| {
            Box::new(spawn(listener, upstream_port, acceptor, front_seen)) as Box<dyn Any + Send>
        })?;
        Some((broker, seen))
    }
}

/// Serves `listener` on a thread of its own, with a runtime of its own: the suites' clients
/// block their own runtimes at times (librdkafka's synchronous metadata calls), and the front
/// must go on serving meanwhile.
fn spawn(
    listener: TcpListener,
    upstream_port: u16,
    acceptor: tokio_rustls::TlsAcceptor,
    seen: Arc<TlsSeen>,
) -> TlsFront {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let accept = async {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(serve(client, upstream_port, acceptor.clone(), seen.clone()));
                }
            };
            tokio::select! {
                _ = accept => {}
                _ = stopped => {}
            }
        });
        // Dropping the runtime drops every connection still open.
    });
    TlsFront { stop: Some(stop) }
}

async fn serve(
    client: tokio::net::TcpStream,
    upstream_port: u16,
    acceptor: tokio_rustls::TlsAcceptor,
    seen: Arc<TlsSeen>,
) {
    let _ = client.set_nodelay(true);
    let mut tls = match tokio::time::timeout(HANDSHAKE_BOUND, acceptor.accept(client)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            seen.failures.lock().unwrap().push(e.to_string());
            return;
        }
        Err(_) => {
            seen.failures
                .lock()
                .unwrap()
                .push("handshake timed out".to_owned());
            return;
        }
    };
    seen.handshakes.fetch_add(1, Ordering::Relaxed);
    let Ok(mut broker) = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await else {
        // The broker is down: the client sees its connection closed.
        return;
    };
    let _ = broker.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
}
