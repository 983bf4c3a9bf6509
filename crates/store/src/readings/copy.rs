//! Large groups of new readings written to PostgreSQL with `COPY … FROM STDIN (FORMAT binary)`
//! rather than `INSERT … SELECT … FROM UNNEST`: `COPY` fills the table's pages a batch of rows at
//! a time (one WAL record per batch instead of one per row) and has no plan or join to run.
//! Measured on this project's 2-core machine with PostgreSQL 15 (80,000 readings of 10,000
//! devices appended to a table of 2 million, `psql`, four of each): the insert 616–712 ms, `COPY`
//! 410–558 ms. The device check the insert's join made is a lookup of the group's devices first
//! ([`super::bulk::pg_gateways`]),
//! which also gives each reading its gateway: a round trip more, so only groups of at least
//! [`COPY_FROM`] readings are copied (a small commit at half load keeps its one statement).
//!
//! The rows are sent in key order (device, then time), not in the order the messages came: each
//! row's primary-key entry then goes to the leaf page the previous row's went to, still in the
//! CPU's cache, rather than to another of the commit's meters' pages (with 10,000 meters, 80 MB
//! of leaves). Measured with `psql` on an idle cluster (80,000 readings of 10,000 devices
//! appended to a table of 4 million, six of each, alternating): in message order 333–452 ms a
//! `COPY`, in key order 230–493 ms (mean 337 against 424; 306 without the first, which followed the
//! table's checkpoint).
//!
//! The rows go in PostgreSQL's binary `COPY` format: a header, then per row the field count and
//! each field as its length and its value in the type's binary form, which sqlx's own encoders
//! write (the same bytes it sends as a bound parameter), then a trailer.

use super::NewReading;
use super::bulk::{Inserted, devices_of, in_key_order, is_unique_violation, pg_gateways};
use crate::Ts;
use sqlx::postgres::{PgArgumentBuffer, Postgres};
use std::collections::HashMap;
use tds_domain::TenantId;

/// Readings from which a group expected to hold only new keys is copied.
pub(super) const COPY_FROM: usize = 2_000;

const PG_COPY: &str = "COPY readings (device_id, time, tenant_id, gateway_id, value, unit, ingested_at) \
    FROM STDIN (FORMAT binary)";

/// The binary format's signature, then its flags and header extension length (both 0).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Fields per row: the columns [`PG_COPY`] names.
const FIELDS: i16 = 7;
/// The field count that ends the data.
const TRAILER: i16 = -1;

/// Writes a group expected to hold only new keys, as [`super::bulk::BulkInsert::insert_owned`]
/// does with `only_new`: [`Inserted::All`], [`Inserted::NotOwned`] when a device is not the
/// tenant's (nothing written), or [`Inserted::Again`] when a key was already stored (the
/// transaction is then aborted).
pub(super) async fn copy_new(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    at: Ts,
    group: &[NewReading],
) -> Result<Inserted, sqlx::Error> {
    let devices = devices_of(group);
    let gateways = pg_gateways(conn, tenant, &devices).await?;
    if gateways.len() < devices.len() {
        return Ok(Inserted::NotOwned);
    }
    let data = encode(group, tenant, at, &gateways)?;
    let mut copy = conn.copy_in_raw(PG_COPY).await?;
    if let Err(e) = copy.send(data.as_slice()).await {
        // The connection is unusable if the copy is neither finished nor aborted.
        copy.abort("the readings could not be sent").await.ok();
        return Err(e);
    }
    match copy.finish().await {
        Ok(n) if usize::try_from(n).is_ok_and(|n| n == group.len()) => Ok(Inserted::All),
        Ok(n) => Err(sqlx::Error::Protocol(format!("COPY wrote {n} of {} readings", group.len()))),
        Err(e) if is_unique_violation(&e) => Ok(Inserted::Again),
        Err(e) => Err(e),
    }
}

/// The group in the binary `COPY` format, in key order, each reading with its device's gateway.
fn encode(
    group: &[NewReading],
    tenant: TenantId,
    at: Ts,
    gateways: &HashMap<i64, i64>,
) -> Result<PgArgumentBuffer, sqlx::Error> {
    let mut buf = PgArgumentBuffer::default();
    // Seven fields of 4 + 8 bytes, the unit's few bytes and the row's field count.
    buf.reserve(HEADER.len() + group.len() * 96 + 2);
    buf.extend_from_slice(HEADER);
    for r in in_key_order(group) {
        let device = r.device_id.get();
        let gateway = gateways
            .get(&device)
            .copied()
            .ok_or_else(|| sqlx::Error::Protocol(format!("COPY: device {device} was not looked up")))?;
        buf.extend_from_slice(&FIELDS.to_be_bytes());
        field(&mut buf, &device)?;
        field(&mut buf, &Ts::from(r.time))?;
        field(&mut buf, &tenant.get())?;
        field(&mut buf, &gateway)?;
        field(&mut buf, &r.value)?;
        field(&mut buf, &&*r.unit)?;
        field(&mut buf, &at)?;
    }
    buf.extend_from_slice(&TRAILER.to_be_bytes());
    Ok(buf)
}

/// One field: its length, then the value as sqlx encodes it for PostgreSQL.
fn field<'q, T: sqlx::Encode<'q, Postgres>>(
    buf: &mut PgArgumentBuffer,
    value: &T,
) -> Result<(), sqlx::Error> {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    if value.encode_by_ref(buf).map_err(sqlx::Error::Encode)?.is_null() {
        return Err(sqlx::Error::Protocol("COPY: a reading's field is null".into()));
    }
    let len = i32::try_from(buf.len() - start - 4)
        .map_err(|_| sqlx::Error::Protocol("COPY: a field too long".into()))?;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}
