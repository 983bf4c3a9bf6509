//! TDS PKI: the platform CA and everything it signs. It creates and loads the CA (key optionally
//! passphrase-encrypted), issues device client certificates (key generated here, or from the
//! device's CSR, where only the public key is taken from the request), the MQTT server
//! certificate, TDS's own service client certificates (the broker consumer), CRLs, and the ZIP
//! bundles used to flash gateways.
//!
//! It owns certificate *content* and encoding only: which certificates exist, their status and
//! the CRL number live in `tds-store`; TLS configuration and live revocation checks belong to the
//! device endpoint. No I/O except the CA directory in [`files`]. Private keys never appear in
//! `Debug` output or error messages.

pub mod batch;
pub mod bundle;
pub mod ca;
mod common;
pub mod crl;
pub mod csr;
pub mod device;
pub mod error;
pub mod files;
mod leaf;
pub mod parse;
pub mod server;
pub mod service;
pub mod tls;

pub use batch::issue_batch;
pub use bundle::{BrokerInfo, DEFAULT_MQTT_TLS_PORT, bundle_file_name, bundle_zip};
pub use ca::{Ca, CaAlgorithm, CaSubject, DEFAULT_CA_VALIDITY_YEARS};
pub use common::normalize_serial_hex;
pub use crl::{Crl, RevocationReason, RevokedEntry, crl_serials};
pub use device::{DEFAULT_DEVICE_VALIDITY_DAYS, DeviceKeyKind, IssuedCertificate};
pub use error::PkiError;
pub use files::CaFiles;
pub use parse::{CertificateInfo, parse_certificate, parse_certificate_der};
pub use server::{DEFAULT_SERVER_SANS, ServerCertificate};
pub use service::{SERVICE_CLIENT_VALIDITY_DAYS, ServiceCertificate};
pub use tls::{
    DeviceClientVerifier, DeviceIdentity, RevocationSet, device_identity, device_server_config,
    recheck_resumed, service_client_config,
};
