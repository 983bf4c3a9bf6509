//! Modbus addressing of a meter: slave id (1..=247, the valid unicast range) and holding register
//! (1..=65535, one-based as on meter datasheets).

use crate::{DeviceType, ValidationError};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct SlaveId(u8);

impl SlaveId {
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        u8::try_from(value)
            .ok()
            .filter(|v| (1..=247).contains(v))
            .map(Self)
            .ok_or_else(|| ValidationError::out_of_range("Modbus slave id", value, 1, 247))
    }

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let n = input
            .trim()
            .parse::<i64>()
            .map_err(|_| ValidationError::NotANumber { field: "Modbus slave id", value: input.to_owned() })?;
        Self::new(n)
    }

    pub const fn get(self) -> u8 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct ModbusRegister(u16);

impl ModbusRegister {
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        u16::try_from(value)
            .ok()
            .filter(|v| *v >= 1)
            .map(Self)
            .ok_or_else(|| ValidationError::out_of_range("Modbus register", value, 1, 65535))
    }

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let n = input
            .trim()
            .parse::<i64>()
            .map_err(|_| ValidationError::NotANumber { field: "Modbus register", value: input.to_owned() })?;
        Self::new(n)
    }

    pub const fn get(self) -> u16 {
        self.0
    }
}

macro_rules! int_conversions {
    ($($t:ty),*) => {$(
        impl TryFrom<i64> for $t {
            type Error = ValidationError;
            fn try_from(v: i64) -> Result<Self, Self::Error> { Self::new(v) }
        }
        impl From<$t> for i64 {
            fn from(v: $t) -> i64 { i64::from(v.0) }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { self.0.fmt(f) }
        }
    )*};
}
int_conversions!(SlaveId, ModbusRegister);

/// A meter is read over Modbus, so it must have both its slave id and its register; sensors and
/// actuators may have neither.
pub fn require_meter_address(
    device_type: DeviceType,
    slave_id: Option<SlaveId>,
    register: Option<ModbusRegister>,
) -> Result<(), ValidationError> {
    if device_type == DeviceType::Meter {
        if slave_id.is_none() {
            return Err(ValidationError::Required { field: "Modbus slave id" });
        }
        if register.is_none() {
            return Err(ValidationError::Required { field: "Modbus register" });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_are_enforced_at_both_ends() {
        assert!(SlaveId::new(0).is_err());
        assert_eq!(SlaveId::new(1).unwrap().get(), 1);
        assert_eq!(SlaveId::new(247).unwrap().get(), 247);
        assert!(SlaveId::new(248).is_err());
        assert!(ModbusRegister::new(0).is_err());
        assert_eq!(ModbusRegister::new(65535).unwrap().get(), 65535);
        assert!(ModbusRegister::new(65536).is_err());
        assert!(SlaveId::parse("x").unwrap_err().to_string().contains("not a number"));
    }

    proptest! {
        #[test]
        fn slave_ids_in_range_round_trip(n in any::<i64>()) {
            match SlaveId::new(n) {
                Ok(id) => { prop_assert!((1..=247).contains(&n)); prop_assert_eq!(i64::from(id), n); }
                Err(_) => prop_assert!(!(1..=247).contains(&n)),
            }
        }
    }
}
