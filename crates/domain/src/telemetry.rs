//! The MQTT wire format of the device protocol (SPEC §2): topic names with the per-gateway ACL on
//! them, and the telemetry batch a gateway publishes, parsed into typed readings.
//!
//! Owns: turning a topic string and a payload's bytes into typed values, with one precise,
//! machine-coded reason for every refusal, whether of a whole message ([`BatchRejection`]) or of a
//! single reading ([`ReadingRejection`]), so that ingest can store the good readings of a batch
//! and dead-letter the rest. Must not: do I/O, look devices up or know about MQTT sessions. The
//! checks that need the store (unknown device, unit conflict, duplicate with another value) are
//! only *named* here ([`ReadingRejection::UnknownDevice`], [`ReadingRejection::UnitConflict`],
//! [`ReadingRejection::DuplicateConflict`]) and decided by ingest.
//!
//! Decisions where SPEC §2 is silent:
//! - An empty `leituras` array is a valid batch with zero readings (a heartbeat: the gateway is
//!   still seen). A missing or non-array `leituras` refuses the whole message.
//! - The batch `timestamp` is required even when every reading carries its own.
//! - Unknown extra fields are ignored; a repeated key keeps its last value (`serde_json`).
//! - A leading UTF-8 byte-order mark is ignored.
//! - `dispositivo_codigo` must be a JSON string; it is trimmed and upper-cased by
//!   [`DeviceCode::parse`].
//! - `valor` is a JSON number or a numeric string (`"12.5"`, blanks around it ignored, optional
//!   sign and exponent). A decimal comma (`"12,5"`) is refused: on the wire `"1,234"` could mean
//!   1.234 or 1234, and a wrong guess would store a wrong reading silently, whereas a dead letter
//!   can be fixed and replayed. `NaN`, `inf` and values too large for `f64` are refused.
//!   `null` counts as missing.
//! - `unidade` is optional; `null` or a blank string count as absent.
//! - A reading `timestamp` of `null` counts as absent: the reading takes the batch's time.
//! - Times are RFC 3339 / ISO 8601: date, `T` (or `t`, or a space), `hh:mm:ss` with optional
//!   fraction, then `Z`, `+hh:mm` or `+hhmm`; without an offset the time is in the tenant's zone
//!   (`BatchContext::zone`): an ambiguous local time (daylight-saving fall-back) takes the earlier
//!   instant, a local time in a spring-forward gap is refused. The year must have four digits.
//! - A time more than [`MAX_FUTURE_SKEW`] after `BatchContext::now` is refused; exactly five
//!   minutes ahead is accepted. Old times are accepted (backlogs) back to
//!   `BatchContext::oldest`, the tenant's retention horizon: a reading the retention job would
//!   delete within a day cannot be stored faithfully (its hour's other raw readings may be gone,
//!   so its rollups would be recomputed from part of the data), so it is refused and kept as a
//!   dead letter instead.
//! - A reading's `index` is its 0-based position in `leituras`.
//!
//! Batches in the shape gateways send take a fast path (module `fast`) with the same result;
//! the rest are parsed through a `serde_json::Value`, which the reasons above are read from.

use crate::{DeviceCode, DeviceId, Mac, Unit, ValidationError};
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, OnceLock};
use thiserror::Error;

mod fast;

/// Largest telemetry message accepted unless configured otherwise (SPEC §2: 256 KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Most readings in one batch unless configured otherwise (SPEC §2: a larger batch is refused
/// whole, as one dead letter).
pub const DEFAULT_MAX_READINGS: usize = 1_000;

/// How far ahead of the server clock a reading or batch time may be before it is refused.
pub const MAX_FUTURE_SKEW: TimeDelta = TimeDelta::minutes(5);

/// Values quoted in error messages are cut to this many characters, so that a 256 KiB string
/// never ends up in a log line; the dead letter keeps the value whole.
const SHOWN_CHARS: usize = 64;

fn clip(s: &str) -> String {
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// A JSON value as it was sent (strings quoted), cut for an error message.
fn show(v: &Value) -> String {
    clip(&v.to_string())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------------------------

/// An MQTT topic of the device protocol, always for one gateway MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `tds_new/gateway/{mac}/telemetria`: telemetry batches, gateway → TDS.
    Telemetry(Mac),
    /// `tds_new/devices/{mac}/telemetry`: alias of [`Topic::Telemetry`] used by deployed test
    /// firmware.
    TelemetryAlias(Mac),
    /// `tds_new/gateway/{mac}/status`: `online` / `offline`, retained, used as the MQTT will.
    Status(Mac),
    /// `tds_new/gateway/{mac}/cert_update`: TDS → gateway, a new certificate or a CSR request.
    CertUpdate(Mac),
    /// `tds_new/gateway/{mac}/cert_csr`: gateway → TDS, a certificate signing request.
    CertCsr(Mac),
}

impl Topic {
    /// Parses a topic name. The fixed segments are case-sensitive (MQTT topics are); the `{mac}`
    /// segment goes through [`Mac::parse`], so `AA-BB-CC-DD-EE-FF` names the same gateway as
    /// `aa:bb:cc:dd:ee:ff`. Wildcards, blanks and extra levels are refused.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let unknown = || TopicError::Unknown { topic: clip(topic) };
        let mut levels = topic.split('/');
        let (Some("tds_new"), Some(group), Some(mac), Some(leaf), None) =
            (levels.next(), levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return Err(unknown());
        };
        let make: fn(Mac) -> Self = match (group, leaf) {
            ("gateway", "telemetria") => Self::Telemetry,
            ("devices", "telemetry") => Self::TelemetryAlias,
            ("gateway", "status") => Self::Status,
            ("gateway", "cert_update") => Self::CertUpdate,
            ("gateway", "cert_csr") => Self::CertCsr,
            _ => return Err(unknown()),
        };
        let bad_mac = || TopicError::InvalidMac { topic: clip(topic), segment: clip(mac) };
        // `Mac::parse` forgives blanks around a value typed by a person; a topic must not have any.
        if mac.contains(char::is_whitespace) {
            return Err(bad_mac());
        }
        Mac::parse(mac).map(make).map_err(|_| bad_mac())
    }

    /// The gateway the topic belongs to.
    pub const fn mac(self) -> Mac {
        match self {
            Self::Telemetry(mac)
            | Self::TelemetryAlias(mac)
            | Self::Status(mac)
            | Self::CertUpdate(mac)
            | Self::CertCsr(mac) => mac,
        }
    }

    /// Whether the topic carries telemetry batches (the canonical topic or its alias).
    pub const fn is_telemetry(self) -> bool {
        matches!(self, Self::Telemetry(_) | Self::TelemetryAlias(_))
    }

    /// Whether the gateway whose certificate names `client` may publish to this topic: its own
    /// telemetry (either spelling), status and CSR topics only. `cert_update` is written by TDS.
    pub fn may_publish(self, client: Mac) -> bool {
        !matches!(self, Self::CertUpdate(_)) && self.mac() == client
    }

    /// Whether the gateway `client` may subscribe to the topic filter `filter`: only to its own
    /// `cert_update` topic, written exactly as TDS publishes it (lower-case MAC with colons, no
    /// wildcards), since any other spelling would never receive a message.
    pub fn may_subscribe(filter: &str, client: Mac) -> bool {
        filter == Self::CertUpdate(client).to_string()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Telemetry(mac) => write!(f, "tds_new/gateway/{mac}/telemetria"),
            Self::TelemetryAlias(mac) => write!(f, "tds_new/devices/{mac}/telemetry"),
            Self::Status(mac) => write!(f, "tds_new/gateway/{mac}/status"),
            Self::CertUpdate(mac) => write!(f, "tds_new/gateway/{mac}/cert_update"),
            Self::CertCsr(mac) => write!(f, "tds_new/gateway/{mac}/cert_csr"),
        }
    }
}

/// Why a topic name is not one of the device protocol's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    #[error(
        "unknown topic {topic:?}: expected tds_new/gateway/{{mac}}/telemetria, …/status, …/cert_update, …/cert_csr or tds_new/devices/{{mac}}/telemetry"
    )]
    Unknown { topic: String },
    #[error("topic {topic:?} names {segment:?}, which is not a MAC address such as aa:bb:cc:dd:ee:ff")]
    InvalidMac { topic: String, segment: String },
}

impl TopicError {
    /// Stable machine code of the reason, for logs, metrics and dead letters.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "unknown_topic",
            Self::InvalidMac { .. } => "invalid_topic_mac",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

/// Why a batch or reading `timestamp` was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimestampError {
    #[error("timestamp {value} is not a string: expected ISO 8601 such as \"2026-02-15T14:30:00Z\"")]
    NotAString { value: String },
    #[error(
        "timestamp {value:?} is not ISO 8601: expected for example 2026-02-15T14:30:00Z, 2026-02-15T11:30:00-03:00 or, in the tenant's time zone, 2026-02-15T11:30:00"
    )]
    Malformed { value: String },
    #[error(
        "timestamp {value:?} is a local time that does not exist in {} (it falls in the daylight-saving gap); send the time with its UTC offset",
        .zone.name()
    )]
    NonExistentLocalTime { value: String, zone: Tz },
    #[error("timestamp {value:?} ({time}) is more than 5 minutes ahead of the server clock ({now})")]
    InFuture { value: String, time: DateTime<Utc>, now: DateTime<Utc> },
    #[error(
        "timestamp {value:?} ({time}) is older than the tenant's retention of raw readings (nothing before {oldest} is kept)"
    )]
    BeforeRetention { value: String, time: DateTime<Utc>, oldest: DateTime<Utc> },
}

impl TimestampError {
    /// Stable machine code of the reason.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::NotAString { .. } | Self::Malformed { .. } => "invalid_timestamp",
            Self::NonExistentLocalTime { .. } => "nonexistent_local_time",
            Self::InFuture { .. } => "future_timestamp",
            Self::BeforeRetention { .. } => "before_retention",
        }
    }
}

