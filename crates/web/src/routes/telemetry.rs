//! Telemetria (SPEC §4): chosen devices over a period (24 h, 7 d, 30 d or a custom range), a line
//! chart whose bucket follows the span (raw readings up to a day, hours up to a week, days
//! beyond), consumption bars per bucket, and the latest readings; kept current by server-sent
//! events (`/events`) without reloading or polling.
//!
//! The chart data (`/telemetry/data`) comes from the rollups whenever the span allows, and from
//! raw readings only for a day or less. Missing buckets are `null`, so a gap draws as a gap, and
//! each series carries its unit so the page never puts two units on one axis.

use crate::AppState;
use crate::auth::Viewer;
use crate::error::WebResult;
use crate::page::PageCtx;
use crate::routes::render;
use crate::routes::table::Routes;
use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use tds_domain::buckets::{Bucket, bucket_start, bucket_starts};
use tds_domain::{DeviceId, MeasurementKind, TenantId, TimeZone};
use tds_store::Store;
use tds_store::devices::Device;
use tds_store::readings::Reading;
use tokio::sync::broadcast;

/// Devices one chart may show at once.
pub const MAX_DEVICES: usize = 12;
/// Devices the picker lists at most; a search narrows it down (the selection is always listed).
pub const PICKER_ROWS: i64 = 200;
/// Rows of the latest-readings table.
pub const LATEST_ROWS: i64 = 20;
/// Raw readings drawn at most per device (a day every 10 s is 8640).
const MAX_RAW: i64 = 20_000;

pub fn routes() -> Routes {
    Routes::new()
        .route("/telemetry", get(page))
        .route("/telemetry/data", get(data))
        .route("/events", get(events))
}

/// The period picked on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
    Custom,
}

impl Period {
    fn parse(s: &str) -> Self {
        match s {
            "7d" => Self::Week,
            "30d" => Self::Month,
            "custom" => Self::Custom,
            _ => Self::Day,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "24h",
            Self::Week => "7d",
            Self::Month => "30d",
            Self::Custom => "custom",
        }
    }
}

/// What the query string asks for, checked.
#[derive(Debug, Clone)]
pub struct Selection {
    pub devices: Vec<DeviceId>,
    pub period: Period,
    /// Custom range, local dates, `to` included.
    pub from_date: Option<NaiveDate>,
    pub to_date: Option<NaiveDate>,
    /// The picker's search text.
    pub search: String,
}

impl Selection {
    fn parse(query: Option<&str>) -> Self {
        let mut sel = Selection {
            devices: Vec::new(),
            period: Period::Day,
            from_date: None,
            to_date: None,
            search: String::new(),
        };
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "device" => {
                    if let Ok(id) = v.parse::<i64>()
                        && sel.devices.len() < MAX_DEVICES
                        && !sel.devices.contains(&DeviceId::new(id))
                    {
                        sel.devices.push(DeviceId::new(id));
                    }
                }
                "period" => sel.period = Period::parse(&v),
                "from" => sel.from_date = NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok(),
                "to" => sel.to_date = NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok(),
                "q" => sel.search = v.chars().take(100).collect(),
                _ => {}
            }
        }
        sel
    }

    /// The UTC range `[from, to)` it covers at `now`, in the tenant's zone for a custom range; a
    /// custom range of more than `max_days` days is refused (SPEC §11: a chart of at most a few
    /// years), before anything is read or a bucket is counted.
    fn range(
        &self,
        tz: TimeZone,
        now: DateTime<Utc>,
        max_days: u32,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), RangeTooLong> {
        let local_day = |d: NaiveDate| {
            d.and_hms_opt(12, 0, 0)
                .and_then(|noon| noon.and_local_timezone(tz.tz()).earliest())
                .map(|noon| bucket_start(tz, Bucket::Day, noon.with_timezone(&Utc)))
        };
        Ok(match self.period {
            Period::Day => (now - Duration::hours(24), now),
            Period::Week => (now - Duration::days(7), now),
            Period::Month => (now - Duration::days(30), now),
            Period::Custom => {
                let (from, to) = match (self.from_date, self.to_date) {
                    (Some(f), Some(t)) if f <= t => (f, t),
                    (Some(f), Some(t)) => (t, f),
                    (Some(f), None) => (f, f),
                    (None, Some(t)) => (t, t),
                    (None, None) => return Ok((now - Duration::hours(24), now)),
                };
                if (to - from).num_days() >= i64::from(max_days) {
                    return Err(RangeTooLong { max_days });
                }
                let start = local_day(from).unwrap_or(now - Duration::hours(24));
                let end = to.succ_opt().and_then(local_day).unwrap_or(now);
                (start, end)
            }
        })
    }
}

