//! Alerts (SPEC §5): rules, and the pure decision of whether a rule's alert is raised, kept or
//! cleared given what was observed.
//!
//! - [`params`]: the rule kinds and their parameters.

pub mod params;

pub use params::{
    CertificateExpiry, ConsumptionLimit, ContinuousFlow, DeadLetterRate, GaugeBand, NightFlow, Period,
    RuleKind,
};
