//! An alert rule (SPEC §5): what it watches ([`RuleKind`]), where ([`Target`]), how loud
//! ([`Severity`]) and how it is kept from flapping ([`Hysteresis`], [`HoldTime`]).
//!
//! Owns: the rule-wide settings and the checks that need more than one of them (a hysteresis that
//! leaves no room to clear, a hold time on a kind that has its own period, a target the kind cannot
//! apply to). Must not: evaluate a rule (see [`super::decision`]) or know how it is stored.

use super::decision::Damping;
use super::params::{ConsumptionLimit, RuleKind};
use crate::catalog::vocabulary;
use crate::limits::{Amount, number};
use crate::{DeviceId, GatewayId, Medium, ValidationError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

vocabulary!(
    /// How urgent an alert is; ordered, so that `Critical > Warning`.
    Severity, "severity" {
        Info = "INFO",
        Warning = "WARNING",
        Critical = "CRITICAL",
    }
);

/// What a rule applies to. A rule on a gateway, a medium or the tenant is evaluated for each of
/// its members (the devices of the gateway, the tenant's devices of the medium, every device or
/// gateway of the tenant), and each member has its own alert.
///
/// JSON: `{"kind": "device", "id": 7}`, `{"kind": "tenant"}`, `{"kind": "medium", "id": "water"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Target {
    Device(DeviceId),
    Gateway(GatewayId),
    Tenant,
    /// Every device of the tenant that measures this medium.
    Medium(Medium),
}

impl Target {
    /// `device`, `gateway`, `tenant` or `medium`.
    pub const fn kind_name(self) -> &'static str {
        match self {
            Self::Device(_) => "device",
            Self::Gateway(_) => "gateway",
            Self::Tenant => "tenant",
            Self::Medium(_) => "medium",
        }
    }

    /// Whether a rule with this target is evaluated for the device `device` of gateway `gateway`
    /// measuring `medium`.
    pub fn covers_device(self, device: DeviceId, gateway: GatewayId, medium: Medium) -> bool {
        match self {
            Self::Device(id) => id == device,
            Self::Gateway(id) => id == gateway,
            Self::Tenant => true,
            Self::Medium(m) => m == medium,
        }
    }

    /// Whether a rule with this target is evaluated for the gateway `gateway`.
    pub fn covers_gateway(self, gateway: GatewayId) -> bool {
        match self {
            Self::Gateway(id) => id == gateway,
            Self::Tenant => true,
            Self::Device(_) | Self::Medium(_) => false,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(id) => write!(f, "device {id}"),
            Self::Gateway(id) => write!(f, "gateway {id}"),
            Self::Tenant => f.write_str("tenant"),
            Self::Medium(medium) => write!(f, "medium {medium}"),
        }
    }
}

/// How far below its threshold (above, for a lower bound) a value must go before an alert clears,
/// in the unit of the rule's value. Finite and above 0; no hysteresis is `None`, not 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hysteresis(f64);

impl Hysteresis {
    pub fn new(v: f64) -> Result<Self, ValidationError> {
        if !v.is_finite() {
            return Err(ValidationError::NotANumber { field: "hysteresis", value: v.to_string() });
        }
        if v <= 0.0 {
            return Err(ValidationError::NotPositive { field: "hysteresis", value: v.to_string() });
        }
        Ok(Self(v))
    }
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        Self::new(number("hysteresis", input)?)
    }
    pub const fn get(self) -> f64 {
        self.0
    }
}

/// How long a condition must last before an alert is raised, and its end before it clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HoldTime(u32);

impl HoldTime {
    /// One second ..= 7 days.
    pub fn new(seconds: i64) -> Result<Self, ValidationError> {
        u32::try_from(seconds)
            .ok()
            .filter(|s| (1..=604_800).contains(s))
            .map(Self)
            .ok_or_else(|| ValidationError::out_of_range("hold time (s)", seconds, 1, 604_800))
    }
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let seconds = input
            .trim()
            .parse::<i64>()
            .map_err(|_| ValidationError::NotANumber { field: "hold time (s)", value: input.to_owned() })?;
        Self::new(seconds)
    }
    pub const fn seconds(self) -> i64 {
        self.0 as i64
    }
    pub fn as_delta(self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(self.seconds())
    }
}

/// Which of a device's two consumption thresholds (`val_alarme_dia`, `val_alarme_mes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumptionPeriod {
    Day,
    Month,
}

