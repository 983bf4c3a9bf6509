//! The kinds of alert rule (SPEC §5) and their parameters.
//!
//! Owns: each kind's parameters, checked when built and when read back, and their JSON form. The
//! store keeps a rule's kind name ([`RuleKind::name`], a stable `snake_case` tag) in
//! `alert_rules.kind` and its parameters ([`RuleKind::params_json`]) in `alert_rules.params`;
//! [`RuleKind::from_parts`] reads them back. The whole kind also (de)serializes as one JSON object
//! tagged by `kind`, for the API. Must not: evaluate rules (see [`super::evaluate`],
//! [`super::clock`] and [`super::water`]) or decide which targets a kind fits ([`super::rule`]).
//!
//! Every parameter deserializes through its constructor, so stored JSON that breaks a rule (edited
//! by hand, written by an older version) is refused with the same message a form would get.

use crate::ValidationError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a rule watches, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    /// A device's consumption in the tenant's current day reaches a threshold.
    DailyConsumption(ConsumptionLimit),
    /// A device's consumption in the tenant's current month reaches a threshold.
    MonthlyConsumption(ConsumptionLimit),
    /// A gauge's value is outside a band (for at least the rule's hold time).
    GaugeBand(GaugeBand),
    /// No reading from a device for a period.
    NoData(Period),
    /// A gateway offline for a period.
    GatewayOffline(Period),
    /// A gateway's certificate expires within a number of days.
    CertificateExpiry(CertificateExpiry),
    /// Dead letters (rejected messages) reach a count in an hour.
    DeadLetterRate(DeadLetterRate),
    /// Water: the lowest hourly consumption between 02:00 and 05:00 tenant time at or above a
    /// level on a number of consecutive nights (a leak).
    NightFlow(NightFlow),
    /// Water: consumption in every hour for a number of consecutive hours.
    ContinuousFlow(ContinuousFlow),
}

/// The kind names, as [`ValidationError::Choice`] lists them.
const KIND_NAMES: &str = "daily_consumption monthly_consumption gauge_band no_data gateway_offline \
                          certificate_expiry dead_letter_rate night_flow continuous_flow";

impl RuleKind {
    /// The stable tag stored in `alert_rules.kind` (the same as the JSON `kind` field).
    pub const fn name(&self) -> &'static str {
        match self {
            Self::DailyConsumption(_) => "daily_consumption",
            Self::MonthlyConsumption(_) => "monthly_consumption",
            Self::GaugeBand(_) => "gauge_band",
            Self::NoData(_) => "no_data",
            Self::GatewayOffline(_) => "gateway_offline",
            Self::CertificateExpiry(_) => "certificate_expiry",
            Self::DeadLetterRate(_) => "dead_letter_rate",
            Self::NightFlow(_) => "night_flow",
            Self::ContinuousFlow(_) => "continuous_flow",
        }
    }

    /// The parameters alone as a JSON object, for `alert_rules.params`.
    pub fn params_json(&self) -> String {
        match self {
            Self::DailyConsumption(p) | Self::MonthlyConsumption(p) => to_json(p),
            Self::GaugeBand(p) => to_json(p),
            Self::NoData(p) | Self::GatewayOffline(p) => to_json(p),
            Self::CertificateExpiry(p) => to_json(p),
            Self::DeadLetterRate(p) => to_json(p),
            Self::NightFlow(p) => to_json(p),
            Self::ContinuousFlow(p) => to_json(p),
        }
    }

    /// The kind stored as `kind` and `params` ([`RuleKind::name`], [`RuleKind::params_json`]).
    pub fn from_parts(kind: &str, params: &str) -> Result<Self, ValidationError> {
        let name = kind.trim();
        Ok(match name {
            "daily_consumption" => Self::DailyConsumption(from_json(name, params)?),
            "monthly_consumption" => Self::MonthlyConsumption(from_json(name, params)?),
            "gauge_band" => Self::GaugeBand(from_json(name, params)?),
            "no_data" => Self::NoData(from_json(name, params)?),
            "gateway_offline" => Self::GatewayOffline(from_json(name, params)?),
            "certificate_expiry" => Self::CertificateExpiry(from_json(name, params)?),
            "dead_letter_rate" => Self::DeadLetterRate(from_json(name, params)?),
            "night_flow" => Self::NightFlow(from_json(name, params)?),
            "continuous_flow" => Self::ContinuousFlow(from_json(name, params)?),
            _ => {
                return Err(ValidationError::Choice {
                    field: "alert rule kind",
                    value: kind.to_owned(),
                    expected: KIND_NAMES,
                });
            }
        })
    }

    /// Whether the rule is about water flow, so applies to water devices only.
    pub const fn is_water(&self) -> bool {
        matches!(self, Self::NightFlow(_) | Self::ContinuousFlow(_))
    }
}

