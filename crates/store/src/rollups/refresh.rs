//! The rollup refresh: marked devices' hour, day and month rows brought up to date (see the
//! module above for the marks and the guarantees).
//!
//! Two ways to bring a device's hours up to date, chosen per device and per round:
//! - **Going on** ([`tds_domain::rollup::resume`]): when every reading the marks name comes after
//!   the last reading already rolled up (its latest hour row keeps that reading's time and
//!   value), only the new readings are read and added to that row. A device reporting in order,
//!   the usual case, costs the same per reading however full its hour already is.
//! - **Recomputing** ([`tds_domain::rollup::rollup`]): otherwise (a late reading, a backlog
//!   interleaved with stored readings, a row written before rows kept their last reading), the
//!   whole hours from the earliest marked reading through the first stored reading after the
//!   latest are computed again from the raw readings and the one reading before them.
//!
//! Both give the same rows bit for bit (the sums are accumulated in time order either way;
//! `crates/store/tests/it/rollups.rs` checks it on both databases). Days are then summed from
//! their stored hours with the new ones put in, months from days.
//!
//! What a round sees of a device: only the readings committed by its mark's instant
//! (`ingested_at <= marked_at`), not every reading visible when it reads. Readings committed
//! after the fold that made the mark are marked again by their own commit; read now as well,
//! they would be before the hour row's last reading when their mark comes, and every round
//! under a steady load would recompute the hour instead of going on from it (`tds bench
//! ingest` saw no device go on, and each round read the devices' whole hours again).

use super::write::{CLEAR_CHUNK, Part, UPSERT_CHUNK, Upsert, UpsertRollups as _, combine};
use super::{ROW_COLUMNS, RollupStore, Row};
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt as _, stream};
use sqlx::AssertSqlSafe;
use std::collections::HashMap;
use tds_domain::buckets::{bucket_len_seconds, bucket_start, expected_readings, next_bucket_start};
use tds_domain::consumption::{Meter, RawReading};
use tds_domain::rollup::{Rollup, resume, rollup};
use tds_domain::{Bucket, DeviceId, MeasurementKind, TenantId, TimeZone};

/// A marked device, with what its rollups are computed with.
#[derive(sqlx::FromRow, Clone)]
struct Dirty {
    device_id: i64,
    tenant_id: i64,
    from_time: Ts,
    to_time: Ts,
    marked_at: Ts,
    kind: String,
    scale_factor: f64,
    rollover_value: Option<f64>,
    expected_interval_s: i64,
    timezone: String,
    /// The fold whose kept readings make the mark (see [`super::feed`]), or 0.
    feed: i64,
}

/// The marks waiting longest first (`dirty_since`, when the mark was made; see migration 0017):
/// under a steady load every device is marked again by every fold, and ordering by `marked_at`
/// (the latest commit's time) took the same devices round after round.
const DIRTY: &str = "SELECT r.device_id, r.tenant_id, r.from_time, r.to_time, r.marked_at, r.feed, d.kind, d.scale_factor, \
     d.rollover_value, g.expected_interval_s, t.timezone \
     FROM rollup_dirty r JOIN devices d ON d.id = r.device_id JOIN gateways g ON g.id = d.gateway_id \
     JOIN tenants t ON t.id = r.tenant_id ORDER BY r.dirty_since, r.device_id LIMIT $1";

/// A device's reading just before `$3` (`which` 0) and first reading after `$4` (`which` 1), of
/// those committed by `$5` (see [`RollupStore::refresh`]).
const NEIGHBOURS: &str = "SELECT time, value, CAST(0 AS BIGINT) AS which FROM (SELECT time, value FROM readings \
     WHERE device_id = $1 AND tenant_id = $2 AND time < $3 AND ingested_at <= $5 ORDER BY time DESC LIMIT 1) AS before_span \
     UNION ALL SELECT time, value, CAST(1 AS BIGINT) FROM (SELECT time, value FROM readings \
     WHERE device_id = $1 AND tenant_id = $2 AND time > $4 AND ingested_at <= $5 ORDER BY time LIMIT 1) AS after_span";

