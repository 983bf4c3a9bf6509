//! Certificate operations that need both the CA and the store, shared by the web pages and the
//! CLI: issue a gateway's certificate (bundle with its private key, returned once and never
//! stored), sign a gateway's CSR, revoke with an RFC 5280 reason and re-issue the CRL at once,
//! and start one over-the-air renewal now (the gateway page's and the API's "renew").

use chrono::{Duration, Utc};
use std::sync::Arc;
use tds_domain::renewal::{CertUpdate, RenewalMode};
use tds_domain::{CertificateId, GatewayStatus, Mac, TenantId, UserId};
use tds_pki::{
    BrokerInfo, CaFiles, DeviceKeyKind, IssuedCertificate, PkiError, RevocationReason, RevokedEntry,
};
use tds_store::certificates::{Certificate, NewCertificate, StoredCrl};
use tds_store::gateways::Gateway;
use tds_store::renewals::Renewal;
use tds_store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("gateway {0} is decommissioned")]
    Decommissioned(Mac),
    #[error("gateway {0} already has an active certificate: replace it explicitly")]
    HasActive(Mac),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("certificate task failed: {0}")]
    Task(String),
}

/// The CA and the settings certificates are issued with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pki {
    pub files: Arc<CaFiles>,
    pub device_cert_days: u32,
    pub crl_days: u32,
    pub broker: BrokerInfo,
    /// One CRL issued at a time by this process (its clones share it): revocations arriving
    /// together then queue instead of racing for the next CRL number.
    crl_lock: Arc<tokio::sync::Mutex<()>>,
}

/// A bundle ready to download: `{mac}.zip` with the CA, the certificate, the key and a README.
#[derive(Debug)]
pub struct Bundle {
    pub file_name: String,
    pub zip: Vec<u8>,
    pub certificate: IssuedCertificate,
}

/// What the store records of an issued certificate.
pub fn record(issued: &IssuedCertificate) -> NewCertificate {
    NewCertificate {
        mac: issued.mac,
        serial: issued.serial_hex.clone(),
        fingerprint_sha256: issued.fingerprint_sha256.clone(),
        pem: issued.cert_pem.clone(),
        key_algorithm: issued.key_algorithm.clone(),
        issued_at: issued.not_before,
        expires_at: issued.not_after,
    }
}

/// Certificates are only for gateways in service.
fn check_in_service(gateway: &Gateway) -> Result<(), CertError> {
    if gateway.status == GatewayStatus::Decommissioned {
        return Err(CertError::Decommissioned(gateway.mac));
    }
    Ok(())
}

impl Pki {
    pub fn new(files: Arc<CaFiles>, device_cert_days: u32, crl_days: u32, broker: BrokerInfo) -> Self {
        Self { files, device_cert_days, crl_days, broker, crl_lock: Arc::default() }
    }

    async fn check_replace(&self, store: &Store, gateway: &Gateway, replace: bool) -> Result<(), CertError> {
        if !replace && store.certificates().staff_has_active(gateway.mac).await? {
            return Err(CertError::HasActive(gateway.mac));
        }
        Ok(())
    }

    /// Issues a key and certificate for `gateway` and records the certificate (superseding the
    /// active one when `replace`). Key generation runs off the async threads.
    pub async fn issue(
        &self,
        store: &Store,
        gateway: &Gateway,
        kind: DeviceKeyKind,
        replace: bool,
    ) -> Result<Bundle, CertError> {
        check_in_service(gateway)?;
        self.check_replace(store, gateway, replace).await?;
        let (files, mac, days, broker) =
            (self.files.clone(), gateway.mac, self.device_cert_days, self.broker.clone());
        let (issued, zip) = tokio::task::spawn_blocking(move || -> Result<_, PkiError> {
            let issued = files.ca.issue_device(mac, kind, days)?;
            let zip = tds_pki::bundle_zip(&issued, files.ca.cert_pem(), &broker)?;
            Ok((issued, zip))
        })
        .await
        .map_err(|e| CertError::Task(e.to_string()))??;
        let (_, superseded) = store
            .certificates()
            .record_issued_superseding(gateway.tenant_id, gateway.id, &record(&issued), replace, None)
            .await?;
        if superseded {
            // The replaced certificate is revoked (superseded): the CRL says so at once. A first
            // certificate revokes nothing, and signing a new list for it cost a CA signature
            // (RSA-4096) per gateway when a fleet was provisioned.
            self.refresh_crl(store).await?;
        }
        Ok(Bundle { file_name: tds_pki::bundle_file_name(mac), zip, certificate: issued })
    }

    /// Signs a CSR for `gateway`: its signature must verify and its CN must be the gateway's MAC;
    /// only the public key is taken from it.
    pub async fn sign_csr(
        &self,
        store: &Store,
        gateway: &Gateway,
        csr_pem: &str,
        replace: bool,
    ) -> Result<IssuedCertificate, CertError> {
        check_in_service(gateway)?;
        self.check_replace(store, gateway, replace).await?;
        let issued = self.files.ca.sign_csr(csr_pem, gateway.mac, self.device_cert_days)?;
        let (_, superseded) = store
            .certificates()
            .record_issued_superseding(gateway.tenant_id, gateway.id, &record(&issued), replace, None)
            .await?;
        if superseded {
            self.refresh_crl(store).await?;
        }
        Ok(issued)
    }

