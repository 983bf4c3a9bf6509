//! CNPJ, the Brazilian company registry number of a tenant.
//!
//! Since July 2026 the Receita Federal issues alphanumeric CNPJs: the first twelve characters may be
//! digits or upper-case letters, the last two are check digits. Both kinds are validated with the
//! same modulo-11 rule, each character counting as its ASCII code minus 48 (so digits keep their
//! value). Punctuation (`12.ABC.345/01DE-35`) is accepted on input and added back for display.

use crate::ValidationError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cnpj(String);

const WEIGHTS: [u32; 13] = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];

fn check_digit(chars: &[u8]) -> u8 {
    // The weights for n characters are the last n of WEIGHTS.
    let weights = &WEIGHTS[WEIGHTS.len() - chars.len()..];
    let sum: u32 = chars.iter().zip(weights).map(|(&c, &w)| u32::from(c - b'0') * w).sum();
    let rest = sum % 11;
    if rest < 2 { b'0' } else { b'0' + (11 - rest) as u8 }
}

impl Cnpj {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let err = |reason| ValidationError::Cnpj { value: input.to_owned(), reason };
        let body: Vec<u8> = input
            .trim()
            .bytes()
            .filter(|b| !matches!(b, b'.' | b'/' | b'-' | b' '))
            .map(|b| b.to_ascii_uppercase())
            .collect();
        if body.len() != 14 {
            return Err(err("a CNPJ has 14 characters"));
        }
        if !body[..12].iter().all(u8::is_ascii_alphanumeric) || !body[12..].iter().all(u8::is_ascii_digit) {
            return Err(err("only letters and digits, and the last two must be digits"));
        }
        if body.iter().all(|&c| c == body[0]) {
            return Err(err("all characters are the same"));
        }
        let first = check_digit(&body[..12]);
        let mut with_first = body[..12].to_vec();
        with_first.push(first);
        let second = check_digit(&with_first);
        if body[12] != first || body[13] != second {
            return Err(err("check digits do not match"));
        }
        Ok(Self(String::from_utf8_lossy(&body).into_owned()))
    }

    /// The 14 characters without punctuation, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cnpj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        write!(f, "{}.{}.{}/{}-{}", &s[0..2], &s[2..5], &s[5..8], &s[8..12], &s[12..14])
    }
}

impl Serialize for Cnpj {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cnpj {
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
    fn valid_numeric_and_alphanumeric_cnpjs_are_accepted() {
        // Receita Federal's published example of the alphanumeric format.
        assert_eq!(Cnpj::parse("12.ABC.345/01DE-35").unwrap().as_str(), "12ABC34501DE35");
        assert_eq!(Cnpj::parse("11.222.333/0001-81").unwrap().to_string(), "11.222.333/0001-81");
        assert_eq!(Cnpj::parse("11222333000181").unwrap().as_str(), "11222333000181");
        assert!(Cnpj::parse("12abc34501de35").is_ok(), "letters are matched case-insensitively");
    }

    #[test]
    fn invalid_cnpjs_say_why() {
        let cases = [
            ("11.222.333/0001-82", "check digits"),
            ("11222333000", "14 characters"),
            ("00000000000000", "same"),
            ("11.222.333/0001-8A", "last two must be digits"),
            ("11#222333000181", "14 characters"),
        ];
        for (input, reason) in cases {
            let err = Cnpj::parse(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = Cnpj::parse(&s);
        }

        #[test]
        fn computed_check_digits_are_accepted_and_round_trip(body in "[0-9A-Z]{12}") {
            let mut chars = body.into_bytes();
            let first = check_digit(&chars);
            chars.push(first);
            let second = check_digit(&chars);
            chars.push(second);
            let text = String::from_utf8(chars).unwrap();
            if let Ok(cnpj) = Cnpj::parse(&text) {
                prop_assert_eq!(Cnpj::parse(&cnpj.to_string()).unwrap(), cnpj);
            } else {
                prop_assert!(text.bytes().all(|c| c == text.as_bytes()[0]));
            }
        }
    }
}
