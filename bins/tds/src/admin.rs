//! `tds tenant …` and `tds user …`: platform administration from the command line. Every change is
//! written to the audit log with the actor `cli`.

use crate::cli::{TenantCommand, TokenCommand, UserCommand};
use anyhow::{Context, bail};
use std::io::BufRead;
use tds_domain::{Cnpj, Email, Name, Role, TenantId, TimeZone, UserId};
use tds_store::Store;
use tds_store::api_tokens::NewApiToken;
use tds_store::audit::NewAuditEntry;
use tds_store::tenants::NewTenant;
use tds_store::users::NewUser;

pub const MIN_PASSWORD_LEN: usize = 10;

/// `tds token …`. Creation prints the secret once; every change is audited as the CLI.
pub async fn token(store: &Store, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { staff: true, name, expires, .. } => staff_token(store, &name, expires).await,
        TokenCommand::Create { tenant, name, role, expires, .. } => {
            let tenant = tenant.context("--tenant is required (or --staff)")?;
            let role = role.context("--role is required")?;
            let t = store
                .tenants()
                .staff_by_name(&tenant)
                .await
                .with_context(|| format!("no tenant named {tenant:?}"))?;
            // The token works through that whole day of the tenant's zone.
            let expires_at = expiry(expires.as_deref(), t.timezone)?;
            let secret = tds_web::api_token::generate();
            let new = NewApiToken {
                name: Name::parse("name", &name)?,
                role: Role::parse(&role)?,
                token_hash: secret.hash.clone(),
                prefix: secret.prefix.clone(),
                expires_at,
                created_by: None,
            };
            let created = store.api_tokens().create(t.id, &new).await?;
            audit(store, Some(t.id), None, "api_token.create", "api_token", created.id.to_string()).await?;
            println!("{}", secret.secret);
            eprintln!(
                "token {:?} of tenant {:?} with role {}{}: the secret above is shown only this once.",
                created.name,
                t.name.as_str(),
                created.role.as_str(),
                created.expires_at.map(|e| format!(", valid until {e}")).unwrap_or_default()
            );
            Ok(())
        }
        TokenCommand::List { tenant } => {
            let with_staff = tenant.is_none();
            let tenants = match tenant {
                Some(name) => vec![
                    store
                        .tenants()
                        .staff_by_name(&name)
                        .await
                        .with_context(|| format!("no tenant named {name:?}"))?,
                ],
                None => store.tenants().staff_list().await?,
            };
            println!(
                "{:<20} {:<20} {:<8} {:<14} {:<22} {:<22} STATE",
                "TENANT", "NAME", "ROLE", "PREFIX", "EXPIRES", "LAST USED"
            );
            let now = chrono::Utc::now();
            let when = |d: Option<chrono::DateTime<chrono::Utc>>| {
                d.map_or_else(|| "-".to_owned(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            };
            let state = |revoked: bool, live: bool| match (revoked, live) {
                (true, _) => "revoked",
                (false, true) => "active",
                (false, false) => "expired",
            };
            if with_staff {
                for k in store.staff_tokens().staff_list().await? {
                    let live = k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now);
                    println!(
                        "{:<20} {:<20} {:<8} {:<14} {:<22} {:<22} {}",
                        "(staff)",
                        k.name,
                        "staff",
                        format!("{}…", k.prefix),
                        when(k.expires_at),
                        when(k.last_used_at),
                        state(k.revoked_at.is_some(), live)
                    );
                }
            }
            for t in tenants {
                for k in store.api_tokens().list(t.id).await? {
                    let state = state(k.revoked_at.is_some(), k.is_live(now));
                    println!(
                        "{:<20} {:<20} {:<8} {:<14} {:<22} {:<22} {state}",
                        t.name.as_str(),
                        k.name,
                        k.role.as_str(),
                        format!("{}…", k.prefix),
                        when(k.expires_at),
                        when(k.last_used_at)
                    );
                }
            }
            Ok(())
        }
        TokenCommand::Revoke { staff: true, name, .. } => {
            store
                .staff_tokens()
                .staff_revoke(&name)
                .await
                .with_context(|| format!("no staff token named {name:?}"))?;
            audit(store, None, None, "staff_token.revoke", "staff_token", name.clone()).await?;
            println!("staff token {name:?} revoked");
            Ok(())
        }
        TokenCommand::Revoke { tenant, name, .. } => {
            let tenant = tenant.context("--tenant is required (or --staff)")?;
            let t = store
                .tenants()
                .staff_by_name(&tenant)
                .await
                .with_context(|| format!("no tenant named {tenant:?}"))?;
            let k = store
                .api_tokens()
                .by_name(t.id, &name)
                .await
                .with_context(|| format!("tenant {tenant:?} has no token named {name:?}"))?;
            store.api_tokens().revoke(t.id, k.id).await?;
            audit(store, Some(t.id), None, "api_token.revoke", "api_token", k.id.to_string()).await?;
            println!("token {name:?} of tenant {tenant:?} revoked");
            Ok(())
        }
    }
}