/// [`NEIGHBOURS`] of many devices: `$1` ids, `$2` tenants, `$3` first hours, `$4` span ends,
/// `$5` marks' instants.
const PG_NEIGHBOURS: &str = "SELECT s.d, b.time, b.value, CAST(0 AS BIGINT) FROM \
     UNNEST($1::BIGINT[], $2::BIGINT[], $3::TIMESTAMPTZ[], $5::TIMESTAMPTZ[]) AS s(d, t, f, m) CROSS JOIN LATERAL \
     (SELECT time, value FROM readings WHERE device_id = s.d AND tenant_id = s.t AND time < s.f \
      AND ingested_at <= s.m ORDER BY time DESC LIMIT 1) AS b \
     UNION ALL SELECT s.d, n.time, n.value, CAST(1 AS BIGINT) FROM \
     UNNEST($1::BIGINT[], $2::BIGINT[], $4::TIMESTAMPTZ[], $5::TIMESTAMPTZ[]) AS s(d, t, e, m) CROSS JOIN LATERAL \
     (SELECT time, value FROM readings WHERE device_id = s.d AND tenant_id = s.t AND time > s.e \
      AND ingested_at <= s.m ORDER BY time LIMIT 1) AS n";

/// Many devices' readings with `$3 <= time < $4` committed by `$5`, per device (ids `$1`,
/// tenants `$2`).
const PG_READINGS: &str = "SELECT s.d, r.time, r.value FROM \
     UNNEST($1::BIGINT[], $2::BIGINT[], $3::TIMESTAMPTZ[], $4::TIMESTAMPTZ[], $5::TIMESTAMPTZ[]) AS s(d, t, f, e, m) \
     CROSS JOIN LATERAL (SELECT time, value FROM readings WHERE device_id = s.d AND tenant_id = s.t \
     AND time >= s.f AND time < s.e AND ingested_at <= s.m) AS r";

