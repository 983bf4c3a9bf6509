//! Configurações → notification channels (SPEC §5), for tenant admins: email lists and webhooks
//! (a generic signed JSON POST, or the Telegram and WhatsApp presets), which severities reach
//! each, enabling and disabling, and "send a test", which queues a test message through the same
//! outbox as alerts. The list on Configurações shows each channel's last success and last error,
//! so a failing channel is seen. A webhook's secret is write-only: shown once when TDS generates
//! it, never again; leaving it blank on edit keeps it.

use crate::AppState;
use crate::auth::Admin;
use crate::error::WebResult;
use crate::forms::FieldErrors;
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render, render_status};
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tds_domain::alerts::channel::ChannelConfig;
use tds_domain::alerts::notice::{NoticeTenant, test_notice};
use tds_domain::{Name, Severity};
use tds_store::StoreError;
use tds_store::notifications::{
    Channel, ChannelFields, ChannelId, ChannelKind, ChannelSecret, NewChannel, NewOutbox, SeveritySet,
};

pub fn routes() -> Routes {
    Routes::new()
        .route("/settings/channels/new", get(new_form).post(create))
        .route("/settings/channels/{id}", get(edit_form).post(update))
        .route("/settings/channels/{id}/enabled", post(set_enabled))
        .route("/settings/channels/{id}/test", post(send_test))
        .route("/settings/channels/{id}/delete", post(delete))
}

/// The fields of every kind and preset; those that do not apply are left out of the config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChannelForm {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub preset: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub chat_id: String,
    #[serde(default)]
    pub phone_number_id: String,
    #[serde(default)]
    pub to: String,
    /// One address per line (or separated by commas).
    #[serde(default)]
    pub addresses: String,
    #[serde(default)]
    pub language: String,
    /// Write-only; blank keeps the current one (or, for a new generic webhook, has TDS make one).
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub sev_info: Option<String>,
    #[serde(default)]
    pub sev_warning: Option<String>,
    #[serde(default)]
    pub sev_critical: Option<String>,
}

impl ChannelForm {
    fn blank() -> Self {
        Self {
            kind: "webhook".into(),
            preset: "generic".into(),
            language: "pt-BR".into(),
            sev_warning: Some("on".into()),
            sev_critical: Some("on".into()),
            ..Self::default()
        }
    }

    fn of(c: &Channel) -> Self {
        let text = |k: &str| c.config.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let addresses = match c.config.get("addresses") {
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"),
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let on = |s: Severity| c.severities.contains(s).then(|| "on".to_owned());
        Self {
            kind: c.kind.as_str().to_owned(),
            name: c.name.clone(),
            preset: if c.kind == ChannelKind::Webhook { text("preset") } else { String::new() },
            url: text("url"),
            chat_id: text("chat_id"),
            phone_number_id: text("phone_number_id"),
            to: text("to"),
            addresses,
            language: text("language"),
            secret: String::new(),
            sev_info: on(Severity::Info),
            sev_warning: on(Severity::Warning),
            sev_critical: on(Severity::Critical),
        }
    }

    fn severities(&self) -> SeveritySet {
        let mut chosen = Vec::new();
        for (on, s) in [
            (&self.sev_info, Severity::Info),
            (&self.sev_warning, Severity::Warning),
            (&self.sev_critical, Severity::Critical),
        ] {
            if on.is_some() {
                chosen.push(s);
            }
        }
        SeveritySet::of(&chosen)
    }

    /// The config object the store keeps: the fields of the kind (and preset) that were filled.
    fn config(&self) -> Value {
        let mut map = Map::new();
        let put = |map: &mut Map<String, Value>, k: &str, v: &str| {
            if !v.trim().is_empty() {
                map.insert(k.to_owned(), Value::String(v.trim().to_owned()));
            }
        };
        if self.kind == "email" {
            let list: Vec<Value> = self
                .addresses
                .split([',', ';', '\n'])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| Value::String(a.to_owned()))
                .collect();
            map.insert("addresses".into(), Value::Array(list));
            put(&mut map, "language", &self.language);
        } else {
            let preset = if self.preset.is_empty() { "generic" } else { self.preset.as_str() };
            put(&mut map, "preset", preset);
            put(&mut map, "url", &self.url);
            put(&mut map, "language", &self.language);
            match preset {
                "telegram" => put(&mut map, "chat_id", &self.chat_id),
                "whatsapp" => {
                    put(&mut map, "phone_number_id", &self.phone_number_id);
                    put(&mut map, "to", &self.to);
                }
                _ => {}
            }
        }
        Value::Object(map)
    }

