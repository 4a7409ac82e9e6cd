//! What rustls asks at each handshake, answered from slots a reload swaps.
//!
//! A rustls configuration is built once per listener or client; its certificate and
//! trust roots are not fixed in it but asked of these objects at every handshake.
//! [`IdentitySlot`] is the certificate and key this node presents (a
//! `ResolvesServerCert` for RTMPS and the origin's tunnel, a `ResolvesClientCert` for the
//! edge's); [`TrustSlot`] holds the verifiers built from the cluster CA, behind
//! [`PeerClientVerifier`] (the origin checking edges) and [`PeerServerVerifier`] (the
//! edge checking origins). A reload swaps what they hold; a handshake takes what is there
//! when it starts, and sessions already up keep the certificate they were made with.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, RwLock};

/// A value swapped whole by reloads and read by handshakes. A read takes the lock for
/// one `Arc` clone; reloads are seconds apart.
#[derive(Debug)]
pub struct Swap<T: ?Sized>(RwLock<Arc<T>>);

impl<T: ?Sized> Swap<T> {
    pub fn new(value: Arc<T>) -> Swap<T> {
        Swap(RwLock::new(value))
    }

    pub fn load(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn store(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// The certificate and key this node presents, if it has one.
#[derive(Debug)]
pub struct IdentitySlot(Swap<Option<Arc<CertifiedKey>>>);

impl IdentitySlot {
    pub fn new(key: Option<Arc<CertifiedKey>>) -> Arc<IdentitySlot> {
        Arc::new(IdentitySlot(Swap::new(Arc::new(key))))
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        (*self.0.load()).clone()
    }

    pub fn set(&self, key: Option<Arc<CertifiedKey>>) {
        self.0.store(Arc::new(key));
    }
}

impl ResolvesServerCert for IdentitySlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for IdentitySlot {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.current().is_some()
    }
}

/// Verifiers of peers' certificates, built from the CA in use.
#[derive(Debug)]
pub struct TrustSlot {
    clients: Swap<dyn ClientCertVerifier>,
    servers: Swap<WebPkiServerVerifier>,
}

/// Why verifiers could not be built from a CA (an empty store; [`crate::check`] refuses
/// those first).
pub type TrustError = rustls::server::VerifierBuilderError;

fn verifiers(
    roots: &Arc<RootCertStore>,
) -> Result<(Arc<dyn ClientCertVerifier>, Arc<WebPkiServerVerifier>), TrustError> {
    let provider = crate::check::provider();
    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        // No CA names in the CertificateRequest: a swapped CA would have to swap them too,
        // and an edge has one certificate to send anyway.
        .clear_root_hint_subjects()
        .build()?;
    let servers = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider).build()?;
    Ok((clients, servers))
}

impl TrustSlot {
    pub fn new(roots: &Arc<RootCertStore>) -> Result<Arc<TrustSlot>, TrustError> {
        let (clients, servers) = verifiers(roots)?;
        Ok(Arc::new(TrustSlot {
            clients: Swap::new(clients),
            servers: Swap::new(servers),
        }))
    }

    /// Trusts `roots` from the next handshake on.
    pub fn set(&self, roots: &Arc<RootCertStore>) -> Result<(), TrustError> {
        let (clients, servers) = verifiers(roots)?;
        self.clients.store(clients);
        self.servers.store(servers);
        Ok(())
    }
}

/// Checks a client's certificate against the CA in use (chain, validity, `clientAuth`).
#[derive(Debug)]
pub struct PeerClientVerifier(pub Arc<TrustSlot>);

impl ClientCertVerifier for PeerClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .clients
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .clients
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .clients
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clients.load().supported_verify_schemes()
    }
}

/// Checks a server's certificate against the CA in use (chain, validity, name,
/// `serverAuth`).
#[derive(Debug)]
pub struct PeerServerVerifier(pub Arc<TrustSlot>);

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.servers.load().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .servers
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .servers
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.servers.load().supported_verify_schemes()
    }
}
