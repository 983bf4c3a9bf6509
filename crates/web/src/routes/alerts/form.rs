//! The rule editor's form: every setting of SPEC §5 as text fields, parsed by the domain's own
//! constructors so that each mistake is shown next to its field, in the user's language. The
//! API's `/api/v1/alert-rules` fills the same form from JSON.

use crate::forms::{FieldErrors, field};
use crate::i18n::Lang;
use serde::Deserialize;
use tds_domain::alerts::{
    CertificateExpiry, ConsumptionLimit, ContinuousFlow, DeadLetterRate, GaugeBand, HoldTime, Hysteresis,
    NightFlow, Period, Rule, RuleKind, Severity, Target,
};
use tds_domain::{DeviceId, GatewayId, Medium, Name, ValidationError};

/// The kinds, in the editor's order.
pub const KINDS: [&str; 9] = [
    "daily_consumption",
    "monthly_consumption",
    "gauge_band",
    "no_data",
    "gateway_offline",
    "certificate_expiry",
    "dead_letter_rate",
    "night_flow",
    "continuous_flow",
];

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub severity: String,
    /// `tenant`, `medium:water`, `gateway:7` or `device:12`.
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub threshold: String,
    #[serde(default)]
    pub band_min: String,
    #[serde(default)]
    pub band_max: String,
    #[serde(default)]
    pub period_minutes: String,
    #[serde(default)]
    pub days: String,
    #[serde(default)]
    pub per_hour: String,
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub nights: String,
    #[serde(default)]
    pub hours: String,
    #[serde(default)]
    pub hysteresis: String,
    #[serde(default)]
    pub hold_minutes: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    pub enabled: Option<String>,
}

/// A number typed with a decimal comma or point.
fn decimal(field_name: &'static str, input: &str) -> Result<f64, ValidationError> {
    let text = input.trim().replace(',', ".");
    if text.is_empty() {
        return Err(ValidationError::Required { field: field_name });
    }
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| ValidationError::NotANumber { field: field_name, value: input.to_owned() })
}

fn optional_decimal(field_name: &'static str, input: &str) -> Result<Option<f64>, ValidationError> {
    if input.trim().is_empty() { Ok(None) } else { decimal(field_name, input).map(Some) }
}

fn whole(field_name: &'static str, input: &str) -> Result<i64, ValidationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(ValidationError::Required { field: field_name });
    }
    text.parse::<i64>()
        .map_err(|_| ValidationError::NotANumber { field: field_name, value: input.to_owned() })
}

fn minutes(field_name: &'static str, input: &str) -> Result<i64, ValidationError> {
    whole(field_name, input).map(|m| m.saturating_mul(60))
}

