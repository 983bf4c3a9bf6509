//! A virtual gateway's side of certificate renewal (SPEC §3): the same checks and on-disk swap
//! as the agent's ([`crate::cert`]), driven by the simulator's event loop. An offer on
//! `cert_update` is checked and staged beside the current files; the gateway reconnects with the
//! new identity and promotes it at the CONNACK, or, if the connection with it fails, sets it
//! aside and goes back to the old one (which TDS then records as a rollback). A CSR request is
//! answered with a CSR whose key never leaves the gateway's directory.
//! Must not: publish telemetry or decide back-off (that is [`super::gateway`]'s).

use crate::cert::{self, CertFiles, Identity, IdentityStore, OfferOutcome};
use chrono::Utc;
use std::collections::HashSet;
use std::sync::Arc;
use tds_domain::Mac;
use tds_domain::renewal::StatusReport;

/// What [`Renewal::on_offer`] asks the event loop to do.
#[derive(Debug)]
pub enum Step {
    Nothing,
    /// Publish this body on `cert_csr`.
    SendCsr(String),
    /// Disconnect and reconnect with this TLS configuration (the staged identity).
    Reconnect(Arc<rustls::ClientConfig>),
}

/// One gateway's identity while it runs: the files in use, and the candidate being tried.
#[derive(Debug)]
pub struct Renewal {
    mac: Mac,
    files: CertFiles,
    current: Identity,
    /// The staged identity the next connection presents, until a CONNACK promotes it.
    trying: Option<Identity>,
    /// Certificates refused (by our checks or by the server) since start: the retained offer
    /// comes back after every reconnect and must not be tried again and again.
    refused: HashSet<String>,
    /// The serial of a new certificate the server refused, for the next status report.
    to_report: Option<String>,
}

impl Renewal {
    /// Loads the gateway's identity, completing a swap a stop interrupted; a candidate left
    /// staged by an earlier run is tried first, as the agent does after a power cut.
    pub fn load(mac: Mac, files: CertFiles) -> Result<(Self, Arc<rustls::ClientConfig>), cert::CertError> {
        files.recover()?;
        let current = files.current()?;
        let trying = files.pending_candidate();
        let mut me = Self { mac, files, current, trying, refused: HashSet::new(), to_report: None };
        let candidate_tls = me.trying.clone().and_then(|candidate| tls(&candidate).ok());
        if me.trying.is_some() && candidate_tls.is_none() {
            me.rejected();
        }
        let tls = match candidate_tls {
            Some(tls) => tls,
            None => tls(&me.current)?,
        };
        Ok((me, tls))
    }

    /// Connected: a candidate that got this far is accepted and becomes the gateway's identity.
    /// True when that happened.
    pub fn connected(&mut self) -> bool {
        let Some(next) = self.trying.take() else { return false };
        match self.files.promote() {
            Ok(()) => {
                tracing::info!(mac = %self.mac, "simulated gateway connected with its new certificate");
                self.current = next;
                true
            }
            Err(e) => {
                tracing::error!(mac = %self.mac, error = %e, "cannot keep the new certificate files");
                false
            }
        }
    }

    /// A connection attempt failed. If it presented a candidate, the candidate is given up and
    /// the old identity's configuration is returned, to reconnect with.
    pub fn connect_failed(&mut self) -> Option<Arc<rustls::ClientConfig>> {
        self.trying.as_ref()?;
        tracing::warn!(mac = %self.mac, "the new certificate was not accepted; back to the old one");
        self.rejected();
        tls(&self.current).ok()
    }

    fn rejected(&mut self) {
        if let Some(refused) = self.trying.take() {
            self.to_report = cert::info(&refused.cert_pem).ok().map(|i| i.serial);
            self.refused.insert(refused.cert_pem.trim().to_owned());
        }
        self.files.reject();
    }

    /// The `online` status to publish after a CONNACK: which certificate this connection uses,
    /// and a new one given up since the last report (what TDS confirms renewals by behind an
    /// external broker).
    pub fn status_report(&mut self) -> Vec<u8> {
        StatusReport {
            status: "online".into(),
            cert_serial: cert::info(&self.current.cert_pem).ok().map(|i| i.serial),
            refused_serial: self.to_report.take(),
        }
        .to_json()
        .into_bytes()
    }

    /// A message on the gateway's `cert_update` topic.
    pub fn on_offer(&mut self, payload: &[u8]) -> Step {
        if self.trying.is_some() {
            return Step::Nothing;
        }
        match cert::on_offer(&self.files, self.mac, &self.current, payload, &mut self.refused, Utc::now()) {
            OfferOutcome::Nothing | OfferOutcome::Refused(_) => Step::Nothing,
            OfferOutcome::Csr(csr) => Step::SendCsr(serde_json::json!({ "csr_pem": csr }).to_string()),
            OfferOutcome::Swap(next, _) => match tls(&next) {
                Ok(config) => {
                    self.trying = Some(next);
                    Step::Reconnect(config)
                }
                Err(e) => {
                    tracing::warn!(mac = %self.mac, error = %e, "the new certificate cannot be used");
                    self.refused.insert(next.cert_pem.trim().to_owned());
                    self.files.reject();
                    Step::Nothing
                }
            },
        }
    }
}

fn tls(identity: &Identity) -> Result<Arc<rustls::ClientConfig>, cert::CertError> {
    super::client_tls(&identity.ca_pem, &identity.cert_pem, &identity.key_pem)
        .map(Arc::new)
        .map_err(|e| cert::CertError::Pem(e.to_string()))
}
