//! Free-text fields typed by people: names (required, one line) and descriptions (optional).

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A required one-line name (tenant, gateway, device, user display name): trimmed, 1..=120
/// characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub const MAX_LEN: usize = 120;

    pub fn parse(field: &'static str, input: &str) -> Result<Self, ValidationError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ValidationError::Required { field });
        }
        let len = s.chars().count();
        if len > Self::MAX_LEN {
            return Err(ValidationError::TooLong { field, len, max: Self::MAX_LEN });
        }
        if s.chars().any(char::is_control) {
            return Err(ValidationError::ControlCharacter { field });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An optional multi-line description: trimmed, at most 2000 characters; newlines and tabs allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub const MAX_LEN: usize = 2000;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let s = input.trim();
        let len = s.chars().count();
        if len > Self::MAX_LEN {
            return Err(ValidationError::TooLong { field: "description", len, max: Self::MAX_LEN });
        }
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
            return Err(ValidationError::ControlCharacter { field: "description" });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(Name::parse("name", "  Bloco A ").unwrap().as_str(), "Bloco A");
        assert_eq!(Name::parse("name", " "), Err(ValidationError::Required { field: "name" }));
        assert!(matches!(Name::parse("name", &"x".repeat(121)), Err(ValidationError::TooLong { .. })));
        assert!(Name::parse("name", "a\u{0}b").is_err());
        assert!(Description::parse("linha 1\nlinha 2").is_ok());
    }
}
