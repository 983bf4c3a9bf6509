//! The gateway MAC address: a gateway's identity across the whole platform and its certificate CN.

use crate::ValidationError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A MAC address, always held as six bytes and shown lower-case with colons
/// (`aa:bb:cc:dd:ee:ff`), the form used in topics, certificates and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac([u8; 6]);

impl Mac {
    /// Accepts `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF` (any case, `:` or `-` separators, not mixed)
    /// and the bare 12-digit form `aabbccddeeff`, with surrounding blanks ignored.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let bad = || ValidationError::Mac { value: input.to_owned() };
        let s = input.trim();
        let pairs: Vec<&str> = if s.len() == 12 {
            (0..6).map(|i| s.get(i * 2..i * 2 + 2)).collect::<Option<_>>().ok_or_else(bad)?
        } else if s.len() == 17 {
            let sep = if s.contains(':') { ':' } else { '-' };
            s.split(sep).collect()
        } else {
            return Err(bad());
        };
        if pairs.len() != 6 {
            return Err(bad());
        }
        let mut bytes = [0u8; 6];
        for (byte, pair) in bytes.iter_mut().zip(pairs) {
            if pair.len() != 2 || !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Self(bytes))
    }

    pub const fn from_bytes(bytes: [u8; 6]) -> Self {
        Self(bytes)
    }

    pub const fn bytes(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [b0, b1, b2, b3, b4, b5] = self.0;
        write!(f, "{b0:02x}:{b1:02x}:{b2:02x}:{b3:02x}:{b4:02x}:{b5:02x}")
    }
}

impl FromStr for Mac {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
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
    fn accepted_forms_normalise_to_lower_case_colons() {
        for input in [
            "aa:bb:cc:dd:ee:ff",
            "AA:BB:CC:DD:EE:FF",
            "aa-bb-cc-dd-ee-ff",
            "AA-bb-CC-dd-EE-ff",
            "aabbccddeeff",
            "  AABBCCDDEEFF ",
        ] {
            assert_eq!(Mac::parse(input).unwrap().to_string(), "aa:bb:cc:dd:ee:ff", "{input}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for input in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:fg",
            "aa:bb-cc:dd:ee:ff",
            "aabbccddeef",
            "a:bb:cc:dd:ee:fff",
            "+a:bb:cc:dd:ee:ff",
            "ａa:bb:cc:dd:ee:f",
        ] {
            assert!(Mac::parse(input).is_err(), "{input:?} should be refused");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = Mac::parse(&s);
        }

        #[test]
        fn display_round_trips(bytes in any::<[u8; 6]>()) {
            let mac = Mac::from_bytes(bytes);
            prop_assert_eq!(Mac::parse(&mac.to_string()).unwrap(), mac);
            prop_assert_eq!(Mac::parse(&mac.to_string().to_uppercase().replace(':', "-")).unwrap(), mac);
        }
    }
}
