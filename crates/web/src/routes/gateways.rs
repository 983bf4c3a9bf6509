//! Dispositivos, gateway side: the list (cards or table, filters, search, pages), the gateway
//! page, and the create / edit / decommission forms. Every rule of SPEC §1 is checked by the
//! domain parsers and the store; the message is shown next to its field.

use crate::AppState;
use crate::auth::{Editor, Viewer};
use crate::error::{WebError, WebResult};
use crate::forms::{FieldErrors, field, optional};
use crate::i18n::Lang;
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, page_numbers, render, render_status};
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tds_domain::limits::{MaxDevices, Position, ReportInterval};
use tds_domain::{Description, GatewayCode, GatewayId, GatewayStatus, Mac, Name};
use tds_store::certificates::Certificate;
use tds_store::devices::Device;
use tds_store::gateways::{Connection, Gateway, GatewayFields, GatewayFilter};
use tds_store::readings::Reading;
use tds_store::{Page, StoreError};

pub const PAGE_SIZE: u32 = 24;
/// Connection events shown on the gateway page.
pub const HISTORY: i64 = 20;

pub fn routes() -> Routes {
    Routes::new()
        .route("/gateways", get(list))
        .route("/gateways/new", get(new_form).post(create))
        .route("/gateways/{id}", get(show))
        .route("/gateways/{id}/edit", get(edit_form).post(update))
        .route("/gateways/{id}/decommission", post(decommission))
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    connection: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    view: String,
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "gateways/list.html")]
struct ListTemplate {
    ctx: PageCtx,
    gateways: Vec<Gateway>,
    total: i64,
    q: String,
    connection: String,
    status: String,
    table: bool,
    page: u32,
    pages: u32,
    page_links: Vec<u32>,
    query_base: String,
}

fn parse_connection(s: &str) -> Option<Connection> {
    match s {
        "online" => Some(Connection::Online),
        "offline" => Some(Connection::Offline),
        "never" => Some(Connection::NeverConnected),
        _ => None,
    }
}

pub fn connection_key(g: &Gateway) -> &'static str {
    match g.connection() {
        Connection::Online => "online",
        Connection::Offline => "offline",
        Connection::NeverConnected => "never",
    }
}

async fn list(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    Query(q): Query<ListQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("devices", "gateways.title");
    let filter = GatewayFilter {
        search: optional(&q.q),
        status: GatewayStatus::parse(&q.status).ok(),
        connection: parse_connection(&q.connection),
    };
    let page = Page::new(q.page.unwrap_or(1), PAGE_SIZE);
    let found = state.store().gateways().list(t.tenant_id(), &filter, page).await?;
    let (pages, page_links) = page_numbers(page.number, found.total, PAGE_SIZE);
    let query_base = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("q", &q.q)
        .append_pair("connection", &q.connection)
        .append_pair("status", &q.status)
        .append_pair("view", &q.view)
        .finish();
    render(
        &ListTemplate {
            ctx,
            gateways: found.items,
            total: found.total,
            q: q.q,
            connection: q.connection,
            status: q.status,
            table: q.view == "table",
            page: page.number,
            pages,
            page_links,
            query_base,
        },
        None,
    )
}

#[derive(Debug)]
pub struct DeviceRow {
    pub device: Device,
    pub last: Option<Reading>,
    /// Consumption today and this month, completeness, sparkline (from the rollups).
    pub fig: crate::figures::DeviceFigures,
}

#[derive(Template)]
#[template(path = "gateways/show.html")]
struct ShowTemplate {
    ctx: PageCtx,
    g: Gateway,
    devices: Vec<DeviceRow>,
    active_devices: i64,
    certificate: Option<Certificate>,
    history: Vec<tds_store::gateway_events::GatewayEvent>,
    open_alerts: Vec<crate::routes::alerts::Row>,
    renewals: crate::routes::renewals::GatewayRenewals,
}

