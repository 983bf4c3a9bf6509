//! Usuários: the tenant's members and invitations. Everyone in the tenant sees the list;
//! admins invite (an email with a single-use link that expires), change roles and remove
//! members. The last admin can be neither demoted nor removed (the store refuses). The
//! invitee's side (`/invite/{token}`) needs no login: the link itself proves the email.

use crate::auth::{Admin, Viewer};
use crate::error::{WebError, WebResult};
use crate::forms::{FieldErrors, field};
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render, render_status};
use crate::{AppState, password, session};
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use tds_domain::{Email, Name, Role, UserId, UserTokenId};
use tds_store::StoreError;
use tds_store::memberships::Member;
use tds_store::user_tokens::{TokenPurpose, UserToken};

pub fn routes() -> Routes {
    Routes::new()
        .route("/members", get(list))
        .route("/members/invite", post(invite))
        .route("/members/{user}/role", post(change_role))
        .route("/members/{user}/remove", post(remove))
        .route("/members/invites/{id}/revoke", post(revoke_invite))
        .route("/invite/{token}", get(accept_page).post(accept))
}

#[derive(Template)]
#[template(path = "members.html")]
struct ListTemplate {
    ctx: PageCtx,
    members: Vec<Member>,
    invites: Vec<UserToken>,
    me: UserId,
    invite_email: String,
    invite_role: String,
    errors: FieldErrors,
}

async fn list_page(
    state: &AppState,
    t: &crate::auth::TenantCtx,
    ctx: PageCtx,
    email: String,
    role: String,
    errors: FieldErrors,
) -> WebResult<ListTemplate> {
    let members = state.store().memberships().members(t.tenant_id()).await?;
    let invites = if t.can(Role::Admin) {
        state.store().user_tokens().pending_invites(t.tenant_id(), Utc::now()).await?
    } else {
        Vec::new()
    };
    Ok(ListTemplate {
        ctx: ctx.section("members", "members.title"),
        members,
        invites,
        me: t.me.user.id,
        invite_email: email,
        invite_role: role,
        errors,
    })
}

async fn list(State(state): State<AppState>, Viewer(t): Viewer, ctx: PageCtx) -> WebResult<Response> {
    let page = list_page(&state, &t, ctx, String::new(), "viewer".into(), FieldErrors::default()).await?;
    render(&page, None)
}

#[derive(Debug, Deserialize)]
struct InviteForm {
    email: String,
    role: String,
}

async fn invite(
    State(state): State<AppState>,
    Admin(t): Admin,
    ctx: PageCtx,
    Form(form): Form<InviteForm>,
) -> WebResult<Response> {
    let lang = ctx.lang;
    let mut errors = FieldErrors::default();
    let email = field(&mut errors, lang, "email", Email::parse(&form.email));
    let role = field(&mut errors, lang, "role", Role::parse(&form.role));
    if let Some(email) = &email {
        let already =
            state.store().memberships().members(t.tenant_id()).await?.iter().any(|m| &m.user.email == email);
        if already {
            errors.set("email", lang.t("members.already_member"));
        }
    }
    let (Some(email), Some(role)) = (email, role) else {
        let page = list_page(&state, &t, ctx, form.email, form.role, errors).await?;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    if !errors.is_empty() {
        let page = list_page(&state, &t, ctx, form.email, form.role, errors).await?;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let token = session::new_token();
    let expires = Utc::now()
        + chrono::Duration::from_std(state.config().invite_ttl).unwrap_or(chrono::Duration::days(7));
    let invite = state
        .store()
        .user_tokens()
        .create_invite(t.tenant_id(), &email, role, &session::token_hash(&token), expires, Some(t.me.user.id))
        .await?;
    let link = state.config().link(&format!("/invite/{token}"));
    // The email is in the inviter's language; the invitee picks theirs on the page.
    let body = lang.tf(
        "mail.invite_body",
        &[
            ("inviter", t.me.user.display_name.as_str()),
            ("tenant", t.tenant.name.as_str()),
            ("role", &lang.t(&format!("role.{}", role.as_str()))),
            ("link", &link),
            ("days", &state.config().invite_ttl.as_secs().div_ceil(86_400).to_string()),
        ],
    );
    let subject = lang.tf("mail.invite_subject", &[("tenant", t.tenant.name.as_str())]);
    state
        .mailer()
        .send(email.as_str(), &subject, body)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "invitation.sent",
        ("invitation", Some(invite.id.to_string())),
        json!({"email": email.as_str(), "role": role.as_str()}),
    )
    .await?;
    Ok(Redirect::to("/members?done=invited").into_response())
}

#[derive(Debug, Deserialize)]
struct RoleForm {
    // Defaulted so that the membership is looked up (404 for another tenant's user) before the
    // role is judged.
    #[serde(default)]
    role: String,
}

async fn change_role(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(user): Path<i64>,
    Form(form): Form<RoleForm>,
) -> WebResult<Response> {
    let user = UserId::new(user);
    let before = state.store().memberships().role(t.tenant_id(), user).await?.ok_or(WebError::NotFound)?;
    let role = Role::parse(&form.role).map_err(|e| WebError::BadRequest(e.to_string()))?;
    match state.store().memberships().set_role(t.tenant_id(), user, role).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_) | StoreError::Limit(_)) => {
            return Ok(Redirect::to("/members?done=last_admin").into_response());
        }
        Err(e) => return Err(e.into()),
    }
    audit(
        &state,
        &t.me,
        Some(&t),
        "membership.role_changed",
        ("user", Some(user.to_string())),
        json!({"from": before.as_str(), "to": role.as_str()}),
    )
    .await?;
    Ok(Redirect::to("/members?done=role_changed").into_response())
}

