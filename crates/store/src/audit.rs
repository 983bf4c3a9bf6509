//! The audit log: who did what to which object, when and from where. Append-only: no method
//! changes or deletes an entry, except retention, which drops entries past the configured horizon.

use crate::{Db, Page, Paged, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tds_domain::{TenantId, UserId};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewAuditEntry {
    /// `None` for platform-level actions (staff, CLI without a tenant).
    pub tenant_id: Option<TenantId>,
    pub user_id: Option<UserId>,
    /// Who, as shown: an email, `cli`, `system`, or a gateway MAC.
    pub actor: String,
    /// What, as a dotted verb: `login.failed`, `gateway.import`, `membership.role_changed`.
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<String>,
    /// Details as JSON text.
    pub detail: String,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub user_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<String>,
    pub detail: String,
    pub ip: Option<String>,
    #[sqlx(try_from = "Ts")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Actions starting with this prefix (`login.` matches all login actions).
    pub action_prefix: Option<String>,
    pub actor: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy)]
pub struct AuditStore<'a> {
    db: &'a Db,
}

const COLUMNS: &str = "id, tenant_id, user_id, actor, action, object_kind, object_id, detail, ip, at";

impl<'a> AuditStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    pub async fn record(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        on_db!(self.db, write |pool| sqlx::query(
            "INSERT INTO audit_log (tenant_id, user_id, actor, action, object_kind, object_id, detail, ip, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(entry.tenant_id.map(TenantId::get))
        .bind(entry.user_id.map(UserId::get))
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.object_kind)
        .bind(entry.object_id.as_deref())
        .bind(&entry.detail)
        .bind(entry.ip.as_deref())
        .bind(Ts::now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The tenant's entries, newest first.
    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<Paged<AuditEntry>, StoreError> {
        self.list_where(Some(tenant), filter, page).await
    }

    /// Every entry, platform-level ones included (staff console).
    pub async fn staff_list(
        &self,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<Paged<AuditEntry>, StoreError> {
        self.list_where(None, filter, page).await
    }

    async fn list_where(
        &self,
        tenant: Option<TenantId>,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<Paged<AuditEntry>, StoreError> {
        let conditions = "(CAST($1 AS BIGINT) IS NULL OR tenant_id = $1) \
            AND (CAST($2 AS TEXT) IS NULL OR action LIKE $2) \
            AND (CAST($3 AS TEXT) IS NULL OR actor = $3) \
            AND (CAST($4 AS BIGINT) IS NULL OR at >= $5)";
        let list = format!(
            "SELECT {COLUMNS} FROM audit_log WHERE {conditions} ORDER BY at DESC, id DESC LIMIT $6 OFFSET $7"
        );
        let count = format!("SELECT count(*) FROM audit_log WHERE {conditions}");
        let tenant = tenant.map(TenantId::get);
        let prefix = filter.action_prefix.as_deref().map(|p| format!("{}%", p.replace('%', "")));
        let actor = filter.actor.as_deref();
        let since_flag = filter.since.map(|_| 1i64);
        let since = Ts::from(filter.since.unwrap_or_default());
        let (items, total) = fetch_page!(
            self.db,
            AuditEntry,
            list.as_str(),
            count.as_str(),
            page,
            [tenant, prefix.as_deref(), actor, since_flag, since]
        )?;
        Ok(Paged { items, total, page: page.number, size: page.size })
    }

    /// Retention: deletes every tenant's entries older than `at`; returns how many.
    pub async fn staff_purge_before(&self, at: DateTime<Utc>) -> Result<u64, StoreError> {
        crate::purge::older_than(self.db, "audit_log", "at", at).await
    }
}
