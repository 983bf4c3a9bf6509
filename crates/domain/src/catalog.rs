//! The closed vocabularies of gateways and devices: device type, medium, measurement kind, status,
//! mode and the gateway lifecycle. Each has one canonical spelling (what the database and the API
//! store, matching the seeds' Portuguese names where they had one) and a few accepted aliases for
//! CSV imports written by people.

use crate::ValidationError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

macro_rules! vocabulary {
    (
        $(#[$doc:meta])* $name:ident, $field:literal {
            $($(#[$vdoc:meta])* $variant:ident = $canonical:literal $(| $alias:literal)*),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Case-insensitive; accepts the canonical name and its aliases.
            pub fn parse(input: &str) -> Result<Self, ValidationError> {
                let key = input.trim().to_lowercase();
                $(
                    if key == $canonical.to_lowercase() $(|| key == $alias)* {
                        return Ok($name::$variant);
                    }
                )+
                Err(ValidationError::Choice {
                    field: $field,
                    value: input.to_owned(),
                    expected: concat!($($canonical, " "),+),
                })
            }

            /// The canonical spelling, as stored.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $canonical),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
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

// Other modules' closed vocabularies (alert severity) are declared with the same macro.
pub(crate) use vocabulary;

vocabulary!(
    /// What a device is.
    DeviceType, "device type" {
        /// A meter (requires Modbus slave id and register).
        Meter = "MEDIDOR" | "meter",
        Sensor = "SENSOR",
        /// An actuator (valve, relay).
        Actuator = "ATUADOR" | "actuator",
    }
);

vocabulary!(
    /// What a device measures.
    Medium, "medium" {
        Water = "water" | "agua" | "água",
        Energy = "energy" | "energia",
        Gas = "gas" | "gás",
        Other = "other" | "outro",
    }
);

vocabulary!(
    /// How a device's readings turn into consumption.
    MeasurementKind, "measurement kind" {
        /// A cumulative register: consumption is the difference between successive readings.
        Counter = "counter" | "contador",
        /// Each reading is the consumption since the previous one.
        Interval = "interval" | "intervalo",
        /// An instantaneous value: averaged, never summed.
        Gauge = "gauge" | "instantaneo" | "instantâneo",
    }
);

vocabulary!(
    /// A device's operating status. Only ATIVO devices count against a gateway's capacity.
    DeviceStatus, "device status" {
        Active = "ATIVO" | "active",
        Inactive = "INATIVO" | "inactive",
        Maintenance = "MANUTENCAO" | "manutenção" | "maintenance",
    }
);

vocabulary!(
    /// Whether a device is polled automatically or read by hand.
    DeviceMode, "device mode" {
        Auto = "AUTO" | "automatic" | "automatico" | "automático",
        Manual = "MANUAL",
    }
);

vocabulary!(
    /// A gateway's lifecycle: pre-registered until its first accepted telemetry, then active,
    /// until decommissioned.
    GatewayStatus, "gateway status" {
        PreRegistered = "pre_registered" | "pre-registered" | "pre-registrado",
        Active = "active" | "ativo",
        Decommissioned = "decommissioned" | "descomissionado",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Copy + PartialEq + fmt::Debug + FromStr + fmt::Display>(all: &[T])
    where
        T::Err: fmt::Debug,
    {
        for v in all {
            assert_eq!(v.to_string().parse::<T>().unwrap(), *v);
            assert_eq!(v.to_string().to_lowercase().parse::<T>().unwrap(), *v);
        }
    }

    #[test]
    fn every_vocabulary_round_trips_its_canonical_names() {
        round_trip(DeviceType::ALL);
        round_trip(Medium::ALL);
        round_trip(MeasurementKind::ALL);
        round_trip(DeviceStatus::ALL);
        round_trip(DeviceMode::ALL);
        round_trip(GatewayStatus::ALL);
    }

    #[test]
    fn aliases_written_by_people_are_accepted() {
        assert_eq!(DeviceType::parse("meter").unwrap(), DeviceType::Meter);
        assert_eq!(Medium::parse("Energia").unwrap(), Medium::Energy);
        assert_eq!(DeviceStatus::parse("Manutenção").unwrap(), DeviceStatus::Maintenance);
        assert_eq!(MeasurementKind::parse(" COUNTER ").unwrap(), MeasurementKind::Counter);
    }

    #[test]
    fn unknown_values_list_the_expected_ones() {
        let err = MeasurementKind::parse("total").unwrap_err().to_string();
        assert!(err.contains("measurement kind") && err.contains("counter interval gauge"), "{err}");
    }
}
