//! Certificate renewal over the air (SPEC §3): the two modes, the states of one renewal, the
//! campaign window, the `cert_update` / `cert_csr` payloads exchanged with a gateway, and the
//! certificate a gateway reports in its `status` message (what scale-out mode confirms by).
//!
//! Must not: sign anything or read the clock (the callers pass `now`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Active certificates expiring within this many days are renewed by the campaign.
pub const RENEWAL_WINDOW_DAYS: i64 = 730;
/// A gateway not seen for longer than this is skipped (it stays in the backlog).
pub const OFFLINE_SKIP_DAYS: i64 = 7;
/// An offer the gateway has not answered (no CSR, no connection with the new certificate) within
/// this many days fails, to be retried on a later day.
pub const OFFER_EXPIRY_DAYS: i64 = 14;
/// Largest `cert_csr` payload read (a PEM CSR of an RSA-4096 key is under 2 KiB).
pub const MAX_CSR_MESSAGE_BYTES: usize = 16 * 1024;

/// How a gateway gets its new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalMode {
    /// TDS generates the key and sends it with the certificate.
    ServerKey,
    /// The gateway generates the key and sends a CSR; the key never leaves it.
    Csr,
}

impl RenewalMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ServerKey => "server_key",
            Self::Csr => "csr",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "server_key" => Some(Self::ServerKey),
            "csr" => Some(Self::Csr),
            _ => None,
        }
    }

    /// The default of a model: the Raspberry Pi based DCU-8210 runs `tds-agent`, which makes its
    /// own key; the ESP32 gateways (mbedTLS, NVS-flashed keys) take a server key.
    pub fn default_for_model(model: Option<&str>) -> Self {
        match model.map(|m| m.trim().to_ascii_uppercase()) {
            Some(m) if m.starts_with("DCU-8210") => Self::Csr,
            _ => Self::ServerKey,
        }
    }
}

impl fmt::Display for RenewalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The states of one renewal (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalState {
    Offered,
    CsrReceived,
    Issued,
    Confirmed,
    Failed,
    RolledBack,
}

impl RenewalState {
    pub const ALL: [Self; 6] =
        [Self::Offered, Self::CsrReceived, Self::Issued, Self::Confirmed, Self::Failed, Self::RolledBack];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::CsrReceived => "csr_received",
            Self::Issued => "issued",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the renewal is over.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Confirmed | Self::Failed | Self::RolledBack)
    }
}

impl fmt::Display for RenewalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `cert_update` payload: a new certificate (with its key in server-key mode), or the
/// request for a CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CertUpdate {
    Certificate {
        new_cert: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_key: Option<String>,
        expires_at: DateTime<Utc>,
    },
    CsrRequired {
        csr_required: bool,
    },
}

impl CertUpdate {
    pub fn to_json(&self) -> String {
        // Serialising strings and a time cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a `cert_csr` message is refused (its dead letter's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrMessageError {
    #[error("cert_csr payload of {0} bytes is larger than {MAX_CSR_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("cert_csr payload is not {{\"csr_pem\": \"...\"}}: {0}")]
    BadJson(String),
}

impl CsrMessageError {
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "csr_too_large",
            Self::BadJson(_) => "csr_bad_json",
        }
    }
}

/// Reads a `cert_csr` payload: `{"csr_pem": "..."}`.
pub fn parse_csr_message(payload: &[u8]) -> Result<String, CsrMessageError> {
    #[derive(Deserialize)]
    struct Msg {
        csr_pem: String,
    }
    if payload.len() > MAX_CSR_MESSAGE_BYTES {
        return Err(CsrMessageError::TooLarge(payload.len()));
    }
    serde_json::from_slice::<Msg>(payload)
        .map(|m| m.csr_pem)
        .map_err(|e| CsrMessageError::BadJson(e.to_string()))
}

/// A gateway's `status` message: `online` / `offline` as plain text (SPEC §2, what a will
/// carries), or a JSON object that also says which certificate the gateway connected with and
/// which new certificate it gave up (a rollback):
/// `{"status":"online","cert_serial":"…","refused_serial":"…"}`. Behind an external broker TDS
/// does not see the gateway's certificate, so these serials are how it learns of a renewal's
/// outcome there; its own endpoint reads the certificate itself and ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_serial: Option<String>,
}

