//! A gateway's answer to a CSR request (SPEC §3, CSR mode): the `cert_csr` message is checked
//! (size, JSON, an open renewal waiting for it), the CSR signed by the platform CA (its CN must
//! be the gateway's MAC, its key RSA 2048..4096 or ECDSA, its signature valid; only the public
//! key is taken) and the certificate offered on `cert_update` without any key. Anything wrong is
//! a refusal with a code and a reason, which the caller keeps as a dead letter.
//!
//! Must not: generate keys or store the CSR.

use crate::directory::GatewayEntry;
use std::sync::Arc;
use tds_domain::renewal::{CertUpdate, RenewalState, parse_csr_message};
use tds_pki::CaFiles;
use tds_store::Store;
use tds_store::certificates::NewCertificate;

/// A refusal: dead-letter reason code and text.
pub type Refusal = (&'static str, String);

#[derive(Debug, Clone)]
pub struct CsrSigner {
    ca: Option<Arc<CaFiles>>,
    days: u32,
}

impl CsrSigner {
    pub fn new(ca: Option<Arc<CaFiles>>, days: u32) -> Self {
        Self { ca, days }
    }

    /// Signs the CSR in `payload` for the gateway's open renewal and offers the certificate.
    pub async fn answer(&self, store: &Store, gateway: &GatewayEntry, payload: &[u8]) -> Result<(), Refusal> {
        let mac = gateway.mac;
        let csr_pem = parse_csr_message(payload).map_err(|e| (e.code(), e.to_string()))?;
        let renewal = match store.renewals().staff_open_for_mac(mac).await {
            Ok(Some(r)) if matches!(r.state, RenewalState::Offered | RenewalState::CsrReceived) => r,
            Ok(_) => {
                return Err((
                    "csr_not_requested",
                    format!("no renewal of gateway {mac} is waiting for a CSR"),
                ));
            }
            Err(e) => return Err(("csr_store_error", format!("cannot read the renewal: {e}"))),
        };
        let Some(ca) = self.ca.clone() else {
            return Err(("csr_no_ca", "this server does not sign CSRs (no CA configured)".into()));
        };
        let days = self.days;
        let signed = tokio::task::spawn_blocking(move || ca.ca.sign_csr(&csr_pem, mac, days))
            .await
            .map_err(|e| ("csr_task_failed", e.to_string()))?;
        let issued = match signed {
            Ok(issued) => issued,
            Err(e) => {
                let reason = format!("bad CSR: {e}");
                // The renewal fails (retried on a later day); the dead letter keeps the CSR.
                if let Err(err) = store.renewals().fail(&renewal, &reason).await {
                    tracing::warn!(gateway.mac = %mac, error = %err, "cannot mark the renewal failed");
                }
                return Err(("csr_invalid", reason));
            }
        };
        let payload = CertUpdate::Certificate {
            new_cert: issued.cert_pem.clone(),
            new_key: None,
            expires_at: issued.not_after,
        }
        .to_json();
        let record = NewCertificate {
            mac,
            serial: issued.serial_hex.clone(),
            fingerprint_sha256: issued.fingerprint_sha256.clone(),
            pem: issued.cert_pem.clone(),
            key_algorithm: issued.key_algorithm.clone(),
            issued_at: issued.not_before,
            expires_at: issued.not_after,
        };
        store
            .renewals()
            .csr_signed(&renewal, &record, &payload)
            .await
            .map_err(|e| ("csr_not_requested", format!("cannot record the signed certificate: {e}")))?;
        tracing::info!(gateway.mac = %mac, serial = %issued.serial_hex, "CSR signed; certificate offered");
        Ok(())
    }
}