/// `tenant`, `medium:…`, `gateway:ID`, `device:ID`.
pub fn parse_target(input: &str) -> Result<Target, ValidationError> {
    let bad = || ValidationError::Choice {
        field: "target",
        value: input.to_owned(),
        expected: "tenant, medium:…, gateway:…, device:…",
    };
    match input.trim().split_once(':') {
        None if input.trim() == "tenant" => Ok(Target::Tenant),
        Some(("medium", m)) => Medium::parse(m).map(Target::Medium),
        Some(("gateway", id)) => id.parse().map(|id| Target::Gateway(GatewayId::new(id))).map_err(|_| bad()),
        Some(("device", id)) => id.parse().map(|id| Target::Device(DeviceId::new(id))).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// The form's value for a target.
pub fn target_value(target: Target) -> String {
    match target {
        Target::Tenant => "tenant".to_owned(),
        Target::Medium(m) => format!("medium:{}", m.as_str()),
        Target::Gateway(g) => format!("gateway:{g}"),
        Target::Device(d) => format!("device:{d}"),
    }
}

impl RuleForm {
    /// A new rule's starting point: a WARNING daily threshold on the whole tenant.
    pub fn blank() -> Self {
        Self {
            kind: "daily_consumption".into(),
            severity: "WARNING".into(),
            target: "tenant".into(),
            enabled: Some("on".into()),
            ..Self::default()
        }
    }

    /// The form of a stored rule.
    pub fn of(name: &str, rule: &Rule, enabled: bool) -> Self {
        let num = |v: f64| v.to_string();
        let mut f = Self {
            name: name.to_owned(),
            kind: rule.kind().name().to_owned(),
            severity: rule.severity().as_str().to_owned(),
            target: target_value(rule.target()),
            hysteresis: rule.hysteresis().map(|h| num(h.get())).unwrap_or_default(),
            hold_minutes: rule.hold().map(|h| (h.seconds() / 60).to_string()).unwrap_or_default(),
            enabled: enabled.then(|| "on".to_owned()),
            ..Self::default()
        };
        match rule.kind() {
            RuleKind::DailyConsumption(l) | RuleKind::MonthlyConsumption(l) => {
                f.threshold = num(l.threshold());
            }
            RuleKind::GaugeBand(b) => {
                f.band_min = b.min().map(num).unwrap_or_default();
                f.band_max = b.max().map(num).unwrap_or_default();
            }
            RuleKind::NoData(p) | RuleKind::GatewayOffline(p) => {
                f.period_minutes = (p.seconds() / 60).to_string();
            }
            RuleKind::CertificateExpiry(c) => f.days = c.days().to_string(),
            RuleKind::DeadLetterRate(r) => f.per_hour = r.per_hour().to_string(),
            RuleKind::NightFlow(n) => {
                f.level = num(n.level());
                f.nights = n.nights().to_string();
            }
            RuleKind::ContinuousFlow(c) => f.hours = c.hours().to_string(),
        }
        f
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.as_deref().is_some_and(|v| !v.is_empty() && v != "false" && v != "off")
    }

    fn kind(&self, errors: &mut FieldErrors, lang: Lang) -> Option<RuleKind> {
        match self.kind.trim() {
            "daily_consumption" => field(errors, lang, "threshold", decimal("threshold", &self.threshold))
                .and_then(|v| field(errors, lang, "threshold", ConsumptionLimit::new(v)))
                .map(RuleKind::DailyConsumption),
            "monthly_consumption" => field(errors, lang, "threshold", decimal("threshold", &self.threshold))
                .and_then(|v| field(errors, lang, "threshold", ConsumptionLimit::new(v)))
                .map(RuleKind::MonthlyConsumption),
            "gauge_band" => {
                let min = field(errors, lang, "band_min", optional_decimal("band minimum", &self.band_min));
                let max = field(errors, lang, "band_max", optional_decimal("band maximum", &self.band_max));
                let (min, max) = (min?, max?);
                field(errors, lang, "band_min", GaugeBand::new(min, max)).map(RuleKind::GaugeBand)
            }
            "no_data" | "gateway_offline" => {
                let seconds =
                    field(errors, lang, "period_minutes", minutes("period (min)", &self.period_minutes))?;
                let period = field(errors, lang, "period_minutes", Period::new(seconds))?;
                Some(if self.kind.trim() == "no_data" {
                    RuleKind::NoData(period)
                } else {
                    RuleKind::GatewayOffline(period)
                })
            }
            "certificate_expiry" => field(errors, lang, "days", whole("days", &self.days))
                .and_then(|d| field(errors, lang, "days", CertificateExpiry::new(d)))
                .map(RuleKind::CertificateExpiry),
            "dead_letter_rate" => field(errors, lang, "per_hour", whole("per hour", &self.per_hour))
                .and_then(|n| field(errors, lang, "per_hour", DeadLetterRate::new(n)))
                .map(RuleKind::DeadLetterRate),
            "night_flow" => {
                let level = field(errors, lang, "level", decimal("night flow level", &self.level));
                let nights = field(errors, lang, "nights", whole("nights", &self.nights));
                let (level, nights) = (level?, nights?);
                field(errors, lang, "level", NightFlow::new(level, nights)).map(RuleKind::NightFlow)
            }
            "continuous_flow" => field(errors, lang, "hours", whole("hours", &self.hours))
                .and_then(|h| field(errors, lang, "hours", ContinuousFlow::new(h)))
                .map(RuleKind::ContinuousFlow),
            other => {
                let e = ValidationError::Choice {
                    field: "kind",
                    value: other.to_owned(),
                    expected: "daily_consumption, monthly_consumption, gauge_band, no_data, gateway_offline, certificate_expiry, dead_letter_rate, night_flow, continuous_flow",
                };
                field::<()>(errors, lang, "kind", Err(e));
                None
            }
        }
    }

    /// The rule's name, the rule and whether it is enabled; or every field's error.
    pub fn parse(&self, lang: Lang) -> Result<(Name, Rule, bool), FieldErrors> {
        let mut errors = FieldErrors::default();
        let name = field(&mut errors, lang, "name", Name::parse("name", &self.name));
        let severity = field(&mut errors, lang, "severity", Severity::parse(&self.severity));
        let target = field(&mut errors, lang, "target", parse_target(&self.target));
        let kind = self.kind(&mut errors, lang);
        let hysteresis = if self.hysteresis.trim().is_empty() {
            Some(None)
        } else {
            field(
                &mut errors,
                lang,
                "hysteresis",
                decimal("hysteresis", &self.hysteresis).and_then(Hysteresis::new),
            )
            .map(Some)
        };
        let hold = if self.hold_minutes.trim().is_empty() {
            Some(None)
        } else {
            field(
                &mut errors,
                lang,
                "hold_minutes",
                minutes("hold time (min)", &self.hold_minutes).and_then(HoldTime::new),
            )
            .map(Some)
        };
        let (Some(name), Some(severity), Some(target), Some(kind), Some(hysteresis), Some(hold)) =
            (name, severity, target, kind, hysteresis, hold)
        else {
            return Err(errors);
        };
        // The checks across settings name the field they are about.
        match Rule::new(severity, target, kind, hysteresis, hold) {
            Ok(rule) => Ok((name, rule, self.is_enabled())),
            Err(e) => {
                let at = match &e {
                    ValidationError::Rule { field, .. } | ValidationError::Choice { field, .. } => {
                        match *field {
                            "hysteresis" => "hysteresis",
                            "hold time (s)" | "hold time" => "hold_minutes",
                            _ => "target",
                        }
                    }
                    _ => "target",
                };
                errors.set(at, lang.validation(&e));
                Err(errors)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_round_trips_through_the_rule() {
        let mut f = RuleForm::blank();
        f.name = "Vazamento".into();
        f.kind = "night_flow".into();
        f.target = "medium:water".into();
        f.level = "0,05".into();
        f.nights = "3".into();
        let (name, rule, enabled) = f.parse(Lang::PtBr).unwrap();
        assert!(enabled);
        let again = RuleForm::of(&name.to_string(), &rule, enabled);
        assert_eq!(
            (again.kind.as_str(), again.level.as_str(), again.nights.as_str()),
            ("night_flow", "0.05", "3")
        );
        assert_eq!(again.target, "medium:water");
    }

    #[test]
    fn each_mistake_is_reported_at_its_field() {
        let mut f = RuleForm::blank();
        f.kind = "gauge_band".into();
        f.band_min = "abc".into();
        f.hysteresis = "-1".into();
        f.target = "device:x".into();
        let errors = f.parse(Lang::En).unwrap_err();
        for name in ["name", "band_min", "hysteresis", "target"] {
            assert!(errors.has(name), "{name}: {errors:?}");
        }
    }
}
