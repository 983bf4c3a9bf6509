//! `Ts`, the one timestamp type of the schema. PostgreSQL stores it as `TIMESTAMPTZ`; SQLite as an
//! INTEGER of microseconds since the Unix epoch, which sorts and compares as numbers and is several
//! times smaller and faster than sqlx's default text encoding. Queries bind and read `Ts` alike on
//! both databases, so SQL that compares times stays shared.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgHasArrayType, PgTypeInfo};
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts(pub DateTime<Utc>);

impl Ts {
    pub fn now() -> Self {
        // Microsecond precision on both databases: truncate here so that a value read back
        // compares equal to the value written.
        Self::from_micros(Utc::now().timestamp_micros())
    }

    pub fn from_micros(micros: i64) -> Self {
        Self(DateTime::from_timestamp_micros(micros).unwrap_or_default())
    }

    pub fn micros(self) -> i64 {
        self.0.timestamp_micros()
    }
}

impl From<DateTime<Utc>> for Ts {
    fn from(t: DateTime<Utc>) -> Self {
        // An instant already in whole microseconds (not a leap second's) is kept as it is: the
        // round trip through microseconds gives it back unchanged, and it cost 3 % of the
        // endpoint's CPU, once per reading in a commit's preparation (`perf`, 10,000 meters).
        let nanos = t.timestamp_subsec_nanos();
        if nanos.is_multiple_of(1_000) && nanos < 1_000_000_000 {
            return Self(t);
        }
        Self::from_micros(t.timestamp_micros())
    }
}

impl From<Ts> for DateTime<Utc> {
    fn from(t: Ts) -> Self {
        t.0
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut <Sqlite as Database>::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode_by_ref(&self.micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: <Sqlite as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let micros = <i64 as Decode<Sqlite>>::decode(value)?;
        DateTime::from_timestamp_micros(micros)
            .map(Ts)
            .ok_or_else(|| format!("timestamp {micros} µs is out of range").into())
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for Ts {
    fn array_type_info() -> PgTypeInfo {
        <DateTime<Utc> as PgHasArrayType>::array_type_info()
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut <Postgres as Database>::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: <Postgres as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(Ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    /// The shortcut for whole microseconds gives what the round trip through microseconds gives,
    /// for whole and partial microseconds, before and after the epoch, and a leap second.
    #[test]
    fn an_instant_becomes_its_microseconds() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        let before = NaiveDate::from_ymd_opt(1969, 12, 31).unwrap();
        let instants = [
            day.and_hms_micro_opt(23, 59, 59, 123_456).unwrap(),
            day.and_hms_nano_opt(23, 59, 59, 123_456_789).unwrap(),
            day.and_hms_nano_opt(23, 59, 59, 999_999_999).unwrap(),
            day.and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap(),
            day.and_hms_nano_opt(23, 59, 59, 1_999_999_999).unwrap(),
            before.and_hms_nano_opt(23, 59, 59, 1_000).unwrap(),
            before.and_hms_nano_opt(23, 59, 59, 999).unwrap(),
        ];
        for naive in instants {
            let t = naive.and_utc();
            let expected = Ts::from_micros(t.timestamp_micros());
            assert_eq!(Ts::from(t), expected, "{naive}");
            assert_eq!(Ts::from(t).0.timestamp_subsec_nanos() % 1_000, 0, "{naive}");
        }
    }
}