impl RollupStore<'_> {
    pub(super) async fn refresh(
        &self,
        limit: i64,
        max_rows: usize,
    ) -> Result<Vec<(TenantId, DeviceId)>, StoreError> {
        // Commits since the last round become marks first (read and merged, then one short
        // transaction).
        let started = std::time::Instant::now();
        let commits = super::pending::fold(self.db, self.feed).await?;
        let folded = started.elapsed();
        let dirty: Vec<Dirty> =
            on_db!(self.db, read | pool | sqlx::query_as(DIRTY).bind(limit).fetch_all(pool).await)?;
        if dirty.is_empty() {
            return Ok(Vec::new());
        }
        let mut zones: HashMap<String, TimeZone> = HashMap::new();
        let mut work = Vec::with_capacity(dirty.len());
        for d in dirty {
            let tz = *zones
                .entry(d.timezone.clone())
                .or_insert_with(|| TimeZone::parse(&d.timezone).unwrap_or_default());
            let kind = MeasurementKind::parse(&d.kind).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            // A device row the domain refuses (a negative scale typed before the check existed)
            // is refreshed as scale 1 without rollover rather than blocking the queue.
            let meter = Meter::new(kind, d.scale_factor, d.rollover_value)
                .or_else(|_| Meter::new(kind, 1.0, None))
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            work.push((d, tz, meter));
        }
        let mut upserts: Vec<Upsert> = Vec::new();
        let mut planned: Vec<(i64, Ts)> = Vec::new();
        let mut touched: Vec<(TenantId, DeviceId)> = Vec::new();
        let mut ways = Ways::default();
        match self.db {
            // PostgreSQL: a few hundred devices per statement (a live round's devices have a few
            // readings each, and a statement costs more than its rows), fewer when their spans
            // are long; the round stops at the budget after a whole chunk.
            Db::Postgres(pg) => {
                let mut at = 0;
                while at < work.len() && upserts.len() < max_rows {
                    let room = max_rows - upserts.len();
                    let mut end = at;
                    let mut estimate = 0;
                    while end < work.len()
                        && (end == at || (estimate < room && end - at < PG_DEVICES_PER_READ))
                    {
                        estimate += estimated_rows(&work[end].0);
                        end += 1;
                    }
                    let chunk = work[at..end].to_vec();
                    let fed = chunk.iter().map(|(d, _, _)| self.take_fed(d)).collect();
                    let inputs = read_many(pg, &chunk, fed).await?;
                    for input in &inputs {
                        ways.count(input);
                    }
                    // Computed off the async threads: hundreds of devices at once are
                    // milliseconds of CPU that would hold up the sessions on that thread (see
                    // `super::pending::fold`).
                    let computed = tokio::task::spawn_blocking(move || {
                        chunk
                            .into_iter()
                            .zip(inputs)
                            .map(|((d, tz, meter), input)| (compute(&d, tz, meter, input), d))
                            .collect::<Vec<_>>()
                    })
                    .await
                    .map_err(|e| StoreError::Corrupt(format!("rollups: the refresh stopped: {e}")))?;
                    for (rows, d) in computed {
                        upserts.extend(rows);
                        planned.push((d.device_id, d.marked_at));
                        touched.push((TenantId::new(d.tenant_id), DeviceId::new(d.device_id)));
                    }
                    at = end;
                }
            }
            // SQLite: [`SQLITE_DEVICES_PER_READ`] at a time. Those going on from their stored hour
            // with readings this store kept (under a steady load, all but the first round's) are
            // read together; the others a device at a time, four in flight so that reading one
            // overlaps computing another.
            Db::Sqlite(s) => {
                let mut at = 0;
                'chunks: while at < work.len() {
                    let end = (at + SQLITE_DEVICES_PER_READ).min(work.len());
                    let chunk = &work[at..end];
                    // The futures are made before the stream takes them: a closure in the stream
                    // would borrow in a way the spawned worker's `Send` check cannot prove.
                    let mut futures = Vec::new();
                    let mut kept = Vec::with_capacity(chunk.len());
                    for ((d, tz, _), read) in chunk.iter().zip(self.read_kept(&s.read, chunk).await?) {
                        match read {
                            Read::Kept(input) => kept.push(Some(input)),
                            Read::Latest(resume) => {
                                futures.push(self.read_one(d, *tz, resume));
                                kept.push(None);
                            }
                        }
                    }
                    let mut reads = stream::iter(futures).buffered(PLAN_CONCURRENCY);
                    for ((d, tz, meter), kept) in chunk.iter().zip(kept) {
                        let input = match kept {
                            Some(input) => input,
                            None => match reads.next().await {
                                Some(input) => input?,
                                None => break 'chunks,
                            },
                        };
                        ways.count(&input);
                        upserts.extend(compute(d, *tz, *meter, input));
                        planned.push((d.device_id, d.marked_at));
                        touched.push((TenantId::new(d.tenant_id), DeviceId::new(d.device_id)));
                        if upserts.len() >= max_rows {
                            break 'chunks;
                        }
                    }
                    at = end;
                }
            }
        }
        self.feed.count(ways.from_memory, ways.read_going_on + ways.recomputed);
        let computed = started.elapsed();
        let now = Ts::now();
        let rows = upserts.len();
        let mut began = computed;
        in_tx!(self.db, |tx| {
            began = started.elapsed();
            for chunk in upserts.chunks(UPSERT_CHUNK) {
                tx.upsert_rollups(chunk, now).await?;
            }
            // In device order, as the fold upserts them (`super::pending::fold`).
            planned.sort_unstable_by_key(|p| p.0);
            for chunk in planned.chunks(CLEAR_CHUNK) {
                tx.clear_marks(chunk).await?;
            }
            Ok(())
        })?;
        // Where a round's time goes (`TDS_LOG_LEVEL=info,tds_store::rollups=debug`).
        tracing::debug!(
            commits,
            devices = touched.len(),
            from_memory = ways.from_memory,
            read_going_on = ways.read_going_on,
            recomputed = ways.recomputed,
            rows,
            fold_ms = folded.as_secs_f64() * 1e3,
            read_and_compute_ms = computed.saturating_sub(folded).as_secs_f64() * 1e3,
            write_begin_ms = began.saturating_sub(computed).as_secs_f64() * 1e3,
            write_held_ms = started.elapsed().saturating_sub(began).as_secs_f64() * 1e3,
            "rollup round"
        );
        Ok(touched)
    }

    /// The new readings of a device's mark, when this store kept them all (see [`super::feed`]);
    /// whatever was kept for the device is taken either way.
    fn take_fed(&self, d: &Dirty) -> Option<Vec<RawReading>> {
        let mark = self.feed.take_mark(d.device_id)?;
        if !mark.is(d.feed, d.tenant_id, d.from_time.micros(), d.to_time.micros(), d.marked_at) {
            return None;
        }
        Some(mark.readings.into_iter().map(|(t, v)| (Ts::from_micros(t).0, v)).collect())
    }

    /// On SQLite, the inputs of the devices of `work` that go on from their stored hour with
    /// readings this store kept (see [`super::feed`]), read in two statements for them all: their
    /// latest hour rows, then the stored rows their day and month are summed from. Two statements
    /// a device cost about 125 µs of the refresh's time a device (`tds bench ingest --gateways
    /// 1000 --devices 10`: 250 ms a round of 2,000 devices from memory, with nothing else
    /// running), most of it handing each statement to SQLite's thread and back. The others get
    /// what their latest hour row says, for [`Self::read_one`] to read the rest; their kept
    /// readings are left for it to take.
    async fn read_kept(
        &self,
        pool: &sqlx::SqlitePool,
        work: &[(Dirty, TimeZone, Meter)],
    ) -> Result<Vec<Read>, StoreError> {
        let ids: Vec<i64> = work.iter().map(|(d, _, _)| d.device_id).collect();
        let latest: Vec<LatestHour> =
            sqlx::query_as(SQLITE_LATEST_HOURS).bind(json_text(&ids)?).fetch_all(pool).await?;
        let mut latest: HashMap<i64, LatestHour> = latest.into_iter().map(|l| (l.device_id, l)).collect();
        let mut inputs = Vec::with_capacity(work.len());
        let mut spans = Vec::new();
        for (d, tz, _) in work {
            let resume = latest.remove(&d.device_id).and_then(|l| l.resumable(d, *tz));
            let read = match resume {
                Some(resume) => match self.take_fed(d) {
                    Some(fed) => Read::Kept(Inputs {
                        resume: Some(resume),
                        readings: fed,
                        from_memory: true,
                        ..Inputs::default()
                    }),
                    None => Read::Latest(Some(resume)),
                },
                None => Read::Latest(None),
            };
            if let Read::Kept(input) = &read {
                let r = Ranges::of(d, *tz, input);
                spans.push([
                    d.device_id,
                    r.day_from.timestamp_micros(),
                    r.day_to.timestamp_micros(),
                    r.month_from.timestamp_micros(),
                    r.month_to.timestamp_micros(),
                ]);
            }
            inputs.push(read);
        }
        if spans.is_empty() {
            return Ok(inputs);
        }
        let stored: Vec<Row> =
            sqlx::query_as(AssertSqlSafe(sqlite_stored())).bind(json_text(&spans)?).fetch_all(pool).await?;
        let index: HashMap<i64, usize> =
            work.iter().enumerate().map(|(i, (d, _, _))| (d.device_id, i)).collect();
        for row in stored {
            if let Some(Read::Kept(input)) = index.get(&row.device_id).and_then(|&i| inputs.get_mut(i)) {
                input.stored.push(row);
            }
        }
        Ok(inputs)
    }

    /// Reads the rest of what one marked device's refresh needs, given where its latest hour row
    /// lets it go on from (`resume`, from [`Self::read_kept`]): when the new readings cannot
    /// simply be added to it, the neighbours of the span; the raw readings (unless this store
    /// kept them); and the stored finer rows the coarser buckets are summed from.
    async fn read_one(&self, d: &Dirty, tz: TimeZone, resume: Option<Resume>) -> Result<Inputs, StoreError> {
        let fed = self.take_fed(d);
        let (device, tenant) = (d.device_id, d.tenant_id);
        let mut input = Inputs { resume, ..Inputs::default() };
        if input.resume.is_none() {
            let first = bucket_start(tz, Bucket::Hour, d.from_time.0);
            let neighbours: Vec<(Ts, f64, i64)> = on_db!(
                self.db,
                read | pool
                    | sqlx::query_as(NEIGHBOURS)
                        .bind(device)
                        .bind(tenant)
                        .bind(Ts::from(first))
                        .bind(d.to_time)
                        .bind(d.marked_at)
                        .fetch_all(pool)
                        .await
            )?;
            for (t, v, which) in neighbours {
                if which == 0 {
                    input.baseline = Some((t.0, v));
                } else {
                    input.next = Some(t.0);
                }
            }
        }
        let r = Ranges::of(d, tz, &input);
        // Going on from the stored hour, the readings to add are exactly the mark's: kept here
        // if this store's commits made the whole mark.
        if let Some(fed) = fed.filter(|_| input.resume.is_some()) {
            input.readings = fed;
            input.from_memory = true;
        } else {
            let readings: Vec<(Ts, f64)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT time, value FROM readings WHERE device_id = $1 AND tenant_id = $2 AND time >= $3 \
                     AND time < $4 AND ingested_at <= $5 ORDER BY time",
                )
                .bind(device)
                .bind(tenant)
                .bind(Ts::from(r.readings_from))
                .bind(Ts::from(r.readings_end))
                .bind(d.marked_at)
                .fetch_all(pool)
                .await
            )?;
            input.readings = readings.into_iter().map(|(t, v)| (t.0, v)).collect();
        }
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM rollups WHERE device_id = $1 AND \
             ((granularity = 'hour' AND bucket_start >= $2 AND bucket_start < $3) \
              OR (granularity = 'day' AND bucket_start >= $4 AND bucket_start < $5))"
        );
        input.stored = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(device)
                    .bind(Ts::from(r.day_from))
                    .bind(Ts::from(r.day_to))
                    .bind(Ts::from(r.month_from))
                    .bind(Ts::from(r.month_to))
                    .fetch_all(pool)
                    .await
        )?;
        Ok(input)
    }
}

