//! Projections: catch-up subscriptions over the store's global position, each with a stored
//! checkpoint (`{store}_checkpoints`) moved in the same transaction as the projection's own
//! writes, so each event's effects are committed exactly once.

use std::future::Future;
use std::time::Duration;

use super::{EventStore, StoredEvent, transaction};
use crate::error::HandlerError;
use crate::event::Service;
use crate::outbox::Db;

/// The transaction a projection writes its effects in: the checkpoint moves in it too.
#[derive(Debug)]
pub enum ProjectionTx {
    /// On PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    /// On SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl ProjectionTx {
    /// The PostgreSQL connection of the transaction.
    #[cfg(feature = "postgres")]
    pub fn postgres(&mut self) -> Result<&mut sqlx::PgConnection, HandlerError> {
        match self {
            ProjectionTx::Postgres(tx) => Ok(&mut **tx),
            #[cfg(feature = "sqlite")]
            ProjectionTx::Sqlite(_) => Err("the event store is on SQLite, not PostgreSQL".into()),
        }
    }

    /// The SQLite connection of the transaction.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&mut self) -> Result<&mut sqlx::SqliteConnection, HandlerError> {
        match self {
            ProjectionTx::Sqlite(tx) => Ok(&mut **tx),
            #[cfg(feature = "postgres")]
            ProjectionTx::Postgres(_) => Err("the event store is on PostgreSQL, not SQLite".into()),
        }
    }

    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            ProjectionTx::Postgres(tx) => tx.commit().await,
            #[cfg(feature = "sqlite")]
            ProjectionTx::Sqlite(tx) => tx.commit().await,
        }
    }

    /// Runs `statement` (binds: projection, then the `i64`s) and returns the rows it changed.
    async fn execute(
        &mut self,
        statement: &str,
        projection: &str,
        values: &[i64],
    ) -> Result<u64, sqlx::Error> {
        macro_rules! run {
            ($tx:expr) => {{
                let mut q = sqlx::query(transaction::sql(statement)).bind(projection);
                for v in values {
                    q = q.bind(*v);
                }
                q.execute(&mut **$tx).await.map(|r| r.rows_affected())
            }};
        }
        match self {
            #[cfg(feature = "postgres")]
            ProjectionTx::Postgres(tx) => run!(tx),
            #[cfg(feature = "sqlite")]
            ProjectionTx::Sqlite(tx) => run!(tx),
        }
    }
}

/// A projection: a read model (or any effect in the store's database) built from every stream's
/// events in global position order.
///
/// [`ProjectionRunner`] calls [`Projection::handle`] for each event after its checkpoint, inside
/// a transaction that also moves the checkpoint: write the effects through `tx` (not through
/// another connection), and they are committed exactly once with the position that produced them.
/// An error rolls the batch back; the runner stops with it.
pub trait Projection: Send + Sync + 'static {
    /// Its name: the key of its checkpoint. Renaming it starts it over from position 0.
    fn name(&self) -> &str;

    /// Writes the effects of `event` through `tx`. Events of every stream come in position
    /// order; decode the ones of interest with [`StoredEvent::decode`].
    fn handle(
        &mut self,
        event: &StoredEvent,
        tx: &mut ProjectionTx,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Clears the projection's own tables through `tx`, before a rebuild from position 0 (the
    /// checkpoint moves back to 0 in the same transaction). Default: nothing.
    fn reset(
        &mut self,
        tx: &mut ProjectionTx,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = tx;
        async { Ok(()) }
    }
}

/// Why a projection stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The store's database failed.
    #[error("projection `{projection}`: the event store `{table}` failed: {source}")]
    Database {
        /// The projection.
        projection: String,
        /// The events table.
        table: String,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// The handler failed on an event: its batch was rolled back, the checkpoint did not move.
    #[error(
        "projection `{projection}` failed on the event at position {position} ({event_type}, stream `{stream}`): {source}; the batch was rolled back and the checkpoint stays at {checkpoint}"
    )]
    Handler {
        /// The projection.
        projection: String,
        /// The event's global position.
        position: i64,
        /// Its type.
        event_type: String,
        /// Its stream, `type/id`.
        stream: String,
        /// Where the checkpoint stays.
        checkpoint: i64,
        /// What the handler said.
        #[source]
        source: HandlerError,
    },
}

