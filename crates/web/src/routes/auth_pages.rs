//! Logging in and out, and the language switch of the pages before login.
//!
//! Login throttling: after 5 failed attempts in 15 minutes for an email, or from an IP address,
//! further attempts are refused with a clear message until the window has passed, whether or
//! not the password is right (so the lockout cannot be used to confirm a guess). An attempt is
//! recorded before its password is checked, so parallel guesses cannot slip past the count, and
//! the checks themselves run through the bounded [`crate::password::HashLimiter`].

use crate::auth::{ClientIp, CurrentUser, MaybeUser};
use crate::error::{WebError, WebResult};
use crate::i18n::{LANG_COOKIE, Lang};
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render, render_status};
use crate::{AppState, password, session};
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use tds_domain::Email;
use tds_store::StoreError;
use tds_store::audit::NewAuditEntry;

/// Failures allowed per email and per IP within [`WINDOW_MINUTES`].
pub const MAX_FAILURES: i64 = 5;
pub const WINDOW_MINUTES: i64 = 15;
/// Logins refused, by reason (`locked_out`, `invalid`).
pub const METRIC_REFUSED: &str = "tds_web_logins_refused_total";

pub fn routes() -> Routes {
    Routes::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/logout/everywhere", post(logout_everywhere))
        .route("/language", post(set_language))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTemplate {
    ctx: PageCtx,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only local paths are followed after login (no open redirect to another site): a path that
/// starts with one `/`, made of visible ASCII only. Browsers drop tabs and line breaks from a
/// `Location` and read `\` as `/`, so `/\t/evil.example` or `/\evil.example` would reach another
/// host; anything outside `!`..=`~` (spaces, controls, non-ASCII) and any `\` are refused.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

async fn login_page(
    MaybeUser(user): MaybeUser,
    Query(q): Query<NextQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    if user.is_some() {
        return Ok(Redirect::to(&safe_next(q.next.as_deref())).into_response());
    }
    let mut ctx = ctx.section("", "login.title");
    let cookie = ctx.new_csrf_cookie.take();
    render(
        &LoginTemplate { ctx, email: String::new(), next: safe_next(q.next.as_deref()), error: None },
        cookie,
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    ctx: PageCtx,
    Form(form): Form<LoginForm>,
) -> WebResult<Response> {
    let ctx = ctx.section("", "login.title");
    let lang = ctx.lang;
    let email_key: String = form.email.trim().to_lowercase().chars().take(254).collect();
    let next = safe_next(Some(&form.next));
    let now = Utc::now();
    let failures = state.store().login_failures();
    let since = now - chrono::Duration::minutes(WINDOW_MINUTES);
    let refuse = |ctx: PageCtx, status: StatusCode, key: &str| {
        let error = Some(lang.tf(key, &[("minutes", &WINDOW_MINUTES.to_string())]));
        render_status(status, &LoginTemplate { ctx, email: form.email.clone(), next: next.clone(), error })
    };
    // Locked out: refused before any work, and without writing anything (a flood of refused
    // attempts must not grow the database); the lockout itself was audited when it began.
    let counts = failures.count_since(&email_key, &ip, since).await?;
    if counts.by_email >= MAX_FAILURES || counts.by_ip >= MAX_FAILURES {
        metrics::counter!(METRIC_REFUSED, "reason" => "locked_out").increment(1);
        return refuse(ctx, StatusCode::TOO_MANY_REQUESTS, "login.locked");
    }
    // The attempt counts as a failure until the password proves right, and takes its place
    // among the attempts recorded before it (by id, so parallel guesses are ordered): no more
    // than MAX_FAILURES of them ever reach the password check in a window.
    let attempt = failures.record(&email_key, &ip, now).await?;
    let rank = failures.rank(&email_key, &ip, since, attempt).await?;
    if rank.by_email > MAX_FAILURES || rank.by_ip > MAX_FAILURES {
        metrics::counter!(METRIC_REFUSED, "reason" => "locked_out").increment(1);
        return refuse(ctx, StatusCode::TOO_MANY_REQUESTS, "login.locked");
    }

    let user = match Email::parse(&form.email) {
        Ok(email) => match state.store().users().credentials(&email).await {
            Ok(c) => Some(c),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) => None,
    };
    // Verify against a dummy hash when there is no such user, so timing does not tell.
    let hash = user.as_ref().and_then(|c| c.password_hash.as_deref()).unwrap_or(password::dummy_hash());
    let password_ok = state.hashes().verify(form.password.clone(), hash.to_owned()).await?;
    let user = match user {
        Some(c) if password_ok && c.user.active && c.password_hash.is_some() => c.user,
        _ => {
            metrics::counter!(METRIC_REFUSED, "reason" => "invalid").increment(1);
            record_anonymous(&state, &email_key, &ip, "login.failed").await?;
            // The failure that completes the count starts the lockout: said once, by it.
            if rank.by_email == MAX_FAILURES || rank.by_ip == MAX_FAILURES {
                crate::throttled_log::warn("login_locked_out", "logins locked out after repeated failures");
                record_anonymous(&state, &email_key, &ip, "login.locked_out").await?;
            }
            return refuse(ctx, StatusCode::UNAUTHORIZED, "login.invalid");
        }
    };

    failures.forget(attempt).await?;
    failures.clear_email(&email_key).await?;
    state.store().users().record_login(user.id).await?;
    // A new token at every login: whatever session cookie the browser had is dropped.
    if let Some(old) = session::token_from(&state, &jar) {
        match state.store().sessions().delete(&session::token_hash(&old)).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let (mut new_session, cookie) = session::open(&state, user.id, &ip, user_agent).await?;
    let me = CurrentUser {
        lang: Lang::parse(&user.language).unwrap_or(lang),
        user,
        session: new_session.clone(),
        ip,
    };
    audit(&state, &me, None, "login.succeeded", ("user", Some(me.user.id.to_string())), json!({})).await?;

    // One tenant: straight in. Several: pick one. None: staff go to the console.
    let tenants = state.store().memberships().tenants_of(me.user.id).await?;
    let target = if let [(tenant, _)] = tenants.as_slice() {
        state.store().sessions().set_tenant(&new_session.token_hash, Some(tenant.id)).await?;
        new_session.tenant_id = Some(tenant.id);
        next
    } else if tenants.is_empty() && me.user.is_staff {
        "/staff".to_owned()
    } else {
        format!("/tenants?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())
    };
    let jar = jar.add(cookie).add(lang_cookie(&state, me.lang));
    Ok((jar, Redirect::to(&target)).into_response())
}

async fn record_anonymous(state: &AppState, email_key: &str, ip: &str, action: &str) -> WebResult<()> {
    state
        .store()
        .audit()
        .record(&NewAuditEntry {
            tenant_id: None,
            user_id: None,
            actor: email_key.chars().take(254).collect(),
            action: action.to_owned(),
            object_kind: "user".into(),
            object_id: None,
            detail: "{}".into(),
            ip: Some(ip.to_owned()),
        })
        .await?;
    Ok(())
}

async fn logout(State(state): State<AppState>, me: CurrentUser, jar: CookieJar) -> WebResult<Response> {
    state.store().sessions().delete(&me.session.token_hash).await?;
    audit(&state, &me, None, "logout", ("user", Some(me.user.id.to_string())), json!({})).await?;
    Ok((jar.add(session::removal(&state)), Redirect::to("/login")).into_response())
}

/// Ends every session of the user, this one included (after a lost laptop, say).
async fn logout_everywhere(
    State(state): State<AppState>,
    me: CurrentUser,
    jar: CookieJar,
) -> WebResult<Response> {
    let ended = state.store().sessions().delete_for_user(me.user.id).await?;
    audit(
        &state,
        &me,
        None,
        "logout.everywhere",
        ("user", Some(me.user.id.to_string())),
        json!({ "sessions": ended }),
    )
    .await?;
    Ok((jar.add(session::removal(&state)), Redirect::to("/login")).into_response())
}

#[derive(Debug, Deserialize)]
struct LanguageForm {
    lang: String,
    #[serde(default)]
    back: String,
}

/// Switches the language: stored in the user's profile when logged in, and in a cookie.
async fn set_language(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    jar: CookieJar,
    Form(form): Form<LanguageForm>,
) -> WebResult<Response> {
    let lang = Lang::parse(&form.lang).ok_or_else(|| WebError::BadRequest("unknown language".into()))?;
    if let Some(me) = user {
        state.store().users().set_profile(me.user.id, &me.user.display_name, lang.code()).await?;
    }
    Ok((jar.add(lang_cookie(&state, lang)), Redirect::to(&safe_next(Some(&form.back)))).into_response())
}

pub fn lang_cookie(state: &AppState, lang: Lang) -> Cookie<'static> {
    Cookie::build((LANG_COOKIE, lang.code()))
        .path("/")
        .secure(state.config().secure_cookies)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::days(365))
        .build()
}