/// Many devices' latest hour rows, each with the reading it ends on (`$1`: their ids).
const PG_LATEST_HOURS: &str = "SELECT h.* FROM UNNEST($1::BIGINT[]) AS s(d) CROSS JOIN LATERAL \
     (SELECT device_id, tenant_id, bucket_start, consumption, min_value, max_value, sum_value, reading_count, resets, \
      last_time, last_value FROM rollups WHERE device_id = s.d AND granularity = 'hour' \
      ORDER BY bucket_start DESC LIMIT 1) AS h";

/// [`PG_LATEST_HOURS`] on SQLite (`$1`: a JSON array of the ids).
const SQLITE_LATEST_HOURS: &str = "SELECT h.device_id, h.tenant_id, h.bucket_start, h.consumption, h.min_value, \
     h.max_value, h.sum_value, h.reading_count, h.resets, h.last_time, h.last_value \
     FROM json_each($1) AS j JOIN rollups AS h ON h.device_id = j.value AND h.granularity = 'hour' \
     AND h.bucket_start = (SELECT bucket_start FROM rollups WHERE device_id = j.value AND granularity = 'hour' \
     ORDER BY bucket_start DESC LIMIT 1)";

/// The stored rows many devices' days and months are summed from, on SQLite: `$1` is a JSON
/// array of `[device, day from, day to, month from, month to]` (µs), and each device's hour rows
/// in its day's span and day rows in its month's span are read through the primary key.
fn sqlite_stored() -> String {
    let part = |granularity: &str, from: u8, to: u8| {
        format!(
            "SELECT {ROW_COLUMNS} FROM json_each($1) AS j JOIN rollups AS r ON r.device_id = j.value ->> 0 \
             AND r.granularity = '{granularity}' AND r.bucket_start >= j.value ->> {from} \
             AND r.bucket_start < j.value ->> {to}"
        )
    };
    format!("{} UNION ALL {}", part("hour", 1, 2), part("day", 3, 4))
}