/// The default of [`ProjectionRunner::batch`].
pub const DEFAULT_PROJECTION_BATCH: u32 = 500;
/// The default of [`ProjectionRunner::interval`].
pub const DEFAULT_PROJECTION_INTERVAL: Duration = Duration::from_millis(200);

/// Runs a [`Projection`] over an [`EventStore`]: reads the events after its checkpoint in
/// batches, and handles each batch in one transaction that also moves the checkpoint.
///
/// ```no_run
/// # use eventbus::store::{EventStore, Projection, ProjectionRunner};
/// # async fn run<S: eventbus::Service, P: Projection>(store: EventStore<S>, projection: P) -> Result<(), Box<dyn std::error::Error>> {
/// let mut runner = ProjectionRunner::new(&store, projection).batch(500);
/// runner.run_until_caught_up().await?;   // or `runner.spawn()`: forever, polling
/// # Ok(()) }
/// ```
///
/// Two runners of one projection do not handle an event twice: moving the checkpoint is a
/// compare-and-set on the position the batch was read after, done first in the transaction
/// (PostgreSQL: it locks the row until commit); the runner that loses rolls back and reads again.
pub struct ProjectionRunner<S: Service, P: Projection> {
    store: EventStore<S>,
    projection: P,
    batch: u32,
    interval: Duration,
    initialized: bool,
}

impl<S: Service, P: Projection> std::fmt::Debug for ProjectionRunner<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("projection", &self.projection.name())
            .field("store", &self.store.table())
            .field("batch", &self.batch)
            .field("interval", &self.interval)
            .finish()
    }
}

impl<S: Service, P: Projection> ProjectionRunner<S, P> {
    /// A runner of `projection` over `store` (its checkpoint in `{store}_checkpoints`, created by
    /// [`EventStore::migrate`]).
    pub fn new(store: &EventStore<S>, projection: P) -> Self {
        ProjectionRunner {
            store: store.clone(),
            projection,
            batch: DEFAULT_PROJECTION_BATCH,
            interval: DEFAULT_PROJECTION_INTERVAL,
            initialized: false,
        }
    }

    /// Events per transaction (default 500, at least 1).
    pub fn batch(mut self, batch: u32) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// How long [`ProjectionRunner::run`] waits when caught up before reading again (default
    /// 200 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection, back.
    pub fn into_inner(self) -> P {
        self.projection
    }

    fn db_error(&self, source: sqlx::Error) -> ProjectionError {
        ProjectionError::Database {
            projection: self.projection.name().to_owned(),
            table: self.store.table().to_owned(),
            source,
        }
    }

