//! `GET /api/v1/events`: the tenant's live events as server-sent events (SPEC §7): `readings`
//! (each committed batch: gateway MAC, device codes, times, values) and `gateway` (online or
//! offline). Every event has an id; a client that reconnects with `Last-Event-ID` gets the events
//! it missed if they are still in the recent window ([`WINDOW`], [`WINDOW_EVENTS`]); otherwise it
//! gets a `resync` event first and should re-read what it shows through the REST routes.
//!
//! A [`Recorder`] (one per application) listens to the live bus from the first stream on, names
//! the events the API's way (MACs and codes, not internal ids) once for all listeners, and keeps
//! the window. Event ids are `{boot}-{sequence}`: `boot` changes when the server restarts, so an
//! id from before a restart (or from another instance) is never taken for a position here.

use super::auth::{Actor, ApiViewer};
use crate::AppState;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use tds_domain::{DeviceId, GatewayId, LiveEvent, TenantId};
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// How long events stay available for a resume…
pub const WINDOW: std::time::Duration = std::time::Duration::from_mins(5);
/// …and at most how many (all tenants together).
pub const WINDOW_EVENTS: usize = 20_000;
/// How often names (MAC, codes) are looked up again, so that a renamed device shows its new code.
const NAMES_TTL: std::time::Duration = std::time::Duration::from_mins(1);

/// A `readings` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadingsEvent {
    /// The gateway's MAC.
    pub gateway: String,
    pub readings: Vec<EventReading>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventReading {
    /// The device's code within the gateway.
    pub device: String,
    pub time: DateTime<Utc>,
    pub value: f64,
}

/// A `gateway` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayEvent {
    pub gateway: String,
    pub online: bool,
}

/// An `alerts` event: the tenant's alerts changed; how many are active (neither acknowledged
/// nor cleared) now, by severity.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsEvent {
    pub active: ActiveAlerts,
}

/// Active alerts by severity.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveAlerts {
    pub info: u32,
    pub warning: u32,
    pub critical: u32,
}

/// One named event of the window.
#[derive(Debug)]
struct Recorded {
    seq: u64,
    at: std::time::Instant,
    tenant: TenantId,
    name: &'static str,
    data: String,
}

#[derive(Debug, Default)]
struct Window {
    events: VecDeque<Arc<Recorded>>,
    next_seq: u64,
}

/// The application's event window (see the module's documentation). Cheap to share.
#[derive(Debug)]
pub struct Recorder {
    boot: String,
    window: Mutex<Window>,
    /// Named events as they are recorded, for open streams.
    live: broadcast::Sender<Arc<Recorded>>,
    started: OnceLock<()>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            boot: format!("{:08x}", rand::random::<u32>()),
            window: Mutex::default(),
            live: broadcast::channel(crate::state::EVENT_BUFFER).0,
            started: OnceLock::new(),
        }
    }
}

#[derive(Default)]
struct Names {
    gateways: HashMap<GatewayId, String>,
    devices: HashMap<DeviceId, String>,
    fresh_since: Option<std::time::Instant>,
}