/// Parses a wire timestamp (see the module header for the accepted forms); a time without an
/// offset is taken in `zone`. Does not check for future times.
pub fn parse_timestamp(input: &str, zone: Tz) -> Result<DateTime<Utc>, TimestampError> {
    let malformed = || TimestampError::Malformed { value: clip(input) };
    let s = input.trim();
    let bytes = s.as_bytes();
    // A four-digit year first: keeps chrono's lenient `%Y` away from signed or five-digit years.
    let four_digit_year = bytes.len() >= 19
        && bytes.get(..4).is_some_and(|y| y.iter().all(u8::is_ascii_digit))
        && bytes.get(4) == Some(&b'-');
    if !four_digit_year {
        return Err(malformed());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    let local = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .into_iter()
        .find_map(|format| NaiveDateTime::parse_from_str(s, format).ok())
        .ok_or_else(malformed)?;
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.with_timezone(&Utc)),
        LocalResult::None => Err(TimestampError::NonExistentLocalTime { value: clip(input), zone }),
    }
}

/// A JSON `timestamp` value, parsed in the context's zone and checked against its clock.
fn timestamp_value(value: &Value, ctx: &BatchContext) -> Result<DateTime<Utc>, TimestampError> {
    let Value::String(s) = value else {
        return Err(TimestampError::NotAString { value: show(value) });
    };
    timestamp_text(s, ctx)
}

/// A timestamp sent as the string `s`, checked against the context's clock and retention.
fn timestamp_text(s: &str, ctx: &BatchContext) -> Result<DateTime<Utc>, TimestampError> {
    let time = parse_timestamp(s, ctx.zone)?;
    // No limit when the clock is so close to chrono's end of time that the sum overflows.
    let latest = ctx.now.checked_add_signed(MAX_FUTURE_SKEW);
    if latest.is_some_and(|latest| time > latest) {
        return Err(TimestampError::InFuture { value: clip(s), time, now: ctx.now });
    }
    if let Some(oldest) = ctx.oldest
        && time < oldest
    {
        return Err(TimestampError::BeforeRetention { value: clip(s), time, oldest });
    }
    Ok(time)
}

// ---------------------------------------------------------------------------------------------
// Telemetry batch
// ---------------------------------------------------------------------------------------------

/// What a telemetry payload is checked against: who sent it, where and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchContext {
    /// The MAC of the client certificate (its CN) the message came in on.
    pub expected_mac: Mac,
    /// The owning tenant's zone, for times sent without an offset.
    pub zone: Tz,
    /// The server clock when the message arrived.
    pub now: DateTime<Utc>,
    /// Largest payload accepted, in bytes.
    pub max_bytes: usize,
    /// Most elements of `leituras` accepted; a larger batch is refused whole.
    pub max_readings: usize,
    /// The oldest time accepted: `now` less the tenant's retention of raw readings; `None`
    /// when the tenant keeps them for ever.
    pub oldest: Option<DateTime<Utc>>,
}

impl BatchContext {
    /// A context with the default limits [`DEFAULT_MAX_MESSAGE_BYTES`] and
    /// [`DEFAULT_MAX_READINGS`] and no retention.
    pub const fn new(expected_mac: Mac, zone: Tz, now: DateTime<Utc>) -> Self {
        Self {
            expected_mac,
            zone,
            now,
            max_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_readings: DEFAULT_MAX_READINGS,
            oldest: None,
        }
    }

    /// The same context refusing times older than `retention` before `now`.
    #[must_use]
    pub fn with_retention(mut self, retention: Option<TimeDelta>) -> Self {
        self.oldest = retention.and_then(|r| self.now.checked_sub_signed(r));
        self
    }
}

/// A parsed telemetry message: its gateway and time, and one outcome per element of `leituras`,
/// in the order sent.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryBatch {
    pub gateway_mac: Mac,
    /// The batch `timestamp`, in UTC.
    pub timestamp: DateTime<Utc>,
    pub readings: Vec<ReadingOutcome>,
}

/// One element of `leituras`: a reading ready to be matched against the gateway's devices, or the
/// element as sent with the reason it was refused.
pub type ReadingOutcome = Result<ReadingInput, RejectedReading>;

/// A well-formed reading. It still has to be checked against the registered devices (unknown
/// device, unit conflict) and stored (duplicate) by ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingInput {
    /// 0-based position in `leituras`.
    pub index: usize,
    pub device_code: DeviceCode,
    /// Always finite.
    pub value: f64,
    /// The unit the reading names, canonicalised; `None` when it names none.
    pub unit: Option<Unit>,
    /// The reading's own time, or the batch's when it has none; in UTC.
    pub time: DateTime<Utc>,
    /// The element as sent, so that a reading refused later (unknown device, unit conflict,
    /// duplicate) is dead-lettered in the same shape as one refused by the parser.
    pub raw: SentElement,
}

impl ReadingInput {
    /// Turns a reading refused after parsing (by ingest or the store) into a dead-letter entry.
    pub fn reject(self, reason: ReadingRejection) -> RejectedReading {
        RejectedReading { index: self.index, raw: self.raw.into_value(), reason }
    }
}

/// An element of `leituras` as sent, kept with a reading in case it is refused after parsing.
/// The fast path keeps the element's place in its message, whose text all of the message's
/// readings share (one copy a message; the element is read out of it only for a reading that is
/// refused); the general path the value it parsed. Both stand for the same JSON value, which is
/// what they compare by.
#[derive(Debug, Clone)]
pub struct SentElement(Sent);

#[derive(Debug, Clone)]
enum Sent {
    /// Element `index` of the message's `leituras`.
    InMessage {
        message: Arc<SentMessage>,
        index: usize,
    },
    Value(Value),
}

/// A message's text as the fast path took it, with its `leituras` as values once one of them
/// was asked for: a message whose readings are refused after parsing (unknown devices, another
/// unit, conflicts) is parsed once for all of them, not once per reading.
#[derive(Debug)]
pub(crate) struct SentMessage {
    text: Box<str>,
    elements: OnceLock<Vec<Value>>,
}

impl SentMessage {
    pub(crate) fn new(text: &str) -> Arc<Self> {
        Arc::new(Self { text: text.into(), elements: OnceLock::new() })
    }

    /// Element `index` of `leituras`. The fast path only takes a message it has read whole, so
    /// the element is always there; were it not, the message's text is given rather than lost.
    fn element(&self, index: usize) -> Value {
        let elements = self.elements.get_or_init(|| match serde_json::from_str(&self.text) {
            Ok(Value::Object(mut fields)) => match fields.remove("leituras") {
                Some(Value::Array(elements)) => elements,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        });
        elements.get(index).cloned().unwrap_or_else(|| Value::String(self.text.to_string()))
    }
}

impl SentElement {
    /// Element `index` of `message`'s `leituras`.
    pub(crate) fn in_message(message: &Arc<SentMessage>, index: usize) -> Self {
        Self(Sent::InMessage { message: Arc::clone(message), index })
    }

    /// The element as a JSON value.
    pub fn to_value(&self) -> Value {
        match &self.0 {
            Sent::Value(v) => v.clone(),
            Sent::InMessage { message, index } => message.element(*index),
        }
    }

    /// The element as a JSON value.
    pub fn into_value(self) -> Value {
        match self.0 {
            Sent::Value(v) => v,
            Sent::InMessage { message, index } => message.element(index),
        }
    }
}

impl From<Value> for SentElement {
    fn from(value: Value) -> Self {
        Self(Sent::Value(value))
    }
}

impl PartialEq for SentElement {
    fn eq(&self, other: &Self) -> bool {
        self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for SentElement {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

/// An element of `leituras` that is not stored as a reading, with why.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("reading {index}: {reason}")]
pub struct RejectedReading {
    /// 0-based position in `leituras`.
    pub index: usize,
    /// The element as sent.
    pub raw: Value,
    pub reason: ReadingRejection,
}

/// Why a whole telemetry message was refused: nothing in it is stored as a reading.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchRejection {
    #[error("message is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("payload is not UTF-8 text (invalid byte at offset {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    #[error("payload is not valid JSON: {message}")]
    InvalidJson {
        /// `serde_json`'s message, which ends with the line and column.
        message: String,
        line: usize,
        column: usize,
    },
    #[error("payload is a JSON {found}, expected an object with gateway_mac, timestamp and leituras")]
    NotAnObject { found: &'static str },
    #[error("gateway_mac is missing")]
    MissingGatewayMac,
    #[error("gateway_mac {value} is not a MAC address such as \"aa:bb:cc:dd:ee:ff\"")]
    InvalidGatewayMac { value: String },
    #[error("gateway_mac {sent} does not match the certificate's MAC {expected}")]
    GatewayMacMismatch { sent: Mac, expected: Mac },
    #[error("batch timestamp is missing")]
    MissingTimestamp,
    #[error("batch {0}")]
    Timestamp(TimestampError),
    #[error("leituras is missing: expected an array of readings (it may be empty)")]
    MissingReadings,
    #[error("leituras is a JSON {found}, expected an array of readings")]
    ReadingsNotArray { found: &'static str },
    #[error("leituras has {count} readings, over the limit of {max} per batch")]
    TooManyReadings { count: usize, max: usize },
}

impl BatchRejection {
    /// Stable machine code of the reason, for logs, metrics and dead letters.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "payload_too_large",
            Self::NotUtf8 { .. } => "invalid_utf8",
            Self::InvalidJson { .. } => "invalid_json",
            Self::NotAnObject { .. } => "not_an_object",
            Self::MissingGatewayMac => "missing_gateway_mac",
            Self::InvalidGatewayMac { .. } => "invalid_gateway_mac",
            Self::GatewayMacMismatch { .. } => "gateway_mac_mismatch",
            Self::MissingTimestamp => "missing_timestamp",
            Self::Timestamp(e) => e.code(),
            Self::MissingReadings => "missing_leituras",
            Self::ReadingsNotArray { .. } => "invalid_leituras",
            Self::TooManyReadings { .. } => "too_many_readings",
        }
    }
}

/// Why one reading was refused. The parser produces the format reasons; ingest and the store
/// record `UnknownDevice`, `UnitConflict` and `DuplicateConflict` with the same enum.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ReadingRejection {
    #[error("reading is a JSON {found}, expected an object with dispositivo_codigo and valor")]
    NotAnObject { found: &'static str },
    #[error("dispositivo_codigo is missing")]
    MissingDeviceCode,
    #[error("invalid dispositivo_codigo {value}: {reason}")]
    InvalidDeviceCode { value: String, reason: String },
    #[error("valor is missing")]
    MissingValue,
    #[error("invalid valor {value}: {reason}")]
    InvalidValue { value: String, reason: &'static str },
    #[error("invalid unidade {value}: {reason}")]
    InvalidUnit { value: String, reason: String },
    #[error(transparent)]
    Timestamp(TimestampError),
    #[error("no device with code {code} on this gateway")]
    UnknownDevice { code: DeviceCode },
    #[error("unidade {reading_unit} conflicts with the device's unit {device_unit}")]
    UnitConflict { device_unit: Unit, reading_unit: Unit },
    #[error(
        "a reading at {time} is already stored with valor {stored}; the resent valor {received} was not stored"
    )]
    DuplicateConflict { time: DateTime<Utc>, stored: f64, received: f64 },
}

impl ReadingRejection {
    /// Stable machine code of the reason, for logs, metrics and dead letters.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::NotAnObject { .. } => "not_an_object",
            Self::MissingDeviceCode => "missing_device_code",
            Self::InvalidDeviceCode { .. } => "invalid_device_code",
            Self::MissingValue => "missing_value",
            Self::InvalidValue { .. } => "invalid_value",
            Self::InvalidUnit { .. } => "invalid_unit",
            Self::Timestamp(e) => e.code(),
            Self::UnknownDevice { .. } => "unknown_device",
            Self::UnitConflict { .. } => "unit_conflict",
            Self::DuplicateConflict { .. } => "duplicate_conflict",
        }
    }
}

