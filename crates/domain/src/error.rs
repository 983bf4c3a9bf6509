//! The validation error every domain parser returns: one variant per rule, each naming the value
//! that broke it, so that a form field, a CSV row or a dead letter can show a precise reason.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("{field} is required")]
    Required { field: &'static str },
    #[error("{field} is too long ({len} characters, at most {max})")]
    TooLong { field: &'static str, len: usize, max: usize },
    #[error("{field} contains a control character")]
    ControlCharacter { field: &'static str },
    #[error("invalid MAC address {value:?}: expected six hex pairs such as aa:bb:cc:dd:ee:ff")]
    Mac { value: String },
    #[error(
        "invalid {field} {value:?}: use 1 to {max} letters, digits, '-' or '_', starting with a letter or digit"
    )]
    Code { field: &'static str, value: String, max: usize },
    #[error("invalid CNPJ {value:?}: {reason}")]
    Cnpj { value: String, reason: &'static str },
    #[error("invalid email address {value:?}")]
    Email { value: String },
    #[error("unknown {field} {value:?}: expected one of {expected}")]
    Choice { field: &'static str, value: String, expected: &'static str },
    #[error("invalid unit {value:?}: {reason}")]
    Unit { value: String, reason: &'static str },
    #[error("{field} {value} is out of range ({min}..={max})")]
    OutOfRange { field: &'static str, value: String, min: String, max: String },
    #[error("{field} {value:?} is not a number")]
    NotANumber { field: &'static str, value: String },
    #[error("unknown time zone {value:?}: use an IANA name such as America/Sao_Paulo")]
    TimeZone { value: String },
    #[error("invalid date {value:?}: expected YYYY-MM-DD")]
    Date { value: String },
    #[error("invalid time {value:?}: expected ISO 8601 such as 2026-02-15T14:30:00Z")]
    Time { value: String },
    #[error("invalid {field} {value}: {reason}")]
    Meter { field: &'static str, value: String, reason: &'static str },
    #[error("{field} {value} must be more than 0")]
    NotPositive { field: &'static str, value: String },
    /// An alert rule whose settings do not fit together (a hysteresis wider than the threshold, a
    /// hold time on a rule that has its own period, a target the kind cannot apply to).
    #[error("invalid {field} {value}: {reason}")]
    Rule { field: &'static str, value: String, reason: String },
    /// A rule's stored parameters that do not parse as its kind's (the `params` column).
    #[error("invalid parameters for a {kind} rule: {reason}")]
    RuleParams { kind: String, reason: String },
}

impl ValidationError {
    /// The form field the error belongs to, where it names one (a form shows the message next to
    /// that field).
    pub const fn field(&self) -> Option<&'static str> {
        match self {
            Self::Required { field }
            | Self::TooLong { field, .. }
            | Self::ControlCharacter { field }
            | Self::Code { field, .. }
            | Self::Choice { field, .. }
            | Self::OutOfRange { field, .. }
            | Self::NotANumber { field, .. }
            | Self::Meter { field, .. }
            | Self::NotPositive { field, .. }
            | Self::Rule { field, .. } => Some(*field),
            _ => None,
        }
    }

    /// Shorthand for range errors of any displayable bound type.
    pub fn out_of_range(
        field: &'static str,
        value: impl std::fmt::Display,
        min: impl std::fmt::Display,
        max: impl std::fmt::Display,
    ) -> Self {
        Self::OutOfRange { field, value: value.to_string(), min: min.to_string(), max: max.to_string() }
    }
}
