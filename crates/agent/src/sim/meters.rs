//! Virtual meters that read like the ones behind a DCU in the field: registers that grow with a
//! daily rhythm (more water at breakfast and dinner, more energy in the evening), gauges that
//! wander around a set point, interval meters that report what was used since the last reading,
//! and the faults field engineers know: a register that wraps at its maximum and a meter that is
//! replaced (reset to near zero).
//!
//! Everything is driven by the caller's random generator, so a seeded fleet is reproducible.

use chrono::{DateTime, Timelike, Utc};
use rand::Rng;
use tds_domain::{MeasurementKind, Medium};

/// What a virtual meter measures and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterProfile {
    /// A household water meter register, m³, wrapping at 100 000 m³.
    Water,
    /// An energy meter register, kWh, wrapping at 1 000 000 kWh.
    Energy,
    /// A gas meter register, m³, wrapping at 100 000 m³.
    Gas,
    /// An energy meter that reports the kWh used since its previous reading.
    EnergyInterval,
    /// A room temperature sensor, °C.
    Temperature,
    /// A water pressure sensor, bar.
    Pressure,
}

impl MeterProfile {
    /// The mix a simulated gateway's meters cycle through: mostly counters, some gauges.
    pub const MIX: &'static [MeterProfile] = &[
        MeterProfile::Water,
        MeterProfile::Energy,
        MeterProfile::Gas,
        MeterProfile::Temperature,
        MeterProfile::Water,
        MeterProfile::Energy,
        MeterProfile::Pressure,
        MeterProfile::EnergyInterval,
    ];

    /// The profile of the `index`-th meter of a gateway.
    pub fn for_index(index: usize) -> Self {
        Self::MIX[index % Self::MIX.len()]
    }

    /// The unit the meter reports in (the device must be registered with it).
    pub const fn unit(self) -> &'static str {
        match self {
            Self::Water | Self::Gas => "m³",
            Self::Energy | Self::EnergyInterval => "kWh",
            Self::Temperature => "°C",
            Self::Pressure => "bar",
        }
    }

    pub const fn kind(self) -> MeasurementKind {
        match self {
            Self::Water | Self::Energy | Self::Gas => MeasurementKind::Counter,
            Self::EnergyInterval => MeasurementKind::Interval,
            Self::Temperature | Self::Pressure => MeasurementKind::Gauge,
        }
    }

    pub const fn medium(self) -> Medium {
        match self {
            Self::Water | Self::Pressure => Medium::Water,
            Self::Energy | Self::EnergyInterval => Medium::Energy,
            Self::Gas => Medium::Gas,
            Self::Temperature => Medium::Other,
        }
    }

    /// The register's wrap value, for counters.
    pub const fn rollover(self) -> Option<f64> {
        match self {
            Self::Water | Self::Gas => Some(100_000.0),
            Self::Energy => Some(1_000_000.0),
            Self::EnergyInterval | Self::Temperature | Self::Pressure => None,
        }
    }

    /// A short name for the device, in Portuguese like the seeds' examples.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Water => "Hidrômetro",
            Self::Energy => "Medidor de energia",
            Self::Gas => "Medidor de gás",
            Self::EnergyInterval => "Energia por intervalo",
            Self::Temperature => "Temperatura",
            Self::Pressure => "Pressão da rede",
        }
    }

    /// Mean use per hour of a counter or interval meter, in its unit.
    const fn hourly_use(self) -> f64 {
        match self {
            Self::Water => 0.06,
            Self::Energy => 1.4,
            Self::Gas => 0.09,
            Self::EnergyInterval => 0.8,
            Self::Temperature | Self::Pressure => 0.0,
        }
    }
}

/// How much of the mean use happens at a local hour (about 1 on average over a day): low at
/// night, peaks around 07:00 and 19:30. Brazil's clock (UTC−3) is close enough for a simulation.
fn daily_shape(at: DateTime<Utc>) -> f64 {
    let h = f64::from((at.hour() + 21) % 24) + f64::from(at.minute()) / 60.0;
    let peak = |centre: f64, width: f64| (-(h - centre).powi(2) / width).exp();
    0.35 + 1.6 * peak(7.0, 3.0) + 1.9 * peak(19.5, 5.0)
}

/// One meter's state between readings.
#[derive(Debug, Clone)]
pub struct Meter {
    pub profile: MeterProfile,
    value: f64,
    last: Option<DateTime<Utc>>,
}

/// What one reading of a meter was, and whether a fault happened just before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterReading {
    pub value: f64,
    /// The register was replaced or reset since the previous reading.
    pub reset: bool,
}

impl Meter {
    /// A meter in service for a while: counters start somewhere in their first half, gauges at
    /// their set point.
    pub fn new(profile: MeterProfile, rng: &mut impl Rng) -> Self {
        let value = match profile {
            MeterProfile::Water | MeterProfile::Gas => rng.random_range(100.0..5_000.0),
            MeterProfile::Energy => rng.random_range(1_000.0..80_000.0),
            MeterProfile::EnergyInterval => 0.0,
            MeterProfile::Temperature => rng.random_range(19.0..25.0),
            MeterProfile::Pressure => rng.random_range(2.5..3.5),
        };
        Self { profile, value, last: None }
    }

    /// A meter whose register (or gauge) stands at `value`.
    pub fn at(profile: MeterProfile, value: f64) -> Self {
        Self { profile, value, last: None }
    }