/// Whether a reading's unit conflicts with its device's: true only when the reading names a unit
/// and it differs from the device's. Both are canonical, so `m3` and `m³` agree.
pub fn unit_conflict(device_unit: &Unit, reading_unit: Option<&Unit>) -> bool {
    reading_unit.is_some_and(|unit| unit != device_unit)
}

/// The payload as text: within the size limit, UTF-8, a leading byte-order mark dropped.
fn payload_text<'a>(payload: &'a [u8], ctx: &BatchContext) -> Result<&'a str, BatchRejection> {
    if payload.len() > ctx.max_bytes {
        return Err(BatchRejection::TooLarge { size: payload.len(), max: ctx.max_bytes });
    }
    let text =
        std::str::from_utf8(payload).map_err(|e| BatchRejection::NotUtf8 { valid_up_to: e.valid_up_to() })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

impl TelemetryBatch {
    /// Parses a telemetry payload. A whole-message problem is an `Err`; otherwise every element
    /// of `leituras` has its own outcome in [`TelemetryBatch::readings`].
    pub fn parse(payload: &[u8], ctx: &BatchContext) -> Result<Self, BatchRejection> {
        let text = payload_text(payload, ctx)?;
        match fast::parse(text, ctx) {
            Some(batch) => Ok(batch),
            None => Self::parse_values(text, ctx),
        }
    }

    /// Parses as [`TelemetryBatch::parse`] does, always through a `serde_json::Value` (the
    /// general path, without the fast one): the reference the fast path is compared with, by the
    /// tests and the fuzz target.
    #[doc(hidden)]
    pub fn parse_as_values(payload: &[u8], ctx: &BatchContext) -> Result<Self, BatchRejection> {
        Self::parse_values(payload_text(payload, ctx)?, ctx)
    }

    fn parse_values(text: &str, ctx: &BatchContext) -> Result<Self, BatchRejection> {
        let json: Value = serde_json::from_str(text).map_err(|e| BatchRejection::InvalidJson {
            message: e.to_string(),
            line: e.line(),
            column: e.column(),
        })?;
        let Value::Object(mut fields) = json else {
            return Err(BatchRejection::NotAnObject { found: json_type(&json) });
        };

        let gateway_mac = match fields.get("gateway_mac") {
            None | Some(Value::Null) => return Err(BatchRejection::MissingGatewayMac),
            Some(value) => value
                .as_str()
                .and_then(|s| Mac::parse(s).ok())
                .ok_or_else(|| BatchRejection::InvalidGatewayMac { value: show(value) })?,
        };
        if gateway_mac != ctx.expected_mac {
            return Err(BatchRejection::GatewayMacMismatch { sent: gateway_mac, expected: ctx.expected_mac });
        }

        let timestamp = match fields.get("timestamp") {
            None | Some(Value::Null) => return Err(BatchRejection::MissingTimestamp),
            Some(value) => timestamp_value(value, ctx).map_err(BatchRejection::Timestamp)?,
        };

        let elements = match fields.remove("leituras") {
            None | Some(Value::Null) => return Err(BatchRejection::MissingReadings),
            Some(Value::Array(elements)) => elements,
            Some(other) => {
                return Err(BatchRejection::ReadingsNotArray { found: json_type(&other) });
            }
        };
        if elements.len() > ctx.max_readings {
            return Err(BatchRejection::TooManyReadings { count: elements.len(), max: ctx.max_readings });
        }

        let readings = elements
            .into_iter()
            .enumerate()
            .map(|(index, raw)| match reading_fields(&raw, timestamp, ctx) {
                Ok(f) => Ok(ReadingInput {
                    index,
                    device_code: f.device_code,
                    value: f.value,
                    unit: f.unit,
                    time: f.time,
                    raw: raw.into(),
                }),
                Err(reason) => Err(RejectedReading { index, raw, reason }),
            })
            .collect();

        Ok(Self { gateway_mac, timestamp, readings })
    }

    /// The readings that parsed, in the order sent.
    pub fn accepted(&self) -> impl Iterator<Item = &ReadingInput> {
        self.readings.iter().filter_map(|r| r.as_ref().ok())
    }

    /// The elements refused by the parser, in the order sent.
    pub fn rejected(&self) -> impl Iterator<Item = &RejectedReading> {
        self.readings.iter().filter_map(|r| r.as_ref().err())
    }
}

/// A reading matched to its registered device, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedReading {
    pub index: usize,
    pub device: DeviceId,
    pub time: DateTime<Utc>,
    pub value: f64,
    /// The device's unit (a reading naming another unit is refused, never converted).
    pub unit: Unit,
    pub raw: SentElement,
}

/// Matches parsed readings to the gateway's devices (`device` looks a code up): readings of
/// unknown devices or with another unit are refused. A refused reading's raw element gets the
/// instant it was taken (`timestamp`) when it did not carry one, so that it can be replayed on
/// its own later, outside its batch.
pub fn match_devices(
    readings: Vec<ReadingOutcome>,
    device: impl Fn(&DeviceCode) -> Option<(DeviceId, Unit)>,
) -> (Vec<MatchedReading>, Vec<RejectedReading>) {
    let mut matched = Vec::new();
    let mut refused = Vec::new();
    for outcome in readings {
        let input = match outcome {
            Ok(input) => input,
            Err(r) => {
                refused.push(r);
                continue;
            }
        };
        let reason = match device(&input.device_code) {
            None => ReadingRejection::UnknownDevice { code: input.device_code.clone() },
            Some((id, unit)) if !unit_conflict(&unit, input.unit.as_ref()) => {
                matched.push(MatchedReading {
                    index: input.index,
                    device: id,
                    time: input.time,
                    value: input.value,
                    unit,
                    raw: input.raw,
                });
                continue;
            }
            Some((_, unit)) => ReadingRejection::UnitConflict {
                reading_unit: input.unit.clone().unwrap_or_else(|| unit.clone()),
                device_unit: unit,
            },
        };
        let mut raw = input.raw.into_value();
        if let Value::Object(map) = &mut raw {
            map.entry("timestamp").or_insert_with(|| Value::String(input.time.to_rfc3339()));
        }
        refused.push(RejectedReading { index: input.index, raw, reason });
    }
    (matched, refused)
}

struct ReadingFields {
    device_code: DeviceCode,
    value: f64,
    unit: Option<Unit>,
    time: DateTime<Utc>,
}

/// Checks one element of `leituras`; the first problem found (in field order) is the reason.
fn reading_fields(
    raw: &Value,
    batch_time: DateTime<Utc>,
    ctx: &BatchContext,
) -> Result<ReadingFields, ReadingRejection> {
    let Value::Object(fields) = raw else {
        return Err(ReadingRejection::NotAnObject { found: json_type(raw) });
    };
    let device_code = match fields.get("dispositivo_codigo") {
        None | Some(Value::Null) => return Err(ReadingRejection::MissingDeviceCode),
        Some(value) => device_code(value)?,
    };
    let value = match fields.get("valor") {
        None | Some(Value::Null) => return Err(ReadingRejection::MissingValue),
        Some(value) => reading_value(value)?,
    };
    let unit = match fields.get("unidade") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(value) => Some(reading_unit(value)?),
    };
    let time = match fields.get("timestamp") {
        None | Some(Value::Null) => batch_time,
        Some(value) => timestamp_value(value, ctx).map_err(ReadingRejection::Timestamp)?,
    };
    Ok(ReadingFields { device_code, value, unit, time })
}

fn device_code(value: &Value) -> Result<DeviceCode, ReadingRejection> {
    let invalid = |reason: String| ReadingRejection::InvalidDeviceCode { value: show(value), reason };
    let Value::String(s) = value else {
        return Err(invalid("expected a string such as \"D01\"".to_owned()));
    };
    DeviceCode::parse(s).map_err(|e| {
        invalid(match e {
            ValidationError::Required { .. } => "it is blank".to_owned(),
            ValidationError::Code { max, .. } => {
                format!("use 1 to {max} letters, digits, '-' or '_', starting with a letter or digit")
            }
            other => other.to_string(),
        })
    })
}

