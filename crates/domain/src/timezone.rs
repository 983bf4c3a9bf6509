//! A tenant's time zone, by IANA name. Rollups, reports and every time shown to a person are in it.

use crate::ValidationError;
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone(Tz);

impl TimeZone {
    pub const DEFAULT_NAME: &'static str = "America/Sao_Paulo";

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        input
            .trim()
            .parse::<Tz>()
            .map(Self)
            .map_err(|_| ValidationError::TimeZone { value: input.to_owned() })
    }

    pub const fn tz(self) -> Tz {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl Default for TimeZone {
    fn default() -> Self {
        Self(chrono_tz::America::Sao_Paulo)
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_names_are_accepted_and_others_refused() {
        assert_eq!(TimeZone::default().name(), TimeZone::DEFAULT_NAME);
        assert_eq!(TimeZone::parse(" America/New_York ").unwrap().name(), "America/New_York");
        let err = TimeZone::parse("Brasilia").unwrap_err().to_string();
        assert!(err.contains("IANA"), "{err}");
    }
}