fn to_json<T: Serialize>(params: &T) -> String {
    // Cannot fail: parameters are flat structs of numbers, and serde_json fails only on map keys
    // that are not strings or on a Serialize impl that returns an error.
    serde_json::to_string(params).unwrap_or_default()
}

fn from_json<T: DeserializeOwned>(kind: &str, params: &str) -> Result<T, ValidationError> {
    serde_json::from_str(params)
        .map_err(|e| ValidationError::RuleParams { kind: kind.to_owned(), reason: e.to_string() })
}

/// A finite number above 0.
fn positive(field: &'static str, v: f64) -> Result<f64, ValidationError> {
    if !v.is_finite() {
        return Err(ValidationError::NotANumber { field, value: v.to_string() });
    }
    if v <= 0.0 {
        return Err(ValidationError::NotPositive { field, value: v.to_string() });
    }
    Ok(v)
}

/// An integer in `min..=max`, as the parameter's own type.
fn bounded<T: TryFrom<i64>>(field: &'static str, v: i64, min: i64, max: i64) -> Result<T, ValidationError> {
    (min..=max)
        .contains(&v)
        .then(|| T::try_from(v).ok())
        .flatten()
        .ok_or_else(|| ValidationError::out_of_range(field, v, min, max))
}

/// A daily or monthly consumption threshold, in the device's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::ConsumptionLimit")]
pub struct ConsumptionLimit {
    threshold: f64,
}

impl ConsumptionLimit {
    /// Above 0: a threshold of 0 would keep the alert raised for ever.
    pub fn new(threshold: f64) -> Result<Self, ValidationError> {
        Ok(Self { threshold: positive("threshold", threshold)? })
    }
    pub const fn threshold(&self) -> f64 {
        self.threshold
    }
}

/// The band a gauge should stay in: either bound may be left open, not both.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::GaugeBand")]
pub struct GaugeBand {
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
}

impl GaugeBand {
    pub fn new(min: Option<f64>, max: Option<f64>) -> Result<Self, ValidationError> {
        for (field, v) in [("band minimum", min), ("band maximum", max)] {
            if let Some(v) = v.filter(|v| !v.is_finite()) {
                return Err(ValidationError::NotANumber { field, value: v.to_string() });
            }
        }
        match (min, max) {
            (None, None) => Err(ValidationError::Required { field: "band minimum or maximum" }),
            (Some(lo), Some(hi)) if lo >= hi => Err(ValidationError::Rule {
                field: "band minimum",
                value: lo.to_string(),
                reason: format!("must be below the maximum ({hi})"),
            }),
            _ => Ok(Self { min, max }),
        }
    }
    pub const fn min(&self) -> Option<f64> {
        self.min
    }
    pub const fn max(&self) -> Option<f64> {
        self.max
    }
}

/// How long a silence lasts before it alerts: no data from a device, a gateway offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::Period")]
pub struct Period {
    seconds: u32,
}

impl Period {
    pub const MIN_SECONDS: i64 = 60;
    pub const MAX_SECONDS: i64 = 90 * 86_400;

    /// One minute ..= 90 days: shorter would alert between two reports of a healthy device.
    pub fn new(seconds: i64) -> Result<Self, ValidationError> {
        Ok(Self { seconds: bounded("period (s)", seconds, Self::MIN_SECONDS, Self::MAX_SECONDS)? })
    }
    pub const fn seconds(&self) -> i64 {
        self.seconds as i64
    }
}

/// How many days before its certificate expires a gateway alerts (0: on the day it expires).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::CertificateExpiry")]
pub struct CertificateExpiry {
    days: u16,
}

impl CertificateExpiry {
    pub fn new(days: i64) -> Result<Self, ValidationError> {
        Ok(Self { days: bounded("days before expiry", days, 0, 3650)? })
    }
    pub const fn days(&self) -> i64 {
        self.days as i64
    }
}

/// How many dead letters in an hour alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::DeadLetterRate")]
pub struct DeadLetterRate {
    per_hour: u32,
}

impl DeadLetterRate {
    pub fn new(per_hour: i64) -> Result<Self, ValidationError> {
        Ok(Self { per_hour: bounded("dead letters per hour", per_hour, 1, 1_000_000)? })
    }
    pub const fn per_hour(&self) -> i64 {
        self.per_hour as i64
    }
}