/// A statement's JSON parameter.
fn json_text(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("rollups: {e}")))
}

/// What [`RollupStore::read_kept`] found for a device on SQLite.
enum Read {
    /// Everything its refresh needs.
    Kept(Inputs),
    /// Where its latest hour row lets it go on from (`None`: recompute); [`RollupStore::read_one`]
    /// reads the rest.
    Latest(Option<Resume>),
}

#[derive(sqlx::FromRow)]
struct LatestHour {
    device_id: i64,
    tenant_id: i64,
    bucket_start: Ts,
    consumption: Option<f64>,
    min_value: Option<f64>,
    max_value: Option<f64>,
    sum_value: Option<f64>,
    reading_count: i64,
    resets: i64,
    last_time: Option<Ts>,
    last_value: Option<f64>,
}

impl LatestHour {
    /// Where the device's refresh can go on from, if every marked reading comes after the last
    /// one rolled up. The marks guarantee that readings after it are all in the mark (a reading
    /// committed since the last refresh moved the mark's earliest instant to it), so then the
    /// hour row holds exactly its hour's readings up to that one.
    fn resumable(self, d: &Dirty, tz: TimeZone) -> Option<Resume> {
        let last = (self.last_time?.0, self.last_value?);
        // A device moved to another tenant starts that tenant's rows from its readings; a
        // tenant whose time zone changed has its hours recomputed where they now fall.
        if self.tenant_id != d.tenant_id
            || last.0 >= d.from_time.0
            || bucket_start(tz, Bucket::Hour, last.0) != self.bucket_start.0
        {
            return None;
        }
        let count = u32::try_from(self.reading_count).ok()?;
        let open = Rollup {
            start: self.bucket_start.0,
            consumption: self.consumption,
            min: self.min_value,
            max: self.max_value,
            avg: None,
            sum: self.sum_value,
            count,
            resets: u32::try_from(self.resets).ok()?,
            // Not kept: only tallied while a bucket is computed.
            rollovers: 0,
            negatives: 0,
            last,
        };
        Some(Resume { open })
    }
}