    /// The channel's kind, name, config and severities; or every field's error.
    fn parse(&self, ctx: &PageCtx) -> Result<(ChannelKind, Name, Value, SeveritySet), FieldErrors> {
        let lang = ctx.lang;
        let mut errors = FieldErrors::default();
        let kind = ChannelKind::parse(&self.kind);
        if kind.is_none() {
            errors.set("kind", lang.t("validation.required"));
        }
        let name = crate::forms::field(&mut errors, lang, "name", Name::parse("name", &self.name));
        let config = self.config();
        if let Err(e) = ChannelConfig::parse(&self.kind, &config) {
            let at = match &e {
                tds_domain::ValidationError::Required { field }
                | tds_domain::ValidationError::Rule { field, .. }
                | tds_domain::ValidationError::Choice { field, .. }
                | tds_domain::ValidationError::TooLong { field, .. }
                | tds_domain::ValidationError::OutOfRange { field, .. } => *field,
                _ => "url",
            };
            let at = if at == "config" { "url" } else { at };
            errors.set(at, lang.validation(&e));
        }
        let severities = self.severities();
        if severities == SeveritySet::NONE {
            errors.set("severities", lang.t("channels.no_severity"));
        }
        match (kind, name, errors.is_empty()) {
            (Some(kind), Some(name), true) => Ok((kind, name, config, severities)),
            _ => Err(errors),
        }
    }
}

#[derive(Template)]
#[template(path = "channels/form.html")]
struct FormTemplate {
    ctx: PageCtx,
    id: Option<i64>,
    form: ChannelForm,
    errors: FieldErrors,
    /// A secret TDS generated for a new webhook, shown this once.
    generated: Option<String>,
}

fn form_page(ctx: PageCtx, id: Option<i64>, form: ChannelForm, errors: FieldErrors) -> WebResult<Response> {
    let title = if id.is_some() { "channels.edit" } else { "channels.new" };
    let page = FormTemplate { ctx: ctx.section("settings", title), id, form, errors, generated: None };
    if page.errors.is_empty() {
        render(&page, None)
    } else {
        render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
    }
}

async fn new_form(Admin(_): Admin, ctx: PageCtx) -> WebResult<Response> {
    form_page(ctx, None, ChannelForm::blank(), FieldErrors::default())
}

async fn edit_form(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let c = state.store().notification_channels().get(t.tenant_id(), ChannelId::new(id)).await?;
    form_page(ctx, Some(id), ChannelForm::of(&c), FieldErrors::default())
}

/// A random secret for a generic webhook whose admin left it to TDS: 32 bytes, hex.
fn generated_secret() -> String {
    crate::session::new_token()
}

async fn create(
    State(state): State<AppState>,
    Admin(t): Admin,
    ctx: PageCtx,
    Form(form): Form<ChannelForm>,
) -> WebResult<Response> {
    let (kind, name, config, severities) = match form.parse(&ctx) {
        Ok(parsed) => parsed,
        Err(errors) => return form_page(ctx, None, form, errors),
    };
    let mut generated = None;
    let secret = match (kind, form.secret.trim()) {
        (ChannelKind::Email, _) => None,
        (ChannelKind::Webhook, "") if form.preset.is_empty() || form.preset == "generic" => {
            let made = generated_secret();
            generated = Some(made.clone());
            Some(ChannelSecret::new(made).map_err(StoreError::from)?)
        }
        (ChannelKind::Webhook, "") => {
            let mut errors = FieldErrors::default();
            errors.set("secret", ctx.t("channels.token_required"));
            return form_page(ctx, None, form, errors);
        }
        (ChannelKind::Webhook, s) => Some(ChannelSecret::new(s.to_owned()).map_err(StoreError::from)?),
    };
    let new =
        NewChannel { kind, name, config, secret, severities, enabled: true, created_by: Some(t.me.user.id) };
    let channel = match state.store().notification_channels().create(t.tenant_id(), &new).await {
        Ok(c) => c,
        Err(StoreError::Conflict(m)) => {
            let mut errors = FieldErrors::default();
            errors.set("name", m);
            return form_page(ctx, None, form, errors);
        }
        Err(e) => return Err(e.into()),
    };
    audit(
        &state,
        &t.me,
        Some(&t),
        "channel.created",
        ("channel", Some(channel.id.to_string())),
        described(&channel),
    )
    .await?;
    match generated {
        // The secret, this once: the receiver needs it to verify signatures.
        Some(secret) => {
            let page = FormTemplate {
                ctx: ctx.section("settings", "channels.edit"),
                id: Some(channel.id.get()),
                form: ChannelForm::of(&channel),
                errors: FieldErrors::default(),
                generated: Some(secret),
            };
            render(&page, None)
        }
        None => Ok(Redirect::to("/settings?done=saved").into_response()),
    }
}