async fn show(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    Path(id): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let store = state.store();
    let g = store.gateways().get(t.tenant_id(), GatewayId::new(id)).await?;
    let ctx = ctx.section("devices", "gateways.title").titled(g.name.to_string());
    let mut devices = Vec::new();
    let now = chrono::Utc::now();
    for device in store.devices().list_for_gateway(t.tenant_id(), g.id, false).await? {
        let last = store.readings().latest(t.tenant_id(), device.id, 1).await?.pop();
        let fig =
            crate::figures::device(store, t.tenant_id(), device.id, device.kind, t.tenant.timezone, now)
                .await?;
        devices.push(DeviceRow { device, last, fig });
    }
    let active_devices =
        devices.iter().filter(|d| d.device.status == tds_domain::DeviceStatus::Active).count() as i64;
    let certificate = store
        .certificates()
        .for_gateway(t.tenant_id(), g.id)
        .await?
        .into_iter()
        .find(|c| c.status == tds_store::certificates::CertificateStatus::Active);
    let history = store.gateway_events().recent(t.tenant_id(), g.id, HISTORY).await?;
    let filter = tds_store::alerts::AlertFilter { gateway: Some(g.id), ..Default::default() };
    let open_alerts = crate::routes::alerts::open_rows(&state, &ctx, t.tenant_id(), filter).await?;
    let renewals = crate::routes::renewals::for_gateway(store, t.tenant_id(), g.id).await?;
    render(
        &ShowTemplate { ctx, g, devices, active_devices, certificate, history, open_alerts, renewals },
        None,
    )
}

/// The gateway form's fields as typed (re-shown when something is wrong).
#[derive(Debug, Deserialize, serde::Serialize, Default, Clone)]
pub struct GatewayForm {
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub latitude: String,
    #[serde(default)]
    pub longitude: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub serial_number: String,
    #[serde(default)]
    pub device_id: String,
    #[serde(default)]
    pub hardware_version: String,
    #[serde(default)]
    pub firmware_version: String,
    #[serde(default)]
    pub max_devices: String,
    #[serde(default)]
    pub expected_interval_s: String,
}

impl GatewayForm {
    pub(crate) fn from_gateway(g: &Gateway) -> Self {
        Self {
            mac: g.mac.to_string(),
            code: g.code.to_string(),
            name: g.name.to_string(),
            description: g.description.clone(),
            latitude: g.position.map(|p| p.latitude.to_string()).unwrap_or_default(),
            longitude: g.position.map(|p| p.longitude.to_string()).unwrap_or_default(),
            model: g.model.clone().unwrap_or_default(),
            serial_number: g.serial_number.clone().unwrap_or_default(),
            device_id: g.device_id.clone().unwrap_or_default(),
            hardware_version: g.hardware_version.clone().unwrap_or_default(),
            firmware_version: g.firmware_version.clone().unwrap_or_default(),
            max_devices: g.max_devices.to_string(),
            expected_interval_s: g.expected_interval_s.to_string(),
        }
    }

    pub(crate) fn blank() -> Self {
        Self {
            max_devices: MaxDevices::default().get().to_string(),
            expected_interval_s: ReportInterval::default().seconds().to_string(),
            ..Self::default()
        }
    }

    /// Parses every field, collecting every problem (not only the first).
    pub(crate) fn parse(&self, lang: Lang, errors: &mut FieldErrors) -> Option<GatewayFields> {
        let code = field(errors, lang, "code", GatewayCode::parse(&self.code));
        let name = field(errors, lang, "name", Name::parse("name", &self.name));
        let description = field(errors, lang, "description", Description::parse(&self.description));
        let position = match (self.latitude.trim(), self.longitude.trim()) {
            ("", "") => Some(None),
            (lat, lon) => field(errors, lang, "latitude", Position::parse(lat, lon)).map(Some),
        };
        let max_devices = field(errors, lang, "max_devices", MaxDevices::parse(&self.max_devices));
        let interval =
            field(errors, lang, "expected_interval_s", ReportInterval::parse(&self.expected_interval_s));
        let short = |errors: &mut FieldErrors, name: &str, v: &str| {
            let v = optional(v);
            if v.as_ref().is_some_and(|v| v.chars().count() > 120) {
                errors.set(name, lang.tf("validation.too_long", &[("max", "120")]));
            }
            v
        };
        let model = short(errors, "model", &self.model);
        let serial_number = short(errors, "serial_number", &self.serial_number);
        let device_id = short(errors, "device_id", &self.device_id);
        let hardware_version = short(errors, "hardware_version", &self.hardware_version);
        let firmware_version = short(errors, "firmware_version", &self.firmware_version);
        Some(GatewayFields {
            code: code?,
            name: name?,
            description: description?,
            position: position?,
            model,
            serial_number,
            device_id,
            hardware_version,
            firmware_version,
            max_devices: max_devices?,
            expected_interval: interval?,
        })
        .filter(|_| errors.is_empty())
    }
}

