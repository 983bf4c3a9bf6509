//! Configurações (SPEC §4), for tenant admins: the notification channels (their forms are in
//! [`super::channels`]) with their last success and error, and the tenant's API tokens (SPEC §7). A token is
//! created with a name, a role and an optional last day (in the tenant's zone), and its secret is
//! shown on the page that answers the creation, once: it is never in a URL, a log or the
//! database (which keeps its SHA-256). Revocation is immediate. Both are audited.

use crate::AppState;
use crate::auth::{Admin, TenantCtx};
use crate::error::WebResult;
use crate::forms::{FieldErrors, field, optional};
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render, render_status};
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::json;
use tds_domain::limits::Amount;
use tds_domain::{ApiTokenId, Medium, Name, Role, TimeZone, ValidationError};
use tds_store::StoreError;
use tds_store::api_tokens::{ApiToken, NewApiToken};

pub fn routes() -> Routes {
    Routes::new()
        .route("/settings", get(page))
        .route("/settings/tokens", post(create))
        .route("/settings/tokens/{id}/revoke", post(revoke))
        .route("/settings/alarm-defaults", post(save_alarm_defaults))
}

#[derive(Debug, Deserialize, Default, Clone)]
struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    expires: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsTemplate {
    ctx: PageCtx,
    tokens: Vec<ApiToken>,
    channels: Vec<tds_store::notifications::Channel>,
    /// (medium, daily, monthly) as typed, for every medium.
    defaults: Vec<(String, String, String)>,
    now: DateTime<Utc>,
    form: TokenForm,
    errors: FieldErrors,
    /// The secret of the token just created, shown this once.
    secret: Option<(String, String)>,
    defaults_errors: FieldErrors,
}

impl SettingsTemplate {
    /// A webhook's preset, as stored.
    fn preset(c: &tds_store::notifications::Channel) -> Option<&str> {
        c.config.get("preset").and_then(serde_json::Value::as_str)
    }
}

async fn template(
    state: &AppState,
    t: &TenantCtx,
    ctx: PageCtx,
    form: TokenForm,
    errors: FieldErrors,
    secret: Option<(String, String)>,
) -> WebResult<SettingsTemplate> {
    let tokens = state.store().api_tokens().list(t.tenant_id()).await?;
    let channels = state.store().notification_channels().list(t.tenant_id()).await?;
    let stored = state.store().alarm_defaults().list(t.tenant_id()).await?;
    let shown = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let defaults = Medium::ALL
        .iter()
        .map(|m| {
            let d = stored.iter().find(|d| d.medium == *m);
            (
                m.as_str().to_owned(),
                shown(d.and_then(|d| d.alarm_daily)),
                shown(d.and_then(|d| d.alarm_monthly)),
            )
        })
        .collect();
    Ok(SettingsTemplate {
        ctx: ctx.section("settings", "nav.settings"),
        tokens,
        channels,
        defaults,
        now: Utc::now(),
        form,
        errors,
        secret,
        defaults_errors: FieldErrors::default(),
    })
}

async fn page(State(state): State<AppState>, Admin(t): Admin, ctx: PageCtx) -> WebResult<Response> {
    let form = TokenForm { role: Role::Viewer.as_str().into(), ..TokenForm::default() };
    render(&template(&state, &t, ctx, form, FieldErrors::default(), None).await?, None)
}

/// The instant a token whose last day is `day` stops working: the next local midnight.
fn end_of_day(zone: TimeZone, day: NaiveDate) -> Option<DateTime<Utc>> {
    tds_domain::buckets::end_of_day(zone, day)
}

