//! Dispositivos, device side: the device page (details, Modbus settings, thresholds, last
//! readings) and the create / edit / archive forms. A device is always reached through the
//! tenant (its id alone is not enough), and archiving keeps its readings.

use crate::AppState;
use crate::auth::{Editor, Viewer};
use crate::error::{WebError, WebResult};
use crate::forms::{FieldErrors, field, optional};
use crate::i18n::Lang;
use crate::page::PageCtx;
use crate::routes::gateways::store_refusal;
use crate::routes::table::Routes;
use crate::routes::{audit, render, render_status};
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tds_domain::limits::{Amount, ScaleFactor};
use tds_domain::{
    Description, DeviceCode, DeviceId, DeviceMode, DeviceStatus, DeviceType, GatewayId, Mac, MeasurementKind,
    Medium, ModbusRegister, Name, SlaveId, Unit,
};
use tds_store::devices::{Device, DeviceFields};
use tds_store::gateways::Gateway;
use tds_store::readings::Reading;

/// Readings shown on the device page.
pub const LAST_READINGS: i64 = 20;

pub fn routes() -> Routes {
    Routes::new()
        .route("/gateways/{gid}/devices/new", get(new_form).post(create))
        .route("/devices/{id}", get(show))
        .route("/devices/{id}/edit", get(edit_form).post(update))
        .route("/devices/{id}/archive", post(archive))
}

#[derive(Template)]
#[template(path = "devices/show.html")]
struct ShowTemplate {
    ctx: PageCtx,
    d: Device,
    g: Gateway,
    readings: Vec<Reading>,
    fig: crate::figures::DeviceFigures,
    open_alerts: Vec<crate::routes::alerts::Row>,
}

async fn show(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    Path(id): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let store = state.store();
    let d = store.devices().get(t.tenant_id(), DeviceId::new(id)).await?;
    let g = store.gateways().get(t.tenant_id(), d.gateway_id).await?;
    let readings = store.readings().latest(t.tenant_id(), d.id, LAST_READINGS).await?;
    let fig =
        crate::figures::device(store, t.tenant_id(), d.id, d.kind, t.tenant.timezone, chrono::Utc::now())
            .await?;
    let ctx = ctx.section("devices", "devices.title").titled(format!("{} · {}", d.code, d.name));
    let filter = tds_store::alerts::AlertFilter { device: Some(d.id), ..Default::default() };
    let open_alerts = crate::routes::alerts::open_rows(&state, &ctx, t.tenant_id(), filter).await?;
    render(&ShowTemplate { ctx, d, g, readings, fig, open_alerts }, None)
}

#[derive(Debug, Deserialize, serde::Serialize, Default, Clone)]
pub struct DeviceForm {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub device_type: String,
    #[serde(default)]
    pub medium: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub scale_factor: String,
    #[serde(default)]
    pub rollover_value: String,
    #[serde(default)]
    pub slave_id: String,
    #[serde(default)]
    pub register: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub alarm_daily: String,
    #[serde(default)]
    pub alarm_monthly: String,
}

