//! Reading the event store: a stream (`read_stream`), an aggregate from its snapshot and the
//! events after it (`load`), every stream in commit order (`read_all`).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{
    Aggregate, AggregateEvent as _, EventStore, LoadError, Recorded, SnapshotPolicy, StoredEvent,
    transaction,
};
use crate::event::{PartitionKey, Service};
use crate::outbox::Db;

impl<S: Service> EventStore<S> {
    /// The events of aggregate `A`'s stream `stream_id`, in version order, decoded (an older
    /// schema version upcast as the aggregate declares).
    pub async fn read_stream<A>(
        &self,
        stream_id: &(impl PartitionKey + ?Sized),
    ) -> Result<Vec<Recorded<A::Event>>, LoadError>
    where
        A: Aggregate<Service = S>,
    {
        let stream = stream_id.partition_key().unwrap_or_default();
        self.read_stream_after::<A>(&stream, 0).await
    }

    async fn read_stream_after<A>(
        &self,
        stream: &str,
        after: u64,
    ) -> Result<Vec<Recorded<A::Event>>, LoadError>
    where
        A: Aggregate<Service = S>,
    {
        let rows: Vec<transaction::StreamRow> = on_pool!(&self.outbox.db, pool => {
            sqlx::query_as(transaction::sql(&self.sql.stream))
                .bind(A::TYPE)
                .bind(stream)
                .bind(after as i64)
                .fetch_all(pool)
                .await
        })
        .map_err(|e| self.load_error(e))?;
        decode_rows::<A>(stream, rows)
    }

    /// The stored snapshot of aggregate `A`'s stream `stream_id` and the version it is at, if
    /// the aggregate takes snapshots (`#[aggregate(snapshot(..))]`) and one of its snapshot
    /// version is stored (another version is ignored, as `load` ignores it).
    pub async fn snapshot<A>(
        &self,
        stream_id: &(impl PartitionKey + ?Sized),
    ) -> Result<Option<(A, u64)>, LoadError>
    where
        A: Aggregate<Service = S>,
    {
        let Some(policy) = A::SNAPSHOT else {
            return Ok(None);
        };
        let stream = stream_id.partition_key().unwrap_or_default();
        let row: Option<transaction::SnapshotRow> = on_pool!(&self.outbox.db, pool => {
            sqlx::query_as(transaction::sql(&self.sql.snapshot))
                .bind(A::TYPE)
                .bind(&stream)
                .fetch_optional(pool)
                .await
        })
        .map_err(|e| self.load_error(e))?;
        Ok(restore::<A>(policy, row, &stream))
    }

    /// Aggregate `A` with id `stream_id`, rebuilt from its snapshot (if it takes snapshots and
    /// one of its snapshot version is stored) or from [`Default`] by applying its stream, and
    /// the stream's version (0: no stream): pass it to [`EventStore::append`] as the expected
    /// version.
    pub async fn load<A>(
        &self,
        stream_id: &(impl PartitionKey + ?Sized),
    ) -> Result<(A, u64), LoadError>
    where
        A: Aggregate<Service = S>,
    {
        let stream = stream_id.partition_key().unwrap_or_default();
        let (mut aggregate, mut version) = self.snapshot::<A>(&stream).await?.unwrap_or_default();
        for recorded in self.read_stream_after::<A>(&stream, version).await? {
            aggregate.apply(&recorded.event);
            version = recorded.version;
        }
        Ok((aggregate, version))
    }

    /// Up to `limit` stored events of every stream after global position `after` (0: from the
    /// start), in position order: commit order, so a reader that continues from the last
    /// position it read misses nothing.
    pub async fn read_all(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, LoadError> {
        type Row = (i64, String, String, i64, Uuid, String, i32, String, Vec<u8>);
        let rows: Vec<Row> = on_pool!(&self.outbox.db, pool => {
            sqlx::query_as(transaction::sql(&self.sql.all))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })
        .map_err(|e| self.load_error(e))?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    position,
                    stream_type,
                    stream_id,
                    version,
                    event_id,
                    event_type,
                    schema_version,
                    headers,
                    payload,
                )| {
                    let headers: BTreeMap<String, serde_json::Value> =
                        serde_json::from_str(&headers).unwrap_or_default();
                    StoredEvent {
                        position,
                        stream_type,
                        stream_id,
                        version: version as u64,
                        event_id,
                        event_type,
                        schema_version: schema_version as u32,
                        headers: headers
                            .into_iter()
                            .map(|(k, v)| match v {
                                serde_json::Value::String(s) => (k, s),
                                other => (k, other.to_string()),
                            })
                            .collect(),
                        payload,
                    }
                },
            )
            .collect())
    }
}

/// A snapshot row as the aggregate's state, if it is of the aggregate's snapshot version and
/// decodes (otherwise ignored: the stream is replayed from the start).
pub(super) fn restore<A: Aggregate>(
    policy: SnapshotPolicy,
    row: Option<transaction::SnapshotRow>,
    stream: &str,
) -> Option<(A, u64)> {
    let (version, snapshot_version, payload) = row?;
    if snapshot_version as u32 != policy.version {
        return None;
    }
    match A::__restore(&payload)? {
        Ok(aggregate) => Some((aggregate, version as u64)),
        Err(e) => {
            tracing::warn!(stream_type = A::TYPE, stream_id = stream, error = %e, "eventbus: snapshot ignored: it does not decode");
            None
        }
    }
}

/// Stream rows, decoded (and upcast).
pub(super) fn decode_rows<A: Aggregate>(
    stream: &str,
    rows: Vec<transaction::StreamRow>,
) -> Result<Vec<Recorded<A::Event>>, LoadError> {
    rows.into_iter()
        .map(
            |(position, version, event_id, event_type, schema_version, payload)| {
                let version = version as u64;
                let schema_version = schema_version as u32;
                match A::Event::__decode(&event_type, schema_version, &payload) {
                    None => Err(LoadError::Unknown {
                        stream_type: A::TYPE,
                        stream_id: stream.to_owned(),
                        version,
                        event_type,
                        schema_version,
                    }),
                    Some(Err(source)) => Err(LoadError::Decode {
                        stream_type: A::TYPE,
                        stream_id: stream.to_owned(),
                        version,
                        event_type,
                        schema_version,
                        source,
                    }),
                    Some(Ok(event)) => Ok(Recorded {
                        position,
                        version,
                        event_id,
                        stored_schema_version: schema_version,
                        event,
                    }),
                }
            },
        )
        .collect()
}
