//! Notifications between server instances sharing one PostgreSQL database (`LISTEN`/`NOTIFY`),
//! for what every instance must hear at once but nobody needs to keep: live events for open
//! pages. On SQLite there is only ever one instance, so publishing does nothing and there is
//! nothing to listen to.

use crate::{Db, StoreError};

/// Largest payload PostgreSQL takes in one `NOTIFY` is 8000 bytes; callers stay under this.
pub const MAX_PAYLOAD: usize = 7_900;

#[derive(Debug, Clone, Copy)]
pub struct NotifyStore<'a> {
    db: &'a Db,
}

/// A connection listening on one channel (PostgreSQL only).
#[derive(Debug)]
pub struct Listener(sqlx::postgres::PgListener);

impl Listener {
    /// The next payload. Reconnects by itself after a lost connection (notifications sent
    /// meanwhile are lost, which live events can afford).
    pub async fn recv(&mut self) -> Result<String, StoreError> {
        Ok(self.0.recv().await?.payload().to_owned())
    }
}

impl<'a> NotifyStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Whether other instances can hear anything (PostgreSQL).
    pub fn shared(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// Sends `payload` (at most [`MAX_PAYLOAD`] bytes) to every listener of `channel`.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        if let Db::Postgres(pg) = self.db {
            sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(pg).await?;
        }
        Ok(())
    }

    /// Listens on `channel`; `None` on SQLite.
    pub async fn listen(&self, channel: &str) -> Result<Option<Listener>, StoreError> {
        match self.db {
            Db::Postgres(pg) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pg).await?;
                listener.listen(channel).await?;
                Ok(Some(Listener(listener)))
            }
            Db::Sqlite(_) => Ok(None),
        }
    }
}
