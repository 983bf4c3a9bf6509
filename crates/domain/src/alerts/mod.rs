//! Alerts (SPEC §5): rules, and the pure decision of whether a rule's alert is raised, kept or
//! cleared given what was observed.
//!
//! Owns: [`Rule`] and its parts (severity, target, kind and parameters, hysteresis, hold time), the
//! JSON form of the parameters the store keeps, and one evaluation function per kind taking the
//! observed inputs, the current alert state and, where time matters, `now`. Must not: read a clock
//! or the store, send notifications, or keep state between calls: whatever an evaluation needs
//! to know about the past (how long a value has been past its threshold, the last reading) is an
//! input, so that evaluating again with the same inputs decides the same.
//!
//! - [`rule`]: severity, target, hysteresis, hold time and the checks across them;
//! - [`params`]: the rule kinds and their parameters;
//! - [`decision`]: the decision and the state machine every kind shares;
//! - [`evaluate`]: consumption, gauge band, dead-letter rate;
//! - [`clock`]: no data, gateway offline, certificate expiry;
//! - [`water`]: night flow and continuous flow;
//! - [`notice`]: what a notification says (the webhook JSON schema `tds.alert.v1`);
//! - [`channel`]: a notification channel's validated configuration and webhook presets;
//! - [`delivery`]: retry back-off and quiet hours;
//! - [`preview`]: a rule replayed over a device's hourly rollups, for the rule editor.

pub mod channel;
pub mod clock;
pub mod decision;
pub mod delivery;
pub mod evaluate;
pub mod notice;
pub mod params;
pub mod preview;
pub mod rule;
pub mod water;

pub use channel::{ChannelConfig, EmailConfig, Language, Preset, WebhookConfig, WebhookRequest};
pub use decision::{AlertState, Damping, Decision, Detail, Facts, Side};
pub use delivery::QuietHours;
pub use notice::{Notice, NoticeEvent};
pub use params::{
    CertificateExpiry, ConsumptionLimit, ContinuousFlow, DeadLetterRate, GaugeBand, NightFlow, Period,
    RuleKind,
};
pub use rule::{ConsumptionPeriod, HoldTime, Hysteresis, Rule, Severity, Target};