/// A custom range longer than the configured maximum.
#[derive(Debug, Clone, Copy)]
struct RangeTooLong {
    max_days: u32,
}

impl RangeTooLong {
    fn message(self, lang: crate::i18n::Lang) -> String {
        lang.tf("telemetry.range_too_long", &[("days", &self.max_days.to_string())])
    }
}

/// The line chart's resolution for a span, and the bars'.
fn resolution(span: Duration) -> (Option<Bucket>, Bucket) {
    if span <= Duration::hours(25) {
        (None, Bucket::Hour)
    } else if span <= Duration::days(8) {
        (Some(Bucket::Hour), Bucket::Hour)
    } else {
        (Some(Bucket::Day), Bucket::Day)
    }
}

/// A device as the picker lists it.
#[derive(Debug, Clone)]
pub struct Choice {
    pub device: Device,
    pub gateway_code: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "telemetry.html")]
struct TelemetryTemplate {
    ctx: PageCtx,
    choices: Vec<Choice>,
    /// More devices match than the picker lists.
    more: bool,
    search: String,
    period: &'static str,
    from_date: String,
    to_date: String,
    data_url: String,
    latest: Vec<(Reading, String, String)>,
    has_selection: bool,
    /// The custom range is too long: said under the dates, and no chart is drawn.
    range_error: Option<String>,
}

/// The tenant's devices that the selection names, in its order (others' ids are dropped, never
/// an error that would tell they exist).
async fn selected(store: &Store, tenant: TenantId, sel: &Selection) -> WebResult<Vec<Device>> {
    let mut found = store.devices().choices_by_id(tenant, &sel.devices).await?;
    found.sort_by_key(|c| sel.devices.iter().position(|id| *id == c.device.id));
    Ok(found.into_iter().map(|c| c.device).collect())
}