/// Largest `status` payload read as JSON; anything longer is only online-or-not.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

impl StatusReport {
    /// Reads a status payload. Plain text is `offline` (any case) or online; a JSON object is
    /// read for its fields. A payload that is neither is online without serials (a gateway that
    /// says anything is there).
    pub fn parse(payload: &[u8]) -> Self {
        let trimmed = payload.trim_ascii();
        if trimmed.first() == Some(&b'{')
            && trimmed.len() <= MAX_STATUS_MESSAGE_BYTES
            && let Ok(report) = serde_json::from_slice::<StatusReport>(trimmed)
        {
            return report;
        }
        let status = if trimmed.eq_ignore_ascii_case(b"offline") { "offline" } else { "online" };
        Self { status: status.to_owned(), ..Self::default() }
    }

    pub fn online(&self) -> bool {
        !self.status.eq_ignore_ascii_case("offline")
    }

    pub fn to_json(&self) -> String {
        // A struct of strings always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_fields_of_the_protocol() {
        let at = DateTime::parse_from_rfc3339("2036-01-02T03:04:05Z").unwrap().to_utc();
        let with_key =
            CertUpdate::Certificate { new_cert: "C".into(), new_key: Some("K".into()), expires_at: at };
        assert_eq!(
            with_key.to_json(),
            r#"{"new_cert":"C","new_key":"K","expires_at":"2036-01-02T03:04:05Z"}"#
        );
        let csr = CertUpdate::Certificate { new_cert: "C".into(), new_key: None, expires_at: at };
        assert!(!csr.to_json().contains("new_key"));
        assert_eq!(CertUpdate::CsrRequired { csr_required: true }.to_json(), r#"{"csr_required":true}"#);
    }

    #[test]
    fn csr_messages_are_bounded_and_parsed() {
        assert_eq!(parse_csr_message(br#"{"csr_pem":"x"}"#).unwrap(), "x");
        assert_eq!(parse_csr_message(b"nope").unwrap_err().code(), "csr_bad_json");
        let big = vec![b' '; MAX_CSR_MESSAGE_BYTES + 1];
        assert_eq!(parse_csr_message(&big).unwrap_err().code(), "csr_too_large");
    }

    #[test]
    fn modes_and_states_round_trip() {
        for s in RenewalState::ALL {
            assert_eq!(RenewalState::parse(s.as_str()), Some(s));
        }
        assert_eq!(RenewalMode::default_for_model(Some("dcu-8210")), RenewalMode::Csr);
        assert_eq!(RenewalMode::default_for_model(Some("DCU-0080")), RenewalMode::ServerKey);
        assert_eq!(RenewalMode::default_for_model(None), RenewalMode::ServerKey);
    }

    #[test]
    fn a_status_is_plain_text_or_a_report_of_the_certificate_in_use() {
        assert!(!StatusReport::parse(b"offline").online());
        assert!(!StatusReport::parse(b" OFFLINE\n").online());
        assert!(StatusReport::parse(b"online").online());
        assert!(StatusReport::parse(b"{not json").online());
        let r = StatusReport::parse(br#"{"status":"online","cert_serial":"0a:1b","refused_serial":"ff"}"#);
        assert!(r.online());
        assert_eq!(r.cert_serial.as_deref(), Some("0a:1b"));
        assert_eq!(r.refused_serial.as_deref(), Some("ff"));
        assert!(!StatusReport::parse(br#"{"status":"offline"}"#).online());
        let long = format!(r#"{{"status":"online","cert_serial":"{}"}}"#, "a".repeat(2000));
        assert_eq!(StatusReport::parse(long.as_bytes()).cert_serial, None, "bounded");
        let sent =
            StatusReport { status: "online".into(), cert_serial: Some("1f".into()), refused_serial: None };
        assert_eq!(sent.to_json(), r#"{"status":"online","cert_serial":"1f"}"#);
        assert_eq!(StatusReport::parse(sent.to_json().as_bytes()), sent);
    }
}