#[derive(Template)]
#[template(path = "gateways/form.html")]
struct FormTemplate {
    ctx: PageCtx,
    form: GatewayForm,
    errors: FieldErrors,
    /// `None` when creating.
    id: Option<i64>,
}

async fn new_form(Editor(_): Editor, ctx: PageCtx) -> WebResult<Response> {
    let ctx = ctx.section("devices", "gateways.new");
    render(&FormTemplate { ctx, form: GatewayForm::blank(), errors: FieldErrors::default(), id: None }, None)
}

/// Puts a store refusal next to the field it concerns.
pub fn store_refusal(lang: Lang, errors: &mut FieldErrors, e: StoreError) -> WebResult<()> {
    match e {
        StoreError::Conflict(msg) => {
            let lower = msg.to_lowercase();
            if lower.contains("mac") {
                errors.set("mac", lang.t("validation.mac_taken"));
            } else if lower.contains("code") {
                errors.set("code", lang.t("validation.code_taken"));
            } else {
                errors.form_error(msg);
            }
            Ok(())
        }
        StoreError::Limit(msg) => {
            errors.form_error(lang.tf("validation.limit", &[("detail", &msg)]));
            Ok(())
        }
        StoreError::Invalid(e) => {
            errors.form_error(lang.validation(&e));
            Ok(())
        }
        other => Err(other.into()),
    }
}

async fn create(
    State(state): State<AppState>,
    Editor(t): Editor,
    ctx: PageCtx,
    Form(form): Form<GatewayForm>,
) -> WebResult<Response> {
    let ctx = ctx.section("devices", "gateways.new");
    let mut errors = FieldErrors::default();
    let mac = field(&mut errors, ctx.lang, "mac", Mac::parse(&form.mac));
    let fields = form.parse(ctx.lang, &mut errors);
    if let (Some(mac), Some(fields)) = (mac, fields) {
        match state.store().gateways().create(t.tenant_id(), mac, &fields, Some(t.me.user.id)).await {
            Ok(g) => {
                audit(
                    &state,
                    &t.me,
                    Some(&t),
                    "gateway.created",
                    ("gateway", Some(g.mac.to_string())),
                    json!({"code": g.code.to_string()}),
                )
                .await?;
                return Ok(Redirect::to(&format!("/gateways/{}?done=created", g.id)).into_response());
            }
            Err(e) => store_refusal(ctx.lang, &mut errors, e)?,
        }
    }
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &FormTemplate { ctx, form, errors, id: None })
}

async fn edit_form(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let g = state.store().gateways().get(t.tenant_id(), GatewayId::new(id)).await?;
    let ctx = ctx.section("devices", "gateways.edit");
    render(
        &FormTemplate {
            ctx,
            form: GatewayForm::from_gateway(&g),
            errors: FieldErrors::default(),
            id: Some(id),
        },
        None,
    )
}

async fn update(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
    ctx: PageCtx,
    Form(mut form): Form<GatewayForm>,
) -> WebResult<Response> {
    let g = state.store().gateways().get(t.tenant_id(), GatewayId::new(id)).await?;
    let ctx = ctx.section("devices", "gateways.edit");
    // The MAC is the gateway's identity (its certificate's CN): it is not editable.
    form.mac = g.mac.to_string();
    let mut errors = FieldErrors::default();
    if let Some(fields) = form.parse(ctx.lang, &mut errors) {
        match state.store().gateways().update(t.tenant_id(), g.id, &fields).await {
            Ok(g) => {
                audit(
                    &state,
                    &t.me,
                    Some(&t),
                    "gateway.updated",
                    ("gateway", Some(g.mac.to_string())),
                    json!({}),
                )
                .await?;
                return Ok(Redirect::to(&format!("/gateways/{}?done=saved", g.id)).into_response());
            }
            Err(e) => store_refusal(ctx.lang, &mut errors, e)?,
        }
    }
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &FormTemplate { ctx, form, errors, id: Some(id) })
}

async fn decommission(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let g = state.store().gateways().get(t.tenant_id(), GatewayId::new(id)).await?;
    if g.status == GatewayStatus::Decommissioned {
        return Err(WebError::BadRequest("already decommissioned".into()));
    }
    state.store().gateways().decommission(t.tenant_id(), g.id).await?;
    audit(&state, &t.me, Some(&t), "gateway.decommissioned", ("gateway", Some(g.mac.to_string())), json!({}))
        .await?;
    Ok(Redirect::to(&format!("/gateways/{}?done=decommissioned", g.id)).into_response())
}