/// A leak seen at night: the lowest hourly consumption of the night at or above `level` on
/// `nights` consecutive nights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::NightFlow")]
pub struct NightFlow {
    level: f64,
    nights: u8,
}

impl NightFlow {
    /// The level is above 0 (every night's minimum is at least 0); 1 ..= 31 nights.
    pub fn new(level: f64, nights: i64) -> Result<Self, ValidationError> {
        Ok(Self { level: positive("night flow level", level)?, nights: bounded("nights", nights, 1, 31)? })
    }
    pub const fn level(&self) -> f64 {
        self.level
    }
    pub const fn nights(&self) -> u32 {
        self.nights as u32
    }
}

/// A leak seen as flow that never stops: consumption in each of `hours` consecutive hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::ContinuousFlow")]
pub struct ContinuousFlow {
    hours: u16,
}

impl ContinuousFlow {
    /// 2 hours ..= 31 days: one hour with consumption is just use.
    pub fn new(hours: i64) -> Result<Self, ValidationError> {
        Ok(Self { hours: bounded("hours of flow", hours, 2, 744)? })
    }
    pub const fn hours(&self) -> u32 {
        self.hours as u32
    }
}

/// The parameters as they arrive in JSON, before their constructors check them.
mod raw {
    use crate::ValidationError;
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct ConsumptionLimit {
        threshold: f64,
    }
    impl TryFrom<ConsumptionLimit> for super::ConsumptionLimit {
        type Error = ValidationError;
        fn try_from(r: ConsumptionLimit) -> Result<Self, ValidationError> {
            Self::new(r.threshold)
        }
    }

    #[derive(Deserialize)]
    pub(super) struct GaugeBand {
        min: Option<f64>,
        max: Option<f64>,
    }
    impl TryFrom<GaugeBand> for super::GaugeBand {
        type Error = ValidationError;
        fn try_from(r: GaugeBand) -> Result<Self, ValidationError> {
            Self::new(r.min, r.max)
        }
    }

    #[derive(Deserialize)]
    pub(super) struct Period {
        seconds: i64,
    }
    impl TryFrom<Period> for super::Period {
        type Error = ValidationError;
        fn try_from(r: Period) -> Result<Self, ValidationError> {
            Self::new(r.seconds)
        }
    }

    #[derive(Deserialize)]
    pub(super) struct CertificateExpiry {
        days: i64,
    }
    impl TryFrom<CertificateExpiry> for super::CertificateExpiry {
        type Error = ValidationError;
        fn try_from(r: CertificateExpiry) -> Result<Self, ValidationError> {
            Self::new(r.days)
        }
    }

    #[derive(Deserialize)]
    pub(super) struct DeadLetterRate {
        per_hour: i64,
    }
    impl TryFrom<DeadLetterRate> for super::DeadLetterRate {
        type Error = ValidationError;
        fn try_from(r: DeadLetterRate) -> Result<Self, ValidationError> {
            Self::new(r.per_hour)
        }
    }

    #[derive(Deserialize)]
    pub(super) struct NightFlow {
        level: f64,
        nights: i64,
    }
    impl TryFrom<NightFlow> for super::NightFlow {
        type Error = ValidationError;
        fn try_from(r: NightFlow) -> Result<Self, ValidationError> {
            Self::new(r.level, r.nights)
        }
    }

    #[derive(Deserialize)]
    pub(super) struct ContinuousFlow {
        hours: i64,
    }
    impl TryFrom<ContinuousFlow> for super::ContinuousFlow {
        type Error = ValidationError;
        fn try_from(r: ContinuousFlow) -> Result<Self, ValidationError> {
            Self::new(r.hours)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One rule of every kind, with the JSON its parameters are stored as.
    fn every_kind() -> Vec<(RuleKind, serde_json::Value)> {
        vec![
            (RuleKind::DailyConsumption(ConsumptionLimit::new(12.5).unwrap()), json!({"threshold": 12.5})),
            (
                RuleKind::MonthlyConsumption(ConsumptionLimit::new(300.0).unwrap()),
                json!({"threshold": 300.0}),
            ),
            (
                RuleKind::GaugeBand(GaugeBand::new(Some(-2.0), Some(6.5)).unwrap()),
                json!({"min": -2.0, "max": 6.5}),
            ),
            (RuleKind::GaugeBand(GaugeBand::new(None, Some(80.0)).unwrap()), json!({"max": 80.0})),
            (RuleKind::NoData(Period::new(3600).unwrap()), json!({"seconds": 3600})),
            (RuleKind::GatewayOffline(Period::new(900).unwrap()), json!({"seconds": 900})),
            (RuleKind::CertificateExpiry(CertificateExpiry::new(30).unwrap()), json!({"days": 30})),
            (RuleKind::DeadLetterRate(DeadLetterRate::new(50).unwrap()), json!({"per_hour": 50})),
            (RuleKind::NightFlow(NightFlow::new(0.02, 3).unwrap()), json!({"level": 0.02, "nights": 3})),
            (RuleKind::ContinuousFlow(ContinuousFlow::new(24).unwrap()), json!({"hours": 24})),
        ]
    }

    #[test]
    fn every_kind_round_trips_through_its_stored_kind_and_params() {
        for (kind, params) in every_kind() {
            let stored = kind.params_json();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&stored).unwrap(),
                params,
                "{}",
                kind.name()
            );
            assert_eq!(RuleKind::from_parts(kind.name(), &stored).unwrap(), kind);
        }
    }