fn reading_value(value: &Value) -> Result<f64, ReadingRejection> {
    const NOT_A_NUMBER: &str = "expected a JSON number or a numeric string such as \"12.5\"";
    let invalid = |reason| ReadingRejection::InvalidValue { value: show(value), reason };
    let number = match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| invalid(NOT_A_NUMBER))?,
        Value::String(s) => numeric_string(s).map_err(invalid)?,
        _ => return Err(invalid(NOT_A_NUMBER)),
    };
    if number.is_finite() { Ok(number) } else { Err(invalid("not a finite number")) }
}

/// A number sent as a string: blanks around it, optional sign, digits, `.` and an exponent.
fn numeric_string(s: &str) -> Result<f64, &'static str> {
    const NOT_NUMERIC: &str =
        "not a number: expected digits with an optional '.' decimal point, as in \"12.5\"";
    let t = s.trim();
    if t.contains(',') {
        return Err("decimal commas are not accepted (\"1,234\" is ambiguous); use a point, as in \"12.5\"");
    }
    let numeric_alphabet =
        t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !numeric_alphabet || !t.bytes().any(|b| b.is_ascii_digit()) {
        return Err(NOT_NUMERIC);
    }
    t.parse::<f64>().map_err(|_| NOT_NUMERIC)
}

