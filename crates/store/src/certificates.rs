//! Device certificates as issued records: serial, fingerprint, PEM, validity and status. Private
//! keys are never stored. A gateway has at most one active certificate; issuing another either
//! supersedes it (when asked to replace) or is refused. Revocations keep their RFC 5280 reason,
//! and the revoked serials feed the CRL and the device endpoint's live revocation set. The CRL
//! itself (one row) is kept here too, so that every instance serves the same list.

use crate::tenants::found;
use crate::{Db, Page, Paged, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::{CertificateId, GatewayId, Mac, TenantId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateStatus {
    Active,
    Superseded,
    Revoked,
    Expired,
}

impl CertificateStatus {
    pub const ALL: [Self; 4] = [Self::Active, Self::Superseded, Self::Revoked, Self::Expired];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Superseded => "superseded",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "active" => Self::Active,
            "superseded" => Self::Superseded,
            "revoked" => Self::Revoked,
            "expired" => Self::Expired,
            other => return Err(StoreError::Corrupt(format!("certificates.status: {other:?}"))),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Certificate {
    pub id: CertificateId,
    /// `None` for a factory certificate whose gateway is not registered yet.
    pub tenant_id: Option<TenantId>,
    pub gateway_id: Option<GatewayId>,
    pub mac: String,
    pub serial: String,
    pub fingerprint_sha256: String,
    pub pem: String,
    pub key_algorithm: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: CertificateStatus,
    pub revocation_reason: Option<String>,
    pub revocation_notes: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub first_used_at: Option<DateTime<Utc>>,
    /// Where the certificate stands in a renewal (`issued`, `confirmed`, `superseded`,
    /// `rolled_back`, `failed`), `None` when it never took part in one.
    pub renewal_state: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What the PKI produced, to be recorded.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    pub mac: Mac,
    pub serial: String,
    pub fingerprint_sha256: String,
    pub pem: String,
    pub key_algorithm: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A revoked serial, for the CRL and the device endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedSerial {
    pub serial: String,
    pub revoked_at: DateTime<Utc>,
    pub reason: String,
}

/// The stored CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCrl {
    pub number: i64,
    pub this_update: DateTime<Utc>,
    pub next_update: DateTime<Utc>,
    pub pem: String,
    pub der: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct CertificateRow {
    id: i64,
    tenant_id: Option<i64>,
    gateway_id: Option<i64>,
    mac: String,
    serial: String,
    fingerprint_sha256: String,
    pem: String,
    key_algorithm: String,
    issued_at: Ts,
    expires_at: Ts,
    status: String,
    revocation_reason: Option<String>,
    revocation_notes: Option<String>,
    revoked_at: Option<Ts>,
    first_used_at: Option<Ts>,
    renewal_state: Option<String>,
    created_at: Ts,
}

impl TryFrom<CertificateRow> for Certificate {
    type Error = StoreError;
    fn try_from(r: CertificateRow) -> Result<Self, StoreError> {
        Ok(Certificate {
            id: CertificateId::new(r.id),
            tenant_id: r.tenant_id.map(TenantId::new),
            gateway_id: r.gateway_id.map(GatewayId::new),
            mac: r.mac,
            serial: r.serial,
            fingerprint_sha256: r.fingerprint_sha256,
            pem: r.pem,
            key_algorithm: r.key_algorithm,
            issued_at: r.issued_at.0,
            expires_at: r.expires_at.0,
            status: CertificateStatus::parse(&r.status)?,
            revocation_reason: r.revocation_reason,
            revocation_notes: r.revocation_notes,
            revoked_at: r.revoked_at.map(|t| t.0),
            first_used_at: r.first_used_at.map(|t| t.0),
            renewal_state: r.renewal_state,
            created_at: r.created_at.0,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, gateway_id, mac, serial, fingerprint_sha256, pem, key_algorithm, \
    issued_at, expires_at, status, revocation_reason, revocation_notes, revoked_at, first_used_at, renewal_state, created_at";

#[derive(Debug, Clone, Default)]
pub struct CertificateFilter {
    pub status: Option<CertificateStatus>,
    /// Matches the MAC or the serial (substring, case-insensitive).
    pub search: Option<String>,
    /// Only certificates expiring before this instant.
    pub expires_before: Option<DateTime<Utc>>,
    /// Only certificates no gateway ever connected with.
    pub never_used: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct CertificateStore<'a> {
    db: &'a Db,
}

impl<'a> CertificateStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Records a certificate issued for one of the tenant's gateways as its active certificate.
    /// If the gateway already has one, `replace` marks it superseded; otherwise the call is
    /// refused with `Conflict`.
    pub async fn record_issued(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        new: &NewCertificate,
        replace: bool,
        by: Option<UserId>,
    ) -> Result<Certificate, StoreError> {
        Ok(self.record_issued_superseding(tenant, gateway, new, replace, by).await?.0)
    }

    /// [`Self::record_issued`], also answering whether an active certificate was superseded
    /// (revoked): only then has the CRL something new to say.
    pub async fn record_issued_superseding(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        new: &NewCertificate,
        replace: bool,
        by: Option<UserId>,
    ) -> Result<(Certificate, bool), StoreError> {
        let now = Ts::now();
        let insert = format!(
            "INSERT INTO certificates (tenant_id, gateway_id, mac, serial, fingerprint_sha256, pem, \
             key_algorithm, issued_at, expires_at, status, created_at, updated_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $10, $11) RETURNING {COLUMNS}"
        );
        let (row, superseded): (CertificateRow, bool) = in_tx!(self.db, |tx| {
            let gw_mac: Option<String> =
                sqlx::query_scalar("SELECT mac FROM gateways WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.get())
                    .bind(gateway.get())
                    .fetch_optional(&mut *tx)
                    .await?;
            let gw_mac = gw_mac.ok_or(StoreError::NotFound)?;
            if gw_mac != new.mac.to_string() {
                return Err(StoreError::Conflict(format!(
                    "the certificate names {} but the gateway's MAC is {gw_mac}",
                    new.mac
                )));
            }
            let active: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM certificates WHERE (gateway_id = $1 OR mac = $2) AND status = 'active'",
            )
            .bind(gateway.get())
            .bind(&gw_mac)
            .fetch_one(&mut *tx)
            .await?;
            if active > 0 {
                if !replace {
                    return Err(StoreError::Conflict(format!(
                        "gateway {} already has an active certificate; replace it explicitly",
                        new.mac
                    )));
                }
                // Replaced is retired: revoked (reason superseded) so that the CRL says so too,
                // and a renewal in flight ends (its successor is one of the active ones).
                sqlx::query(
                    "UPDATE renewals SET state = 'failed', detail = 'certificate replaced by hand', \
                     updated_at = $2, finished_at = $2 WHERE gateway_id = $1 AND finished_at IS NULL",
                )
                .bind(gateway.get())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE gateway_messages SET cleared_at = $2, payload = '' WHERE gateway_id = $1 AND cleared_at IS NULL",
                )
                .bind(gateway.get())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE certificates SET status = 'superseded', revocation_reason = 'superseded', \
                     revoked_at = $2, updated_at = $2 WHERE (gateway_id = $1 OR mac = $3) AND status = 'active'",
                )
                .bind(gateway.get())
                .bind(now)
                .bind(&gw_mac)
                .execute(&mut *tx)
                .await?;
            }
            let row: CertificateRow = bind_new_certificate!(
                sqlx::query_as(AssertSqlSafe(insert.as_str())),
                tenant.get(),
                gateway.get(),
                new,
                now,
                by.map(UserId::get)
            )
            .fetch_one(&mut *tx)
            .await?;
            Ok((row, active > 0))
        })?;
        Ok((row.try_into()?, superseded))
    }

    /// Records certificates of a factory batch, issued before their gateways are registered
    /// (no tenant yet), all or none. Pre-registering a gateway with the same MAC links them.
    pub async fn staff_record_factory(&self, batch: &[NewCertificate]) -> Result<(), StoreError> {
        let now = Ts::now();
        in_tx!(self.db, |tx| {
            for new in batch {
                let active: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM certificates WHERE mac = $1 AND status = 'active'",
                )
                .bind(new.mac.to_string())
                .fetch_one(&mut *tx)
                .await?;
                if active > 0 {
                    return Err(StoreError::Conflict(format!(
                        "MAC {} already has an active certificate",
                        new.mac
                    )));
                }
                sqlx::query(
                    "INSERT INTO certificates (mac, serial, fingerprint_sha256, pem, key_algorithm, issued_at, \
                     expires_at, status, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $8)",
                )
                .bind(new.mac.to_string())
                .bind(&new.serial)
                .bind(&new.fingerprint_sha256)
                .bind(&new.pem)
                .bind(&new.key_algorithm)
                .bind(Ts::from(new.issued_at))
                .bind(Ts::from(new.expires_at))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })
    }

    /// Whether a MAC already has an active certificate, whatever its tenant (CLI pre-check before
    /// generating keys).
    pub async fn staff_has_active(&self, mac: Mac) -> Result<bool, StoreError> {
        let n: i64 = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar(
                    "SELECT count(*) FROM certificates WHERE mac = $1 AND status = 'active'"
                )
                .bind(mac.to_string())
                .fetch_one(pool)
                .await
        )?;
        Ok(n > 0)
    }

    pub async fn get(&self, tenant: TenantId, id: CertificateId) -> Result<Certificate, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM certificates WHERE tenant_id = $1 AND id = $2");
        let row: CertificateRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(id.get())
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    /// A certificate by serial whatever its tenant (CLI, device endpoint).
    pub async fn staff_by_serial(&self, serial: &str) -> Result<Certificate, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM certificates WHERE serial = $1");
        let row: CertificateRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(serial.to_ascii_lowercase())
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    /// Every certificate of one of the tenant's gateways, newest first (its history).
    pub async fn for_gateway(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
    ) -> Result<Vec<Certificate>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM certificates WHERE tenant_id = $1 AND gateway_id = $2 ORDER BY issued_at DESC, id DESC"
        );
        let rows: Vec<CertificateRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(gateway.get())
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &CertificateFilter,
        page: Page,
    ) -> Result<Paged<Certificate>, StoreError> {
        self.list_where(Some(tenant), filter, page).await
    }

    /// One page of the tenant's certificates in id order (oldest issued first), after `after`
    /// (keyset paging for the API).
    pub async fn page_by_id(
        &self,
        tenant: TenantId,
        filter: &CertificateFilter,
        after: Option<CertificateId>,
        limit: i64,
    ) -> Result<Vec<Certificate>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM certificates WHERE tenant_id = $1 \
             AND (CAST($2 AS TEXT) IS NULL OR status = $2) \
             AND (CAST($3 AS TEXT) IS NULL OR mac LIKE $3 OR serial LIKE $3) \
             AND (CAST($4 AS BIGINT) IS NULL OR expires_at < $5) \
             AND (CAST($6 AS BIGINT) IS NULL OR id > $6) \
             AND (CAST($8 AS BIGINT) IS NULL OR first_used_at IS NULL) ORDER BY id LIMIT $7"
        );
        let search = filter.search.as_deref().and_then(crate::page::contains_pattern);
        let rows: Vec<CertificateRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(filter.status.map(CertificateStatus::as_str))
                    .bind(search.as_deref())
                    .bind(filter.expires_before.map(|_| 1i64))
                    .bind(Ts::from(filter.expires_before.unwrap_or_default()))
                    .bind(after.map(CertificateId::get))
                    .bind(limit)
                    .bind(filter.never_used.then_some(1i64))
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn staff_list(
        &self,
        filter: &CertificateFilter,
        page: Page,
    ) -> Result<Paged<Certificate>, StoreError> {
        self.list_where(None, filter, page).await
    }

    async fn list_where(
        &self,
        tenant: Option<TenantId>,
        filter: &CertificateFilter,
        page: Page,
    ) -> Result<Paged<Certificate>, StoreError> {
        let conditions = "(CAST($1 AS BIGINT) IS NULL OR tenant_id = $1) \
            AND (CAST($2 AS TEXT) IS NULL OR status = $2) \
            AND (CAST($3 AS TEXT) IS NULL OR mac LIKE $3 OR serial LIKE $3) \
            AND (CAST($4 AS BIGINT) IS NULL OR expires_at < $5) \
            AND (CAST($6 AS BIGINT) IS NULL OR first_used_at IS NULL)";
        let list = format!(
            "SELECT {COLUMNS} FROM certificates WHERE {conditions} ORDER BY expires_at, id LIMIT $7 OFFSET $8"
        );
        let count = format!("SELECT count(*) FROM certificates WHERE {conditions}");
        let tenant = tenant.map(TenantId::get);
        let status = filter.status.map(CertificateStatus::as_str);
        let search = filter
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| format!("%{}%", s.to_lowercase().replace(['\\', '%', '_'], "")));
        let before_flag = filter.expires_before.map(|_| 1i64);
        let before = Ts::from(filter.expires_before.unwrap_or_default());
        let never_used = filter.never_used.then_some(1i64);
        let (rows, total) = fetch_page!(
            self.db,
            CertificateRow,
            list.as_str(),
            count.as_str(),
            page,
            [tenant, status, search.as_deref(), before_flag, before, never_used]
        )?;
        Ok(Paged {
            items: rows.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
            total,
            page: page.number,
            size: page.size,
        })
    }

    /// Revokes one of the tenant's certificates with an RFC 5280 reason code. Revoking twice is a
    /// conflict (the first revocation's time and reason stand).
    pub async fn revoke(
        &self,
        tenant: TenantId,
        id: CertificateId,
        reason: &str,
        notes: Option<&str>,
    ) -> Result<Certificate, StoreError> {
        let now = Ts::now();
        let status: Option<String> = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar("SELECT status FROM certificates WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.get())
                    .bind(id.get())
                    .fetch_optional(pool)
                    .await
        )?;
        match status.as_deref() {
            None => return Err(StoreError::NotFound),
            Some("revoked") => return Err(StoreError::Conflict("the certificate is already revoked".into())),
            Some(_) => {}
        }
        let done = on_db!(self.db, write |pool| sqlx::query(
            "UPDATE certificates SET status = 'revoked', revocation_reason = $3, revocation_notes = $4, \
             revoked_at = $5, updated_at = $5 WHERE tenant_id = $1 AND id = $2 AND status <> 'revoked'"
        )
        .bind(tenant.get())
        .bind(id.get())
        .bind(reason)
        .bind(notes)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        found(done)?;
        self.get(tenant, id).await
    }

    /// Every revoked serial of the platform (superseded ones included: replacing revokes),
    /// oldest revocation first: the CRL's content and the device endpoint's revocation set.
    pub async fn staff_revoked(&self) -> Result<Vec<RevokedSerial>, StoreError> {
        let rows: Vec<(String, Option<Ts>, Option<String>)> =
            on_db!(self.db, read |pool| sqlx::query_as(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE status = 'revoked' OR (status = 'superseded' AND revoked_at IS NOT NULL) ORDER BY revoked_at, id"
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(serial, at, reason)| RevokedSerial {
                serial,
                revoked_at: at.map(|t| t.0).unwrap_or_default(),
                reason: reason.unwrap_or_else(|| "unspecified".into()),
            })
            .collect())
    }

    /// Certificates retired (no longer active) and gateways decommissioned at or after `since`:
    /// the device endpoint closes their live sessions.
    pub async fn staff_retired_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let since = Ts::from(since);
        let serials: Vec<String> = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar(
                    "SELECT serial FROM certificates WHERE updated_at >= $1 AND status <> 'active'"
                )
                .bind(since)
                .fetch_all(pool)
                .await
        )?;
        let macs: Vec<String> = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar(
                    "SELECT mac FROM gateways WHERE updated_at >= $1 AND status = 'decommissioned'"
                )
                .bind(since)
                .fetch_all(pool)
                .await
        )?;
        Ok((serials, macs))
    }

    /// Notes the first connection made with a certificate (never-used certificates are listed).
    pub async fn mark_used(&self, serial: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE certificates SET first_used_at = $2 WHERE serial = $1 AND first_used_at IS NULL"
                )
                .bind(serial)
                .bind(Ts::from(at))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        Ok(())
    }

    /// Active certificates of the tenant (all tenants when `None`) counted by the year they expire.
    pub async fn expiry_by_year(&self, tenant: Option<TenantId>) -> Result<Vec<(i32, i64)>, StoreError> {
        let expiries: Vec<Ts> = on_db!(self.db, read |pool| sqlx::query_scalar(
            "SELECT expires_at FROM certificates WHERE status = 'active' AND (CAST($1 AS BIGINT) IS NULL OR tenant_id = $1)"
        )
        .bind(tenant.map(TenantId::get))
        .fetch_all(pool)
        .await)?;
        let mut years = std::collections::BTreeMap::new();
        for t in expiries {
            *years.entry(chrono::Datelike::year(&t.0)).or_insert(0i64) += 1;
        }
        Ok(years.into_iter().collect())
    }

    /// The current CRL, if one was issued.
    pub async fn crl(&self) -> Result<Option<StoredCrl>, StoreError> {
        let row: Option<(i64, Ts, Ts, String, Vec<u8>)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as("SELECT number, this_update, next_update, pem, der FROM crl WHERE id = 1")
                    .fetch_optional(pool)
                    .await
        )?;
        Ok(row.map(|(number, this_update, next_update, pem, der)| StoredCrl {
            number,
            this_update: this_update.0,
            next_update: next_update.0,
            pem,
            der,
        }))
    }

    /// Stores a newly issued CRL; refused when its number is not above the stored one (a slower
    /// instance must not put back an older list).
    pub async fn save_crl(&self, crl: &StoredCrl) -> Result<(), StoreError> {
        let done = on_db!(self.db, write |pool| sqlx::query(
            "INSERT INTO crl (id, number, this_update, next_update, pem, der) VALUES (1, $1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET number = excluded.number, this_update = excluded.this_update, \
             next_update = excluded.next_update, pem = excluded.pem, der = excluded.der \
             WHERE crl.number < excluded.number"
        )
        .bind(crl.number)
        .bind(Ts::from(crl.this_update))
        .bind(Ts::from(crl.next_update))
        .bind(&crl.pem)
        .bind(&crl.der)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "a CRL newer than number {} is already stored",
                crl.number
            )));
        }
        Ok(())
    }
}