/// A device refreshed by adding its new readings to its latest hour row.
struct Resume {
    /// That row, as stored; `open.last` is the last reading rolled up.
    open: Rollup,
}

/// How a round's devices were refreshed, for its debug line: a device read back while going on
/// from its stored hour had no readings kept for it here (another instance's commit, a restart,
/// the feed's bound), one recomputed has no hour to go on from or a late reading.
#[derive(Debug, Default)]
struct Ways {
    from_memory: usize,
    read_going_on: usize,
    recomputed: usize,
}

impl Ways {
    fn count(&mut self, input: &Inputs) {
        match (input.from_memory, input.resume.is_some()) {
            (true, _) => self.from_memory += 1,
            (false, true) => self.read_going_on += 1,
            (false, false) => self.recomputed += 1,
        }
    }
}

/// What a device's refresh is computed from.
#[derive(Default)]
struct Inputs {
    /// Set when the new readings go on from the latest hour row; the other fields then hold
    /// only the readings from the earliest marked one and no baseline or next reading.
    resume: Option<Resume>,
    /// The last reading before the first recomputed hour.
    baseline: Option<RawReading>,
    /// The first reading after the marked span.
    next: Option<DateTime<Utc>>,
    /// The readings of the recomputed hours, any order.
    readings: Vec<RawReading>,
    /// Stored hour rows of the days and day rows of the months the recomputed hours touch.
    stored: Vec<Row>,
    /// The readings came from this store's memory, not the database.
    from_memory: bool,
}

/// The instants a device's refresh reads between.
struct Ranges {
    /// Readings are read from here: the first recomputed hour, or the earliest marked reading
    /// when going on from the latest hour row.
    readings_from: DateTime<Utc>,
    /// The end of the hour of the first reading after the span (or of the span's last).
    readings_end: DateTime<Utc>,
    day_from: DateTime<Utc>,
    day_to: DateTime<Utc>,
    month_from: DateTime<Utc>,
    month_to: DateTime<Utc>,
}

impl Ranges {
    /// Needs `input`'s `resume`, and `next` when recomputing.
    fn of(d: &Dirty, tz: TimeZone, input: &Inputs) -> Self {
        let first = bucket_start(tz, Bucket::Hour, d.from_time.0);
        let last = input.next.unwrap_or(d.to_time.0);
        Ranges {
            readings_from: if input.resume.is_some() { d.from_time.0 } else { first },
            readings_end: next_bucket_start(tz, Bucket::Hour, last),
            day_from: bucket_start(tz, Bucket::Day, first),
            day_to: next_bucket_start(tz, Bucket::Day, last),
            month_from: bucket_start(tz, Bucket::Month, first),
            month_to: next_bucket_start(tz, Bucket::Month, last),
        }
    }
}

/// Devices read per statement on PostgreSQL at most.
const PG_DEVICES_PER_READ: usize = 500;

