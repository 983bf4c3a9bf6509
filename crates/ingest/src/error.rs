//! Errors of the device endpoint's setup. Per-connection problems are not errors of the server:
//! they are logged and end that connection only.

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Pki(#[from] tds_pki::PkiError),
    #[error(transparent)]
    Store(#[from] tds_store::StoreError),
}
