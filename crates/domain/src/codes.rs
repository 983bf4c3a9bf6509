//! Human-assigned codes: a gateway's code (unique in its tenant) and a device's code (unique in its
//! gateway, e.g. `D01`). Both are stored upper-case and matched case-insensitively.

use crate::ValidationError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

fn parse_code(field: &'static str, max: usize, input: &str) -> Result<String, ValidationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(ValidationError::Required { field });
    }
    let ok = s.len() <= max
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(ValidationError::Code { field, value: input.to_owned(), max });
    }
    Ok(s.to_ascii_uppercase())
}

macro_rules! code_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            /// Trims, checks the alphabet and length, and upper-cases.
            pub fn parse(input: &str) -> Result<Self, ValidationError> {
                parse_code($field, $max, input).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

code_type!(
    /// A gateway's code, unique within its tenant (e.g. `GW-PORTO-01`).
    GatewayCode,
    "gateway code",
    32
);
code_type!(
    /// A device's code, unique within its gateway (e.g. `D01`).
    DeviceCode,
    "device code",
    32
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_are_trimmed_and_upper_cased() {
        assert_eq!(DeviceCode::parse(" d01 ").unwrap().as_str(), "D01");
        assert_eq!(GatewayCode::parse("gw-porto_1").unwrap().as_str(), "GW-PORTO_1");
    }

    #[test]
    fn bad_codes_are_refused_with_the_field_named() {
        assert_eq!(DeviceCode::parse("  "), Err(ValidationError::Required { field: "device code" }));
        for bad in ["-D01", "D 01", "D01!", "Ç01", &"X".repeat(33)] {
            let err = DeviceCode::parse(bad).unwrap_err();
            assert!(err.to_string().contains("device code"), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_normalised_codes_round_trip(s in "\\PC*") {
            if let Ok(code) = GatewayCode::parse(&s) {
                prop_assert_eq!(GatewayCode::parse(code.as_str()).unwrap(), code.clone());
                prop_assert_eq!(GatewayCode::parse(&code.as_str().to_lowercase()).unwrap(), code);
            }
        }
    }
}