/// A checked alert rule. Its name, tenant and enabled flag live with the row that stores it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    severity: Severity,
    target: Target,
    kind: RuleKind,
    hysteresis: Option<Hysteresis>,
    hold: Option<HoldTime>,
}

impl Rule {
    pub fn new(
        severity: Severity,
        target: Target,
        kind: RuleKind,
        hysteresis: Option<Hysteresis>,
        hold: Option<HoldTime>,
    ) -> Result<Self, ValidationError> {
        check_target(&kind, target)?;
        if let Some(h) = hysteresis {
            check_hysteresis(&kind, h)?;
        }
        if let Some(hold) = hold {
            check_hold(&kind, hold)?;
        }
        Ok(Self { severity, target, kind, hysteresis, hold })
    }

    /// The rule a device's own daily or monthly alarm threshold stands for: WARNING, on that
    /// device, no hysteresis (SPEC §5 "Defaults").
    pub fn device_alarm(
        device: DeviceId,
        period: ConsumptionPeriod,
        threshold: Amount,
    ) -> Result<Self, ValidationError> {
        let limit = ConsumptionLimit::new(threshold.get())?;
        let kind = match period {
            ConsumptionPeriod::Day => RuleKind::DailyConsumption(limit),
            ConsumptionPeriod::Month => RuleKind::MonthlyConsumption(limit),
        };
        Self::new(Severity::Warning, Target::Device(device), kind, None, None)
    }

    pub const fn severity(&self) -> Severity {
        self.severity
    }
    pub const fn target(&self) -> Target {
        self.target
    }
    pub const fn kind(&self) -> &RuleKind {
        &self.kind
    }
    pub const fn hysteresis(&self) -> Option<Hysteresis> {
        self.hysteresis
    }
    pub const fn hold(&self) -> Option<HoldTime> {
        self.hold
    }
    /// The settings the evaluation functions take to keep an alert from flapping.
    pub const fn damping(&self) -> Damping {
        Damping { hysteresis: self.hysteresis, hold: self.hold }
    }
}

fn check_target(kind: &RuleKind, target: Target) -> Result<(), ValidationError> {
    let refuse = |reason: &str| {
        Err(ValidationError::Rule {
            field: "target",
            value: target.to_string(),
            reason: format!("a {} rule {reason}", kind.name()),
        })
    };
    match (kind, target) {
        (
            RuleKind::GatewayOffline(_) | RuleKind::CertificateExpiry(_) | RuleKind::DeadLetterRate(_),
            Target::Device(_) | Target::Medium(_),
        ) => refuse("applies to a gateway or to the whole tenant"),
        (_, Target::Medium(medium)) if kind.is_water() && medium != Medium::Water => {
            refuse("applies to water devices only")
        }
        _ => Ok(()),
    }
}

/// A hysteresis must leave values that clear: below `threshold - h`, which for a consumption, a
/// count or a night flow (never below 0) means `h` under the threshold, and for a two-sided band
/// a middle part `(min + h, max - h)` that is not empty.
fn check_hysteresis(kind: &RuleKind, h: Hysteresis) -> Result<(), ValidationError> {
    let refuse = |reason: String| {
        Err(ValidationError::Rule { field: "hysteresis", value: h.get().to_string(), reason })
    };
    let limit = match kind {
        RuleKind::DailyConsumption(p) | RuleKind::MonthlyConsumption(p) => Some(p.threshold()),
        RuleKind::DeadLetterRate(p) => Some(p.per_hour() as f64),
        RuleKind::NightFlow(p) => Some(p.level()),
        RuleKind::GaugeBand(p) => p.min().zip(p.max()).map(|(lo, hi)| (hi - lo) / 2.0),
        RuleKind::NoData(_)
        | RuleKind::GatewayOffline(_)
        | RuleKind::CertificateExpiry(_)
        | RuleKind::ContinuousFlow(_) => {
            // These end at once when the silence ends, the certificate is renewed or an hour
            // passes without flow: there is no value hovering at an edge.
            return refuse(format!("a {} rule has no hysteresis", kind.name()));
        }
    };
    match limit {
        Some(limit) if h.get() >= limit => {
            refuse(format!("must be less than {limit}, or the alert never clears"))
        }
        _ => Ok(()),
    }
}