/// When a token given `--expires DAY` stops working: the end of that day in `zone`.
fn expiry(
    day: Option<&str>,
    zone: tds_domain::TimeZone,
) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    let Some(day) = day else { return Ok(None) };
    let day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .with_context(|| format!("--expires {day:?}: expected YYYY-MM-DD"))?;
    tds_domain::buckets::end_of_day(zone, day).context("--expires is out of range").map(Some)
}

/// `tds token create --staff`: a staff token; an expiry day lasts to the end of that day (UTC).
async fn staff_token(store: &Store, name: &str, expires: Option<String>) -> anyhow::Result<()> {
    let expires_at = expiry(expires.as_deref(), tds_domain::TimeZone::parse("UTC")?)?;
    let secret = tds_web::api_token::generate_staff();
    let new = tds_store::staff_tokens::NewStaffToken {
        name: Name::parse("name", name)?,
        token_hash: secret.hash.clone(),
        prefix: secret.prefix.clone(),
        expires_at,
    };
    let created = store.staff_tokens().staff_create(&new).await?;
    audit(store, None, None, "staff_token.create", "staff_token", created.name.clone()).await?;
    println!("{}", secret.secret);
    eprintln!(
        "staff token {:?}{}: the secret above is shown only this once. It works on /api/v1/staff only.",
        created.name,
        created.expires_at.map(|e| format!(", valid until {e}")).unwrap_or_default()
    );
    Ok(())
}

pub async fn tenant(store: &Store, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { name, cnpj, timezone } => {
            let mut new = NewTenant::named(Name::parse("name", &name)?);
            new.cnpj = cnpj.as_deref().map(Cnpj::parse).transpose()?;
            new.timezone = TimeZone::parse(&timezone)?;
            let t = store.tenants().staff_create(&new).await.context("cannot create the tenant")?;
            audit(store, Some(t.id), None, "tenant.create", "tenant", t.id.to_string()).await?;
            println!("created tenant {:?} (id {}, time zone {})", t.name.as_str(), t.id, t.timezone);
            Ok(())
        }
        TenantCommand::List => {
            let tenants = store.tenants().staff_list().await?;
            println!(
                "{:<6} {:<32} {:<20} {:<8} {:<20} LICENCE UNTIL",
                "ID", "NAME", "CNPJ", "ACTIVE", "TIME ZONE"
            );
            for t in tenants {
                let cnpj = t.cnpj.as_deref().and_then(|c| Cnpj::parse(c).ok()).map(|c| c.to_string());
                println!(
                    "{:<6} {:<32} {:<20} {:<8} {:<20} {}",
                    t.id,
                    t.name.as_str(),
                    cnpj.unwrap_or_else(|| "-".into()),
                    if t.active { "yes" } else { "no" },
                    t.timezone,
                    t.licence_valid_until.map_or_else(|| "-".into(), |d| d.to_string())
                );
            }
            Ok(())
        }
    }
}