impl Recorder {
    /// Starts listening to the live bus (once; from the first stream on).
    fn start(self: &Arc<Self>, state: &AppState) {
        if self.started.set(()).is_err() {
            return;
        }
        let mut rx = state.events().subscribe();
        let (me, state) = (Arc::clone(self), state.clone());
        tokio::spawn(async move {
            let mut names = Names::default();
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        if let Some((tenant, name, data)) = me.name(&state, &mut names, &event).await {
                            me.record(tenant, name, data);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the API's event window missed events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// The event in the API's terms (MACs and codes), or `None` when its gateway is gone.
    async fn name(
        &self,
        state: &AppState,
        names: &mut Names,
        event: &LiveEvent,
    ) -> Option<(TenantId, &'static str, String)> {
        if names.fresh_since.is_none_or(|t| t.elapsed() > NAMES_TTL) {
            *names = Names { fresh_since: Some(std::time::Instant::now()), ..Names::default() };
        }
        let tenant = event.tenant();
        let gateway = match event {
            LiveEvent::Readings { gateway, .. } | LiveEvent::GatewayStatus { gateway, .. } => *gateway,
            // Not about a gateway: the tenant's active alerts by severity, as they are.
            LiveEvent::Alerts { active, .. } => {
                let data = serde_json::to_string(&AlertsEvent {
                    active: ActiveAlerts {
                        info: active.info,
                        warning: active.warning,
                        critical: active.critical,
                    },
                })
                .ok()?;
                return Some((tenant, event.name(), data));
            }
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = names.gateways.entry(gateway) {
            let g = state.store().gateways().get(tenant, gateway).await.ok()?;
            slot.insert(g.mac.to_string());
            for d in state.store().devices().list_for_gateway(tenant, gateway, true).await.ok()? {
                names.devices.insert(d.id, d.code.to_string());
            }
        }
        let mac = names.gateways.get(&gateway)?.clone();
        let data = match event {
            LiveEvent::Readings { readings, .. } => serde_json::to_string(&ReadingsEvent {
                gateway: mac,
                readings: readings
                    .iter()
                    .filter_map(|r| {
                        let device = names.devices.get(&r.device)?.clone();
                        Some(EventReading { device, time: r.time, value: r.value })
                    })
                    .collect(),
            }),
            LiveEvent::GatewayStatus { online, .. } => {
                serde_json::to_string(&GatewayEvent { gateway: mac, online: *online })
            }
            LiveEvent::Alerts { .. } => return None,
        }
        .ok()?;
        Some((tenant, event.name(), data))
    }

    fn record(&self, tenant: TenantId, name: &'static str, data: String) {
        let Ok(mut w) = self.window.lock() else { return };
        let now = std::time::Instant::now();
        while w
            .events
            .front()
            .is_some_and(|e| now.duration_since(e.at) > WINDOW || w.events.len() >= WINDOW_EVENTS)
        {
            w.events.pop_front();
        }
        let seq = w.next_seq;
        w.next_seq += 1;
        let event = Arc::new(Recorded { seq, at: now, tenant, name, data });
        w.events.push_back(Arc::clone(&event));
        // Sent under the lock, so that a stream that read the window sees every later event.
        let _ = self.live.send(event);
    }

    /// The tenant's events after `last` (an id this recorder gave), and the live receiver from
    /// there on; `None` for the events when `last` is not resumable here.
    fn resume(
        &self,
        tenant: TenantId,
        last: Option<&str>,
    ) -> (Option<Vec<Arc<Recorded>>>, broadcast::Receiver<Arc<Recorded>>) {
        let Ok(w) = self.window.lock() else { return (None, self.live.subscribe()) };
        let rx = self.live.subscribe();
        let Some(last) = last else { return (Some(Vec::new()), rx) };
        let seq = last
            .strip_prefix(&self.boot)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|s| s.parse::<u64>().ok());
        let oldest = w.events.front().map_or(w.next_seq, |e| e.seq);
        match seq {
            // Resumable when nothing after it has left the window.
            Some(seq) if seq + 1 >= oldest && seq < w.next_seq => {
                (Some(w.events.iter().filter(|e| e.seq > seq && e.tenant == tenant).cloned().collect()), rx)
            }
            _ => (None, rx),
        }
    }

    fn sse(&self, e: &Recorded) -> Event {
        Event::default().id(format!("{}-{}", self.boot, e.seq)).event(e.name).data(e.data.clone())
    }
}

/// The tenant's live events. `readings`, `gateway` and `alerts` events carry JSON
/// ([`ReadingsEvent`], [`GatewayEvent`], [`AlertsEvent`]); `resync` says events were missed. The stream ends when the token is revoked
/// or expires (or the session ends), checked every few seconds.
#[utoipa::path(get, path = "/api/v1/events", operation_id = "stream_events", tag = "events",
    params(("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "Server-sent events: `readings` (ReadingsEvent), `gateway` (GatewayEvent), `alerts` (AlertsEvent), `resync`"),
        super::responses::ReadErrors))]
pub async fn stream(
    axum::extract::State(state): axum::extract::State<AppState>,
    ApiViewer(ctx): ApiViewer,
    headers: HeaderMap,
) -> impl IntoResponse {
    let recorder = state.api_events();
    recorder.start(&state);
    let tenant = ctx.tenant_id();
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let (missed, rx) = recorder.resume(tenant, last);
    let mut first: Vec<Event> = Vec::new();
    match missed {
        Some(events) => first.extend(events.iter().map(|e| recorder.sse(e))),
        None => first.push(Event::default().event("resync").data("{}")),
    }
    let recheck_every = crate::routes::telemetry::STREAM_RECHECK;
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + recheck_every, recheck_every);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let backlog = futures_util::stream::iter(first.into_iter().map(Ok::<_, std::convert::Infallible>));
    let live = futures_util::stream::unfold(
        (rx, recheck, state, ctx),
        move |(mut rx, mut recheck, state, ctx)| async move {
            loop {
                let event = tokio::select! {
                    event = rx.recv() => event,
                    _ = recheck.tick() => {
                        if still_allowed(&state, &ctx).await { continue; }
                        return None;
                    }
                };
                match event {
                    Ok(e) if e.tenant == tenant => {
                        let sse = state.api_events().sse(&e);
                        return Some((Ok(sse), (rx, recheck, state, ctx)));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some((
                            Ok(Event::default().event("resync").data("{}")),
                            (rx, recheck, state, ctx),
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(futures_util::StreamExt::chain(backlog, live)).keep_alive(KeepAlive::default())
}

/// Whether the stream's credentials still hold; a database error keeps it (the next check decides).
async fn still_allowed(state: &AppState, ctx: &super::auth::ApiCtx) -> bool {
    match &ctx.actor {
        Actor::Token { hash, .. } => match state.store().api_tokens().authenticate(hash, Utc::now()).await {
            Err(tds_store::StoreError::NotFound) => false,
            Ok(_) | Err(_) => true,
        },
        Actor::Session(me) => {
            crate::routes::telemetry::still_allowed(
                state,
                &me.session.token_hash,
                me.user.id,
                ctx.tenant_id(),
            )
            .await
        }
    }
}
