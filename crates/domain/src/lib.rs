//! TDS domain: the typed values every other crate speaks in, and the rules that need no I/O.
//!
//! Every value that arrives from outside (a form, a CSV row, an MQTT payload, a config file) is
//! parsed into one of these types with `parse`, which returns a [`ValidationError`] saying what is
//! wrong with which value. Once a value has a domain type it is known to be valid, so the layers
//! above never re-check it. This crate must not do I/O or depend on any I/O crate (`csv` is used
//! only as a parser of bytes already in memory).

pub mod alerts;
pub mod buckets;
pub mod catalog;
pub mod cnpj;
pub mod codes;
pub mod consumption;
pub mod dead_letter;
pub mod email;
pub mod error;
pub mod events;
pub mod ids;
pub mod import_rows;
pub mod licence;
pub mod limits;
pub mod mac;
pub mod modbus;
pub mod renewal;
pub mod role;
pub mod rollup;
pub mod telemetry;
pub mod text;
pub mod timezone;
pub mod unit;

pub use alerts::{AlertState, Decision, Rule, RuleKind, Severity, Target};
pub use buckets::{Bucket, BucketStarts};
pub use catalog::{DeviceMode, DeviceStatus, DeviceType, GatewayStatus, MeasurementKind, Medium};
pub use cnpj::Cnpj;
pub use codes::{DeviceCode, GatewayCode};
pub use consumption::{ConsumptionEvent, ConsumptionKind, Meter, RawReading};
pub use email::Email;
pub use error::ValidationError;
pub use events::{AlertCounts, LiveEvent, LiveReading};
pub use ids::{
    AlertId, AlertRuleId, ApiTokenId, CertificateId, DeviceId, GatewayId, JobId, RejectedId, RenewalId,
    TenantId, UserId, UserTokenId,
};
pub use licence::{Licence, LicenceState};
pub use mac::Mac;
pub use modbus::{ModbusRegister, SlaveId};
pub use role::Role;
pub use rollup::Rollup;
pub use telemetry::{
    BatchContext, BatchRejection, ReadingInput, ReadingOutcome, ReadingRejection, RejectedReading,
    TelemetryBatch, TimestampError, Topic, TopicError,
};
pub use text::{Description, Name};
pub use timezone::TimeZone;
pub use unit::Unit;