/// About how many rows a device's refresh writes: its span's hours, and a day and month or so.
fn estimated_rows(d: &Dirty) -> usize {
    let hours = usize::try_from((d.to_time.0 - d.from_time.0).num_hours()).unwrap_or(0) + 1;
    hours + hours / 24 + 2
}

/// Reads what the refreshes of `work`'s devices need in a few statements for them all, on
/// PostgreSQL (`UNNEST` of their ids and instants, a `LATERAL` index scan per device); in
/// `work`'s order.
/// `fed` holds, per device, the readings this store kept of its mark: used instead of reading
/// them when the device goes on from its stored hour.
async fn read_many(
    pg: &sqlx::PgPool,
    work: &[(Dirty, TimeZone, Meter)],
    fed: Vec<Option<Vec<RawReading>>>,
) -> Result<Vec<Inputs>, StoreError> {
    let index: HashMap<i64, usize> = work.iter().enumerate().map(|(i, (d, _, _))| (d.device_id, i)).collect();
    let mut inputs: Vec<Inputs> = work.iter().map(|_| Inputs::default()).collect();
    let devices: Vec<i64> = work.iter().map(|(d, _, _)| d.device_id).collect();
    let tenants: Vec<i64> = work.iter().map(|(d, _, _)| d.tenant_id).collect();
    let latest: Vec<LatestHour> = sqlx::query_as(PG_LATEST_HOURS).bind(&devices).fetch_all(pg).await?;
    for l in latest {
        if let Some(&i) = index.get(&l.device_id) {
            inputs[i].resume = l.resumable(&work[i].0, work[i].1);
        }
    }
    // The neighbours of the devices whose hours are recomputed.
    let recompute: Vec<usize> = (0..work.len()).filter(|&i| inputs[i].resume.is_none()).collect();
    if !recompute.is_empty() {
        let firsts: Vec<Ts> = recompute
            .iter()
            .map(|&i| Ts::from(bucket_start(work[i].1, Bucket::Hour, work[i].0.from_time.0)))
            .collect();
        let neighbours: Vec<(i64, Ts, f64, i64)> = sqlx::query_as(PG_NEIGHBOURS)
            .bind(recompute.iter().map(|&i| devices[i]).collect::<Vec<_>>())
            .bind(recompute.iter().map(|&i| tenants[i]).collect::<Vec<_>>())
            .bind(&firsts)
            .bind(recompute.iter().map(|&i| work[i].0.to_time).collect::<Vec<_>>())
            .bind(recompute.iter().map(|&i| work[i].0.marked_at).collect::<Vec<_>>())
            .fetch_all(pg)
            .await?;
        for (device, t, v, which) in neighbours {
            if let Some(input) = index.get(&device).and_then(|&i| inputs.get_mut(i)) {
                if which == 0 {
                    input.baseline = Some((t.0, v));
                } else {
                    input.next = Some(t.0);
                }
            }
        }
    }
    let ranges: Vec<Ranges> =
        work.iter().zip(&inputs).map(|((d, tz, _), input)| Ranges::of(d, *tz, input)).collect();
    // Going on from the stored hour, a device's readings to add are exactly its mark's: kept
    // here if this store's commits made the whole mark; the others are read.
    for (input, fed) in inputs.iter_mut().zip(fed) {
        if let Some(fed) = fed.filter(|_| input.resume.is_some()) {
            input.readings = fed;
            input.from_memory = true;
        }
    }
    let read: Vec<usize> = (0..work.len()).filter(|&i| !inputs[i].from_memory).collect();
    let readings: Vec<(i64, Ts, f64)> = if read.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(PG_READINGS)
            .bind(read.iter().map(|&i| devices[i]).collect::<Vec<_>>())
            .bind(read.iter().map(|&i| tenants[i]).collect::<Vec<_>>())
            .bind(read.iter().map(|&i| Ts::from(ranges[i].readings_from)).collect::<Vec<_>>())
            .bind(read.iter().map(|&i| Ts::from(ranges[i].readings_end)).collect::<Vec<_>>())
            .bind(read.iter().map(|&i| work[i].0.marked_at).collect::<Vec<_>>())
            .fetch_all(pg)
            .await?
    };
    for (device, t, v) in readings {
        if let Some(input) = index.get(&device).and_then(|&i| inputs.get_mut(i)) {
            input.readings.push((t.0, v));
        }
    }
    let sql = format!(
        "SELECT r.* FROM UNNEST($1::BIGINT[], $2::TIMESTAMPTZ[], $3::TIMESTAMPTZ[], $4::TIMESTAMPTZ[], \
         $5::TIMESTAMPTZ[]) AS s(d, hf, ht, df, dt) CROSS JOIN LATERAL (SELECT {ROW_COLUMNS} FROM rollups \
         WHERE device_id = s.d AND ((granularity = 'hour' AND bucket_start >= s.hf AND bucket_start < s.ht) \
         OR (granularity = 'day' AND bucket_start >= s.df AND bucket_start < s.dt))) AS r"
    );
    let stored: Vec<Row> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(&devices)
        .bind(ranges.iter().map(|r| Ts::from(r.day_from)).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| Ts::from(r.day_to)).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| Ts::from(r.month_from)).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| Ts::from(r.month_to)).collect::<Vec<_>>())
        .fetch_all(pg)
        .await?;
    for row in stored {
        if let Some(input) = index.get(&row.device_id).and_then(|&i| inputs.get_mut(i)) {
            input.stored.push(row);
        }
    }
    Ok(inputs)
}

