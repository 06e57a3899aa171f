//! TLS to https upstreams: rustls with ring, trusting the system's roots
//! plus an optional PEM file of extra CAs (a private PKI).

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

pub fn client_config(extra_ca_file: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "skipping a system CA certificate");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if !extra_ca_file.is_empty() {
        let certificates = CertificateDer::pem_file_iter(extra_ca_file)
            .map_err(|error| format!("edge.upstream_ca_file {extra_ca_file}: {error}"))?;
        for certificate in certificates {
            let certificate = certificate
                .map_err(|error| format!("edge.upstream_ca_file {extra_ca_file}: {error}"))?;
            roots
                .add(certificate)
                .map_err(|error| format!("edge.upstream_ca_file {extra_ca_file}: {error}"))?;
        }
    }
    tracing::debug!(system_roots = added, "upstream TLS roots loaded");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("upstream TLS: {error}"))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}
