//! Conta (the tenant's profile: name, CNPJ, time zone), the user's own profile (name,
//! language, password, log out elsewhere), and password reset by email. Reset requests answer
//! the same whether or not the email has an account, so the form cannot be used to find users.

use crate::auth::{Admin, CurrentUser, Viewer};
use crate::error::{WebError, WebResult};
use crate::forms::{FieldErrors, field, optional};
use crate::i18n::Lang;
use crate::page::PageCtx;
use crate::routes::auth_pages::lang_cookie;
use crate::routes::members::{check_new_password, hash_blocking};
use crate::routes::table::Routes;
use crate::routes::{Gone, audit, render, render_status};
use crate::{AppState, password, session};
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use tds_domain::{Cnpj, Email, Name, TimeZone};
use tds_store::StoreError;
use tds_store::user_tokens::TokenPurpose;

pub fn routes() -> Routes {
    Routes::new()
        .route("/account", get(account_page).post(update_account))
        .route("/profile", get(profile_page).post(update_profile))
        .route("/profile/password", post(change_password))
        .route("/profile/logout-others", post(logout_others))
        .route("/password/forgot", get(forgot_page).post(forgot))
        .route("/password/reset/{token}", get(reset_page).post(reset))
}

#[derive(Debug, Deserialize, Default)]
struct AccountForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cnpj: String,
    #[serde(default)]
    timezone: String,
    /// 1..28, or blank for calendar months (SPEC §6).
    #[serde(default)]
    billing_day: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountTemplate {
    ctx: PageCtx,
    form: AccountForm,
    errors: FieldErrors,
    plan: String,
    licence: String,
    limits: (i64, i64, i64),
    usage: (i64, i64, i64),
}

async fn account_template(
    state: &AppState,
    t: &crate::auth::TenantCtx,
    ctx: PageCtx,
    form: AccountForm,
    errors: FieldErrors,
) -> WebResult<AccountTemplate> {
    let usage = state.store().tenants().usage(t.tenant_id()).await?;
    let l = &t.tenant.limits;
    let licence = t.tenant.licence_valid_until.map_or_else(|| ctx.t("account.no_end"), |d| ctx.lang.date(d));
    Ok(AccountTemplate {
        ctx: ctx.section("account", "account.title"),
        form,
        errors,
        plan: t.tenant.plan.clone(),
        licence,
        limits: (l.max_gateways, l.max_devices, l.max_users),
        usage: (usage.gateways, usage.active_devices, usage.users),
    })
}

async fn account_page(State(state): State<AppState>, Viewer(t): Viewer, ctx: PageCtx) -> WebResult<Response> {
    let form = AccountForm {
        name: t.tenant.name.to_string(),
        cnpj: t.tenant.cnpj.clone().unwrap_or_default(),
        timezone: t.tenant.timezone.name().to_owned(),
        billing_day: t.tenant.billing_day.map(|d| d.to_string()).unwrap_or_default(),
    };
    render(&account_template(&state, &t, ctx, form, FieldErrors::default()).await?, None)
}

async fn update_account(
    State(state): State<AppState>,
    Admin(t): Admin,
    ctx: PageCtx,
    Form(form): Form<AccountForm>,
) -> WebResult<Response> {
    let lang = ctx.lang;
    let mut errors = FieldErrors::default();
    let name = field(&mut errors, lang, "name", Name::parse("name", &form.name));
    let cnpj = match optional(&form.cnpj) {
        None => Some(None),
        Some(c) => field(&mut errors, lang, "cnpj", Cnpj::parse(&c)).map(Some),
    };
    let zone = field(&mut errors, lang, "timezone", TimeZone::parse(&form.timezone));
    let billing_day = match form.billing_day.trim() {
        "" => Some(None),
        d => {
            let day = d.parse::<u8>().ok().filter(|d| (1..=28).contains(d));
            if day.is_none() {
                errors.set("billing_day", lang.t("account.billing_day_range"));
            }
            day.map(Some)
        }
    };
    if let (Some(name), Some(cnpj), Some(zone), Some(billing_day)) = (name, cnpj, zone, billing_day) {
        match state.store().tenants().update_profile(t.tenant_id(), &name, cnpj.as_ref(), zone).await {
            Ok(_) => {
                state.store().tenants().set_billing_day(t.tenant_id(), billing_day).await?;
                audit(
                    &state,
                    &t.me,
                    Some(&t),
                    "tenant.profile_updated",
                    ("tenant", Some(t.tenant_id().to_string())),
                    json!({"name": name.as_str(), "timezone": zone.name(), "billing_day": billing_day}),
                )
                .await?;
                return Ok(Redirect::to("/account?done=saved").into_response());
            }
            Err(StoreError::Conflict(_)) => errors.set("name", lang.t("account.name_taken")),
            Err(e) => return Err(e.into()),
        }
    }
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &account_template(&state, &t, ctx, form, errors).await?)
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfileTemplate {
    ctx: PageCtx,
    name: String,
    language: String,
    errors: FieldErrors,
    password_errors: FieldErrors,
}

