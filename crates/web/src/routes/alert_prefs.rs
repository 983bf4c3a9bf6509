//! Meu perfil → Alertas (SPEC §5): which severities reach the member by email and in the app,
//! quiet hours (a non-critical email waits for their end), and reminders for a critical alert left
//! active and unacknowledged. Preferences are per tenant: a member of two tenants chooses for
//! each. Until the member saves, the defaults of SPEC §5 apply (admins and editors get WARNING
//! and CRITICAL by email, everyone sees every alert in the app), and the page says so.

use crate::AppState;
use crate::auth::Viewer;
use crate::error::WebResult;
use crate::forms::FieldErrors;
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render, render_status};
use askama::Template;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::NaiveTime;
use serde::Deserialize;
use serde_json::json;
use tds_domain::Severity;
use tds_store::notifications::{AlertPrefs, QuietHours, SeveritySet};

pub fn routes() -> Routes {
    Routes::new().route("/profile/alerts", get(page).post(save)).route("/profile/alerts/reset", post(reset))
}

/// The form: a checkbox per channel and severity (`email_WARNING`, `app_CRITICAL`, …).
#[derive(Debug, Default, Deserialize)]
struct PrefsForm {
    #[serde(flatten)]
    checks: std::collections::HashMap<String, String>,
}

impl PrefsForm {
    fn set(&self, channel: &str) -> SeveritySet {
        let chosen: Vec<Severity> = Severity::ALL
            .iter()
            .copied()
            .filter(|s| self.checks.contains_key(&format!("{channel}_{}", s.as_str())))
            .collect();
        SeveritySet::of(&chosen)
    }

    fn text(&self, name: &str) -> &str {
        self.checks.get(name).map_or("", |v| v.trim())
    }
}

#[derive(Template)]
#[template(path = "alert_prefs.html")]
struct PrefsTemplate {
    ctx: PageCtx,
    prefs: AlertPrefs,
    customised: bool,
    quiet_start: String,
    quiet_end: String,
    reminder_hours: String,
    errors: FieldErrors,
}

impl PrefsTemplate {
    // Askama hands template fields by reference.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    fn checked(set: &SeveritySet, severity: &str) -> bool {
        Severity::parse(severity).is_ok_and(|s| set.contains(s))
    }
}

fn template(ctx: PageCtx, prefs: AlertPrefs, customised: bool) -> PrefsTemplate {
    PrefsTemplate {
        ctx: ctx.section("", "prefs.title"),
        quiet_start: prefs.quiet_hours.map(|q| q.start().format("%H:%M").to_string()).unwrap_or_default(),
        quiet_end: prefs.quiet_hours.map(|q| q.end().format("%H:%M").to_string()).unwrap_or_default(),
        reminder_hours: prefs.reminder_hours.map(|h| h.to_string()).unwrap_or_default(),
        prefs,
        customised,
        errors: FieldErrors::default(),
    }
}

async fn page(State(state): State<AppState>, Viewer(t): Viewer, ctx: PageCtx) -> WebResult<Response> {
    let store = state.store().alert_prefs();
    let own = store.get(t.tenant_id(), t.me.user.id).await?;
    let prefs = match own {
        Some(p) => p,
        None => store.effective(t.tenant_id(), t.me.user.id).await?,
    };
    render(&template(ctx, prefs, own.is_some()), None)
}

async fn save(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    ctx: PageCtx,
    Form(form): Form<PrefsForm>,
) -> WebResult<Response> {
    let lang = ctx.lang;
    let mut errors = FieldErrors::default();
    let time = |errors: &mut FieldErrors, name: &str| -> Option<Option<NaiveTime>> {
        let text = form.text(name);
        if text.is_empty() {
            return Some(None);
        }
        if let Ok(t) = NaiveTime::parse_from_str(text, "%H:%M") {
            Some(Some(t))
        } else {
            errors.set(name, lang.t("prefs.bad_time"));
            None
        }
    };
    let (start, end) = (time(&mut errors, "quiet_start"), time(&mut errors, "quiet_end"));
    let quiet_hours = match (start, end) {
        (Some(Some(s)), Some(Some(e))) => match QuietHours::new(s, e) {
            Ok(q) => Some(q),
            Err(v) => {
                errors.set("quiet_end", lang.validation(&v));
                None
            }
        },
        (Some(None), Some(None)) => None,
        (Some(_), Some(_)) => {
            errors.set("quiet_end", lang.t("prefs.both_times"));
            None
        }
        _ => None,
    };
    let reminder_hours = match form.text("reminder_hours") {
        "" => None,
        h => match h.parse::<i64>() {
            Ok(n) if (1..=168).contains(&n) => Some(n),
            _ => {
                let range = tds_domain::ValidationError::out_of_range("reminder (hours)", h, 1, 168);
                errors.set("reminder_hours", lang.validation(&range));
                None
            }
        },
    };
    let prefs = AlertPrefs { email: form.set("email"), in_app: form.set("app"), quiet_hours, reminder_hours };
    if !errors.is_empty() {
        let mut page = template(ctx, prefs, true);
        form.text("quiet_start").clone_into(&mut page.quiet_start);
        form.text("quiet_end").clone_into(&mut page.quiet_end);
        form.text("reminder_hours").clone_into(&mut page.reminder_hours);
        page.errors = errors;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    state.store().alert_prefs().set(t.tenant_id(), t.me.user.id, &prefs).await?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "alert_prefs.updated",
        ("user", Some(t.me.user.id.to_string())),
        json!(prefs),
    )
    .await?;
    Ok(Redirect::to("/profile/alerts?done=prefs_saved").into_response())
}

async fn reset(State(state): State<AppState>, Viewer(t): Viewer) -> WebResult<Response> {
    state.store().alert_prefs().reset(t.tenant_id(), t.me.user.id).await?;
    audit(&state, &t.me, Some(&t), "alert_prefs.reset", ("user", Some(t.me.user.id.to_string())), json!({}))
        .await?;
    Ok(Redirect::to("/profile/alerts?done=prefs_saved").into_response())
}
