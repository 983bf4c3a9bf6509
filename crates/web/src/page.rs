//! What every page template needs besides its own data: language, the user and tenant shown in
//! the top bar, the CSRF token for its forms, the active sidebar section, and a notice after a
//! redirect (`?done=<key>`, translated, so no text travels in the URL).
//!
//! [`PageCtx`] is an extractor that reads what the auth extractors already resolved for the
//! request, so a handler takes it after its [`crate::auth`] extractor.

use crate::auth::{CurrentUser, MaybeUser, TenantCtx};
use crate::error::WebError;
use crate::i18n::Lang;
use crate::{AppState, csrf};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::borrow::Borrow;
use tds_domain::{Role, Severity};

/// Notices a redirect may ask for; anything else in `?done=` is ignored.
const NOTICES: &[&str] = &[
    "acknowledged",
    "deleted",
    "test_queued",
    "run_queued",
    "prefs_saved",
    "saved",
    "created",
    "archived",
    "decommissioned",
    "imported",
    "invited",
    "invite_revoked",
    "member_removed",
    "role_changed",
    "password_changed",
    "logged_out_elsewhere",
    "transferred",
    "reset_sent",
    "password_set",
    "tenant_created",
    "last_admin",
    "tenant_updated",
    "user_deactivated",
    "user_reactivated",
    "readings_purged",
    "token_revoked",
    "revoked",
    "replayed",
    "renewal_started",
    "campaign_paused",
    "campaign_resumed",
];

#[derive(Debug, Clone)]
pub struct PageCtx {
    pub lang: Lang,
    pub csrf: String,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
    pub is_staff: bool,
    pub tenant_name: Option<String>,
    pub role: Option<Role>,
    pub zone: Tz,
    pub nav: &'static str,
    pub title: String,
    pub notice: Option<String>,
    /// The request's path and query (the language switch comes back to it).
    pub path: String,
    /// Set when an anonymous page needs its double-submit CSRF cookie.
    pub new_csrf_cookie: Option<Cookie<'static>>,
    /// The top bar's badge: active alerts of the severities the user sees in the app.
    pub alert_badge: u32,
    /// Those severities, comma-separated (`info,warning,critical`), for the live badge.
    pub alert_severities: String,
}

impl FromRequestParts<AppState> for PageCtx {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let tenant = parts.extensions.get::<TenantCtx>().cloned();
        let user = match &tenant {
            Some(t) => Some(t.me.clone()),
            None => MaybeUser::from_request_parts(parts, state).await?.0,
        };
        let lang = user.as_ref().map_or_else(|| crate::auth::request_lang(&parts.headers, None), |u| u.lang);
        let (csrf, new_csrf_cookie) = match &user {
            Some(u) => (u.csrf().to_owned(), None),
            None => {
                csrf::anonymous_token(&CookieJar::from_headers(&parts.headers), state.config().secure_cookies)
            }
        };
        let notice = parts
            .uri
            .query()
            .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "done"))
            .and_then(|(_, v)| NOTICES.iter().find(|n| **n == v))
            .map(|key| lang.t(&format!("done.{key}")));
        let mut ctx = Self::build(lang, csrf, user.as_ref(), tenant.as_ref(), notice, new_csrf_cookie);
        ctx.path = parts.uri.path_and_query().map_or_else(|| "/".to_owned(), ToString::to_string);
        if let Some(t) = &tenant {
            ctx.badge(state, t).await;
        }
        Ok(ctx)
    }
}