    /// Starts one renewal of `gateway` now, outside the campaign's daily budget: in `mode` (or
    /// the gateway's own). Server-key mode issues the successor (same key type as the current
    /// certificate) and keeps the offer for the gateway; CSR mode asks the gateway for a CSR.
    /// `Store(Conflict)` when a renewal is already open or there is no active certificate.
    /// The campaign job starts its renewals the same way (`tds_jobs::renewal`), which the web
    /// may not import.
    pub async fn renew(
        &self,
        store: &Store,
        gateway: &Gateway,
        mode: Option<RenewalMode>,
        by: Option<UserId>,
    ) -> Result<Renewal, CertError> {
        check_in_service(gateway)?;
        let (tenant, id) = (gateway.tenant_id, gateway.id);
        let mode = match mode {
            Some(m) => m,
            None => store.renewals().mode(tenant, id).await?,
        };
        if mode == RenewalMode::Csr {
            return Ok(store.renewals().start(tenant, id, mode, true, None, by).await?);
        }
        let current = store
            .certificates()
            .for_gateway(tenant, id)
            .await?
            .into_iter()
            .find(|c| c.status == tds_store::certificates::CertificateStatus::Active)
            .ok_or_else(|| {
                StoreError::Conflict(format!("gateway {} has no active certificate to renew", gateway.mac))
            })?;
        let kind = DeviceKeyKind::of_recorded(&current.key_algorithm);
        let (files, mac, days) = (self.files.clone(), gateway.mac, self.device_cert_days);
        let issued = tokio::task::spawn_blocking(move || files.ca.issue_device(mac, kind, days))
            .await
            .map_err(|e| CertError::Task(e.to_string()))??;
        let payload = CertUpdate::Certificate {
            new_cert: issued.cert_pem.clone(),
            new_key: issued.key_pem.clone(),
            expires_at: issued.not_after,
        }
        .to_json();
        Ok(store.renewals().start(tenant, id, mode, true, Some((&record(&issued), &payload)), by).await?)
    }

    /// Revokes one of the tenant's certificates and issues a new CRL at once.
    pub async fn revoke(
        &self,
        store: &Store,
        tenant: TenantId,
        id: CertificateId,
        reason: RevocationReason,
        notes: Option<&str>,
    ) -> Result<(Certificate, StoredCrl), CertError> {
        let revoked = store.certificates().revoke(tenant, id, reason.as_str(), notes).await?;
        let crl = self.refresh_crl(store).await?;
        Ok((revoked, crl))
    }

    /// Issues a new CRL with every revoked serial and stores it (number one above the stored one).
    ///
    /// Several revocations at once (a fleet replacing its certificates) wait for each other;
    /// instances sharing the database race for the next number, and the loser reads the list
    /// again and issues the number after the winner's, so that the stored CRL always holds every
    /// revocation committed before it was read.
    pub async fn refresh_crl(&self, store: &Store) -> Result<StoredCrl, CertError> {
        const ATTEMPTS: usize = 20;
        let _one_at_a_time = self.crl_lock.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.issue_crl(store).await {
                Err(CertError::Store(StoreError::Conflict(_))) if attempt < ATTEMPTS => {
                    // Spread the retries a little: the racers read the same number again.
                    let pause = 5 + rand::random::<u64>() % 20;
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                done => return done,
            }
        }
    }

    async fn issue_crl(&self, store: &Store) -> Result<StoredCrl, CertError> {
        let revoked: Vec<RevokedEntry> = store
            .certificates()
            .staff_revoked()
            .await?
            .into_iter()
            .map(|r| RevokedEntry {
                serial_hex: r.serial,
                revoked_at: r.revoked_at,
                reason: RevocationReason::parse(&r.reason).unwrap_or(RevocationReason::Unspecified),
            })
            .collect();
        let number = store.certificates().crl().await?.map_or(1, |c| c.number + 1);
        let now = Utc::now();
        let crl = self.files.ca.issue_crl(
            &revoked,
            number as u64,
            now,
            now + Duration::days(i64::from(self.crl_days)),
        )?;
        let stored = StoredCrl {
            number: crl.number as i64,
            this_update: crl.this_update,
            next_update: crl.next_update,
            pem: crl.pem,
            der: crl.der,
        };
        store.certificates().save_crl(&stored).await?;
        Ok(stored)
    }

    /// The CRL in force, issued now when there is none or it is within a day of its next update.
    pub async fn current_crl(&self, store: &Store) -> Result<StoredCrl, CertError> {
        match store.certificates().crl().await? {
            Some(crl) if crl.next_update - Utc::now() > Duration::days(1) => Ok(crl),
            _ => self.refresh_crl(store).await,
        }
    }
}