pub async fn user(store: &Store, command: UserCommand) -> anyhow::Result<()> {
    let UserCommand::Create { email, tenant, role, name, staff, language } = command;
    let email = Email::parse(&email)?;
    let role = Role::parse(&role)?;
    let language = match language.as_str() {
        "pt-BR" | "pt-br" | "pt" => "pt-BR",
        "en" | "en-US" | "en-us" => "en",
        other => bail!("language {other:?} is not available: use pt-BR or en"),
    };
    let display = name.unwrap_or_else(|| email.as_str().split('@').next().unwrap_or_default().to_owned());
    let tenant = store
        .tenants()
        .staff_by_name(&tenant)
        .await
        .with_context(|| format!("no tenant named {tenant:?}"))?;
    let password = read_password()?;
    let hash = hash_password(&password)?;
    let user = store
        .users()
        .create(&NewUser {
            email,
            display_name: Name::parse("name", &display)?,
            password_hash: Some(hash),
            language: language.into(),
            is_staff: staff,
            created_by: None,
        })
        .await?;
    store.memberships().add(tenant.id, user.id, role, None).await?;
    audit(store, Some(tenant.id), Some(user.id), "user.create", "user", user.id.to_string()).await?;
    println!(
        "created user {} ({role} of {:?}{})",
        user.email,
        tenant.name.as_str(),
        if staff { ", platform staff" } else { "" }
    );
    Ok(())
}

/// Reads the password from the first line of standard input.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.chars().count() < MIN_PASSWORD_LEN {
        bail!("the password (read from standard input) must have at least {MIN_PASSWORD_LEN} characters");
    }
    Ok(password)
}

/// An argon2id PHC string with a random salt and the crate's recommended parameters.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    tds_web::password::hash(password).map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Where the first administrator's credentials are printed on first start.
/// The first administrator's login when `first_admin_email` is not set: `admin-` and six random
/// hex digits at the public URL's host (or `tds.localhost`), so that nobody can guess the login
/// of a fresh installation (it is printed once with the password).
fn default_first_admin_email(config: &crate::config::Config) -> String {
    let host = config
        .public_url()
        .ok()
        .and_then(|u| u.domain().map(str::to_owned))
        .filter(|d| d.contains('.'))
        .unwrap_or_else(|| "tds.localhost".to_owned());
    let suffix = tds_web::session::new_token().get(..6).unwrap_or("000000").to_owned();
    format!("admin-{suffix}@{host}")
}

/// On a platform without any user, creates a staff administrator with a random password and
/// prints the credentials once (SPEC §9). Returns whether it did: of several instances starting
/// at once on a new database, exactly one does.
pub async fn ensure_first_admin(store: &Store, config: &crate::config::Config) -> anyhow::Result<bool> {
    if !store.users().staff_list().await?.is_empty() {
        return Ok(false);
    }
    let email = config.first_admin_email.clone().unwrap_or_else(|| default_first_admin_email(config));
    let password = tds_web::session::new_token()[..20].to_owned();
    let created = store
        .users()
        .create_first(&NewUser {
            email: Email::parse(&email)?,
            display_name: Name::parse("name", "Administrador")?,
            password_hash: Some(hash_password(&password)?),
            language: "pt-BR".into(),
            is_staff: true,
            created_by: None,
        })
        .await?;
    // Another instance starting at the same moment created it first.
    let Some(user) = created else { return Ok(false) };
    audit(store, None, Some(user.id), "user.create_first_admin", "user", user.id.to_string()).await?;
    println!(
        "\n  First start: platform administrator created.\n    email:    {email}\n    password: {password}\n  \
         It is shown only this once. Log in, create a tenant in the staff console, and change the password.\n"
    );
    Ok(true)
}

pub(crate) async fn audit(
    store: &Store,
    tenant: Option<TenantId>,
    user: Option<UserId>,
    action: &str,
    kind: &str,
    id: String,
) -> anyhow::Result<()> {
    store
        .audit()
        .record(&NewAuditEntry {
            tenant_id: tenant,
            user_id: user,
            actor: "cli".into(),
            action: action.into(),
            object_kind: kind.into(),
            object_id: Some(id),
            detail: "{}".into(),
            ip: None,
        })
        .await?;
    Ok(())
}

/// An audit entry of the CLI with details (JSON text), e.g. what an export wrote.
pub(crate) async fn audit_detail(
    store: &Store,
    tenant: Option<TenantId>,
    action: &str,
    kind: &str,
    id: Option<String>,
    detail: String,
) -> anyhow::Result<()> {
    store
        .audit()
        .record(&NewAuditEntry {
            tenant_id: tenant,
            user_id: None,
            actor: "cli".into(),
            action: action.into(),
            object_kind: kind.into(),
            object_id: id,
            detail,
            ip: None,
        })
        .await?;
    Ok(())
}