impl PageCtx {
    fn build(
        lang: Lang,
        csrf: String,
        user: Option<&CurrentUser>,
        tenant: Option<&TenantCtx>,
        notice: Option<String>,
        new_csrf_cookie: Option<Cookie<'static>>,
    ) -> Self {
        Self {
            lang,
            csrf,
            user_name: user.map(|u| u.user.display_name.to_string()),
            user_email: user.map(|u| u.user.email.to_string()),
            is_staff: user.is_some_and(|u| u.user.is_staff),
            tenant_name: tenant.map(|t| t.tenant.name.to_string()),
            role: tenant.map(|t| t.role),
            zone: tenant.map_or(chrono_tz::America::Sao_Paulo, TenantCtx::zone),
            nav: "",
            title: String::new(),
            notice,
            path: "/".to_owned(),
            new_csrf_cookie,
            alert_badge: 0,
            alert_severities: String::new(),
        }
    }

    /// Fills the alerts badge. A failure only leaves the badge empty: the page still renders,
    /// and the live stream or the next page brings the figure.
    async fn badge(&mut self, state: &AppState, t: &TenantCtx) {
        let store = state.store();
        let (Ok(counts), Ok(prefs)) = (
            store.alerts().active_counts(t.tenant_id()).await,
            store.alert_prefs().effective(t.tenant_id(), t.me.user.id).await,
        ) else {
            return;
        };
        let shown = prefs.in_app;
        let mut names = Vec::new();
        for (severity, n) in [
            (Severity::Info, counts.info),
            (Severity::Warning, counts.warning),
            (Severity::Critical, counts.critical),
        ] {
            if shown.contains(severity) {
                self.alert_badge += n;
                names.push(severity.as_str().to_ascii_lowercase());
            }
        }
        self.alert_severities = names.join(",");
    }

    /// Sets the sidebar section and the page title (a translation key).
    #[must_use]
    pub fn section(mut self, nav: &'static str, title_key: &str) -> Self {
        self.nav = nav;
        self.title = self.lang.t(title_key);
        self
    }

    /// Sets a title that is not a translation key (a gateway's name, say).
    #[must_use]
    pub fn titled(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    pub fn t(&self, key: &str) -> String {
        self.lang.t(key)
    }

    pub fn tf(&self, key: &str, name: &str, value: impl std::fmt::Display) -> String {
        self.lang.tf(key, &[(name, &value.to_string())])
    }

    pub fn int(&self, n: impl Number) -> String {
        self.lang.int(n.value() as i64)
    }

    pub fn num(&self, x: impl Number) -> String {
        self.lang.decimal(x.value(), 3)
    }

    /// A time in the tenant's zone, or a dash.
    pub fn at(&self, at: impl Borrow<Option<DateTime<Utc>>>) -> String {
        at.borrow().map_or_else(|| "—".to_owned(), |at| self.lang.datetime(at, self.zone))
    }

    pub fn at_utc(&self, at: impl Borrow<DateTime<Utc>>) -> String {
        self.lang.datetime(*at.borrow(), self.zone)
    }

    pub fn can_edit(&self) -> bool {
        self.role.is_some_and(|r| r.allows(Role::Editor))
    }

    pub fn is_admin(&self) -> bool {
        self.role.is_some_and(|r| r.allows(Role::Admin))
    }

    pub fn is_nav(&self, section: &str) -> bool {
        self.nav == section
    }

    pub fn role_name(&self) -> String {
        self.role.map_or_else(String::new, |r| self.lang.t(&format!("role.{}", r.as_str())))
    }

    /// A vocabulary value's label: `label("medium", "water")` → "Água" / "Water".
    pub fn label(&self, group: &str, value: impl std::fmt::Display) -> String {
        self.lang.t(&format!("{group}.{value}"))
    }

    pub fn lang_code(&self) -> &'static str {
        self.lang.code()
    }
}

/// A number however many references deep a template hands it over.
pub trait Number {
    fn value(&self) -> f64;
}

impl Number for f64 {
    fn value(&self) -> f64 {
        *self
    }
}

impl Number for i64 {
    fn value(&self) -> f64 {
        *self as f64
    }
}

impl Number for usize {
    fn value(&self) -> f64 {
        *self as f64
    }
}

impl<T: Number + ?Sized> Number for &T {
    fn value(&self) -> f64 {
        (**self).value()
    }
}