async fn create(
    State(state): State<AppState>,
    Admin(t): Admin,
    ctx: PageCtx,
    Form(form): Form<TokenForm>,
) -> WebResult<Response> {
    let lang = ctx.lang;
    let mut errors = FieldErrors::default();
    let name = field(&mut errors, lang, "name", Name::parse("name", &form.name));
    let role = field(&mut errors, lang, "role", Role::parse(&form.role));
    let expires = match optional(&form.expires) {
        None => Some(None),
        Some(d) => {
            let parsed = NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                .map_err(|_| ValidationError::Date { value: d.clone() });
            match field(&mut errors, lang, "expires", parsed) {
                Some(day) if day < Utc::now().with_timezone(&t.tenant.timezone.tz()).date_naive() => {
                    errors.set("expires", lang.t("settings.token_past_day"));
                    None
                }
                Some(day) => Some(end_of_day(t.tenant.timezone, day)),
                None => None,
            }
        }
    };
    let (Some(name), Some(role), Some(expires_at)) = (name, role, expires) else {
        let page = template(&state, &t, ctx, form, errors, None).await?;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    let secret = crate::api_token::generate();
    let new = NewApiToken {
        name,
        role,
        token_hash: secret.hash.clone(),
        prefix: secret.prefix.clone(),
        expires_at,
        created_by: Some(t.me.user.id),
    };
    match state.store().api_tokens().create(t.tenant_id(), &new).await {
        Ok(token) => {
            audit(
                &state,
                &t.me,
                Some(&t),
                "api_token.create",
                ("api_token", Some(token.id.to_string())),
                json!({"name": token.name, "role": token.role.as_str(), "expires_at": token.expires_at}),
            )
            .await?;
            let blank = TokenForm { role: Role::Viewer.as_str().into(), ..TokenForm::default() };
            let shown = Some((token.name, secret.secret));
            render(&template(&state, &t, ctx, blank, FieldErrors::default(), shown).await?, None)
        }
        Err(StoreError::Conflict(_)) => {
            errors.set("name", lang.t("settings.token_name_taken"));
            let page = template(&state, &t, ctx, form, errors, None).await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}

/// The threshold defaults of every medium at once (`daily_water`, `monthly_water`, …; blank is
/// none). A wrong value names its field and nothing is saved.
async fn save_alarm_defaults(
    State(state): State<AppState>,
    Admin(t): Admin,
    ctx: PageCtx,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> WebResult<Response> {
    let lang = ctx.lang;
    let mut errors = FieldErrors::default();
    let mut parsed = Vec::new();
    for m in Medium::ALL {
        let mut amount =
            |key: String, field_name: &'static str| match optional(form.get(&key).map_or("", String::as_str))
            {
                None => Some(None),
                Some(v) => {
                    field(&mut errors, lang, &key, Amount::parse(field_name, &v.replace(',', "."))).map(Some)
                }
            };
        let daily = amount(format!("daily_{}", m.as_str()), "alarm_daily");
        let monthly = amount(format!("monthly_{}", m.as_str()), "alarm_monthly");
        parsed.push((*m, daily, monthly));
    }
    if !errors.is_empty() {
        let form = TokenForm { role: Role::Viewer.as_str().into(), ..TokenForm::default() };
        let mut page = template(&state, &t, ctx, form, FieldErrors::default(), None).await?;
        page.defaults_errors = errors;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    for (medium, daily, monthly) in parsed {
        if let (Some(daily), Some(monthly)) = (daily, monthly) {
            state.store().alarm_defaults().set(t.tenant_id(), medium, daily, monthly).await?;
        }
    }
    let saved: std::collections::BTreeMap<_, _> =
        form.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect();
    audit(
        &state,
        &t.me,
        Some(&t),
        "alarm_defaults.updated",
        ("tenant", Some(t.tenant_id().to_string())),
        json!(saved),
    )
    .await?;
    Ok(Redirect::to("/settings?done=saved").into_response())
}

async fn revoke(State(state): State<AppState>, Admin(t): Admin, Path(id): Path<i64>) -> WebResult<Response> {
    let id = ApiTokenId::new(id);
    state.store().api_tokens().revoke(t.tenant_id(), id).await?;
    audit(&state, &t.me, Some(&t), "api_token.revoke", ("api_token", Some(id.to_string())), json!({}))
        .await?;
    Ok(Redirect::to("/settings?done=token_revoked").into_response())
}