/// What the audit log keeps of a channel (never its secret).
fn described(c: &Channel) -> Value {
    json!({"name": c.name, "kind": c.kind.as_str(), "config": c.config, "severities": c.severities})
}

async fn update(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
    ctx: PageCtx,
    Form(mut form): Form<ChannelForm>,
) -> WebResult<Response> {
    let store = state.store().notification_channels();
    let current = store.get(t.tenant_id(), ChannelId::new(id)).await?;
    // The kind is fixed once made.
    current.kind.as_str().clone_into(&mut form.kind);
    let (_, name, config, severities) = match form.parse(&ctx) {
        Ok(parsed) => parsed,
        Err(errors) => return form_page(ctx, Some(id), form, errors),
    };
    let saved =
        match store.update(t.tenant_id(), current.id, &ChannelFields { name, config, severities }).await {
            Ok(c) => c,
            Err(StoreError::Conflict(m)) => {
                let mut errors = FieldErrors::default();
                errors.set("name", m);
                return form_page(ctx, Some(id), form, errors);
            }
            Err(e) => return Err(e.into()),
        };
    if current.kind == ChannelKind::Webhook && !form.secret.trim().is_empty() {
        let secret = ChannelSecret::new(form.secret.trim().to_owned()).map_err(StoreError::from)?;
        store.set_secret(t.tenant_id(), saved.id, &secret).await?;
    }
    audit(&state, &t.me, Some(&t), "channel.updated", ("channel", Some(id.to_string())), described(&saved))
        .await?;
    Ok(Redirect::to("/settings?done=saved").into_response())
}

#[derive(Debug, Deserialize)]
struct EnabledForm {
    #[serde(default)]
    enabled: String,
}

async fn set_enabled(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
    Form(form): Form<EnabledForm>,
) -> WebResult<Response> {
    let enabled = form.enabled == "true";
    state.store().notification_channels().set_enabled(t.tenant_id(), ChannelId::new(id), enabled).await?;
    let action = if enabled { "channel.enabled" } else { "channel.disabled" };
    audit(&state, &t.me, Some(&t), action, ("channel", Some(id.to_string())), json!({})).await?;
    Ok(Redirect::to("/settings?done=saved").into_response())
}

/// Queues a test message to the channel now; the notifier sends it within seconds, and the
/// channel's last success or error on Configurações tells how it went.
pub(crate) async fn queue_test(
    state: &AppState,
    tenant: &tds_store::tenants::Tenant,
    id: ChannelId,
) -> Result<(), StoreError> {
    let channel = state.store().notification_channels().get(tenant.id, id).await?;
    let about = NoticeTenant {
        id: tenant.id.get(),
        name: tenant.name.to_string(),
        timezone: tenant.timezone.name().to_owned(),
    };
    let notice = test_notice(about, state.config().public_url.as_str(), chrono::Utc::now());
    let nonce = crate::session::new_token();
    let nonce = nonce.get(..12).unwrap_or("x");
    state.store().outbox().enqueue(tenant.id, &NewOutbox::test(channel.id, &notice, nonce)).await?;
    Ok(())
}

async fn send_test(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    queue_test(&state, &t.tenant, ChannelId::new(id)).await?;
    audit(&state, &t.me, Some(&t), "channel.tested", ("channel", Some(id.to_string())), json!({})).await?;
    Ok(Redirect::to("/settings?done=test_queued").into_response())
}

async fn delete(State(state): State<AppState>, Admin(t): Admin, Path(id): Path<i64>) -> WebResult<Response> {
    let store = state.store().notification_channels();
    let c = store.get(t.tenant_id(), ChannelId::new(id)).await?;
    store.delete(t.tenant_id(), c.id).await?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "channel.deleted",
        ("channel", Some(id.to_string())),
        json!({"name": c.name}),
    )
    .await?;
    Ok(Redirect::to("/settings?done=deleted").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fields_of_the_preset_go_into_the_config() {
        let mut f = ChannelForm::blank();
        f.preset = "telegram".into();
        f.chat_id = " -1001234 ".into();
        f.url = String::new();
        f.to = "5511999999999".into();
        assert_eq!(f.config(), json!({"preset": "telegram", "language": "pt-BR", "chat_id": "-1001234"}));
        f.kind = "email".into();
        f.addresses = "ana@acme.com.br\nbeto@acme.com.br, ".into();
        assert_eq!(f.config()["addresses"], json!(["ana@acme.com.br", "beto@acme.com.br"]));
    }
}
