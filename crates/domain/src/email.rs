//! Email addresses: a user's login name, unique platform-wide, compared lower-case.

use crate::ValidationError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    /// A deliberately plain check (one `@`, a non-empty local part, a dotted domain of letters,
    /// digits and hyphens, no blanks, at most 254 characters): deliverability is proven by the
    /// invitation mail, not by a regular expression.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let s = input.trim().to_lowercase();
        let bad = || ValidationError::Email { value: input.to_owned() };
        if s.is_empty() {
            return Err(ValidationError::Required { field: "email" });
        }
        if s.len() > 254 {
            return Err(ValidationError::TooLong { field: "email", len: s.len(), max: 254 });
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok { Ok(Self(s)) } else { Err(bad()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
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
    fn addresses_are_trimmed_and_lower_cased() {
        assert_eq!(Email::parse(" Ana.Souza@Empresa.com.BR ").unwrap().as_str(), "ana.souza@empresa.com.br");
        assert!(Email::parse("joão+tds@água.com.br").is_ok());
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "ana",
            "ana@",
            "@x.com",
            "ana@x",
            "a b@x.com",
            "ana@@x.com",
            "ana@x..com",
            ".a@x.com",
            "a@-x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Email::parse(""), Err(ValidationError::Required { field: "email" }));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "\\PC*") {
            if let Ok(e) = Email::parse(&s) {
                prop_assert_eq!(Email::parse(e.as_str()).unwrap(), e);
            }
        }
    }
}