fn opt_num(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

impl DeviceForm {
    pub(crate) fn blank() -> Self {
        Self {
            device_type: DeviceType::Meter.as_str().into(),
            medium: Medium::Water.as_str().into(),
            kind: MeasurementKind::Counter.as_str().into(),
            unit: "m³".into(),
            scale_factor: "1".into(),
            mode: DeviceMode::Auto.as_str().into(),
            status: DeviceStatus::Active.as_str().into(),
            ..Self::default()
        }
    }

    pub(crate) fn from_device(d: &Device) -> Self {
        Self {
            code: d.code.to_string(),
            mac: d.mac.map(|m| m.to_string()).unwrap_or_default(),
            name: d.name.to_string(),
            description: d.description.clone(),
            device_type: d.device_type.as_str().into(),
            medium: d.medium.as_str().into(),
            kind: d.kind.as_str().into(),
            unit: d.unit.to_string(),
            scale_factor: d.scale_factor.to_string(),
            rollover_value: opt_num(d.rollover_value),
            slave_id: d.slave_id.map(|s| s.to_string()).unwrap_or_default(),
            register: d.register.map(|r| r.to_string()).unwrap_or_default(),
            mode: d.mode.as_str().into(),
            status: d.status.as_str().into(),
            alarm_daily: opt_num(d.alarm_daily),
            alarm_monthly: opt_num(d.alarm_monthly),
        }
    }

    pub(crate) fn parse(&self, lang: Lang, errors: &mut FieldErrors) -> Option<DeviceFields> {
        let e = errors;
        let code = field(e, lang, "code", DeviceCode::parse(&self.code));
        let mac = match optional(&self.mac) {
            None => Some(None),
            Some(m) => field(e, lang, "mac", Mac::parse(&m)).map(Some),
        };
        let name = field(e, lang, "name", Name::parse("name", &self.name));
        let description = field(e, lang, "description", Description::parse(&self.description));
        let device_type = field(e, lang, "device_type", DeviceType::parse(&self.device_type));
        let medium = field(e, lang, "medium", Medium::parse(&self.medium));
        let kind = field(e, lang, "kind", MeasurementKind::parse(&self.kind));
        let unit = field(e, lang, "unit", Unit::parse(&self.unit));
        let scale_factor = field(e, lang, "scale_factor", ScaleFactor::parse(&self.scale_factor));
        let amount = |e: &mut FieldErrors, name: &'static str, v: &str| match optional(v) {
            None => Some(None),
            Some(v) => field(e, lang, name, Amount::parse(name, &v)).map(Some),
        };
        let rollover_value = amount(e, "rollover_value", &self.rollover_value);
        let alarm_daily = amount(e, "alarm_daily", &self.alarm_daily);
        let alarm_monthly = amount(e, "alarm_monthly", &self.alarm_monthly);
        let slave_id = match optional(&self.slave_id) {
            None => Some(None),
            Some(v) => field(e, lang, "slave_id", SlaveId::parse(&v)).map(Some),
        };
        let register = match optional(&self.register) {
            None => Some(None),
            Some(v) => field(e, lang, "register", ModbusRegister::parse(&v)).map(Some),
        };
        let mode = field(e, lang, "mode", DeviceMode::parse(&self.mode));
        let status = field(e, lang, "status", DeviceStatus::parse(&self.status));
        let fields = DeviceFields {
            code: code?,
            mac: mac?,
            name: name?,
            description: description?,
            device_type: device_type?,
            medium: medium?,
            kind: kind?,
            unit: unit?,
            scale_factor: scale_factor?,
            rollover_value: rollover_value?,
            slave_id: slave_id?,
            register: register?,
            mode: mode?,
            status: status?,
            alarm_daily: alarm_daily?,
            alarm_monthly: alarm_monthly?,
        };
        // A meter needs its Modbus address: say so on the missing field.
        if fields.device_type == DeviceType::Meter {
            if fields.slave_id.is_none() {
                e.set("slave_id", lang.t("validation.meter_needs_modbus"));
            }
            if fields.register.is_none() {
                e.set("register", lang.t("validation.meter_needs_modbus"));
            }
        }
        if let Err(err) = fields.check() {
            e.form_error(lang.validation(&err));
        }
        Some(fields).filter(|_| e.is_empty())
    }
}

#[derive(Template)]
#[template(path = "devices/form.html")]
struct FormTemplate {
    ctx: PageCtx,
    g: Gateway,
    form: DeviceForm,
    errors: FieldErrors,
    id: Option<i64>,
}

impl FormTemplate {
    fn new(ctx: PageCtx, g: Gateway, form: DeviceForm, errors: FieldErrors, id: Option<i64>) -> Self {
        Self { ctx, g, form, errors, id }
    }

