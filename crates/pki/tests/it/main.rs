//! PKI integration tests: what TDS issues is checked by the system `openssl` (as a broker or a
//! device TLS stack would check it) and by x509-parser. CAs are ECDSA P-384 here for speed; one
//! test covers the RSA 4096 default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod batch;
mod bundle;
mod ca;
mod crl;
mod csr;
mod device;
mod support;
mod tls;