fn profile(me: &CurrentUser, ctx: PageCtx) -> ProfileTemplate {
    ProfileTemplate {
        ctx: ctx.section("", "nav.profile"),
        name: me.user.display_name.to_string(),
        language: me.lang.code().to_owned(),
        errors: FieldErrors::default(),
        password_errors: FieldErrors::default(),
    }
}

async fn profile_page(me: CurrentUser, ctx: PageCtx) -> WebResult<Response> {
    render(&profile(&me, ctx), None)
}

#[derive(Debug, Deserialize)]
struct ProfileForm {
    name: String,
    language: String,
}

async fn update_profile(
    State(state): State<AppState>,
    me: CurrentUser,
    jar: CookieJar,
    ctx: PageCtx,
    Form(form): Form<ProfileForm>,
) -> WebResult<Response> {
    let mut page = profile(&me, ctx);
    let lang = page.ctx.lang;
    let name = field(&mut page.errors, lang, "name", Name::parse("name", &form.name));
    let language = Lang::parse(&form.language);
    if language.is_none() {
        page.errors.set("language", lang.t("validation.required"));
    }
    let (Some(name), Some(language)) = (name, language) else {
        page.name = form.name;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    state.store().users().set_profile(me.user.id, &name, language.code()).await?;
    Ok((jar.add(lang_cookie(&state, language)), Redirect::to("/profile?done=saved")).into_response())
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    current: String,
    password: String,
    confirm: String,
}

/// Changes the password after checking the current one, and ends the user's other sessions.
async fn change_password(
    State(state): State<AppState>,
    me: CurrentUser,
    ctx: PageCtx,
    Form(form): Form<PasswordForm>,
) -> WebResult<Response> {
    let mut page = profile(&me, ctx);
    let lang = page.ctx.lang;
    let creds = state.store().users().credentials(&me.user.email).await?;
    let stored = creds.password_hash.unwrap_or_else(|| password::dummy_hash().to_owned());
    let current = form.current.clone();
    let ok = state.hashes().verify(current, stored).await?;
    if !ok {
        page.password_errors.set("current", lang.t("validation.password_wrong"));
    }
    check_new_password(lang, &mut page.password_errors, &form.password, &form.confirm);
    if !page.password_errors.is_empty() {
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let hash = hash_blocking(&state, form.password).await?;
    state.store().users().set_password(me.user.id, &hash).await?;
    let ended = state.store().sessions().delete_for_user_except(me.user.id, &me.session.token_hash).await?;
    audit(
        &state,
        &me,
        None,
        "user.password_changed",
        ("user", Some(me.user.id.to_string())),
        json!({"other_sessions_ended": ended}),
    )
    .await?;
    Ok(Redirect::to("/profile?done=password_changed").into_response())
}

async fn logout_others(State(state): State<AppState>, me: CurrentUser) -> WebResult<Response> {
    let ended = state.store().sessions().delete_for_user_except(me.user.id, &me.session.token_hash).await?;
    audit(
        &state,
        &me,
        None,
        "logout.others",
        ("user", Some(me.user.id.to_string())),
        json!({"sessions": ended}),
    )
    .await?;
    Ok(Redirect::to("/profile?done=logged_out_elsewhere").into_response())
}

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotTemplate {
    ctx: PageCtx,
}

async fn forgot_page(ctx: PageCtx) -> WebResult<Response> {
    let mut ctx = ctx.section("", "forgot.title");
    let cookie = ctx.new_csrf_cookie.take();
    render(&ForgotTemplate { ctx }, cookie)
}

#[derive(Debug, Deserialize)]
struct ForgotForm {
    email: String,
}

/// Requests allowed per email and per IP within [`crate::routes::auth_pages::WINDOW_MINUTES`].
const RESETS_PER_EMAIL: i64 = 5;
const RESETS_PER_IP: i64 = 20;

/// Answers the same, at once, whether or not the email has an account: the link is made and
/// sent in the background, so neither the page nor its timing tells (SPEC §11). Requests are
/// counted and recorded under one key, `reset:{email}`, so that the form cannot flood a mailbox.
async fn forgot(
    State(state): State<AppState>,
    ctx: PageCtx,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    Form(form): Form<ForgotForm>,
) -> WebResult<Response> {
    let lang = ctx.lang;
    let key = format!("reset:{}", form.email.trim().to_lowercase().chars().take(254).collect::<String>());
    let now = Utc::now();
    let since = now - chrono::Duration::minutes(crate::routes::auth_pages::WINDOW_MINUTES);
    let counts = state.store().login_failures().count_since(&key, &ip, since).await?;
    if counts.by_email >= RESETS_PER_EMAIL || counts.by_ip >= RESETS_PER_IP {
        return Err(WebError::TooManyRequests);
    }
    state.store().login_failures().record(&key, &ip, now).await?;
    if let Ok(email) = Email::parse(&form.email) {
        tokio::spawn(async move {
            if let Err(e) = send_reset_link(&state, &email, lang, &ip).await {
                tracing::error!(error = %e, "cannot send a password-reset link");
            }
        });
    }
    Ok(Redirect::to("/login?done=reset_sent").into_response())
}

/// Makes a reset link for `email`'s account, if it has an active one, and mails it.
async fn send_reset_link(state: &AppState, email: &Email, lang: Lang, ip: &str) -> WebResult<()> {
    let user = match state.store().users().by_email(email).await {
        Ok(user) if user.active => user,
        Ok(_) | Err(StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let now = Utc::now();
    let token = session::new_token();
    let expires =
        now + chrono::Duration::from_std(state.config().reset_ttl).unwrap_or(chrono::Duration::hours(1));
    state.store().user_tokens().create_reset(user.id, email, &session::token_hash(&token), expires).await?;
    let user_lang = Lang::parse(&user.language).unwrap_or(lang);
    let link = state.config().link(&format!("/password/reset/{token}"));
    let minutes = (state.config().reset_ttl.as_secs() / 60).to_string();
    let body = user_lang.tf(
        "mail.reset_body",
        &[("name", user.display_name.as_str()), ("link", &link), ("minutes", &minutes)],
    );
    state
        .mailer()
        .send(email.as_str(), &user_lang.t("mail.reset_subject"), body)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    state
        .store()
        .audit()
        .record(&tds_store::audit::NewAuditEntry {
            tenant_id: None,
            user_id: Some(user.id),
            actor: email.to_string(),
            action: "password.reset_requested".into(),
            object_kind: "user".into(),
            object_id: Some(user.id.to_string()),
            detail: "{}".into(),
            ip: Some(ip.to_owned()),
        })
        .await?;
    Ok(())
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetTemplate {
    ctx: PageCtx,
    token: String,
    errors: FieldErrors,
}

async fn reset_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let mut ctx = ctx.section("", "reset.title");
    match state
        .store()
        .user_tokens()
        .peek(&session::token_hash(&token), TokenPurpose::Reset, Utc::now())
        .await
    {
        Ok(_) => {}
        Err(StoreError::NotFound) => {
            return render_status(StatusCode::NOT_FOUND, &Gone { ctx, message_key: "reset.gone" });
        }
        Err(e) => return Err(e.into()),
    }
    let cookie = ctx.new_csrf_cookie.take();
    render(&ResetTemplate { ctx, token, errors: FieldErrors::default() }, cookie)
}

#[derive(Debug, Deserialize)]
struct ResetForm {
    password: String,
    confirm: String,
}

async fn reset(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ctx: PageCtx,
    Form(form): Form<ResetForm>,
) -> WebResult<Response> {
    let ctx = ctx.section("", "reset.title");
    let mut errors = FieldErrors::default();
    check_new_password(ctx.lang, &mut errors, &form.password, &form.confirm);
    if !errors.is_empty() {
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &ResetTemplate { ctx, token, errors });
    }
    let hash = hash_blocking(&state, form.password).await?;
    let user = match state
        .store()
        .user_tokens()
        .consume_reset(&session::token_hash(&token), Utc::now(), &hash)
        .await
    {
        Ok(u) => u,
        Err(StoreError::NotFound) => {
            return render_status(StatusCode::NOT_FOUND, &Gone { ctx, message_key: "reset.gone" });
        }
        Err(e) => return Err(e.into()),
    };
    // Whoever had the old password is out.
    state.store().sessions().delete_for_user(user.id).await?;
    state.store().login_failures().clear_email(user.email.as_str()).await?;
    state
        .store()
        .audit()
        .record(&tds_store::audit::NewAuditEntry {
            tenant_id: None,
            user_id: Some(user.id),
            actor: user.email.to_string(),
            action: "password.reset".into(),
            object_kind: "user".into(),
            object_id: Some(user.id.to_string()),
            detail: "{}".into(),
            ip: None,
        })
        .await?;
    Ok(Redirect::to("/login?done=password_set").into_response())
}
