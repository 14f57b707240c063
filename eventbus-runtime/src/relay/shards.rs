//! Which shards a relay publishes: all of them on SQLite (one relay per database), its fair share
//! on PostgreSQL, held through session advisory locks.

#[cfg(feature = "postgres")]
use std::time::{Duration, Instant};

#[cfg(feature = "postgres")]
use sqlx::{Connection, PgPool, postgres::PgConnection};

use crate::config::OutboxConfig;
use crate::outbox::Db;

/// Which shards this relay publishes.
pub(super) enum Ownership {
    /// Every shard (SQLite: one relay per database).
    All(Vec<i32>),
    /// Shards held through PostgreSQL advisory locks.
    #[cfg(feature = "postgres")]
    Postgres(PgShards),
}

impl Ownership {
    /// The ownership of the outbox in `db`.
    pub(super) fn of(db: &Db, config: &OutboxConfig) -> Self {
        match db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => Ownership::Postgres(PgShards::new(pool.clone(), config)),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(_) => Ownership::All((0..config.shards as i32).collect()),
        }
    }

    /// The shards owned now (rebalanced every half second on PostgreSQL).
    pub(super) async fn refresh(&mut self) -> Result<Vec<i32>, sqlx::Error> {
        match self {
            Ownership::All(all) => Ok(all.clone()),
            #[cfg(feature = "postgres")]
            Ownership::Postgres(pg) => pg.refresh().await,
        }
    }

    /// Lets the shards go (closing the lock session).
    pub(super) async fn release(&mut self) {
        #[cfg(feature = "postgres")]
        if let Ownership::Postgres(pg) = self {
            pg.release().await;
        }
    }
}

/// How many of `shards` one of `members` relays owns: the ceiling of the even split, so every
/// shard has an owner once each member has taken its share (the last ones may own fewer).
pub(super) fn fair_share(shards: i32, members: i64) -> usize {
    let members = members.max(1);
    ((i64::from(shards.max(0)) + members - 1) / members) as usize
}

#[cfg(feature = "postgres")]
/// The member lock's object id (shards use 0..shards).
const MEMBER: i32 = 1 << 20;
#[cfg(feature = "postgres")]
/// How often a relay rebalances.
const REBALANCE: Duration = Duration::from_millis(500);

#[cfg(feature = "postgres")]
/// Shard ownership through session advisory locks on one dedicated connection: if this process
/// dies, its connection closes and its shards are free for the others.
pub(super) struct PgShards {
    pool: PgPool,
    conn: Option<PgConnection>,
    class: i32,
    shards: i32,
    owned: Vec<i32>,
    checked: Option<Instant>,
}

#[cfg(feature = "postgres")]
impl PgShards {
    fn new(pool: PgPool, config: &OutboxConfig) -> Self {
        // One lock class per table.
        let class =
            crate::outbox::shard_of(Some(&config.table), &uuid::Uuid::nil(), i32::MAX as u32);
        PgShards {
            pool,
            conn: None,
            class,
            shards: config.shards as i32,
            owned: Vec::new(),
            checked: None,
        }
    }

    async fn refresh(&mut self) -> Result<Vec<i32>, sqlx::Error> {
        if self.checked.is_some_and(|t| t.elapsed() < REBALANCE) && self.conn.is_some() {
            return Ok(self.owned.clone());
        }
        self.checked = Some(Instant::now());
        match self.rebalance().await {
            Ok(()) => Ok(self.owned.clone()),
            Err(e) => {
                // The lock connection is gone or broken: so are our locks.
                self.conn = None;
                self.owned.clear();
                Err(e)
            }
        }
    }

    async fn rebalance(&mut self) -> Result<(), sqlx::Error> {
        if self.conn.is_none() {
            let mut conn = self.pool.acquire().await?.detach();
            sqlx::query("SELECT pg_advisory_lock_shared($1, $2)")
                .bind(self.class)
                .bind(MEMBER)
                .execute(&mut conn)
                .await?;
            self.conn = Some(conn);
            self.owned.clear();
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let members: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ($1::int)::oid \
             AND objid = ($2::int)::oid AND objsubid = 2 AND granted",
        )
        .bind(self.class)
        .bind(MEMBER)
        .fetch_one(&mut *conn)
        .await?;
        let fair = fair_share(self.shards, members);
        while self.owned.len() > fair {
            if let Some(shard) = self.owned.pop() {
                sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                    .bind(self.class)
                    .bind(shard)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        if self.owned.len() < fair {
            for shard in 0..self.shards {
                if self.owned.len() >= fair {
                    break;
                }
                if self.owned.contains(&shard) {
                    continue;
                }
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                    .bind(self.class)
                    .bind(shard)
                    .fetch_one(&mut *conn)
                    .await?;
                if got {
                    self.owned.push(shard);
                }
            }
            self.owned.sort_unstable();
        }
        Ok(())
    }

    async fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Closing the session releases every advisory lock it holds.
            let _ = conn.close().await;
        }
        self.owned.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::fair_share;

    #[test]
    fn every_shard_has_an_owner_and_no_member_takes_more_than_its_share() {
        for shards in [1, 7, 16, 1024] {
            for members in 1..=40_i64 {
                let share = fair_share(shards, members);
                assert!(
                    share as i64 * members >= i64::from(shards),
                    "{members} members of {shards} shards leave some unowned"
                );
                assert!(
                    (share as i64 - 1) * members < i64::from(shards),
                    "{members} members of {shards} shards: {share} is more than a fair share"
                );
            }
        }
    }

    #[test]
    fn the_edges() {
        assert_eq!(fair_share(16, 1), 16, "one relay owns everything");
        assert_eq!(
            fair_share(16, 0),
            16,
            "no member counted yet: count ourselves"
        );
        assert_eq!(fair_share(16, 3), 6);
        assert_eq!(
            fair_share(2, 5),
            1,
            "more relays than shards: one each, some idle"
        );
    }
}