    /// A counter just under its wrap value, to show a rollover soon (tests and demos).
    pub fn near_rollover(profile: MeterProfile) -> Self {
        let value = profile.rollover().map_or(0.0, |r| r - 0.01);
        Self { profile, value, last: None }
    }

    /// The register's value now (for counters: the cumulative reading).
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Reads the meter at `at`: counters advance by the use since the previous reading (and may
    /// wrap, or, with probability `reset_chance`, be replaced by a new meter reading near zero),
    /// interval meters report that use, gauges take a step of a mean-reverting walk.
    pub fn read(&mut self, at: DateTime<Utc>, reset_chance: f64, rng: &mut impl Rng) -> MeterReading {
        let hours = self.last.map_or(0.0, |last| (at - last).num_milliseconds().max(0) as f64 / 3_600_000.0);
        self.last = Some(at);
        let used = self.profile.hourly_use() * hours * daily_shape(at) * rng.random_range(0.6..1.4);
        let mut reset = false;
        let value = match self.profile {
            MeterProfile::Water | MeterProfile::Energy | MeterProfile::Gas => {
                if reset_chance > 0.0 && rng.random_bool(reset_chance.min(1.0)) {
                    // A replaced meter: a new register starting near zero.
                    reset = true;
                    self.value = rng.random_range(0.0..2.0);
                } else {
                    self.value += used;
                }
                if let Some(wrap) = self.profile.rollover()
                    && self.value >= wrap
                {
                    self.value -= wrap;
                }
                self.value
            }
            MeterProfile::EnergyInterval => used,
            MeterProfile::Temperature => {
                let target = 21.0 + 3.0 * (daily_shape(at) - 1.0);
                self.value += 0.2 * (target - self.value) + rng.random_range(-0.3..0.3);
                self.value
            }
            MeterProfile::Pressure => {
                self.value += 0.3 * (3.0 - self.value) + rng.random_range(-0.08..0.08);
                self.value
            }
        };
        MeterReading { value: round3(value), reset }
    }
}

/// Registers show three decimals (litres for m³, Wh for kWh).
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn t0() -> DateTime<Utc> {
        "2026-03-10T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn counters_never_decrease_without_a_reset_or_a_wrap() {
        let mut rng = StdRng::seed_from_u64(7);
        for profile in [MeterProfile::Water, MeterProfile::Energy, MeterProfile::Gas] {
            let mut m = Meter::new(profile, &mut rng);
            let mut prev = m.read(t0(), 0.0, &mut rng).value;
            for i in 1..2_000 {
                let r = m.read(t0() + Duration::minutes(5 * i), 0.0, &mut rng);
                assert!(r.value >= prev, "{profile:?} went from {prev} to {}", r.value);
                assert!(!r.reset);
                prev = r.value;
            }
        }
    }

    #[test]
    fn a_day_of_water_is_about_the_profiles_daily_use() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut m = Meter::new(MeterProfile::Water, &mut rng);
        let start = m.read(t0(), 0.0, &mut rng).value;
        let mut end = start;
        for i in 1..=288 {
            end = m.read(t0() + Duration::minutes(5 * i), 0.0, &mut rng).value;
        }
        let day = end - start;
        // 0.06 m³/h on average: about 1.4 m³ a day, give or take the noise and the shape's mean.
        assert!((0.8..2.5).contains(&day), "one day used {day} m³");
    }

    #[test]
    fn a_register_wraps_at_its_rollover_value() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut m = Meter::near_rollover(MeterProfile::Water);
        m.read(t0(), 0.0, &mut rng);
        let after = m.read(t0() + Duration::hours(12), 0.0, &mut rng);
        assert!(after.value < 10.0, "expected a wrapped register, got {}", after.value);
        assert!(!after.reset);
    }

    #[test]
    fn a_certain_reset_replaces_the_register_near_zero() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut m = Meter::new(MeterProfile::Energy, &mut rng);
        m.read(t0(), 0.0, &mut rng);
        let r = m.read(t0() + Duration::minutes(5), 1.0, &mut rng);
        assert!(r.reset);
        assert!(r.value < 2.0);
    }

    #[test]
    fn gauges_wander_near_their_set_point_and_interval_meters_report_use() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut temp = Meter::new(MeterProfile::Temperature, &mut rng);
        let mut pressure = Meter::new(MeterProfile::Pressure, &mut rng);
        let mut interval = Meter::new(MeterProfile::EnergyInterval, &mut rng);
        interval.read(t0(), 0.0, &mut rng);
        for i in 1..1_000 {
            let at = t0() + Duration::minutes(5 * i);
            let t = temp.read(at, 0.0, &mut rng).value;
            let p = pressure.read(at, 0.0, &mut rng).value;
            let used = interval.read(at, 0.0, &mut rng).value;
            assert!((10.0..35.0).contains(&t), "temperature {t}");
            assert!((2.0..4.0).contains(&p), "pressure {p}");
            assert!((0.0..1.0).contains(&used), "5 minutes of interval energy {used}");
        }
    }

    #[test]
    fn every_profile_has_a_unit_the_domain_accepts() {
        for p in MeterProfile::MIX {
            let unit = tds_domain::Unit::parse(p.unit()).unwrap();
            assert_eq!(unit.as_str(), p.unit());
        }
    }
}
