//! The run's tables and topic, their cleanup, and the relays' shard locks.

use std::time::Duration;

use eventbus::Database;
use eventbus_faults::{PARTITIONS, Tables, Tick, group};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::AssertSqlSafe;

use crate::{Error, Opts, Result, bootstrap, partitions, plain_consumer, pool};

pub(crate) async fn setup(opts: &Opts) -> Result<()> {
    let run = opts.run()?;
    let t = Tables::of(&run);
    let pool = pool(2).await?;
    eventbus::outbox::connect(Database::Postgres(pool.clone()), &t.outbox)
        .await?
        .migrate()
        .await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {counters} (key TEXT PRIMARY KEY, n BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS {effects} (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, seq BIGINT NOT NULL);",
        counters = t.counters,
        effects = t.effects
    )))
    .execute(&pool)
    .await?;
    // The topic, with several partitions, before anyone produces to it.
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap()?)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(
                Tick::TOPIC,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, e)) => return Err(format!("cannot create topic {topic}: {e}").into()),
        }
    }
    // The run's consumer group starts where the topic ends now (committed offsets, so a consumer
    // killed before its first commit resumes there too), not at the start of every earlier run.
    tokio::task::spawn_blocking(move || {
        let consumer = plain_consumer(&group(&run))?;
        let mut list = TopicPartitionList::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for p in 0..partitions(&consumer, Tick::TOPIC)? {
            // A partition's leader can still move just after the topic is made: ask again.
            let high = loop {
                match consumer.fetch_watermarks(Tick::TOPIC, p, Duration::from_secs(10)) {
                    Ok((_, high)) => break high,
                    Err(e) if std::time::Instant::now() < deadline => {
                        eprintln!(
                            "eventbus-faults setup: {}/{p}: {e}; asking again",
                            Tick::TOPIC
                        );
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            list.add_partition_offset(Tick::TOPIC, p, Offset::Offset(high))?;
        }
        consumer.commit(&list, CommitMode::Sync)?;
        Ok::<_, Error>(())
    })
    .await??;
    Ok(())
}

pub(crate) async fn cleanup(opts: &Opts) -> Result<()> {
    let t = Tables::of(&opts.run()?);
    let pool = pool(1).await?;
    let drop = t
        .all()
        .map(|n| format!("DROP TABLE IF EXISTS {n};"))
        .join(" ");
    sqlx::raw_sql(AssertSqlSafe(drop)).execute(&pool).await?;
    Ok(())
}

/// The shards of the run's outbox each relay holds (its advisory locks), one count per relay.
pub(crate) async fn shards(opts: &Opts) -> Result<()> {
    let t = Tables::of(&opts.run()?);
    // The relay's lock class of the table (relay/shards.rs).
    let class = eventbus::outbox::shard_of(Some(&t.outbox), &uuid::Uuid::nil(), i32::MAX as u32);
    let counts: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND classid = ($1::int)::oid AND objsubid = 2 AND objid < (1 << 20)::oid \
         GROUP BY pid ORDER BY pid",
    )
    .bind(class)
    .fetch_all(&pool(1).await?)
    .await?;
    let counts: Vec<String> = counts.iter().map(i64::to_string).collect();
    println!("{}", counts.join(" "));
    Ok(())
}