async fn page(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    RawQuery(query): RawQuery,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("telemetry", "nav.telemetry");
    let store = state.store();
    let tenant = t.tenant_id();
    let mut sel = Selection::parse(query.as_deref());
    let mut listed = store.devices().picker(tenant, &sel.search, &sel.devices, PICKER_ROWS + 1).await?;
    let more = listed.len() > PICKER_ROWS as usize;
    listed.truncate(PICKER_ROWS as usize);
    // The selection is listed first whatever the search; ids that are not the tenant's live
    // devices are not listed, and dropped.
    sel.devices.retain(|id| listed.iter().any(|c| c.device.id == *id));
    if sel.devices.is_empty()
        && sel.search.trim().is_empty()
        && let Some(first) = listed.first()
    {
        // Something to look at straight away: the first meter.
        sel.devices.push(first.device.id);
    }
    let devices: Vec<&Device> = listed.iter().map(|c| &c.device).collect();
    let mut latest = Vec::new();
    for id in &sel.devices {
        if let Some(d) = devices.iter().find(|d| d.id == *id) {
            for r in store.readings().latest(tenant, d.id, LATEST_ROWS).await? {
                latest.push((r, d.code.to_string(), d.unit.to_string()));
            }
        }
    }
    latest.sort_by_key(|r| std::cmp::Reverse(r.0.time));
    latest.truncate(LATEST_ROWS as usize);
    let mut data_url = format!("/telemetry/data?period={}", sel.period.as_str());
    for id in &sel.devices {
        let _ = write!(data_url, "&device={}", id.get());
    }
    if sel.period == Period::Custom {
        for (k, d) in [("from", sel.from_date), ("to", sel.to_date)] {
            if let Some(d) = d {
                let _ = write!(data_url, "&{k}={d}");
            }
        }
    }
    let choices = listed
        .into_iter()
        .map(|c| Choice {
            selected: sel.devices.contains(&c.device.id),
            gateway_code: c.gateway_code,
            device: c.device,
        })
        .collect();
    let today = Utc::now().with_timezone(&ctx.zone).date_naive();
    let range_error = sel
        .range(t.tenant.timezone, Utc::now(), state.config().max_range_days)
        .err()
        .map(|e| e.message(ctx.lang));
    let has_selection = !sel.devices.is_empty() && range_error.is_none();
    let tmpl = TelemetryTemplate {
        range_error,
        choices,
        more,
        search: sel.search.clone(),
        period: sel.period.as_str(),
        from_date: sel.from_date.unwrap_or(today - Duration::days(7)).to_string(),
        to_date: sel.to_date.unwrap_or(today).to_string(),
        data_url,
        has_selection,
        latest,
        ctx,
    };
    render(&tmpl, None)
}

/// One device's part of the chart data.
#[derive(Debug, Serialize)]
struct Series {
    device: i64,
    gateway: i64,
    code: String,
    name: String,
    unit: String,
    kind: MeasurementKind,
    /// `[ms, value | null]`: raw readings, a gauge's average or a register's highest value.
    line: Vec<(i64, Option<f64>)>,
    /// `[ms, consumption | null]` per bucket; empty for gauges.
    bars: Vec<(i64, Option<f64>)>,
}

#[derive(Debug, Serialize)]
struct ChartData {
    from: i64,
    to: i64,
    /// `raw`, `hour` or `day`.
    line_resolution: &'static str,
    bar_resolution: &'static str,
    zone: &'static str,
    series: Vec<Series>,
}

async fn data(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    RawQuery(query): RawQuery,
) -> WebResult<Response> {
    let store = state.store();
    let tenant = t.tenant_id();
    let tz = t.tenant.timezone;
    let sel = Selection::parse(query.as_deref());
    let (from, to) = match sel.range(tz, Utc::now(), state.config().max_range_days) {
        Ok(range) => range,
        Err(e) => {
            let body = serde_json::json!({ "error": e.message(t.lang()) });
            return Ok((axum::http::StatusCode::BAD_REQUEST, Json(body)).into_response());
        }
    };
    let (line_bucket, bar_bucket) = resolution(to - from);
    let mut series = Vec::new();
    for d in selected(store, tenant, &sel).await? {
        let interval = store.gateways().get(tenant, d.gateway_id).await?.expected_interval_s;
        let gauge = d.kind == MeasurementKind::Gauge;
        let line = match line_bucket {
            None => with_gaps(&store.readings().for_device(tenant, d.id, from, to, MAX_RAW).await?, interval),
            Some(b) => {
                let rows = store.rollups().for_device(tenant, d.id, b, bucket_start(tz, b, from), to).await?;
                let by_start: HashMap<DateTime<Utc>, Option<f64>> =
                    rows.into_iter().map(|r| (r.start, if gauge { r.avg } else { r.max })).collect();
                bucket_starts(tz, b, from, to)
                    .map(|s| (s.timestamp_millis(), by_start.get(&s).copied().flatten()))
                    .collect()
            }
        };
        let bars = if gauge {
            Vec::new()
        } else {
            let rows = store
                .rollups()
                .for_device(tenant, d.id, bar_bucket, bucket_start(tz, bar_bucket, from), to)
                .await?;
            let by_start: HashMap<DateTime<Utc>, Option<f64>> =
                rows.into_iter().map(|r| (r.start, r.consumption)).collect();
            bucket_starts(tz, bar_bucket, from, to)
                .map(|s| (s.timestamp_millis(), by_start.get(&s).copied().flatten()))
                .collect()
        };
        series.push(Series {
            device: d.id.get(),
            gateway: d.gateway_id.get(),
            code: d.code.to_string(),
            name: d.name.to_string(),
            unit: d.unit.to_string(),
            kind: d.kind,
            line,
            bars,
        });
    }
    let body = ChartData {
        from: from.timestamp_millis(),
        to: to.timestamp_millis(),
        line_resolution: line_bucket.map_or("raw", Bucket::as_str),
        bar_resolution: bar_bucket.as_str(),
        zone: tz.name(),
        series,
    };
    Ok(Json(body).into_response())
}

