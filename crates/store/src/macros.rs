//! Running one piece of SQL on whichever database is open.
//!
//! `on_db!(db, read |pool| expr)` and `on_db!(db, write |pool| expr)` expand `expr` once per
//! backend with `pool` bound to that backend's pool, so `sqlx::query_as(..).fetch_all(pool)` type-
//! checks against both. `in_tx!(db, |tx| block)` does the same inside a write transaction that is
//! committed when the block returns `Ok` and rolled back otherwise.

macro_rules! on_db {
    ($db:expr, read |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(s) => {
                let $pool = &s.read;
                $body
            }
            $crate::db::Db::Postgres(pg) => {
                let $pool = pg;
                $body
            }
        }
    };
    ($db:expr, write |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(s) => {
                let $pool = &s.write;
                $body
            }
            $crate::db::Db::Postgres(pg) => {
                let $pool = pg;
                $body
            }
        }
    };
}

macro_rules! in_tx {
    ($db:expr, |$tx:ident| $body:block) => {
        match $db {
            $crate::db::Db::Sqlite(s) => {
                // IMMEDIATE: the write lock is taken at BEGIN, so that another process writing
                // the file meanwhile (a CLI command beside `tds serve`) makes this one wait its
                // busy timeout instead of failing with SQLITE_BUSY_SNAPSHOT when a transaction
                // that read first tries to write.
                let mut $tx = s.write.begin_with("BEGIN IMMEDIATE").await?;
                let out: Result<_, $crate::StoreError> = async { $body }.await;
                match out {
                    Ok(v) => {
                        $tx.commit().await?;
                        Ok(v)
                    }
                    Err(e) => Err(e),
                }
            }
            $crate::db::Db::Postgres(pg) => {
                let mut $tx = pg.begin().await?;
                let out: Result<_, $crate::StoreError> = async { $body }.await;
                match out {
                    Ok(v) => {
                        $tx.commit().await?;
                        Ok(v)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    };
}

/// One page of a filtered list and the total it is a page of: runs `$list` (whose last two
/// parameters are LIMIT and OFFSET) and `$count` with the same leading binds, on the read pool,
/// and evaluates to `Result<(Vec<$row>, i64), sqlx::Error>`.
macro_rules! fetch_page {
    ($db:expr, $row:ty, $list:expr, $count:expr, $page:expr, [$($bind:expr),* $(,)?]) => {
        on_db!($db, read |pool| {
            let list = sqlx::query_as::<_, $row>(sqlx::AssertSqlSafe($list))$(.bind($bind))*;
            let rows = list.bind($page.limit()).bind($page.offset()).fetch_all(pool).await?;
            let count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe($count))$(.bind($bind))*;
            let total = count.fetch_one(pool).await?;
            Ok::<_, sqlx::Error>((rows, total))
        })
    };
}

/// Binds a `NewCertificate` to an INSERT INTO certificates whose parameters are, in order:
/// tenant, gateway, MAC, serial, fingerprint, PEM, key algorithm, issued at, expires at, now
/// (created and updated) and created by. Issuing by hand and renewing record certificates alike.
macro_rules! bind_new_certificate {
    ($query:expr, $tenant:expr, $gateway:expr, $new:expr, $now:expr, $by:expr) => {
        $query
            .bind($tenant)
            .bind($gateway)
            .bind($new.mac.to_string())
            .bind(&$new.serial)
            .bind(&$new.fingerprint_sha256)
            .bind(&$new.pem)
            .bind(&$new.key_algorithm)
            .bind(Ts::from($new.issued_at))
            .bind(Ts::from($new.expires_at))
            .bind($now)
            .bind($by)
    };
}