/// A device's new hour rows from its readings, and its day and month rows from the stored finer
/// rows with the new ones in their place.
fn compute(d: &Dirty, tz: TimeZone, meter: Meter, input: Inputs) -> Vec<Upsert> {
    let (device, tenant) = (d.device_id, d.tenant_id);
    let interval = d.expected_interval_s.max(1);
    let mut raw = input.readings;
    raw.sort_by_key(|r| r.0);
    let hours = match &input.resume {
        Some(r) => resume(meter, r.open.last, Some(&r.open), &raw, tz, Bucket::Hour),
        None => rollup(meter, input.baseline, &raw, tz, Bucket::Hour),
    };
    let mut fresh: Vec<Upsert> = hours
        .iter()
        .map(|h| Upsert {
            device,
            tenant,
            bucket: Bucket::Hour,
            start: h.start,
            consumption: h.consumption,
            min: h.min,
            max: h.max,
            sum: h.sum,
            count: i64::from(h.count),
            expected: i64::from(expected_readings(bucket_len_seconds(tz, Bucket::Hour, h.start), interval)),
            resets: i64::from(h.resets),
            last: Some(h.last),
        })
        .collect();
    let mut stored = input.stored;
    for (coarse, fine) in [(Bucket::Day, Bucket::Hour), (Bucket::Month, Bucket::Day)] {
        let finer: Vec<Row>;
        (finer, stored) = stored.into_iter().partition(|r| r.granularity == fine.as_str());
        let mut parts: std::collections::BTreeMap<DateTime<Utc>, Part> =
            finer.into_iter().map(|r| (r.bucket_start.0, Part::from(&r))).collect();
        for u in fresh.iter().filter(|u| u.bucket == fine) {
            parts.insert(u.start, Part::from(u));
        }
        let coarse_rows: Vec<Upsert> = combine(parts.into_iter(), |t| bucket_start(tz, coarse, t))
            .into_iter()
            .map(|c| Upsert {
                device,
                tenant,
                bucket: coarse,
                start: c.start,
                consumption: c.consumption,
                min: c.min,
                max: c.max,
                sum: c.sum,
                count: c.count,
                expected: i64::from(expected_readings(bucket_len_seconds(tz, coarse, c.start), interval)),
                resets: c.resets,
                last: None,
            })
            .collect();
        fresh.extend(coarse_rows);
    }
    fresh
}

/// Devices whose inputs a refresh reads together on SQLite (see [`RollupStore::read_kept`]); a
/// JSON array of 500 spans is ~25 KB.
const SQLITE_DEVICES_PER_READ: usize = 500;

/// Devices whose rows a refresh reads at once.
pub(super) const PLAN_CONCURRENCY: usize = 4;

/// New rows after which a refresh round takes no more devices (~20 MB in memory).
pub(super) const ROUND_ROWS: usize = 200_000;
