//! Bounded numbers of gateways and devices: capacity, reporting interval, position, scale factor
//! and alarm thresholds. Each is parsed once, with the range in its error.

use crate::ValidationError;
use serde::{Deserialize, Serialize};

pub(crate) fn number(field: &'static str, input: &str) -> Result<f64, ValidationError> {
    // People type decimal commas in pt-BR; accept them.
    let s = input.trim().replace(',', ".");
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| ValidationError::NotANumber { field, value: input.to_owned() })
}

fn integer(field: &'static str, input: &str) -> Result<i64, ValidationError> {
    input.trim().parse::<i64>().map_err(|_| ValidationError::NotANumber { field, value: input.to_owned() })
}

/// How many ACTIVE devices a gateway may have (1..=32, default 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxDevices(u8);

impl MaxDevices {
    pub fn new(v: i64) -> Result<Self, ValidationError> {
        u8::try_from(v)
            .ok()
            .filter(|v| (1..=32).contains(v))
            .map(Self)
            .ok_or_else(|| ValidationError::out_of_range("max devices", v, 1, 32))
    }
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        Self::new(integer("max devices", input)?)
    }
    pub const fn get(self) -> i64 {
        self.0 as i64
    }
}

impl Default for MaxDevices {
    fn default() -> Self {
        Self(8)
    }
}

/// How often a gateway is expected to report, in seconds (10 s ..= 1 day, default 5 min).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportInterval(u32);

impl ReportInterval {
    pub fn new(seconds: i64) -> Result<Self, ValidationError> {
        u32::try_from(seconds)
            .ok()
            .filter(|v| (10..=86_400).contains(v))
            .map(Self)
            .ok_or_else(|| ValidationError::out_of_range("reporting interval (s)", seconds, 10, 86_400))
    }
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        Self::new(integer("reporting interval (s)", input)?)
    }
    pub const fn seconds(self) -> i64 {
        self.0 as i64
    }
}

impl Default for ReportInterval {
    fn default() -> Self {
        Self(300)
    }
}

/// A WGS-84 position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub latitude: f64,
    pub longitude: f64,
}

impl Position {
    pub fn new(latitude: f64, longitude: f64) -> Result<Self, ValidationError> {
        if !(-90.0..=90.0).contains(&latitude) {
            return Err(ValidationError::out_of_range("latitude", latitude, -90, 90));
        }
        if !(-180.0..=180.0).contains(&longitude) {
            return Err(ValidationError::out_of_range("longitude", longitude, -180, 180));
        }
        Ok(Self { latitude, longitude })
    }
    pub fn parse(latitude: &str, longitude: &str) -> Result<Self, ValidationError> {
        Self::new(number("latitude", latitude)?, number("longitude", longitude)?)
    }
}

/// The factor a raw register value is multiplied by (finite, not zero; default 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleFactor(f64);

impl ScaleFactor {
    pub fn new(v: f64) -> Result<Self, ValidationError> {
        if v.is_finite() && v != 0.0 {
            Ok(Self(v))
        } else {
            Err(ValidationError::NotANumber { field: "scale factor", value: v.to_string() })
        }
    }
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        Self::new(number("scale factor", input)?)
    }
    pub const fn get(self) -> f64 {
        self.0
    }
}

impl Default for ScaleFactor {
    fn default() -> Self {
        Self(1.0)
    }
}

/// A non-negative finite amount: alarm thresholds and a counter's rollover value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Amount(f64);

impl Amount {
    pub fn new(field: &'static str, v: f64) -> Result<Self, ValidationError> {
        if !v.is_finite() {
            return Err(ValidationError::NotANumber { field, value: v.to_string() });
        }
        if v < 0.0 {
            return Err(ValidationError::out_of_range(field, v, 0, "∞"));
        }
        Ok(Self(v))
    }
    pub fn parse(field: &'static str, input: &str) -> Result<Self, ValidationError> {
        Self::new(field, number(field, input)?)
    }
    pub const fn get(self) -> f64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced_with_the_field_named() {
        assert_eq!(MaxDevices::default().get(), 8);
        assert!(MaxDevices::new(0).is_err() && MaxDevices::new(33).is_err());
        assert_eq!(MaxDevices::parse("32").unwrap().get(), 32);
        assert!(ReportInterval::parse("5").unwrap_err().to_string().contains("reporting interval"));
        assert!(Position::parse("-23,55", "-46.63").is_ok());
        assert!(Position::new(91.0, 0.0).unwrap_err().to_string().contains("latitude"));
        assert!(ScaleFactor::parse("0").is_err());
        assert!(Amount::parse("daily alarm", "-1").unwrap_err().to_string().contains("daily alarm"));
        assert_eq!(Amount::parse("daily alarm", "1,5").unwrap().get(), 1.5);
    }
}