    #[test]
    fn every_kind_round_trips_as_one_tagged_object_whose_tag_is_its_name() {
        for (kind, params) in every_kind() {
            let value = serde_json::to_value(kind).unwrap();
            let mut expected = params.as_object().unwrap().clone();
            expected.insert("kind".into(), json!(kind.name()));
            assert_eq!(value, serde_json::Value::Object(expected));
            assert_eq!(serde_json::from_value::<RuleKind>(value).unwrap(), kind);
        }
    }

    #[test]
    fn stored_params_that_break_a_rule_are_refused_with_the_reason() {
        let cases: &[(&str, &str, &str)] = &[
            ("daily_consumption", r#"{"threshold": 0}"#, "threshold 0 must be more than 0"),
            ("daily_consumption", r#"{"threshold": -3.5}"#, "threshold -3.5 must be more than 0"),
            ("daily_consumption", r#"{"limit": 3}"#, "missing field `threshold`"),
            ("daily_consumption", "not json", "invalid parameters for a daily_consumption rule"),
            (
                "gauge_band",
                r#"{"min": 5, "max": 5}"#,
                "invalid band minimum 5: must be below the maximum (5)",
            ),
            ("gauge_band", "{}", "band minimum or maximum is required"),
            ("no_data", r#"{"seconds": 30}"#, "period (s) 30 is out of range (60..=7776000)"),
            ("certificate_expiry", r#"{"days": -1}"#, "days before expiry -1 is out of range (0..=3650)"),
            ("dead_letter_rate", r#"{"per_hour": 0}"#, "dead letters per hour 0 is out of range"),
            ("night_flow", r#"{"level": 0.1, "nights": 0}"#, "nights 0 is out of range (1..=31)"),
            ("night_flow", r#"{"level": 0, "nights": 2}"#, "night flow level 0 must be more than 0"),
            ("continuous_flow", r#"{"hours": 1}"#, "hours of flow 1 is out of range (2..=744)"),
        ];
        for (kind, params, message) in cases {
            let err = RuleKind::from_parts(kind, params).unwrap_err().to_string();
            assert!(err.contains(message), "{kind} {params}: {err}");
        }
    }

    #[test]
    fn an_unknown_kind_lists_the_known_ones() {
        let err = RuleKind::from_parts("leak", "{}").unwrap_err().to_string();
        assert!(
            err.contains("alert rule kind \"leak\"") && err.contains("night_flow continuous_flow"),
            "{err}"
        );
        assert_eq!(RuleKind::from_parts(" no_data ", r#"{"seconds": 60}"#).unwrap().name(), "no_data");
    }

    #[test]
    fn constructors_refuse_what_is_not_a_number() {
        assert!(matches!(ConsumptionLimit::new(f64::NAN), Err(ValidationError::NotANumber { .. })));
        assert!(matches!(GaugeBand::new(Some(f64::INFINITY), None), Err(ValidationError::NotANumber { .. })));
        assert!(matches!(NightFlow::new(f64::NAN, 3), Err(ValidationError::NotANumber { .. })));
        assert_eq!(Period::new(Period::MAX_SECONDS).unwrap().seconds(), 7_776_000);
        assert!(Period::new(Period::MAX_SECONDS + 1).is_err());
        assert_eq!(CertificateExpiry::new(0).unwrap().days(), 0);
    }

    #[test]
    fn only_the_flow_kinds_are_water_only() {
        let water: Vec<&str> =
            every_kind().into_iter().filter(|(k, _)| k.is_water()).map(|(k, _)| k.name()).collect();
        assert_eq!(water, ["night_flow", "continuous_flow"]);
    }
}