/// Raw readings as points, with a `null` wherever the gateway was silent for more than three
/// of its intervals, so that the line breaks there instead of bridging the gap.
fn with_gaps(readings: &[Reading], interval_s: i64) -> Vec<(i64, Option<f64>)> {
    let limit = interval_s.max(1) * 3 * 1000;
    let mut out = Vec::with_capacity(readings.len() + 8);
    let mut last: Option<i64> = None;
    for r in readings {
        let t = r.time.timestamp_millis();
        if let Some(prev) = last
            && t - prev > limit
        {
            out.push((prev + 1, None));
        }
        out.push((t, Some(r.value)));
        last = Some(t);
    }
    out
}

/// How often an open event stream checks that its session and membership still hold: a logout
/// everywhere, an expired session or a removal from the tenant ends the stream within this time.
pub const STREAM_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Server-sent events of the session's tenant: `readings` and `gateway` (status). A page that
/// falls too far behind gets a `resync` event and reloads its data. The stream ends when the
/// session or the membership it was opened with ends (checked every [`STREAM_RECHECK`]).
async fn events(State(state): State<AppState>, Viewer(t): Viewer) -> impl IntoResponse {
    let tenant = t.tenant_id();
    let rx = state.events().subscribe();
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + STREAM_RECHECK, STREAM_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch = (state, t.me.session.token_hash.clone(), t.me.user.id);
    let stream =
        futures_util::stream::unfold((rx, recheck, watch), move |(mut rx, mut recheck, watch)| async move {
            loop {
                let event = tokio::select! {
                    event = rx.recv() => event,
                    _ = recheck.tick() => {
                        if still_allowed(&watch.0, &watch.1, watch.2, tenant).await {
                            continue;
                        }
                        return None;
                    }
                };
                match event {
                    Ok(event) if event.tenant() == tenant => {
                        let sse = Event::default().event(event.name()).json_data(&event).unwrap_or_default();
                        return Some((Ok::<_, std::convert::Infallible>(sse), (rx, recheck, watch)));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some((Ok(Event::default().event("resync").data("{}")), (rx, recheck, watch)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Whether the session is still open, its user active and still a member of `tenant`. A database error
/// keeps the stream (the next check decides).
pub(crate) async fn still_allowed(
    state: &AppState,
    session: &str,
    user: tds_domain::UserId,
    tenant: TenantId,
) -> bool {
    match state.store().sessions().get(session, Utc::now()).await {
        Ok(s) if s.tenant_id == Some(tenant) => {}
        Ok(_) | Err(tds_store::StoreError::NotFound) => return false,
        Err(_) => return true,
    }
    match state.store().users().get(user).await {
        Ok(u) if u.active => {}
        Ok(_) | Err(tds_store::StoreError::NotFound) => return false,
        Err(_) => return true,
    }
    match state.store().memberships().role(tenant, user).await {
        Ok(role) => role.is_some(),
        Err(_) => true,
    }
}
