//! The one error type of the PKI crate: every way creating, loading, issuing, signing, revoking or
//! bundling can fail, each saying what was wrong with which input. Messages never contain key
//! material or passphrases.

use std::path::PathBuf;
use tds_domain::Mac;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PkiError {
    /// rcgen refused to build or sign something (a bug or an unusable key, never user input).
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what} is not valid PEM: {reason}")]
    BadPem { what: &'static str, reason: String },
    #[error("{what} could not be parsed: {reason}")]
    BadDer { what: &'static str, reason: String },
    #[error("the CA certificate is not a CA (basicConstraints CA:TRUE is missing)")]
    NotACa,
    #[error("the CA key does not belong to the CA certificate")]
    KeyMismatch,
    #[error("the CA key is encrypted: a passphrase is required")]
    PassphraseRequired,
    #[error("wrong passphrase for the CA key (or the key file is damaged)")]
    WrongPassphrase,
    #[error("the passphrase is empty: give a non-empty passphrase or none")]
    EmptyPassphrase,
    #[error("encrypting the private key failed: {0}")]
    KeyEncryption(String),
    #[error("the CSR's signature does not verify: it was altered or not signed by its own key")]
    CsrSignature,
    #[error("the CSR has no subject CN: it must be the gateway MAC {expected}")]
    CsrMissingCommonName { expected: Mac },
    #[error("the CSR's subject CN {found:?} does not match the gateway MAC {expected}")]
    CsrWrongCommonName { expected: Mac, found: String },
    #[error("unsupported key: {0} (use RSA 2048 to 4096 bits or ECDSA P-256/P-384)")]
    UnsupportedKey(String),
    #[error("invalid validity: {0}")]
    InvalidValidity(String),
    #[error("invalid server name {0:?}: expected a DNS name or an IP address")]
    InvalidSan(String),
    #[error(
        "invalid service name {0:?}: expected letters, digits, '-', '_' or '.' (at most 64), and not a MAC"
    )]
    InvalidServiceName(String),
    #[error("invalid certificate serial {0:?}: expected 1 to 40 hex digits")]
    InvalidSerial(String),
    #[error("unknown revocation reason {0:?}: expected an RFC 5280 reason such as key_compromise")]
    UnknownReason(String),
    #[error(
        "revocation reason {0} does not apply to a device certificate: use unspecified, keyCompromise, \
         affiliationChanged, superseded, cessationOfOperation or privilegeWithdrawn"
    )]
    ReasonNotForDevice(&'static str),
    #[error("MAC {0} appears more than once in the batch")]
    DuplicateMac(Mac),
    #[error("certificate {0} has no private key (it was signed from a CSR): a bundle needs one")]
    MissingPrivateKey(Mac),
    #[error("building the ZIP bundle failed: {0}")]
    Zip(String),
    #[error("refusing to overwrite the existing CA key {path}: remove it first or use another directory")]
    CaKeyExists { path: PathBuf },
    #[error(
        "refusing to overwrite the existing CA certificate {path}: remove it first or use another directory"
    )]
    CaCertExists { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("a certificate worker thread stopped unexpectedly")]
    Worker,
    #[error("TLS configuration failed: {0}")]
    Tls(String),
}

impl PkiError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

pub type Result<T, E = PkiError> = std::result::Result<T, E>;
