//! Memberships: which users belong to which tenant, with which role. Adding a member respects the
//! tenant's user limit; the last admin of a tenant cannot be demoted or removed.

use crate::error::stored;
use crate::tenants::{Tenant, found};
use crate::users::{USER_COLUMNS, User, UserRow};
use crate::{Db, StoreError, Ts};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::{Role, TenantId, UserId};

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub user: User,
    pub role: Role,
}

#[derive(Debug, Clone, Copy)]
pub struct MembershipStore<'a> {
    db: &'a Db,
}

impl<'a> MembershipStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    pub async fn add(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
        by: Option<UserId>,
    ) -> Result<(), StoreError> {
        let lock = lock_user_limit(self.db);
        in_tx!(self.db, |tx| {
            let max: i64 = sqlx::query_scalar(AssertSqlSafe(lock.as_str()))
                .bind(tenant.get())
                .fetch_one(&mut *tx)
                .await?;
            let members: i64 =
                sqlx::query_scalar(COUNT_MEMBERS).bind(tenant.get()).fetch_one(&mut *tx).await?;
            user_limit(members, max)?;
            sqlx::query(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at, updated_at, created_by) \
                 VALUES ($1, $2, $3, $4, $4, $5)",
            )
            .bind(tenant.get())
            .bind(user.get())
            .bind(role.as_str())
            .bind(Ts::now())
            .bind(by.map(UserId::get))
            .execute(&mut *tx)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => StoreError::Conflict("the user is already a member".into()),
                e => e,
            })?;
            Ok(())
        })
    }

    /// The user's role in the tenant, or `None` when not a member.
    pub async fn role(&self, tenant: TenantId, user: UserId) -> Result<Option<Role>, StoreError> {
        let role: Option<String> = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                    .bind(tenant.get())
                    .bind(user.get())
                    .fetch_optional(pool)
                    .await
        )?;
        role.map(|r| stored("memberships.role", &r, Role::parse)).transpose()
    }

    pub async fn members(&self, tenant: TenantId) -> Result<Vec<Member>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            role: String,
        }
        let sql = format!(
            "SELECT {USER_COLUMNS}, memberships.role FROM memberships \
             JOIN users ON users.id = memberships.user_id \
             WHERE memberships.tenant_id = $1 ORDER BY users.email"
        );
        let rows: Vec<Row> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).fetch_all(pool).await
        )?;
        rows.into_iter()
            .map(|r| {
                Ok(Member {
                    user: r.user.try_into()?,
                    role: stored("memberships.role", &r.role, Role::parse)?,
                })
            })
            .collect()
    }

    pub async fn set_role(&self, tenant: TenantId, user: UserId, role: Role) -> Result<(), StoreError> {
        in_tx!(self.db, |tx| {
            if role != Role::Admin {
                guard_last_admin(
                    sqlx::query_as(ADMIN_COUNTS)
                        .bind(tenant.get())
                        .bind(user.get())
                        .fetch_one(&mut *tx)
                        .await?,
                )?;
            }
            let done = sqlx::query(
                "UPDATE memberships SET role = $3, updated_at = $4 WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(tenant.get())
            .bind(user.get())
            .bind(role.as_str())
            .bind(Ts::now())
            .execute(&mut *tx)
            .await?;
            found(done.rows_affected())
        })
    }

    pub async fn remove(&self, tenant: TenantId, user: UserId) -> Result<(), StoreError> {
        in_tx!(self.db, |tx| {
            guard_last_admin(
                sqlx::query_as(ADMIN_COUNTS).bind(tenant.get()).bind(user.get()).fetch_one(&mut *tx).await?,
            )?;
            let done = sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant.get())
                .bind(user.get())
                .execute(&mut *tx)
                .await?;
            found(done.rows_affected())
        })
    }

    /// Every tenant the user belongs to, with the role there.
    pub async fn tenants_of(&self, user: UserId) -> Result<Vec<(Tenant, Role)>, StoreError> {
        let ids: Vec<(i64, String)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT m.tenant_id, m.role FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
             WHERE m.user_id = $1 ORDER BY t.name_key"
                )
                .bind(user.get())
                .fetch_all(pool)
                .await
        )?;
        let tenants = crate::tenants::TenantStore::new(self.db);
        let mut out = Vec::with_capacity(ids.len());
        for (id, role) in ids {
            out.push((
                tenants.get(TenantId::new(id)).await?,
                stored("memberships.role", &role, Role::parse)?,
            ));
        }
        Ok(out)
    }
}

/// Reads the tenant's user limit ($1) and locks the tenant row until the transaction ends, so
/// that two memberships added at once (an admin adding a member while an invitation is
/// accepted) cannot both take the last seat. `NotFound` when there is no such tenant.
pub(crate) fn lock_user_limit(db: &Db) -> String {
    format!("SELECT max_users FROM tenants WHERE id = $1 {}", db.row_lock())
}

pub(crate) const COUNT_MEMBERS: &str = "SELECT count(*) FROM memberships WHERE tenant_id = $1";

/// `Limit` when a tenant with `members` members and a limit of `max` has no seat left.
pub(crate) fn user_limit(members: i64, max: i64) -> Result<(), StoreError> {
    if members >= max {
        return Err(StoreError::Limit(format!("the tenant's limit of {max} users is reached")));
    }
    Ok(())
}

/// Counts whether the user is an admin and how many admins the tenant has.
const ADMIN_COUNTS: &str = "SELECT \
    (SELECT count(*) FROM memberships WHERE tenant_id = $1 AND user_id = $2 AND role = 'admin'), \
    (SELECT count(*) FROM memberships WHERE tenant_id = $1 AND role = 'admin')";

/// Refuses to take the admin role away from a tenant's only admin, which would leave nobody able
/// to manage its members.
fn guard_last_admin((is_admin, admins): (i64, i64)) -> Result<(), StoreError> {
    if is_admin == 1 && admins == 1 {
        return Err(StoreError::Conflict("the tenant's last admin cannot be demoted or removed".into()));
    }
    Ok(())
}