fn check_hold(kind: &RuleKind, hold: HoldTime) -> Result<(), ValidationError> {
    let reason = match kind {
        RuleKind::GaugeBand(_) | RuleKind::DeadLetterRate(_) => return Ok(()),
        RuleKind::DailyConsumption(_) | RuleKind::MonthlyConsumption(_) => {
            "a consumption total only grows within its day or month, so waiting changes nothing"
        }
        RuleKind::NoData(_) | RuleKind::GatewayOffline(_) => "its period is already how long to wait",
        RuleKind::CertificateExpiry(_) => "its number of days is already how long before to alert",
        RuleKind::NightFlow(_) | RuleKind::ContinuousFlow(_) => {
            "its number of nights or hours is already how long the flow must last"
        }
    };
    Err(ValidationError::Rule {
        field: "hold time (s)",
        value: hold.seconds().to_string(),
        reason: format!("does not apply to a {} rule: {reason}", kind.name()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::params::{
        CertificateExpiry, ContinuousFlow, DeadLetterRate, GaugeBand, NightFlow, Period,
    };

    const DEVICE: Target = Target::Device(DeviceId::new(7));
    const GATEWAY: Target = Target::Gateway(GatewayId::new(3));
    const WATER: Target = Target::Medium(Medium::Water);
    const ENERGY: Target = Target::Medium(Medium::Energy);

    fn daily(t: f64) -> RuleKind {
        RuleKind::DailyConsumption(ConsumptionLimit::new(t).unwrap())
    }
    fn band(min: Option<f64>, max: Option<f64>) -> RuleKind {
        RuleKind::GaugeBand(GaugeBand::new(min, max).unwrap())
    }
    fn rule(target: Target, kind: RuleKind, h: Option<f64>, hold: Option<i64>) -> Result<Rule, String> {
        let h = h.map(|h| Hysteresis::new(h).unwrap());
        let hold = hold.map(|s| HoldTime::new(s).unwrap());
        Rule::new(Severity::Warning, target, kind, h, hold).map_err(|e| e.to_string())
    }

    #[test]
    fn severities_parse_from_their_stored_names_and_are_ordered() {
        for (text, severity) in
            [("INFO", Severity::Info), ("WARNING", Severity::Warning), ("critical", Severity::Critical)]
        {
            assert_eq!(Severity::parse(text).unwrap(), severity);
            assert_eq!(severity.as_str(), text.to_uppercase());
        }
        assert!(Severity::Critical > Severity::Warning && Severity::Warning > Severity::Info);
        let err = Severity::parse("urgent").unwrap_err().to_string();
        assert!(err.contains("severity \"urgent\"") && err.contains("INFO WARNING CRITICAL"), "{err}");
        assert_eq!(serde_json::to_string(&Severity::Critical).unwrap(), "\"CRITICAL\"");
    }

    #[test]
    fn targets_are_tagged_json_and_say_what_they_cover() {
        assert_eq!(serde_json::to_string(&DEVICE).unwrap(), r#"{"kind":"device","id":7}"#);
        assert_eq!(serde_json::to_string(&WATER).unwrap(), r#"{"kind":"medium","id":"water"}"#);
        assert_eq!(serde_json::to_string(&Target::Tenant).unwrap(), r#"{"kind":"tenant"}"#);
        for t in [DEVICE, GATEWAY, Target::Tenant, WATER] {
            let back: Target = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
            assert_eq!(back, t);
        }
        let (d7, d8, g3, g4) = (DeviceId::new(7), DeviceId::new(8), GatewayId::new(3), GatewayId::new(4));
        // (target, device 7 on gateway 3 water, device 8 on gateway 4 energy, gateway 3)
        let cases = [
            (DEVICE, true, false, false),
            (GATEWAY, true, false, true),
            (Target::Tenant, true, true, true),
            (WATER, true, false, false),
        ];
        for (t, first, second, gateway) in cases {
            assert_eq!(t.covers_device(d7, g3, Medium::Water), first, "{t}");
            assert_eq!(t.covers_device(d8, g4, Medium::Energy), second, "{t}");
            assert_eq!(t.covers_gateway(g3), gateway, "{t}");
        }
    }

    /// (target, kind, hysteresis, hold time, `Ok` or a fragment of the error).
    type SettingsCase = (Target, RuleKind, Option<f64>, Option<i64>, Result<(), &'static str>);

    #[test]
    fn rule_settings_are_checked_against_the_kind() {
        let night = RuleKind::NightFlow(NightFlow::new(0.05, 3).unwrap());
        let offline = RuleKind::GatewayOffline(Period::new(600).unwrap());
        let rate = RuleKind::DeadLetterRate(DeadLetterRate::new(20).unwrap());
        let cases: Vec<SettingsCase> = vec![
            (DEVICE, daily(100.0), Some(10.0), None, Ok(())),
            (DEVICE, daily(100.0), Some(100.0), None, Err("invalid hysteresis 100: must be less than 100")),
            (
                DEVICE,
                daily(100.0),
                None,
                Some(60),
                Err("hold time (s) 60: does not apply to a daily_consumption"),
            ),
            (DEVICE, band(Some(2.0), Some(6.0)), Some(1.99), Some(300), Ok(())),
            (DEVICE, band(Some(2.0), Some(6.0)), Some(2.0), None, Err("must be less than 2,")),
            (DEVICE, band(None, Some(6.0)), Some(50.0), None, Ok(())),
            (GATEWAY, rate, Some(5.0), Some(900), Ok(())),
            (Target::Tenant, offline, None, None, Ok(())),
            (
                DEVICE,
                offline,
                None,
                None,
                Err("invalid target device 7: a gateway_offline rule applies to a gateway"),
            ),
            (WATER, offline, None, None, Err("applies to a gateway or to the whole tenant")),
            (GATEWAY, offline, Some(1.0), None, Err("a gateway_offline rule has no hysteresis")),
            (GATEWAY, offline, None, Some(60), Err("its period is already how long to wait")),
            (WATER, night, Some(0.01), None, Ok(())),
            (
                ENERGY,
                night,
                None,
                None,
                Err("invalid target medium energy: a night_flow rule applies to water"),
            ),
            (GATEWAY, night, None, None, Ok(())),
            (DEVICE, night, None, Some(60), Err("number of nights or hours")),
            (ENERGY, daily(5.0), None, None, Ok(())),
            (
                DEVICE,
                RuleKind::ContinuousFlow(ContinuousFlow::new(6).unwrap()),
                Some(1.0),
                None,
                Err("no hysteresis"),
            ),
            (
                GATEWAY,
                RuleKind::CertificateExpiry(CertificateExpiry::new(30).unwrap()),
                None,
                Some(60),
                Err("number of days"),
            ),
        ];
        for (target, kind, h, hold, expected) in cases {
            let got = rule(target, kind, h, hold);
            match expected {
                Ok(()) => assert!(got.is_ok(), "{} {target}: {got:?}", kind.name()),
                Err(fragment) => {
                    let err = got.unwrap_err();
                    assert!(err.contains(fragment), "{} {target}: {err}", kind.name());
                }
            }
        }
    }

    #[test]
    fn hysteresis_and_hold_time_parse_what_people_type() {
        assert_eq!(Hysteresis::parse("2,5").unwrap().get(), 2.5);
        assert_eq!(Hysteresis::parse("0").unwrap_err().to_string(), "hysteresis 0 must be more than 0");
        assert!(Hysteresis::new(f64::NAN).is_err());
        assert_eq!(HoldTime::parse(" 300 ").unwrap().seconds(), 300);
        assert_eq!(
            HoldTime::parse("0").unwrap_err().to_string(),
            "hold time (s) 0 is out of range (1..=604800)"
        );
        assert!(HoldTime::parse("5m").unwrap_err().to_string().contains("not a number"));
    }

    #[test]
    fn a_device_alarm_threshold_is_a_warning_rule_on_that_device() {
        let r =
            Rule::device_alarm(DeviceId::new(7), ConsumptionPeriod::Month, Amount::new("x", 40.0).unwrap())
                .unwrap();
        assert_eq!(r.severity(), Severity::Warning);
        assert_eq!(r.target(), DEVICE);
        assert_eq!(*r.kind(), RuleKind::MonthlyConsumption(ConsumptionLimit::new(40.0).unwrap()));
        assert_eq!(r.damping(), Damping::default());
        let zero =
            Rule::device_alarm(DeviceId::new(7), ConsumptionPeriod::Day, Amount::new("x", 0.0).unwrap());
        assert_eq!(zero.unwrap_err().to_string(), "threshold 0 must be more than 0");
    }
}