async fn remove(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(user): Path<i64>,
) -> WebResult<Response> {
    let user = UserId::new(user);
    state.store().memberships().role(t.tenant_id(), user).await?.ok_or(WebError::NotFound)?;
    match state.store().memberships().remove(t.tenant_id(), user).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_) | StoreError::Limit(_)) => {
            return Ok(Redirect::to("/members?done=last_admin").into_response());
        }
        Err(e) => return Err(e.into()),
    }
    audit(&state, &t.me, Some(&t), "membership.removed", ("user", Some(user.to_string())), json!({})).await?;
    Ok(Redirect::to("/members?done=member_removed").into_response())
}

async fn revoke_invite(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    state.store().user_tokens().revoke_invite(t.tenant_id(), UserTokenId::new(id)).await?;
    audit(&state, &t.me, Some(&t), "invitation.revoked", ("invitation", Some(id.to_string())), json!({}))
        .await?;
    Ok(Redirect::to("/members?done=invite_revoked").into_response())
}

#[derive(Template)]
#[template(path = "invite.html")]
struct AcceptTemplate {
    ctx: PageCtx,
    token: String,
    email: String,
    tenant_name: String,
    /// The email already has an account with a password: nothing to set.
    existing: bool,
    name: String,
    errors: FieldErrors,
}

async fn invitation(state: &AppState, token: &str) -> WebResult<(UserToken, String, bool)> {
    let invite = state
        .store()
        .user_tokens()
        .peek(&session::token_hash(token), TokenPurpose::Invite, Utc::now())
        .await?;
    let tenant_id = invite.tenant_id.ok_or(WebError::NotFound)?;
    let tenant = state.store().tenants().get(tenant_id).await?;
    let existing = match state.store().users().by_email(&invite.email).await {
        Ok(u) => u.has_password,
        Err(StoreError::NotFound) => false,
        Err(e) => return Err(e.into()),
    };
    Ok((invite, tenant.name.to_string(), existing))
}

async fn accept_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let mut ctx = ctx.section("", "invite.title");
    let (invite, tenant_name, existing) = match invitation(&state, &token).await {
        Ok(found) => found,
        Err(WebError::NotFound) => {
            return render_status(
                StatusCode::NOT_FOUND,
                &crate::routes::Gone { ctx, message_key: "invite.gone" },
            );
        }
        Err(e) => return Err(e),
    };
    let cookie = ctx.new_csrf_cookie.take();
    let page = AcceptTemplate {
        ctx,
        token,
        email: invite.email.to_string(),
        tenant_name,
        existing,
        name: String::new(),
        errors: FieldErrors::default(),
    };
    render(&page, cookie)
}

#[derive(Debug, Deserialize)]
struct AcceptForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn accept(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ctx: PageCtx,
    Form(form): Form<AcceptForm>,
) -> WebResult<Response> {
    let ctx = ctx.section("", "invite.title");
    let lang = ctx.lang;
    let (invite, tenant_name, existing) = match invitation(&state, &token).await {
        Ok(found) => found,
        Err(WebError::NotFound) => {
            return render_status(
                StatusCode::NOT_FOUND,
                &crate::routes::Gone { ctx, message_key: "invite.gone" },
            );
        }
        Err(e) => return Err(e),
    };
    let mut errors = FieldErrors::default();
    let (name, hash) = if existing {
        // Kept as they are by the store; these values are not used.
        (Name::parse("name", invite.email.as_str()).ok(), Some(String::new()))
    } else {
        let name = field(&mut errors, lang, "name", Name::parse("name", &form.name));
        check_new_password(lang, &mut errors, &form.password, &form.confirm);
        let hash =
            if errors.is_empty() { Some(hash_blocking(&state, form.password.clone()).await?) } else { None };
        (name, hash)
    };
    let (Some(name), Some(hash)) = (name, hash) else {
        let page = AcceptTemplate {
            ctx,
            token,
            email: invite.email.to_string(),
            tenant_name,
            existing,
            name: form.name,
            errors,
        };
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    match state
        .store()
        .user_tokens()
        .accept_invite(&session::token_hash(&token), Utc::now(), &name, &hash, lang.code())
        .await
    {
        Ok((user, tenant, role)) => {
            state
                .store()
                .audit()
                .record(&tds_store::audit::NewAuditEntry {
                    tenant_id: Some(tenant),
                    user_id: Some(user.id),
                    actor: user.email.to_string(),
                    action: "invitation.accepted".into(),
                    object_kind: "invitation".into(),
                    object_id: Some(invite.id.to_string()),
                    detail: json!({"role": role.as_str()}).to_string(),
                    ip: None,
                })
                .await?;
            Ok(Redirect::to("/login?done=password_set").into_response())
        }
        Err(StoreError::Limit(msg)) => {
            errors.form_error(lang.tf("validation.limit", &[("detail", &msg)]));
            let page = AcceptTemplate {
                ctx,
                token,
                email: invite.email.to_string(),
                tenant_name,
                existing,
                name: form.name,
                errors,
            };
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}

/// Records the problems of a new password (length, confirmation) under `password`/`confirm`.
pub fn check_new_password(lang: crate::i18n::Lang, errors: &mut FieldErrors, password: &str, confirm: &str) {
    match password::check_new(password) {
        Err(password::PasswordProblem::TooShort) => {
            errors.set("password", lang.t("validation.password_short"));
        }
        Err(password::PasswordProblem::TooLong) => errors.set("password", lang.t("validation.password_long")),
        Ok(()) if password != confirm => errors.set("confirm", lang.t("validation.password_mismatch")),
        Ok(()) => {}
    }
}

/// argon2 is deliberately slow: hash off the async threads, within the limit of hashes at once.
pub async fn hash_blocking(state: &AppState, password: String) -> WebResult<String> {
    Ok(state.hashes().hash(password).await?)
}
