//! Scale-out mode's stand-in for the handshake (SPEC §2, §3): behind an external broker TDS never
//! sees which certificate a gateway connected with, so the gateway says it in its `status`
//! message (`cert_serial`, and `refused_serial` after giving up a new certificate). Reported
//! serials go through the same allow-list step as a handshake at TDS's own endpoint
//! ([`tds_store::renewals::RenewalStore::staff_admit`]): the successor confirms the renewal, the old
//! certificate after a refused successor rolls it back.
//!
//! Trusting the report is safe because the broker's ACL lets only the holder of a certificate
//! naming this MAC publish on its status topic, and the broker's CRL refuses retired ones: a
//! report can only speed up the retirement of the reporter's own old certificate.
//!
//! Must not: be used by the device endpoint, which reads the certificate itself.

use crate::directory::GatewayEntry;
use tds_domain::renewal::StatusReport;
use tds_store::Store;
use tds_store::renewals::Admission;

/// Applies what `report` says about the gateway's certificates; failures are logged.
pub async fn certificate_in_use(store: &Store, gateway: &GatewayEntry, report: &StatusReport) {
    let mac = gateway.mac;
    let Some(serial) = report.cert_serial.as_deref().and_then(|s| tds_pki::normalize_serial_hex(s).ok())
    else {
        return;
    };
    let renewals = store.renewals();
    if let Some(refused) =
        report.refused_serial.as_deref().and_then(|s| tds_pki::normalize_serial_hex(s).ok())
        && let Err(e) = renewals.staff_gave_up(gateway.id, &refused).await
    {
        tracing::warn!(gateway.mac = %mac, error = %e, "cannot record a refused certificate");
    }
    match renewals.staff_admit(gateway.id, mac, &serial).await {
        Ok(Admission::Current) => {}
        Ok(Admission::Confirmed(renewal)) => {
            tracing::info!(gateway.mac = %mac, renewal = renewal.get(), %serial, "renewal confirmed: the gateway reports its new certificate");
            crate::metrics::renewal("confirmed");
        }
        Ok(Admission::RolledBack(renewal)) => {
            tracing::warn!(gateway.mac = %mac, renewal = renewal.get(), "renewal rolled back: the gateway reports its old certificate after refusing the new one");
            crate::metrics::renewal("rolled_back");
        }
        Ok(Admission::Refused(why)) => {
            tracing::warn!(gateway.mac = %mac, %serial, reason = %why, "the gateway reports a certificate it may not use: is the broker's CRL current?");
        }
        Err(e) => {
            tracing::warn!(gateway.mac = %mac, error = %e, "cannot apply the gateway's certificate report");
        }
    }
}
