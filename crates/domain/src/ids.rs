//! Row identifiers. Each aggregate has its own id type so that a `DeviceId` can never be passed
//! where a `GatewayId` is meant. Ids are database-assigned 64-bit integers; they are never trusted
//! on their own: every tenant-owned lookup also filters by `TenantId`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const fn new(raw: i64) -> Self { Self(raw) }
            pub const fn get(self) -> i64 { self.0 }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { self.0.fmt(f) }
        }

        impl From<i64> for $name {
            fn from(raw: i64) -> Self { Self(raw) }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> { s.trim().parse().map(Self) }
        }
    )*};
}

id_type!(
    /// A tenant ("conta").
    TenantId,
    /// A user (a person; platform-wide).
    UserId,
    /// A gateway (data concentrator).
    GatewayId,
    /// A device (meter, sensor or actuator) behind a gateway.
    DeviceId,
    /// An issued device certificate.
    CertificateId,
    /// A renewal of a gateway's certificate.
    RenewalId,
    /// An alert rule.
    AlertRuleId,
    /// A raised alert.
    AlertId,
    /// An API token.
    ApiTokenId,
    /// A background job.
    JobId,
    /// A rejected message (dead letter).
    RejectedId,
    /// A single-use token sent by email (invitation or password reset).
    UserTokenId,
);