    async fn begin(&self) -> Result<ProjectionTx, ProjectionError> {
        match &self.store.outbox.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => pool.begin().await.map(ProjectionTx::Postgres),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => pool.begin().await.map(ProjectionTx::Sqlite),
        }
        .map_err(|e| self.db_error(e))
    }

    /// The last position the projection handled (0: none), creating its checkpoint if needed.
    pub async fn checkpoint(&mut self) -> Result<i64, ProjectionError> {
        let name = self.projection.name().to_owned();
        let sql = &self.store.sql;
        let result: Result<i64, sqlx::Error> = async {
            match &self.store.outbox.db {
                #[cfg(feature = "postgres")]
                Db::Postgres(pool) => {
                    if !self.initialized {
                        sqlx::query(transaction::sql(&sql.checkpoint_init))
                            .bind(&name)
                            .execute(pool)
                            .await?;
                    }
                    sqlx::query_scalar(transaction::sql(&sql.checkpoint))
                        .bind(&name)
                        .fetch_one(pool)
                        .await
                }
                #[cfg(feature = "sqlite")]
                Db::Sqlite(pool) => {
                    if !self.initialized {
                        sqlx::query(transaction::sql(&sql.checkpoint_init))
                            .bind(&name)
                            .execute(pool)
                            .await?;
                    }
                    sqlx::query_scalar(transaction::sql(&sql.checkpoint))
                        .bind(&name)
                        .fetch_one(pool)
                        .await
                }
            }
        }
        .await;
        let position = result.map_err(|e| self.db_error(e))?;
        self.initialized = true;
        Ok(position)
    }

    /// Handles one batch: the events after the checkpoint (up to [`ProjectionRunner::batch`]),
    /// in one transaction with the checkpoint's move. Returns how many it handled (0: caught up,
    /// or another runner moved the checkpoint first).
    pub async fn step(&mut self) -> Result<usize, ProjectionError> {
        let from = self.checkpoint().await?;
        let events = self
            .store
            .read_all(from, self.batch)
            .await
            .map_err(|e| match e {
                crate::error::LoadError::Database { source, .. } => self.db_error(source),
                other => self.db_error(sqlx::Error::Decode(Box::new(other))),
            })?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(0);
        };
        let mut tx = self.begin().await?;
        let name = self.projection.name().to_owned();
        let moved = tx
            .execute(&self.store.sql.checkpoint_advance, &name, &[from, last])
            .await
            .map_err(|e| self.db_error(e))?;
        if moved == 0 {
            // Another runner handled these first: read again from where it is.
            return Ok(0);
        }
        for event in &events {
            if let Err(source) = self.projection.handle(event, &mut tx).await {
                return Err(ProjectionError::Handler {
                    projection: name,
                    position: event.position,
                    event_type: event.event_type.clone(),
                    stream: format!("{}/{}", event.stream_type, event.stream_id),
                    checkpoint: from,
                    source,
                });
            }
        }
        tx.commit().await.map_err(|e| self.db_error(e))?;
        Ok(events.len())
    }

    /// Handles batches until none is left; returns how many events it handled.
    pub async fn run_until_caught_up(&mut self) -> Result<u64, ProjectionError> {
        let mut handled = 0;
        loop {
            let from = self.checkpoint().await?;
            let n = self.step().await?;
            if n == 0 && self.checkpoint().await? == from {
                return Ok(handled);
            }
            handled += n as u64;
        }
    }

    /// Runs forever: catches up, then reads again every [`ProjectionRunner::interval`]. Returns
    /// only on an error.
    pub async fn run(mut self) -> Result<(), ProjectionError> {
        loop {
            self.run_until_caught_up().await?;
            tokio::time::sleep(self.interval).await;
        }
    }

    /// [`ProjectionRunner::run`] on a task of its own. Aborting it (or dropping the runtime)
    /// rolls back the batch in progress: its effects and its checkpoint move alike.
    pub fn spawn(self) -> tokio::task::JoinHandle<Result<(), ProjectionError>>
    where
        S: Service,
    {
        tokio::spawn(self.run())
    }

    /// Starts the projection over: in one transaction, [`Projection::reset`] clears its tables
    /// and the checkpoint goes back to 0. Then run it again to rebuild it from the first event.
    pub async fn rebuild(&mut self) -> Result<(), ProjectionError> {
        self.checkpoint().await?;
        let name = self.projection.name().to_owned();
        let mut tx = self.begin().await?;
        tx.execute(&self.store.sql.checkpoint_reset, &name, &[0])
            .await
            .map_err(|e| self.db_error(e))?;
        if let Err(source) = self.projection.reset(&mut tx).await {
            return Err(ProjectionError::Handler {
                projection: name,
                position: 0,
                event_type: "reset".to_owned(),
                stream: String::new(),
                checkpoint: 0,
                source,
            });
        }
        tx.commit().await.map_err(|e| self.db_error(e))
    }
}
