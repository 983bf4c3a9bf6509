//! What an alert says, in English for the record: the pages and the notifications word it in
//! the reader's language from the kind, the value and the threshold; the stored message is
//! what the audit trail and the API show.

use super::TenantView;
use tds_domain::alerts::{Facts, RuleKind, Target};
use tds_store::alert_rules::AlertRule;

/// What the alert says, in English for the record (pages and emails word it in the reader's
/// language from the kind, the value and the threshold).
pub(super) fn message(v: &TenantView, rule: &AlertRule, target: Target, facts: &Facts) -> String {
    let what = match target {
        Target::Device(id) => v
            .device(id)
            .map(|d| {
                let gw = v.gateways.get(&d.gateway_id).map(|g| g.code.to_string()).unwrap_or_default();
                format!("device {} of {gw}", d.code)
            })
            .unwrap_or_default(),
        Target::Gateway(id) => v.gateways.get(&id).map(|g| format!("gateway {}", g.code)).unwrap_or_default(),
        Target::Tenant | Target::Medium(_) => String::new(),
    };
    let unit = match target {
        Target::Device(id) => v.device(id).map(|d| d.unit.to_string()).unwrap_or_default(),
        _ => String::new(),
    };
    let (value, threshold) = (facts.value, facts.threshold);
    match rule.rule.kind() {
        RuleKind::DailyConsumption(_) => {
            format!("{what}: {value} {unit} today, threshold {threshold} {unit}")
        }
        RuleKind::MonthlyConsumption(_) => {
            format!("{what}: {value} {unit} this month, threshold {threshold} {unit}")
        }
        RuleKind::GaugeBand(_) => format!("{what}: {value} {unit} outside the band (limit {threshold})"),
        RuleKind::NoData(_) => format!("{what}: no reading for {}", span(value)),
        RuleKind::GatewayOffline(_) => format!("{what}: offline for {}", span(value)),
        RuleKind::CertificateExpiry(_) => format!("{what}: certificate expires in {value} days"),
        RuleKind::DeadLetterRate(_) => format!("{what}: {value} rejected messages in an hour"),
        RuleKind::NightFlow(_) => format!("{what}: night flow {value} {unit}/h (level {threshold})"),
        RuleKind::ContinuousFlow(_) => format!("{what}: consumption in every hour for {value} hours"),
    }
}

/// Seconds as people say them.
fn span(seconds: f64) -> String {
    let s = seconds as i64;
    if s >= 86_400 {
        format!("{} d {} h", s / 86_400, (s % 86_400) / 3600)
    } else if s >= 3600 {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    } else {
        format!("{} min", s / 60)
    }
}