fn reading_unit(value: &Value) -> Result<Unit, ReadingRejection> {
    let invalid = |reason: String| ReadingRejection::InvalidUnit { value: show(value), reason };
    let Value::String(s) = value else {
        return Err(invalid("expected a string such as \"kWh\"".to_owned()));
    };
    Unit::parse(s).map_err(|e| {
        invalid(match e {
            ValidationError::Unit { reason, .. } => reason.to_owned(),
            other => other.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    // Values are compared exactly on purpose: the parser must not change a single bit.
    #![allow(clippy::float_cmp)]

    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const MAC: &str = "aa:bb:cc:dd:ee:ff";

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ctx() -> BatchContext {
        BatchContext::new(
            Mac::parse(MAC).unwrap(),
            chrono_tz::America::Sao_Paulo,
            utc("2026-02-15T14:35:00Z"),
        )
    }

    fn batch(leituras: &Value) -> Vec<u8> {
        json!({"gateway_mac": MAC, "timestamp": "2026-02-15T14:30:00Z", "leituras": leituras})
            .to_string()
            .into_bytes()
    }

    /// Parses one reading inside an otherwise valid batch.
    fn one_reading(reading: &Value) -> ReadingOutcome {
        let parsed = TelemetryBatch::parse(&batch(&json!([reading])), &ctx()).unwrap();
        assert_eq!(parsed.readings.len(), 1);
        parsed.readings.into_iter().next().unwrap()
    }

    // ----- topics -------------------------------------------------------------------------

    #[test]
    fn topics_parse_to_their_kind_and_normalised_mac() {
        let mac = Mac::parse(MAC).unwrap();
        for (name, input, expected) in [
            ("telemetry", "tds_new/gateway/aa:bb:cc:dd:ee:ff/telemetria", Topic::Telemetry(mac)),
            ("alias", "tds_new/devices/aa:bb:cc:dd:ee:ff/telemetry", Topic::TelemetryAlias(mac)),
            ("status", "tds_new/gateway/aa:bb:cc:dd:ee:ff/status", Topic::Status(mac)),
            ("cert update", "tds_new/gateway/aa:bb:cc:dd:ee:ff/cert_update", Topic::CertUpdate(mac)),
            ("cert csr", "tds_new/gateway/aa:bb:cc:dd:ee:ff/cert_csr", Topic::CertCsr(mac)),
            ("upper-case mac", "tds_new/gateway/AA:BB:CC:DD:EE:FF/telemetria", Topic::Telemetry(mac)),
            ("dashed mac", "tds_new/gateway/AA-BB-CC-DD-EE-FF/telemetria", Topic::Telemetry(mac)),
            ("bare mac", "tds_new/gateway/aabbccddeeff/status", Topic::Status(mac)),
        ] {
            assert_eq!(Topic::parse(input), Ok(expected), "{name}");
            assert_eq!(expected.mac(), mac, "{name}");
        }
        assert_eq!(
            Topic::parse("tds_new/gateway/AA-BB-CC-DD-EE-FF/telemetria").unwrap().to_string(),
            "tds_new/gateway/aa:bb:cc:dd:ee:ff/telemetria"
        );
        assert!(Topic::Telemetry(mac).is_telemetry());
        assert!(Topic::TelemetryAlias(mac).is_telemetry());
        assert!(!Topic::Status(mac).is_telemetry());
    }

    #[test]
    fn foreign_or_malformed_topics_are_refused_with_a_code() {
        for (name, input, code) in [
            ("empty", "", "unknown_topic"),
            ("other root", "tds/gateway/aa:bb:cc:dd:ee:ff/telemetria", "unknown_topic"),
            ("english leaf on gateway", "tds_new/gateway/aa:bb:cc:dd:ee:ff/telemetry", "unknown_topic"),
            ("portuguese leaf on devices", "tds_new/devices/aa:bb:cc:dd:ee:ff/telemetria", "unknown_topic"),
            ("upper-case fixed level", "TDS_NEW/gateway/aa:bb:cc:dd:ee:ff/telemetria", "unknown_topic"),
            ("extra level", "tds_new/gateway/aa:bb:cc:dd:ee:ff/telemetria/x", "unknown_topic"),
            ("trailing slash", "tds_new/gateway/aa:bb:cc:dd:ee:ff/telemetria/", "unknown_topic"),
            ("too short", "tds_new/gateway/aa:bb:cc:dd:ee:ff", "unknown_topic"),
            ("multi-level wildcard", "tds_new/gateway/#", "unknown_topic"),
            ("single-level wildcard", "tds_new/gateway/+/telemetria", "invalid_topic_mac"),
            ("bad mac", "tds_new/gateway/aa:bb:cc:dd:ee/telemetria", "invalid_topic_mac"),
            ("blank around mac", "tds_new/gateway/ aa:bb:cc:dd:ee:ff/telemetria", "invalid_topic_mac"),
        ] {
            let err = Topic::parse(input).unwrap_err();
            assert_eq!(err.code(), code, "{name}: {err}");
            assert!(err.to_string().contains(&format!("{:?}", clip(input))), "{name}: {err}");
        }
    }

    #[test]
    fn a_gateway_may_publish_only_to_its_own_upstream_topics() {
        let own = Mac::parse(MAC).unwrap();
        let other = Mac::parse("11:22:33:44:55:66").unwrap();
        for (name, topic, client, allowed) in [
            ("own telemetry", Topic::Telemetry(own), own, true),
            ("own alias", Topic::TelemetryAlias(own), own, true),
            ("own status", Topic::Status(own), own, true),
            ("own csr", Topic::CertCsr(own), own, true),
            ("own cert_update is written by TDS", Topic::CertUpdate(own), own, false),
            ("other's telemetry", Topic::Telemetry(other), own, false),
            ("other's alias", Topic::TelemetryAlias(other), own, false),
            ("other's status", Topic::Status(other), own, false),
            ("other's csr", Topic::CertCsr(other), own, false),
        ] {
            assert_eq!(topic.may_publish(client), allowed, "{name}");
        }
    }

    #[test]
    fn a_gateway_may_subscribe_only_to_its_own_cert_update_topic_exactly() {
        let own = Mac::parse(MAC).unwrap();
        for (name, filter, allowed) in [
            ("own cert_update", "tds_new/gateway/aa:bb:cc:dd:ee:ff/cert_update", true),
            ("upper-case spelling", "tds_new/gateway/AA:BB:CC:DD:EE:FF/cert_update", false),
            ("other's cert_update", "tds_new/gateway/11:22:33:44:55:66/cert_update", false),
            ("own telemetry", "tds_new/gateway/aa:bb:cc:dd:ee:ff/telemetria", false),
            ("own status", "tds_new/gateway/aa:bb:cc:dd:ee:ff/status", false),
            ("single-level wildcard", "tds_new/gateway/+/cert_update", false),
            ("multi-level wildcard", "tds_new/gateway/aa:bb:cc:dd:ee:ff/#", false),
            ("everything", "#", false),
            ("shared subscription", "$share/g/tds_new/gateway/aa:bb:cc:dd:ee:ff/cert_update", false),
        ] {
            assert_eq!(Topic::may_subscribe(filter, own), allowed, "{name}");
        }
    }

    // ----- the SPEC example ---------------------------------------------------------------

    #[test]
    fn spec_example_batch_parses_into_two_readings() {
        let payload = r#"{
  "gateway_mac": "aa:bb:cc:dd:ee:ff",
  "timestamp": "2026-02-15T14:30:00Z",
  "leituras": [
    {"dispositivo_codigo": "D01", "valor": 123.45, "unidade": "kWh"},
    {"dispositivo_codigo": "D02", "valor": 67.89, "unidade": "m³", "timestamp": "2026-02-15T14:15:00Z"}
  ]
}"#;
        let parsed = TelemetryBatch::parse(payload.as_bytes(), &ctx()).unwrap();
        assert_eq!(parsed.gateway_mac, Mac::parse(MAC).unwrap());
        assert_eq!(parsed.timestamp, utc("2026-02-15T14:30:00Z"));
        let readings: Vec<&ReadingInput> = parsed.accepted().collect();
        assert_eq!(readings.len(), 2);
        assert_eq!(parsed.rejected().count(), 0);

        let (d01, d02) = (readings[0], readings[1]);
        assert_eq!(d01.index, 0);
        assert_eq!(d01.device_code.as_str(), "D01");
        assert_eq!(d01.value, 123.45);
        assert_eq!(d01.unit, Some(Unit::parse("kWh").unwrap()));
        assert_eq!(d01.time, utc("2026-02-15T14:30:00Z"));
        assert_eq!(d01.raw, json!({"dispositivo_codigo": "D01", "valor": 123.45, "unidade": "kWh"}));

        assert_eq!(d02.index, 1);
        assert_eq!(d02.device_code.as_str(), "D02");
        assert_eq!(d02.value, 67.89);
        assert_eq!(d02.unit, Some(Unit::parse("m3").unwrap()));
        assert_eq!(d02.time, utc("2026-02-15T14:15:00Z"));
    }

    // ----- whole-message rejections -------------------------------------------------------

    #[test]
    #[allow(clippy::too_many_lines)] // a table: one row per rule
    fn whole_message_problems_refuse_the_batch_with_a_precise_reason() {
        let ok_time = "2026-02-15T14:30:00Z";
        for (name, payload, code, mentions) in [
            ("not utf-8", b"{\"gateway_mac\": \"\xff\"}".to_vec(), "invalid_utf8", vec!["offset 17"]),
            ("empty payload", Vec::new(), "invalid_json", vec!["line 1 column 0"]),
            (
                "broken json",
                b"{\"gateway_mac\": \n  \"aa\",}".to_vec(),
                "invalid_json",
                vec!["line 2 column"],
            ),
            ("array payload", b"[]".to_vec(), "not_an_object", vec!["array"]),
            ("string payload", b"\"online\"".to_vec(), "not_an_object", vec!["string"]),
            (
                "no gateway_mac",
                json!({"timestamp": ok_time, "leituras": []}).to_string().into_bytes(),
                "missing_gateway_mac",
                vec!["gateway_mac"],
            ),
            (
                "null gateway_mac",
                json!({"gateway_mac": null, "timestamp": ok_time, "leituras": []}).to_string().into_bytes(),
                "missing_gateway_mac",
                vec!["gateway_mac"],
            ),
            (
                "bad gateway_mac",
                json!({"gateway_mac": "aa:bb", "timestamp": ok_time, "leituras": []})
                    .to_string()
                    .into_bytes(),
                "invalid_gateway_mac",
                vec!["\"aa:bb\""],
            ),
            (
                "numeric gateway_mac",
                json!({"gateway_mac": 12, "timestamp": ok_time, "leituras": []}).to_string().into_bytes(),
                "invalid_gateway_mac",
                vec!["gateway_mac 12 "],
            ),
            (
                "other gateway's mac",
                json!({"gateway_mac": "11-22-33-44-55-66", "timestamp": ok_time, "leituras": []})
                    .to_string()
                    .into_bytes(),
                "gateway_mac_mismatch",
                vec!["11:22:33:44:55:66", MAC],
            ),
            (
                "no timestamp",
                json!({"gateway_mac": MAC, "leituras": []}).to_string().into_bytes(),
                "missing_timestamp",
                vec!["timestamp"],
            ),
            (
                "bad timestamp",
                json!({"gateway_mac": MAC, "timestamp": "15/02/2026 14:30", "leituras": []})
                    .to_string()
                    .into_bytes(),
                "invalid_timestamp",
                vec!["batch", "15/02/2026 14:30"],
            ),
            (
                "numeric timestamp",
                json!({"gateway_mac": MAC, "timestamp": 1_771_165_800, "leituras": []})
                    .to_string()
                    .into_bytes(),
                "invalid_timestamp",
                vec!["1771165800"],
            ),
            (
                "future timestamp",
                json!({"gateway_mac": MAC, "timestamp": "2026-02-15T14:40:01Z", "leituras": []})
                    .to_string()
                    .into_bytes(),
                "future_timestamp",
                vec!["2026-02-15T14:40:01Z", "5 minutes"],
            ),
            (
                "no leituras",
                json!({"gateway_mac": MAC, "timestamp": ok_time}).to_string().into_bytes(),
                "missing_leituras",
                vec!["leituras"],
            ),
            (
                "leituras object",
                json!({"gateway_mac": MAC, "timestamp": ok_time, "leituras": {}}).to_string().into_bytes(),
                "invalid_leituras",
                vec!["object"],
            ),
        ] {
            let err = TelemetryBatch::parse(&payload, &ctx()).unwrap_err();
            assert_eq!(err.code(), code, "{name}: {err}");
            for m in mentions {
                assert!(err.to_string().contains(m), "{name}: {err:?} should mention {m:?}");
            }
        }
    }

    #[test]
    fn a_batch_over_the_readings_limit_is_refused_whole() {
        let zeros = batch(&Value::Array(vec![json!(0); 1_001]));
        let err = TelemetryBatch::parse(&zeros, &ctx()).unwrap_err();
        assert_eq!(err, BatchRejection::TooManyReadings { count: 1_001, max: 1_000 });
        assert_eq!(err.code(), "too_many_readings");
        let mut small = ctx();
        small.max_readings = 2;
        let two = batch(&json!([{"dispositivo_codigo": "D01", "valor": 1}, 0]));
        assert_eq!(TelemetryBatch::parse(&two, &small).unwrap().readings.len(), 2, "the limit is inclusive");
        assert_eq!(ctx().max_readings, 1_000);
    }

    #[test]
    fn the_size_limit_is_inclusive_and_checked_before_anything_else() {
        let payload = batch(&json!([]));
        let mut exact = ctx();
        exact.max_bytes = payload.len();
        assert!(TelemetryBatch::parse(&payload, &exact).is_ok());
        let mut small = ctx();
        small.max_bytes = payload.len() - 1;
        let err = TelemetryBatch::parse(&payload, &small).unwrap_err();
        assert_eq!(err, BatchRejection::TooLarge { size: payload.len(), max: payload.len() - 1 });
        assert_eq!(err.code(), "payload_too_large");
        let garbage = vec![0xff; DEFAULT_MAX_MESSAGE_BYTES + 1];
        assert_eq!(TelemetryBatch::parse(&garbage, &ctx()).unwrap_err().code(), "payload_too_large");
        assert_eq!(ctx().max_bytes, 256 * 1024);
    }

    #[test]
    fn invalid_json_keeps_serde_json_position() {
        let err = TelemetryBatch::parse(b"{\n\"a\": tru }", &ctx()).unwrap_err();
        let BatchRejection::InvalidJson { line, column, message } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*line, 2);
        assert!(*column > 0);
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn empty_leituras_is_a_batch_of_zero_readings() {
        let parsed = TelemetryBatch::parse(&batch(&json!([])), &ctx()).unwrap();
        assert!(parsed.readings.is_empty());
        assert_eq!(parsed.timestamp, utc("2026-02-15T14:30:00Z"));
    }

    #[test]
    fn byte_order_mark_and_extra_fields_are_ignored() {
        let mut payload = "\u{feff}".as_bytes().to_vec();
        payload.extend(
            json!({"gateway_mac": "AA:BB:CC:DD:EE:FF", "timestamp": "2026-02-15T14:30:00Z",
                   "firmware": "1.2", "leituras": [{"dispositivo_codigo": "d01", "valor": 1, "x": 2}]})
            .to_string()
            .bytes(),
        );
        let parsed = TelemetryBatch::parse(&payload, &ctx()).unwrap();
        assert_eq!(parsed.accepted().count(), 1);
    }

    // ----- per-reading outcomes -----------------------------------------------------------

    #[test]
    #[allow(clippy::too_many_lines)] // a table: one row per rule
    fn well_formed_readings_are_accepted() {
        let batch_time = utc("2026-02-15T14:30:00Z");
        for (name, reading, value, unit, time) in [
            ("number", json!({"dispositivo_codigo": "D01", "valor": 12.5}), 12.5, None, batch_time),
            ("integer", json!({"dispositivo_codigo": "D01", "valor": 12}), 12.0, None, batch_time),
            ("negative", json!({"dispositivo_codigo": "D01", "valor": -3.25}), -3.25, None, batch_time),
            ("numeric string", json!({"dispositivo_codigo": "D01", "valor": "12.5"}), 12.5, None, batch_time),
            (
                "numeric string with blanks",
                json!({"dispositivo_codigo": "D01", "valor": " 12.5 "}),
                12.5,
                None,
                batch_time,
            ),
            (
                "numeric string with exponent",
                json!({"dispositivo_codigo": "D01", "valor": "1.5e3"}),
                1500.0,
                None,
                batch_time,
            ),
            ("lower-case code", json!({"dispositivo_codigo": " d01 ", "valor": 1}), 1.0, None, batch_time),
            (
                "unit alias",
                json!({"dispositivo_codigo": "D01", "valor": 1, "unidade": "m3"}),
                1.0,
                Some("m³"),
                batch_time,
            ),
            (
                "null unit",
                json!({"dispositivo_codigo": "D01", "valor": 1, "unidade": null}),
                1.0,
                None,
                batch_time,
            ),
            (
                "blank unit",
                json!({"dispositivo_codigo": "D01", "valor": 1, "unidade": "  "}),
                1.0,
                None,
                batch_time,
            ),
            (
                "null time takes the batch's",
                json!({"dispositivo_codigo": "D01", "valor": 1, "timestamp": null}),
                1.0,
                None,
                batch_time,
            ),
            (
                "own time with offset",
                json!({"dispositivo_codigo": "D01", "valor": 1, "timestamp": "2026-02-15T11:15:00-03:00"}),
                1.0,
                None,
                utc("2026-02-15T14:15:00Z"),
            ),
            (
                "own local time in tenant zone",
                json!({"dispositivo_codigo": "D01", "valor": 1, "timestamp": "2026-02-15T11:15:00"}),
                1.0,
                None,
                utc("2026-02-15T14:15:00Z"),
            ),
            (
                "exactly five minutes ahead",
                json!({"dispositivo_codigo": "D01", "valor": 1, "timestamp": "2026-02-15T14:40:00Z"}),
                1.0,
                None,
                utc("2026-02-15T14:40:00Z"),
            ),
            (
                "a year-old backlog",
                json!({"dispositivo_codigo": "D01", "valor": 1, "timestamp": "2025-02-15T14:40:00Z"}),
                1.0,
                None,
                utc("2025-02-15T14:40:00Z"),
            ),
        ] {
            let input = one_reading(&reading).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(input.device_code.as_str(), "D01", "{name}");
            assert_eq!(input.value, value, "{name}");
            assert_eq!(input.unit.as_ref().map(Unit::as_str), unit, "{name}");
            assert_eq!(input.time, time, "{name}");
            assert_eq!(input.raw, reading, "{name}");
        }
    }

    #[test]
    #[allow(clippy::too_many_lines)] // a table: one row per rule
    fn malformed_readings_are_refused_alone_with_a_precise_reason() {
        for (name, reading, code, mention) in [
            ("array element", json!([1]), "not_an_object", "array"),
            ("number element", json!(5), "not_an_object", "number"),
            ("no code", json!({"valor": 1}), "missing_device_code", "dispositivo_codigo"),
            (
                "null code",
                json!({"dispositivo_codigo": null, "valor": 1}),
                "missing_device_code",
                "dispositivo_codigo",
            ),
            ("blank code", json!({"dispositivo_codigo": " ", "valor": 1}), "invalid_device_code", "blank"),
            (
                "code with a blank",
                json!({"dispositivo_codigo": "D 01", "valor": 1}),
                "invalid_device_code",
                "\"D 01\"",
            ),
            (
                "numeric code",
                json!({"dispositivo_codigo": 1, "valor": 1}),
                "invalid_device_code",
                "expected a string",
            ),
            ("no value", json!({"dispositivo_codigo": "D01"}), "missing_value", "valor"),
            ("null value", json!({"dispositivo_codigo": "D01", "valor": null}), "missing_value", "valor"),
            ("text value", json!({"dispositivo_codigo": "D01", "valor": "abc"}), "invalid_value", "\"abc\""),
            (
                "empty string value",
                json!({"dispositivo_codigo": "D01", "valor": ""}),
                "invalid_value",
                "not a number",
            ),
            (
                "decimal comma",
                json!({"dispositivo_codigo": "D01", "valor": " 12,5"}),
                "invalid_value",
                "decimal comma",
            ),
            ("NaN string", json!({"dispositivo_codigo": "D01", "valor": "NaN"}), "invalid_value", "\"NaN\""),
            ("inf string", json!({"dispositivo_codigo": "D01", "valor": "inf"}), "invalid_value", "\"inf\""),
            (
                "overflowing string",
                json!({"dispositivo_codigo": "D01", "valor": "1e999"}),
                "invalid_value",
                "finite",
            ),
            (
                "two points",
                json!({"dispositivo_codigo": "D01", "valor": "1.2.3"}),
                "invalid_value",
                "\"1.2.3\"",
            ),
            (
                "boolean value",
                json!({"dispositivo_codigo": "D01", "valor": true}),
                "invalid_value",
                "valor true",
            ),
            (
                "object value",
                json!({"dispositivo_codigo": "D01", "valor": {"v": 1}}),
                "invalid_value",
                "expected a JSON number",
            ),
            (
                "long unit",
                json!({"dispositivo_codigo": "D01", "valor": 1, "unidade": "abcdefghijklmnopq"}),
                "invalid_unit",
                "16 characters",
            ),
            (
                "unit with a blank",
                json!({"dispositivo_codigo": "D01", "valor": 1, "unidade": "k Wh"}),
                "invalid_unit",
                "\"k Wh\"",
            ),
            (
                "numeric unit",
                json!({"dispositivo_codigo": "D01", "valor": 1, "unidade": 3}),
                "invalid_unit",
                "expected a string",
            ),
            (
                "bad time",
                json!({"dispositivo_codigo": "D01", "valor": 1, "timestamp": "ontem"}),
                "invalid_timestamp",
                "\"ontem\"",
            ),
            (
                "numeric time",
                json!({"dispositivo_codigo": "D01", "valor": 1, "timestamp": 17}),
                "invalid_timestamp",
                "timestamp 17",
            ),
            (
                "future time",
                json!({"dispositivo_codigo": "D01", "valor": 1, "timestamp": "2026-02-15T14:40:00.001Z"}),
                "future_timestamp",
                "5 minutes",
            ),
            (
                "local time in a DST gap",
                json!({"dispositivo_codigo": "D01", "valor": 1, "timestamp": "2018-11-04T00:30:00"}),
                "nonexistent_local_time",
                "America/Sao_Paulo",
            ),
        ] {
            let rejected = one_reading(&reading).unwrap_err();
            assert_eq!(rejected.index, 0, "{name}");
            assert_eq!(rejected.raw, reading, "{name}");
            assert_eq!(rejected.reason.code(), code, "{name}: {}", rejected.reason);
            let message = rejected.reason.to_string();
            assert!(message.contains(mention), "{name}: {message:?} should mention {mention:?}");
        }
    }

    #[test]
    fn times_older_than_the_retention_are_refused_and_the_horizon_itself_is_kept() {
        // now 2026-02-15T14:35Z, 30 days of retention: nothing before 2026-01-16T14:35Z.
        let month = ctx().with_retention(Some(TimeDelta::days(30)));
        assert_eq!(month.oldest, Some(utc("2026-01-16T14:35:00Z")));
        let at = |t: &str| json!([{"dispositivo_codigo": "D01", "valor": 1, "timestamp": t}]);
        let parsed = TelemetryBatch::parse(&batch(&at("2026-01-16T14:35:00Z")), &month).unwrap();
        assert!(parsed.readings[0].is_ok(), "exactly at the horizon is kept");
        let parsed = TelemetryBatch::parse(&batch(&at("2026-01-16T14:34:59Z")), &month).unwrap();
        let rejected = parsed.readings[0].clone().unwrap_err();
        assert_eq!(rejected.reason.code(), "before_retention");
        let message = rejected.reason.to_string();
        assert!(message.contains("retention") && message.contains("2026-01-16 14:35:00 UTC"), "{message}");
        // The batch time too: its readings would take it.
        let old = json!({"gateway_mac": MAC, "timestamp": "2025-12-31T23:00:00Z", "leituras": []});
        let refused = TelemetryBatch::parse(old.to_string().as_bytes(), &month).unwrap_err();
        assert_eq!(refused.code(), "before_retention", "{refused}");
        // A tenant that keeps readings for ever accepts any age.
        let forever = ctx().with_retention(None);
        assert!(TelemetryBatch::parse(old.to_string().as_bytes(), &forever).is_ok());
    }

    #[test]
    fn good_readings_survive_bad_neighbours_in_order() {
        let parsed = TelemetryBatch::parse(
            &batch(&json!([
                {"dispositivo_codigo": "D01", "valor": 1},
                {"dispositivo_codigo": "D02", "valor": "x"},
                "junk",
                {"dispositivo_codigo": "D03", "valor": 3}
            ])),
            &ctx(),
        )
        .unwrap();
        let outcomes: Vec<(usize, bool)> = parsed
            .readings
            .iter()
            .map(|r| match r {
                Ok(input) => (input.index, true),
                Err(rejected) => (rejected.index, false),
            })
            .collect();
        assert_eq!(outcomes, [(0, true), (1, false), (2, false), (3, true)]);
        assert_eq!(
            parsed.rejected().next().unwrap().to_string(),
            "reading 1: invalid valor \"x\": not a number: expected digits with an optional '.' decimal point, as in \"12.5\""
        );
    }

    #[test]
    fn long_values_are_cut_in_messages_but_kept_whole_in_raw() {
        let long = "x".repeat(10_000);
        let reading = json!({"dispositivo_codigo": "D01", "valor": long});
        let rejected = one_reading(&reading).unwrap_err();
        assert!(rejected.reason.to_string().len() < 300);
        assert_eq!(rejected.raw, reading);
    }

    // ----- timestamps ---------------------------------------------------------------------

    #[test]
    fn timestamps_with_and_without_offset() {
        let sp = chrono_tz::America::Sao_Paulo;
        let ny = chrono_tz::America::New_York;
        for (name, input, zone, expected) in [
            ("utc", "2026-02-15T14:30:00Z", sp, "2026-02-15T14:30:00Z"),
            ("lower-case z and t", "2026-02-15t14:30:00z", sp, "2026-02-15T14:30:00Z"),
            ("offset", "2026-02-15T11:30:00-03:00", ny, "2026-02-15T14:30:00Z"),
            ("offset without colon", "2026-02-15T11:30:00-0300", ny, "2026-02-15T14:30:00Z"),
            ("space separator with offset", "2026-02-15 14:30:00+00:00", ny, "2026-02-15T14:30:00Z"),
            ("fraction", "2026-02-15T14:30:00.250Z", sp, "2026-02-15T14:30:00.250Z"),
            ("blanks around", " 2026-02-15T14:30:00Z ", sp, "2026-02-15T14:30:00Z"),
            ("local in Sao Paulo", "2026-02-15T11:30:00", sp, "2026-02-15T14:30:00Z"),
            ("local with space", "2026-02-15 11:30:00", sp, "2026-02-15T14:30:00Z"),
            ("local with fraction", "2026-02-15T11:30:00.5", sp, "2026-02-15T14:30:00.5Z"),
            ("local in New York winter", "2026-02-15T09:30:00", ny, "2026-02-15T14:30:00Z"),
            (
                "fall-back ambiguity takes the earlier instant",
                "2026-11-01T01:30:00",
                ny,
                "2026-11-01T05:30:00Z",
            ),
            ("just after the fall-back", "2026-11-01T02:30:00", ny, "2026-11-01T07:30:00Z"),
        ] {
            assert_eq!(parse_timestamp(input, zone), Ok(utc(expected)), "{name}");
        }
    }

    #[test]
    fn malformed_or_nonexistent_timestamps_are_refused() {
        let ny = chrono_tz::America::New_York;
        for (name, input, code) in [
            ("empty", "", "invalid_timestamp"),
            ("date only", "2026-02-15", "invalid_timestamp"),
            ("no seconds", "2026-02-15T14:30Z", "invalid_timestamp"),
            ("brazilian order", "15/02/2026 14:30:00", "invalid_timestamp"),
            ("five-digit year", "+12026-02-15T14:30:00Z", "invalid_timestamp"),
            ("month 13", "2026-13-15T14:30:00Z", "invalid_timestamp"),
            ("february 30", "2026-02-30T14:30:00", "invalid_timestamp"),
            ("hour 24", "2026-02-15T24:30:00Z", "invalid_timestamp"),
            ("trailing junk", "2026-02-15T14:30:00Zjunk", "invalid_timestamp"),
            ("zone name", "2026-02-15T14:30:00 BRT", "invalid_timestamp"),
            ("spring-forward gap", "2026-03-08T02:30:00", "nonexistent_local_time"),
        ] {
            let err = parse_timestamp(input, ny).unwrap_err();
            assert_eq!(err.code(), code, "{name}: {err}");
            assert!(err.to_string().contains(&format!("{input:?}")), "{name}: {err}");
        }
    }

    // ----- unit conflicts and later reasons -----------------------------------------------

    #[test]
    fn a_unit_conflicts_only_when_the_reading_names_a_different_one() {
        let kwh = Unit::parse("kWh").unwrap();
        let m3 = Unit::parse("m³").unwrap();
        for (name, device, reading, conflict) in [
            ("no unit sent", &kwh, None, false),
            ("same unit", &kwh, Some(Unit::parse("KWH").unwrap()), false),
            ("alias spelling", &m3, Some(Unit::parse("m3").unwrap()), false),
            ("different unit", &kwh, Some(m3.clone()), true),
        ] {
            assert_eq!(unit_conflict(device, reading.as_ref()), conflict, "{name}");
        }
    }

    #[test]
    fn reasons_recorded_by_ingest_have_codes_and_precise_messages() {
        let input = one_reading(&json!({"dispositivo_codigo": "d09", "valor": 2, "unidade": "L"})).unwrap();
        let raw = input.raw.to_value();
        for (reason, code, mention) in [
            (ReadingRejection::UnknownDevice { code: input.device_code.clone() }, "unknown_device", "D09"),
            (
                ReadingRejection::UnitConflict {
                    device_unit: Unit::parse("m3").unwrap(),
                    reading_unit: Unit::parse("L").unwrap(),
                },
                "unit_conflict",
                "unidade L conflicts with the device's unit m³",
            ),
            (
                ReadingRejection::DuplicateConflict { time: input.time, stored: 1.5, received: 2.0 },
                "duplicate_conflict",
                "valor 1.5",
            ),
        ] {
            assert_eq!(reason.code(), code);
            assert!(reason.to_string().contains(mention), "{reason}");
            let rejected = input.clone().reject(reason);
            assert_eq!((rejected.index, &rejected.raw), (0, &raw));
        }
    }

    // ----- properties ---------------------------------------------------------------------

    /// Arbitrary JSON biased towards the protocol's keys and interesting leaf values.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
            prop::sample::select(vec![
                MAC,
                "AA-BB-CC-DD-EE-FF",
                "11:22:33:44:55:66",
                "2026-02-15T14:30:00Z",
                "2026-02-15 11:30:00",
                "2018-11-04T00:30:00",
                "2099-01-01T00:00:00Z",
                "D01",
                "kWh",
                "m3",
                "12.5",
                " 12,5",
                "NaN",
                "1e999",
                "",
            ])
            .prop_map(Value::from),
            "\\PC{0,24}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let keys = prop::sample::select(vec![
                "gateway_mac",
                "timestamp",
                "leituras",
                "dispositivo_codigo",
                "valor",
                "unidade",
                "x",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((keys, inner), 0..8).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    /// A reading element and what it must parse to.
    fn valid_reading() -> impl Strategy<Value = (Value, DeviceCode, f64, Option<Unit>, Option<DateTime<Utc>>)>
    {
        let value = (-1_000_000_000_000_i64..1_000_000_000_000, 0_i32..=4)
            .prop_map(|(significand, decimals)| significand as f64 / 10_f64.powi(decimals));
        let unit = prop::option::of(prop::sample::select(vec!["kWh", "KWH", "m3", "m³", "L", "°C", "psi"]));
        // 2020-01-01 to the test clock: Sao Paulo has had no daylight saving since 2019, so a local
        // rendering names exactly one instant.
        let time = prop::option::of((1_577_836_800_i64..=1_771_166_100, 0_u32..1000, 0_u8..3));
        ("[A-Za-z0-9][A-Za-z0-9_-]{0,31}", value, any::<bool>(), unit, time).prop_map(
            |(code, value, as_string, unit, time)| {
                let mut element = json!({"dispositivo_codigo": code, "valor": value});
                if as_string {
                    element["valor"] = Value::from(value.to_string());
                }
                if let Some(unit) = unit {
                    element["unidade"] = Value::from(unit);
                }
                let time = time.map(|(secs, millis, form)| {
                    let t = DateTime::from_timestamp(secs, millis * 1_000_000).unwrap();
                    element["timestamp"] = Value::from(match form {
                        0 => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                        1 => t
                            .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap())
                            .to_rfc3339(),
                        _ => t.with_timezone(&chrono_tz::America::Sao_Paulo).naive_local().to_string(),
                    });
                    t
                });
                (
                    element,
                    DeviceCode::parse(&code).unwrap(),
                    value,
                    unit.map(|u| Unit::parse(u).unwrap()),
                    time,
                )
            },
        )
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = TelemetryBatch::parse(&bytes, &ctx());
        }

        #[test]
        fn parse_never_panics_on_json_ish_text(text in "[\\[\\]{}\":,0-9a-z_.+\\- \\\\]{0,200}") {
            let _ = TelemetryBatch::parse(text.as_bytes(), &ctx());
        }

        #[test]
        fn parse_never_panics_on_arbitrary_json_and_keeps_every_element(value in json_value()) {
            if let Ok(parsed) = TelemetryBatch::parse(value.to_string().as_bytes(), &ctx()) {
                let sent = value["leituras"].as_array().map_or(0, Vec::len);
                prop_assert_eq!(parsed.readings.len(), sent);
                for (i, r) in parsed.readings.iter().enumerate() {
                    let index = match r { Ok(input) => input.index, Err(rejected) => rejected.index };
                    prop_assert_eq!(index, i);
                }
            }
        }

        #[test]
        fn a_valid_batch_round_trips_through_json(
            readings in prop::collection::vec(valid_reading(), 0..20),
            upper_case_mac in any::<bool>(),
        ) {
            let gateway_mac = if upper_case_mac { MAC.to_uppercase().replace(':', "-") } else { MAC.to_owned() };
            let elements: Vec<Value> = readings.iter().map(|r| r.0.clone()).collect();
            let payload = serde_json::to_vec(&json!({
                "gateway_mac": gateway_mac, "timestamp": "2026-02-15T14:30:00Z", "leituras": elements,
            })).unwrap();
            let parsed = TelemetryBatch::parse(&payload, &ctx()).unwrap();
            prop_assert_eq!(parsed.readings.len(), readings.len());
            for (i, (outcome, (raw, code, value, unit, time))) in parsed.readings.iter().zip(&readings).enumerate() {
                let input = outcome.as_ref().map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(input.index, i);
                prop_assert_eq!(&input.device_code, code);
                prop_assert_eq!(input.value.to_bits(), value.to_bits());
                prop_assert_eq!(&input.unit, unit);
                prop_assert_eq!(input.time, time.unwrap_or(parsed.timestamp));
                prop_assert_eq!(&input.raw, raw);
            }
        }

        #[test]
        fn topic_display_and_parse_round_trip(bytes in any::<[u8; 6]>(), kind in 0_u8..5) {
            let mac = Mac::from_bytes(bytes);
            let topic = match kind {
                0 => Topic::Telemetry(mac),
                1 => Topic::TelemetryAlias(mac),
                2 => Topic::Status(mac),
                3 => Topic::CertUpdate(mac),
                _ => Topic::CertCsr(mac),
            };
            let text = topic.to_string();
            prop_assert!(text.contains(&mac.to_string()));
            prop_assert_eq!(Topic::parse(&text), Ok(topic));
            let shouted = text.replace(&mac.to_string(), &mac.to_string().to_uppercase().replace(':', "-"));
            prop_assert_eq!(Topic::parse(&shouted), Ok(topic));
            prop_assert_eq!(topic.mac(), mac);
        }

        #[test]
        fn topic_parse_never_panics(s in "\\PC*") {
            let _ = Topic::parse(&s);
        }
    }

    #[test]
    fn matching_refuses_unknown_devices_and_other_units_and_dates_what_it_refuses() {
        let zone = chrono_tz::America::Sao_Paulo;
        let mac = Mac::parse("aa:bb:cc:dd:ee:ff").unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").unwrap().to_utc();
        let payload = r#"{"gateway_mac":"aa:bb:cc:dd:ee:ff","timestamp":"2026-11-23T10:00:00Z","leituras":[
            {"dispositivo_codigo":"D01","valor":1,"unidade":"m3"},
            {"dispositivo_codigo":"D02","valor":2},
            {"dispositivo_codigo":"D01","valor":3,"unidade":"kWh","timestamp":"2026-11-23T09:00:00Z"}]}"#;
        let batch = TelemetryBatch::parse(payload.as_bytes(), &BatchContext::new(mac, zone, now)).unwrap();
        // Refused after parsing: each element read back out of the message's text, its own.
        assert!(took_fast_path(&batch));
        let m3 = Unit::parse("m³").unwrap();
        let (matched, refused) = match_devices(batch.readings, |code| {
            (code.as_str() == "D01").then(|| (DeviceId::new(7), m3.clone()))
        });
        assert_eq!(matched.len(), 1);
        assert_eq!(
            (matched[0].device, matched[0].value, matched[0].unit.as_str()),
            (DeviceId::new(7), 1.0, "m³")
        );
        assert_eq!(
            refused.iter().map(|r| r.reason.code()).collect::<Vec<_>>(),
            ["unknown_device", "unit_conflict"]
        );
        assert_eq!(
            (&refused[0].raw["dispositivo_codigo"], &refused[0].raw["valor"]),
            (&json!("D02"), &json!(2))
        );
        assert_eq!(
            (&refused[1].raw["dispositivo_codigo"], &refused[1].raw["valor"]),
            (&json!("D01"), &json!(3))
        );
        assert_eq!(refused[0].raw["timestamp"], "2026-11-23T10:00:00+00:00", "the batch instant is kept");
        assert_eq!(refused[1].raw["timestamp"], "2026-11-23T09:00:00Z", "an own instant is left as sent");
    }

    // ----- the fast path ------------------------------------------------------------------------

    /// Whether the batch's accepted readings all kept their element as its place in the message
    /// (the fast path).
    fn took_fast_path(batch: &TelemetryBatch) -> bool {
        batch.accepted().all(|r| matches!(r.raw.0, Sent::InMessage { .. }))
    }

    #[test]
    fn a_gateways_ordinary_batch_takes_the_fast_path_with_the_same_result() {
        let payload = format!(
            r#"{{"gateway_mac": "{MAC}", "timestamp": "2026-02-15T14:30:00Z", "leituras": [
                {{"dispositivo_codigo": "d01", "valor": 123.45, "unidade": "kWh"}},
                {{"dispositivo_codigo": "D02", "valor": -0, "unidade": "m³", "timestamp": "2026-02-15 11:29:00"}},
                {{"dispositivo_codigo": "D03", "valor": 7, "unidade": " ", "timestamp": null}},
                {{"valor": 18446744073709551616, "dispositivo_codigo": "D04"}}]}}"#
        );
        let fast = TelemetryBatch::parse(payload.as_bytes(), &ctx()).unwrap();
        assert!(took_fast_path(&fast));
        assert_eq!(fast.readings.len(), 4);
        assert_eq!(fast, TelemetryBatch::parse_as_values(payload.as_bytes(), &ctx()).unwrap());
        let d02 = fast.readings[1].as_ref().unwrap();
        assert_eq!(d02.value.to_bits(), (-0.0_f64).to_bits());
        assert_eq!(d02.time, utc("2026-02-15T14:29:00Z"), "a local time in the tenant's zone");
        assert_eq!(
            d02.raw,
            json!({"dispositivo_codigo": "D02", "valor": -0.0, "unidade": "m³", "timestamp": "2026-02-15 11:29:00"})
        );
        assert_eq!(fast.readings[2].as_ref().unwrap().unit, None, "a blank unit is none");
    }

    #[test]
    fn anything_unusual_goes_the_general_way() {
        let element = r#"{"dispositivo_codigo": "D01", "valor": 1}"#;
        for (name, payload) in [
            (
                "an extra field",
                format!(
                    r#"{{"gateway_mac": "{MAC}", "timestamp": "2026-02-15T14:30:00Z", "x": 1, "leituras": [{element}]}}"#
                ),
            ),
            (
                "a repeated field",
                format!(
                    r#"{{"gateway_mac": "{MAC}", "timestamp": "2026-02-15T14:30:00Z", "leituras": [{{"dispositivo_codigo": "D01", "valor": 1, "valor": 2}}]}}"#
                ),
            ),
            (
                "an escaped string",
                format!(
                    r#"{{"gateway_mac": "{MAC}", "timestamp": "2026-02-15T14:30:00Z", "leituras": [{{"dispositivo_codigo": "D\u00301", "valor": 1}}]}}"#
                ),
            ),
            (
                "a numeric string",
                format!(
                    r#"{{"gateway_mac": "{MAC}", "timestamp": "2026-02-15T14:30:00Z", "leituras": [{{"dispositivo_codigo": "D01", "valor": "1"}}]}}"#
                ),
            ),
            (
                "an extra field in a reading",
                format!(
                    r#"{{"gateway_mac": "{MAC}", "timestamp": "2026-02-15T14:30:00Z", "leituras": [{{"dispositivo_codigo": "D01", "valor": 1, "x": null}}]}}"#
                ),
            ),
        ] {
            let batch = TelemetryBatch::parse(payload.as_bytes(), &ctx()).unwrap();
            assert!(!took_fast_path(&batch), "{name}");
            assert_eq!(batch.readings.len(), 1, "{name}");
            assert_eq!(batch, TelemetryBatch::parse_as_values(payload.as_bytes(), &ctx()).unwrap(), "{name}");
        }
        // Refused by the general path as before: a number out of range in a field the fast path
        // does not know, and a reading the fast path would have to refuse.
        let huge = format!(
            r#"{{"gateway_mac": "{MAC}", "timestamp": "2026-02-15T14:30:00Z", "x": 1e999, "leituras": []}}"#
        );
        assert_eq!(TelemetryBatch::parse(huge.as_bytes(), &ctx()).unwrap_err().code(), "invalid_json");
        let future = format!(
            r#"{{"gateway_mac": "{MAC}", "timestamp": "2026-02-15T14:30:00Z", "leituras": [{{"dispositivo_codigo": "D01", "valor": 1, "timestamp": "2099-01-01T00:00:00Z"}}]}}"#
        );
        let batch = TelemetryBatch::parse(future.as_bytes(), &ctx()).unwrap();
        assert_eq!(batch.rejected().next().unwrap().reason.code(), "future_timestamp");
    }

    /// A batch's text from parts that are mostly valid and sometimes a little off, so that the
    /// fast path meets both the batches it takes (about a fifth) and every way of not taking one.
    fn near_valid_payload() -> impl Strategy<Value = String> {
        // A field: usually one of `good`, sometimes one of `off`, sometimes absent.
        let field = |name: &'static str, good: &'static [&'static str], off: &'static [&'static str]| {
            prop_oneof![
                12 => prop::sample::select(good.to_vec()).prop_map(Some),
                1 => prop::sample::select(off.to_vec()).prop_map(Some),
                1 => Just(None),
            ]
            .prop_map(move |v| v.map(|v| format!(r#""{name}": {v}"#)))
        };
        let extra = |items: &'static [&'static str]| prop_oneof![20 => Just(None), 1 => prop::sample::select(items.to_vec()).prop_map(|s| Some(s.to_owned()))];
        let element = (
            field(
                "dispositivo_codigo",
                &[r#""D01""#, r#""d02""#, r#"" D03 ""#],
                &[r#""D\u00304""#, r#""""#, r#""-X""#, "12", "null"],
            ),
            field(
                "valor",
                &["1", "-0", "12.5", "1e308", "2.5e-400", "18446744073709551616", "-9223372036854775809"],
                &["1e400", r#""12.5""#, r#""1,5""#, "null", "true"],
            ),
            field(
                "unidade",
                &[r#""kWh""#, r#""m3""#, r#""m³""#, r#""""#, r#"" ""#, "null"],
                &[r#""m\u00b3""#, "5", r#""furlong""#],
            ),
            field(
                "timestamp",
                &[
                    r#""2026-02-15T14:29:00Z""#,
                    r#""2026-02-15 11:30:00""#,
                    r#""2026-02-15T14:39:00Z""#,
                    r#""2026-01-01T00:00:00Z""#,
                    "null",
                ],
                &[r#""2025-01-01T00:00:00Z""#, r#""2026-02-15T14:41:00Z""#, r#""bad""#, "3"],
            ),
            extra(&[r#""x": 1"#, r#""x": 1e400"#, r#""valor": 2"#]),
        )
            .prop_map(|(a, b, c, d, e)| {
                format!("{{{}}}", [a, b, c, d, e].into_iter().flatten().collect::<Vec<_>>().join(", "))
            });
        let other = prop::sample::select(vec!["1", "null", r#""D01""#, "[]"]).prop_map(str::to_owned);
        let elements = prop::collection::vec(prop_oneof![30 => element, 1 => other], 0..4);
        (
            field(
                "gateway_mac",
                &[r#""aa:bb:cc:dd:ee:ff""#, r#""AA-BB-CC-DD-EE-FF""#],
                &[r#""11:22:33:44:55:66""#, "null", "7"],
            ),
            field(
                "timestamp",
                &[r#""2026-02-15T14:30:00Z""#, r#""2026-02-15 11:30:00""#],
                &[r#""2099-01-01T00:00:00Z""#, "null"],
            ),
            prop_oneof![20 => elements.prop_map(Some), 1 => Just(None)],
            extra(&[r#""x": {"y": [1, 2]}"#, r#""x": 1e400"#, r#""timestamp": "2026-02-15T14:31:00Z""#]),
        )
            .prop_map(|(mac, time, elements, extra)| {
                let leituras = elements.map(|e| format!(r#""leituras": [{}]"#, e.join(",")));
                format!(
                    "{{{}}}",
                    [mac, time, leituras, extra].into_iter().flatten().collect::<Vec<_>>().join(", ")
                )
            })
    }

    #[test]
    fn the_generated_batches_take_the_fast_path_often() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = near_valid_payload();
        let fast = (0..1_000)
            .filter(|_| {
                let payload = strategy.new_tree(&mut runner).unwrap().current();
                TelemetryBatch::parse(payload.as_bytes(), &ctx())
                    .is_ok_and(|b| !b.readings.is_empty() && took_fast_path(&b) && b.rejected().count() == 0)
            })
            .count();
        assert!(fast >= 150, "{fast} of 1,000 took the fast path");
    }

    proptest! {
        #[test]
        fn the_fast_path_gives_what_the_general_path_gives(
            payload in near_valid_payload(),
            retention in any::<bool>(),
            max_readings in 1_usize..8,
        ) {
            let mut ctx = ctx().with_retention(retention.then(|| TimeDelta::days(30)));
            ctx.max_readings = max_readings;
            let general = TelemetryBatch::parse_as_values(payload.as_bytes(), &ctx);
            prop_assert_eq!(TelemetryBatch::parse(payload.as_bytes(), &ctx), general, "{}", payload);
        }

        #[test]
        fn the_fast_path_agrees_on_arbitrary_json(value in json_value()) {
            let payload = value.to_string();
            prop_assert_eq!(
                TelemetryBatch::parse(payload.as_bytes(), &ctx()),
                TelemetryBatch::parse_as_values(payload.as_bytes(), &ctx())
            );
        }
    }
}
