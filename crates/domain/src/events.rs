//! Live events: what happened a moment ago that an open page should show without reloading
//! (SPEC §4 Telemetria, §7 "live events as server-sent events"). The device endpoint produces
//! them after a commit; the web application streams them, each only to its own tenant's pages.
//!
//! Must not: carry anything a page of that tenant could not read anyway, or be the record of
//! anything (the database is; an event missed is simply not shown live).

use crate::{DeviceId, GatewayId, TenantId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One stored reading, as a chart needs it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiveReading {
    pub device: DeviceId,
    pub time: DateTime<Utc>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// Readings of one gateway committed together.
    Readings { tenant: TenantId, gateway: GatewayId, readings: Vec<LiveReading> },
    /// A gateway came online or went offline (connection, status message or will).
    GatewayStatus { tenant: TenantId, gateway: GatewayId, online: bool },
    /// The tenant's alerts changed (raised, acknowledged, cleared): how many are active
    /// (not acknowledged, not cleared) now, by severity, for the top bar's badge; an open
    /// Alertas page reloads its list.
    Alerts { tenant: TenantId, active: AlertCounts },
}

/// Active alerts by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AlertCounts {
    pub info: u32,
    pub warning: u32,
    pub critical: u32,
}

impl LiveEvent {
    /// The tenant whose pages may see it.
    pub fn tenant(&self) -> TenantId {
        match self {
            Self::Readings { tenant, .. }
            | Self::GatewayStatus { tenant, .. }
            | Self::Alerts { tenant, .. } => *tenant,
        }
    }

    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Readings { .. } => "readings",
            Self::GatewayStatus { .. } => "gateway",
            Self::Alerts { .. } => "alerts",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_tagged_json_and_name_their_tenant() {
        let e = LiveEvent::Readings {
            tenant: TenantId::new(3),
            gateway: GatewayId::new(7),
            readings: vec![LiveReading { device: DeviceId::new(9), time: DateTime::UNIX_EPOCH, value: 1.5 }],
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.starts_with(r#"{"type":"readings","tenant":3,"gateway":7"#), "{json}");
        assert_eq!(serde_json::from_str::<LiveEvent>(&json).unwrap(), e);
        assert_eq!(e.tenant(), TenantId::new(3));
        let s =
            LiveEvent::GatewayStatus { tenant: TenantId::new(4), gateway: GatewayId::new(1), online: false };
        assert_eq!((s.tenant(), s.name()), (TenantId::new(4), "gateway"));
    }
}
