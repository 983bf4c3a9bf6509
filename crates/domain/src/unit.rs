//! Units of measurement. A device has one unit; a reading that names a different unit is a
//! conflict and goes to the dead-letter table instead of being stored under the wrong unit.

use crate::ValidationError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// A unit symbol in canonical spelling. Common spellings written by gateways and people
/// (`m3`, `KWH`, `l`, `degC`) map to one canonical symbol so that `m3` and `m³` never conflict;
/// other symbols are accepted as written (trimmed, at most 16 characters, no blanks).
///
/// A canonical symbol is held as the `&'static str` of the table below, so parsing, cloning and
/// storing one allocates nothing: every reading a gateway sends names its unit, and a `String`
/// per reading (with another for its lower-cased spelling) was a share of the device endpoint's
/// allocations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unit(Cow<'static, str>);

/// (canonical, lower-cased aliases)
const KNOWN: &[(&str, &[&str])] = &[
    ("Wh", &["wh"]),
    ("kWh", &["kwh"]),
    ("MWh", &["mwh"]),
    ("W", &["w"]),
    ("kW", &["kw"]),
    ("kvarh", &["kvarh"]),
    ("V", &["v"]),
    ("A", &["a"]),
    ("Hz", &["hz"]),
    ("m³", &["m³", "m3", "m^3"]),
    ("L", &["l", "litro", "litros", "liter", "litre"]),
    ("m³/h", &["m³/h", "m3/h"]),
    ("L/h", &["l/h"]),
    ("L/s", &["l/s"]),
    ("°C", &["°c", "c", "degc", "ºc"]),
    ("bar", &["bar"]),
    ("kPa", &["kpa"]),
    ("%", &["%"]),
];

impl Unit {
    pub const MAX_LEN: usize = 16;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ValidationError::Required { field: "unit" });
        }
        if let Some(canonical) = known(s) {
            return Ok(Self(Cow::Borrowed(canonical)));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(ValidationError::Unit { value: input.to_owned(), reason: "at most 16 characters" });
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValidationError::Unit {
                value: input.to_owned(),
                reason: "no blanks or control characters",
            });
        }
        Ok(Self(Cow::Owned(s.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The symbol, borrowed from the table when it is a canonical one.
    pub fn into_cow(self) -> Cow<'static, str> {
        self.0
    }
}

/// The canonical symbol `s` (trimmed, not empty) is a spelling of, if any: compared without
/// case, and without lower-casing into a new string when `s` is ASCII (as gateways write units).
fn known(s: &str) -> Option<&'static str> {
    let found = if s.is_ascii() {
        KNOWN.iter().find(|(_, aliases)| aliases.iter().any(|a| a.eq_ignore_ascii_case(s)))
    } else {
        let key = s.to_lowercase();
        KNOWN.iter().find(|(_, aliases)| aliases.contains(&key.as_str()))
    };
    found.map(|(canonical, _)| *canonical)
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Unit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Unit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn common_spellings_share_one_canonical_symbol() {
        for (input, canonical) in
            [("m3", "m³"), ("M³", "m³"), ("KWH", "kWh"), ("l", "L"), ("degC", "°C"), ("psi", "psi")]
        {
            assert_eq!(Unit::parse(input).unwrap().as_str(), canonical, "{input}");
        }
    }

    /// The ASCII shortcut finds what lower-casing finds: every alias in every mix of case.
    #[test]
    fn every_alias_in_any_case_is_its_canonical_symbol() {
        for (canonical, aliases) in KNOWN {
            for alias in *aliases {
                for spelling in [alias.to_string(), alias.to_uppercase(), format!(" {alias} ")] {
                    let unit = Unit::parse(&spelling).unwrap();
                    assert_eq!(unit.as_str(), *canonical, "{spelling}");
                    assert!(matches!(unit.into_cow(), Cow::Borrowed(_)), "{spelling}");
                }
            }
        }
        assert!(matches!(Unit::parse("psi").unwrap().into_cow(), Cow::Owned(_)));
    }

    #[test]
    fn bad_units_are_refused() {
        assert!(Unit::parse("").is_err());
        assert!(Unit::parse("k Wh").is_err());
        assert!(Unit::parse("abcdefghijklmnopq").is_err());
    }

    proptest! {
        #[test]
        fn canonical_units_round_trip(s in "\\PC*") {
            if let Ok(u) = Unit::parse(&s) {
                prop_assert_eq!(Unit::parse(u.as_str()).unwrap(), u);
            }
        }
    }
}