    /// (value, label) pairs for a vocabulary's select.
    fn choices(&self, group: &str) -> Vec<(String, String)> {
        let values: Vec<&'static str> = match group {
            "device_type" => DeviceType::ALL.iter().map(|v| v.as_str()).collect(),
            "medium" => Medium::ALL.iter().map(|v| v.as_str()).collect(),
            "kind" => MeasurementKind::ALL.iter().map(|v| v.as_str()).collect(),
            "mode" => DeviceMode::ALL.iter().map(|v| v.as_str()).collect(),
            "device_status" => DeviceStatus::ALL.iter().map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        };
        values.into_iter().map(|v| (v.to_owned(), self.ctx.label(group, v))).collect()
    }
}

async fn new_form(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(gid): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let g = state.store().gateways().get(t.tenant_id(), GatewayId::new(gid)).await?;
    let ctx = ctx.section("devices", "devices.new");
    render(&FormTemplate::new(ctx, g, DeviceForm::blank(), FieldErrors::default(), None), None)
}

async fn create(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(gid): Path<i64>,
    ctx: PageCtx,
    Form(form): Form<DeviceForm>,
) -> WebResult<Response> {
    let g = state.store().gateways().get(t.tenant_id(), GatewayId::new(gid)).await?;
    let ctx = ctx.section("devices", "devices.new");
    let mut errors = FieldErrors::default();
    if let Some(fields) = form.parse(ctx.lang, &mut errors) {
        match state.store().devices().create(t.tenant_id(), g.id, &fields, Some(t.me.user.id)).await {
            Ok(d) => {
                audit(
                    &state,
                    &t.me,
                    Some(&t),
                    "device.created",
                    ("device", Some(d.id.to_string())),
                    json!({"gateway": g.mac.to_string(), "code": d.code.to_string()}),
                )
                .await?;
                return Ok(Redirect::to(&format!("/devices/{}?done=created", d.id)).into_response());
            }
            Err(e) => store_refusal(ctx.lang, &mut errors, e)?,
        }
    }
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &FormTemplate::new(ctx, g, form, errors, None))
}

async fn edit_form(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let d = state.store().devices().get(t.tenant_id(), DeviceId::new(id)).await?;
    if d.archived_at.is_some() {
        return Err(WebError::NotFound);
    }
    let g = state.store().gateways().get(t.tenant_id(), d.gateway_id).await?;
    let ctx = ctx.section("devices", "devices.edit");
    render(&FormTemplate::new(ctx, g, DeviceForm::from_device(&d), FieldErrors::default(), Some(id)), None)
}

async fn update(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
    ctx: PageCtx,
    Form(form): Form<DeviceForm>,
) -> WebResult<Response> {
    let d = state.store().devices().get(t.tenant_id(), DeviceId::new(id)).await?;
    if d.archived_at.is_some() {
        return Err(WebError::NotFound);
    }
    let g = state.store().gateways().get(t.tenant_id(), d.gateway_id).await?;
    let ctx = ctx.section("devices", "devices.edit");
    let mut errors = FieldErrors::default();
    if let Some(fields) = form.parse(ctx.lang, &mut errors) {
        match state.store().devices().update(t.tenant_id(), d.id, &fields).await {
            Ok(d) => {
                audit(
                    &state,
                    &t.me,
                    Some(&t),
                    "device.updated",
                    ("device", Some(d.id.to_string())),
                    json!({}),
                )
                .await?;
                return Ok(Redirect::to(&format!("/devices/{}?done=saved", d.id)).into_response());
            }
            Err(e) => store_refusal(ctx.lang, &mut errors, e)?,
        }
    }
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &FormTemplate::new(ctx, g, form, errors, Some(id)))
}

async fn archive(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let d = state.store().devices().get(t.tenant_id(), DeviceId::new(id)).await?;
    state.store().devices().archive(t.tenant_id(), d.id).await?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "device.archived",
        ("device", Some(d.id.to_string())),
        json!({"code": d.code.to_string()}),
    )
    .await?;
    Ok(Redirect::to(&format!("/gateways/{}?done=archived", d.gateway_id)).into_response())
}
