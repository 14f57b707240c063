//! The event store end to end, on both layers (embedded SQLite + mock Kafka, real PostgreSQL +
//! Kafka): optimistic concurrency under 8 concurrent appenders, append + publish atomicity, and
//! a stored old schema version loaded through its upcaster.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use eventbus::store::{
    Aggregate, AppendError, Apply, EventStore, ExpectedVersion, Projection, ProjectionRunner,
    ProjectionTx, StoreTransaction, StoredEvent,
};
use eventbus::{Database, DomainEvent, EventBus, Topic};
use eventbus_tests::Petstore;
use serde::{Deserialize, Serialize};
use support::{Layer, Reader};
use uuid::Uuid;

/// Every account event, in one topic: in order per account.
#[derive(Topic, Debug)]
#[topic(service = Petstore, aggregate = "account")]
pub struct AccountTopic;

/// An account was opened (version 2: with its currency).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(service = Petstore, aggregate = "account", version = 2, topic = AccountTopic)]
pub struct AccountOpened {
    #[event(aggregate_id)]
    pub account_id: Uuid,
    pub owner: String,
    pub currency: String,
}

/// An account was opened (version 1, as first stored: no currency).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(service = Petstore, aggregate = "account", name = "account_opened", version = 1, topic = AccountTopic)]
pub struct AccountOpenedV1 {
    #[event(aggregate_id)]
    pub account_id: Uuid,
    pub owner: String,
}

/// Version 1 accounts were all in euros.
impl From<AccountOpenedV1> for AccountOpened {
    fn from(v1: AccountOpenedV1) -> Self {
        AccountOpened {
            account_id: v1.account_id,
            owner: v1.owner,
            currency: "EUR".to_owned(),
        }
    }
}

/// Money was deposited.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(service = Petstore, aggregate = "account", topic = AccountTopic)]
pub struct Deposited {
    #[event(aggregate_id)]
    pub account_id: Uuid,
    pub cents: u64,
    /// Which writer deposited it.
    pub by: u32,
}

/// An account, as the current code knows it.
#[derive(eventbus::store::Aggregate, Default, Debug, PartialEq)]
#[aggregate(
    service = Petstore,
    name = "account",
    events(AccountOpened, Deposited),
    upcast(AccountOpenedV1 => AccountOpened),
    derive(Clone, PartialEq)
)]
pub struct Account {
    id: Option<Uuid>,
    owner: String,
    currency: String,
    balance: u64,
    deposits: Vec<u32>,
}

impl Apply<AccountOpened> for Account {
    fn on(&mut self, event: &AccountOpened) {
        self.id = Some(event.account_id);
        self.owner.clone_from(&event.owner);
        self.currency.clone_from(&event.currency);
    }
}

impl Apply<Deposited> for Account {
    fn on(&mut self, event: &Deposited) {
        self.balance += event.cents;
        self.deposits.push(event.by);
    }
}

impl Account {
    /// A command: opens an account (only once).
    fn open(&self, id: Uuid, owner: &str) -> Vec<AccountEvent> {
        if self.id.is_some() {
            return vec![];
        }
        vec![Account::event(AccountOpened {
            account_id: id,
            owner: owner.to_owned(),
            currency: "CHF".to_owned(),
        })]
    }

    /// A command: deposits money into an open account.
    fn deposit(&self, cents: u64, by: u32) -> Vec<AccountEvent> {
        match self.id {
            Some(account_id) => vec![Account::event(Deposited {
                account_id,
                cents,
                by,
            })],
            None => vec![],
        }
    }
}

/// The same aggregate as an older release of the code knew it: it stored version 1.
#[derive(eventbus::store::Aggregate, Default, Debug)]
#[aggregate(service = Petstore, name = "account", events(AccountOpenedV1, Deposited), event_enum = OldAccountEvent)]
pub struct OldAccount {
    opened: bool,
}

impl Apply<AccountOpenedV1> for OldAccount {
    fn on(&mut self, _: &AccountOpenedV1) {
        self.opened = true;
    }
}

impl Apply<Deposited> for OldAccount {
    fn on(&mut self, _: &Deposited) {}
}

async fn store_on(layer: &Layer) -> (EventBus<Petstore>, EventStore<Petstore>) {
    let bus = support::transactional_bus(layer).await;
    let store = EventStore::named(&bus, &format!("{}_es", layer.table)).unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap(); // idempotent
    (bus, store)
}

/// 8 tasks, 6 rounds: in each, every task loads the account, then (all together) appends a
/// deposit at the version it read. Exactly one wins per version; the 7 others get a conflict
/// naming the winner's event; the stream ends with versions 1..=7, no gap, no duplicate.
async fn concurrent_appends(layer: Layer) {
    const TASKS: u32 = 8;
    const ROUNDS: u64 = 6;
    let (_bus, store) = store_on(&layer).await;
    let id = Uuid::now_v7();
    let (account, version) = store.load::<Account>(&id).await.unwrap();
    assert_eq!(version, 0);
    store
        .append::<Account>(&id, ExpectedVersion::NoStream, &account.open(id, "ada"))
        .await
        .unwrap();

    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, barrier) = (store.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..ROUNDS {
                let (account, version) = store.load::<Account>(&id).await.unwrap();
                barrier.wait().await;
                let result = store
                    .append::<Account>(&id, version, &account.deposit(100, task))
                    .await;
                outcomes.push((version, result));
                barrier.wait().await;
            }
            outcomes
        }));
    }
    let mut by_round: Vec<Vec<_>> = (0..ROUNDS).map(|_| Vec::new()).collect();
    for task in tasks {
        for (round, outcome) in task.await.unwrap().into_iter().enumerate() {
            by_round[round].push(outcome);
        }
    }

    let stream = store.read_stream::<Account>(&id).await.unwrap();
    let versions: Vec<u64> = stream.iter().map(|r| r.version).collect();
    assert_eq!(
        versions,
        (1..=ROUNDS + 1).collect::<Vec<_>>(),
        "{}: no gap, no duplicate",
        layer.name
    );
    for (round, outcomes) in by_round.into_iter().enumerate() {
        let expected = round as u64 + 1;
        let stored = &stream[round + 1];
        let mut winners = 0;
        for (version, result) in outcomes {
            assert_eq!(
                version, expected,
                "{}: every task read the same version",
                layer.name
            );
            match result {
                Ok(appended) => {
                    winners += 1;
                    assert_eq!(appended.version, expected + 1);
                    assert_eq!(appended.event_ids, vec![stored.event_id]);
                }
                Err(e @ AppendError::Conflict { .. }) => {
                    let text = e.to_string();
                    let AppendError::Conflict {
                        stream_type,
                        stream_id,
                        expected: said,
                        actual,
                        winner,
                        ..
                    } = e
                    else {
                        unreachable!()
                    };
                    assert_eq!(stream_type, "account");
                    assert_eq!(stream_id, id.to_string());
                    assert_eq!(said, ExpectedVersion::Exact(expected));
                    assert_eq!(actual, expected + 1);
                    assert_eq!(
                        winner,
                        Some(stored.event_id),
                        "{}: the conflict names the winner",
                        layer.name
                    );
                    assert!(text.contains(&stored.event_id.to_string()), "{text}");
                    assert!(
                        text.contains(&format!("took version {}", expected + 1)),
                        "{text}"
                    );
                }
                Err(other) => panic!("{}: unexpected error: {other}", layer.name),
            }
        }
        assert_eq!(
            winners, 1,
            "{}: exactly one winner for version {expected}",
            layer.name
        );
    }
    let (account, version) = store.load::<Account>(&id).await.unwrap();
    assert_eq!(version, ROUNDS + 1);
    assert_eq!(account.balance, 100 * ROUNDS);
    eprintln!(
        "{}: {ROUNDS} rounds of {TASKS} concurrent appends: one winner each",
        layer.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_embedded() {
    concurrent_appends(support::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_real() {
    if let Some(layer) = support::real().await {
        concurrent_appends(layer).await;
    }
}

/// `append_in` inside the caller's transaction: rolled back, nothing is stored and nothing is
/// published; committed, the events are stored and delivered to Kafka, in stream order, with the
/// stored event ids.
async fn atomicity(layer: Layer) {
    let reader = Reader::at_end(&layer.kafka, AccountTopic::NAME).await;
    let (bus, store) = store_on(&layer).await;
    let id = Uuid::now_v7();
    let (account, _) = store.load::<Account>(&id).await.unwrap();
    let opened = account.open(id, "grace");

    // Rolled back: nothing stored, no outbox row.
    let pending_before = bus.outbox().unwrap().pending().await.unwrap();
    let rolled_back = in_transaction(&store, id, &opened, false).await;
    assert!(store.read_stream::<Account>(&id).await.unwrap().is_empty());
    assert_eq!(
        bus.outbox().unwrap().pending().await.unwrap(),
        pending_before
    );

    // Committed: the open and two deposits, in one transaction of the caller's.
    let mut account = Account::default();
    let mut events = opened.clone();
    account.apply(&events[0]);
    for by in [1, 2] {
        let more = account.deposit(250, by);
        account.apply(&more[0]);
        events.extend(more);
    }
    let committed = in_transaction(&store, id, &events, true).await;
    assert_eq!(committed.len(), 3);
    let stored = store.read_stream::<Account>(&id).await.unwrap();
    assert_eq!(
        stored.iter().map(|r| r.event_id).collect::<Vec<_>>(),
        committed
    );
    assert_eq!(
        stored.iter().map(|r| r.event.clone()).collect::<Vec<_>>(),
        events
    );

    // A second append in a transaction of its own.
    let (account, version) = store.load::<Account>(&id).await.unwrap();
    assert_eq!(version, 3);
    let appended = store
        .append::<Account>(&id, version, &account.deposit(5, 3))
        .await
        .unwrap();
    let mut expected_ids = committed.clone();
    expected_ids.extend(appended.event_ids.clone());

    let key = id.to_string();
    let records = reader.read(Duration::from_secs(60), |records| {
        records
            .iter()
            .filter(|r| r.key.as_deref() == Some(&key))
            .count()
            >= 4
    });
    let ours: Vec<_> = records
        .iter()
        .filter(|r| r.key.as_deref() == Some(&key))
        .collect();
    let ids: Vec<Uuid> = ours.iter().map(|r| r.envelope().id).collect();
    assert_eq!(
        ids, expected_ids,
        "{}: delivered once each, in stream order",
        layer.name
    );
    assert!(
        !ids.contains(&rolled_back[0]),
        "a rolled-back append is never published"
    );
    assert_eq!(ours[0].envelope().event_type, AccountOpened::EVENT_TYPE);
    assert_eq!(ours[0].envelope().version, 2);
    assert_eq!(ours[1].envelope().decode::<Deposited>().unwrap().by, 1);

    // The stored attributes are the published ones.
    let all = store.read_all(0, 100).await.unwrap();
    let first = all.iter().find(|e| e.event_id == committed[0]).unwrap();
    assert_eq!(first.headers.get("ce_id"), Some(&committed[0].to_string()));
    assert_eq!(first.headers.get("ce_subject"), Some(&key));
    assert_eq!(
        first.headers.get("ce_time").map(String::as_str),
        ours[0].header("ce_time").as_deref()
    );
    let positions: Vec<i64> = all.iter().map(|e| e.position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(all.len(), 4);
    assert_eq!(store.read_all(positions[1], 100).await.unwrap().len(), 2);
    assert!(matches!(
        first.decode::<Account>(),
        Some(Ok(AccountEvent::AccountOpened(_)))
    ));
}

/// Appends `events` with `append_in` in a transaction of the caller's, then commits or rolls
/// back; returns the event ids.
async fn in_transaction(
    store: &EventStore<Petstore>,
    id: Uuid,
    events: &[AccountEvent],
    commit: bool,
) -> Vec<Uuid> {
    async fn run<T: StoreTransaction>(
        store: &EventStore<Petstore>,
        tx: &mut T,
        id: Uuid,
        events: &[AccountEvent],
    ) -> Vec<Uuid> {
        store
            .append_in::<Account, _>(tx, &id, ExpectedVersion::NoStream, events)
            .await
            .unwrap()
            .event_ids
    }
    match store.database() {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            let ids = run(store, &mut tx, id, events).await;
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            ids
        }
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            let ids = run(store, &mut tx, id, events).await;
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            ids
        }
        Database::Url(_) => unreachable!("a built bus has a pool"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomicity_embedded() {
    atomicity(support::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomicity_real() {
    if let Some(layer) = support::real().await {
        atomicity(layer).await;
    }
}

/// Events stored by the old code in schema version 1 load with the current code as version 2,
/// through the upcaster; a version nothing decodes is an error naming it.
async fn upcast(layer: Layer) {
    let (_bus, store) = store_on(&layer).await;
    let id = Uuid::now_v7();
    let old = vec![
        OldAccount::event(AccountOpenedV1 {
            account_id: id,
            owner: "alan".to_owned(),
        }),
        OldAccount::event(Deposited {
            account_id: id,
            cents: 700,
            by: 9,
        }),
    ];
    store.append::<OldAccount>(&id, 0, &old).await.unwrap();

    let stored = store.read_stream::<Account>(&id).await.unwrap();
    assert_eq!(stored[0].stored_schema_version, 1);
    assert_eq!(
        stored[0].event,
        AccountEvent::AccountOpened(AccountOpened {
            account_id: id,
            owner: "alan".to_owned(),
            currency: "EUR".to_owned(),
        })
    );
    let (account, version) = store.load::<Account>(&id).await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(account.currency, "EUR");
    assert_eq!(account.balance, 700);

    // New events append after the upcast ones, in the current version.
    store
        .append::<Account>(&id, version, &account.deposit(1, 1))
        .await
        .unwrap();
    let (account, version) = store.load::<Account>(&id).await.unwrap();
    assert_eq!((account.balance, version), (701, 3));

    // The old code cannot read version 2: the error names the stream, the type and the version.
    let id2 = Uuid::now_v7();
    store
        .append::<Account>(&id2, 0, &Account::default().open(id2, "x"))
        .await
        .unwrap();
    let err = store.load::<OldAccount>(&id2).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("account/{id2}")), "{text}");
    assert!(text.contains("schema version 2"), "{text}");

    // An event of another stream is refused, naming both ids.
    let err = store
        .append::<Account>(&Uuid::now_v7(), 3, &account.deposit(1, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::WrongStream { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upcast_embedded() {
    upcast(support::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upcast_real() {
    if let Some(layer) = support::real().await {
        upcast(layer).await;
    }
}

/// The account, snapshotted every 5 events (snapshot schema version 1).
#[derive(eventbus::store::Aggregate, Default, Debug, PartialEq, Serialize, Deserialize)]
#[aggregate(
    service = Petstore,
    name = "account",
    events(AccountOpened, Deposited),
    upcast(AccountOpenedV1 => AccountOpened),
    event_enum = SnapAccountEvent,
    snapshot(every = 5, version = 1)
)]
pub struct SnapAccount {
    owner: String,
    balance: u64,
    deposits: Vec<u32>,
}

impl Apply<AccountOpened> for SnapAccount {
    fn on(&mut self, event: &AccountOpened) {
        self.owner.clone_from(&event.owner);
    }
}

impl Apply<Deposited> for SnapAccount {
    fn on(&mut self, event: &Deposited) {
        self.balance += event.cents;
        self.deposits.push(event.by);
    }
}

/// The same state in a later release whose snapshots are of schema version 2: version 1
/// snapshots are ignored.
#[derive(eventbus::store::Aggregate, Default, Debug, PartialEq, Serialize, Deserialize)]
#[aggregate(
    service = Petstore,
    name = "account",
    events(AccountOpened, Deposited),
    upcast(AccountOpenedV1 => AccountOpened),
    event_enum = SnapAccountV2Event,
    snapshot(every = 5, version = 2)
)]
pub struct SnapAccountV2 {
    owner: String,
    balance: u64,
    deposits: Vec<u32>,
}

impl Apply<AccountOpened> for SnapAccountV2 {
    fn on(&mut self, event: &AccountOpened) {
        self.owner.clone_from(&event.owner);
    }
}

impl Apply<Deposited> for SnapAccountV2 {
    fn on(&mut self, event: &Deposited) {
        self.balance += event.cents;
        self.deposits.push(event.by);
    }
}

/// Overwrites the stored snapshot's payload of stream `id` (to see which state `load` starts
/// from).
async fn tamper_snapshot(store: &EventStore<Petstore>, id: Uuid, payload: Vec<u8>) {
    let t = store.table().replace("_events", "_snapshots");
    let done = match store.database() {
        Database::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {t} SET payload = $1 WHERE stream_id = $2"
        )))
        .bind(payload)
        .bind(id.to_string())
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected(),
        Database::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {t} SET payload = ?1 WHERE stream_id = ?2"
        )))
        .bind(payload)
        .bind(id.to_string())
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected(),
        Database::Url(_) => unreachable!("a built bus has a pool"),
    };
    assert_eq!(done, 1);
}

/// Snapshots round trip: taken by the append that crosses a multiple of 5, in its transaction,
/// equal to the replayed state at that version; `load` starts from it and applies the events
/// after it; a snapshot of another snapshot version is ignored and replaced by the next one.
async fn snapshots(layer: Layer) {
    let (_bus, store) = store_on(&layer).await;
    let id = Uuid::now_v7();
    let opened = SnapAccount::event(AccountOpened {
        account_id: id,
        owner: "edsger".to_owned(),
        currency: "CHF".to_owned(),
    });
    let deposit = |by: u32| {
        SnapAccount::event(Deposited {
            account_id: id,
            cents: 10,
            by,
        })
    };
    // Versions 1..=3: no snapshot yet.
    store
        .append::<SnapAccount>(&id, 0, &[opened, deposit(1), deposit(2)])
        .await
        .unwrap();
    assert_eq!(store.snapshot::<SnapAccount>(&id).await.unwrap(), None);
    // 4..=7 crosses 5: a snapshot at 7 (the append's last version).
    store
        .append::<SnapAccount>(&id, 3, &(3..=6).map(deposit).collect::<Vec<_>>())
        .await
        .unwrap();
    let (snap, at) = store.snapshot::<SnapAccount>(&id).await.unwrap().unwrap();
    assert_eq!(at, 7);
    assert_eq!(snap.deposits, vec![1, 2, 3, 4, 5, 6]);
    // 8, 9: below 10, the snapshot stays at 7; load = snapshot + 2 events = a full replay.
    for (v, by) in [(7, 7), (8, 8)] {
        store
            .append::<SnapAccount>(&id, v, &[deposit(by)])
            .await
            .unwrap();
    }
    assert_eq!(
        store.snapshot::<SnapAccount>(&id).await.unwrap().unwrap().1,
        7
    );
    let (loaded, version) = store.load::<SnapAccount>(&id).await.unwrap();
    assert_eq!(version, 9);
    assert_eq!(loaded.deposits, (1..=8).collect::<Vec<_>>());
    assert_eq!(loaded.balance, 80);
    // 10: a snapshot at 10, equal to the replayed state.
    store
        .append::<SnapAccount>(&id, 9, &[deposit(9)])
        .await
        .unwrap();
    let (snap, at) = store.snapshot::<SnapAccount>(&id).await.unwrap().unwrap();
    assert_eq!(at, 10);
    let mut replayed = SnapAccount::default();
    for r in store.read_stream::<SnapAccount>(&id).await.unwrap() {
        replayed.apply(&r.event);
    }
    assert_eq!(snap, replayed);

    // load starts from the snapshot: a tampered one shows through (plus the events after it).
    store
        .append::<SnapAccount>(&id, 10, &[deposit(10)])
        .await
        .unwrap();
    let marker = SnapAccount {
        owner: "from the snapshot".to_owned(),
        balance: 1_000_000,
        deposits: vec![],
    };
    tamper_snapshot(&store, id, serde_json::to_vec(&marker).unwrap()).await;
    let (loaded, version) = store.load::<SnapAccount>(&id).await.unwrap();
    assert_eq!(version, 11);
    assert_eq!(loaded.owner, "from the snapshot");
    assert_eq!(
        (loaded.balance, loaded.deposits.clone()),
        (1_000_010, vec![10])
    );

    // Snapshot version 2 ignores the version 1 snapshot: a full replay.
    assert_eq!(store.snapshot::<SnapAccountV2>(&id).await.unwrap(), None);
    let (v2, version) = store.load::<SnapAccountV2>(&id).await.unwrap();
    assert_eq!(version, 11);
    assert_eq!((v2.owner.as_str(), v2.balance), ("edsger", 100));
    // ... and its next snapshot (crossing 15) replaces it, rebuilt without the old one.
    store
        .append::<SnapAccountV2>(
            &id,
            11,
            &(11..=14)
                .map(|by| {
                    SnapAccountV2::event(Deposited {
                        account_id: id,
                        cents: 10,
                        by,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let (snap, at) = store.snapshot::<SnapAccountV2>(&id).await.unwrap().unwrap();
    assert_eq!((at, snap.balance), (15, 140));
    assert_eq!(store.snapshot::<SnapAccount>(&id).await.unwrap(), None);
    let (loaded, _) = store.load::<SnapAccount>(&id).await.unwrap();
    assert_eq!(
        loaded.balance, 140,
        "version 1 code replays, ignoring the v2 snapshot"
    );

    // An aggregate without snapshots never writes or reads one.
    assert_eq!(store.snapshot::<Account>(&id).await.unwrap(), None);
    let (account, _) = store.load::<Account>(&id).await.unwrap();
    assert_eq!(account.balance, 140);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_embedded() {
    snapshots(support::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_real() {
    if let Some(layer) = support::real().await {
        snapshots(layer).await;
    }
}

/// A projection writing one row per event (and the deposited cents) into its own table; it can
/// stop forever after handling a given number of events (to be killed mid-batch).
struct Effects {
    table: String,
    pause_after: Option<(u64, Arc<tokio::sync::Notify>)>,
    handled: u64,
}

impl Projection for Effects {
    fn name(&self) -> &str {
        "effects"
    }

    async fn handle(
        &mut self,
        event: &StoredEvent,
        tx: &mut ProjectionTx,
    ) -> Result<(), eventbus::HandlerError> {
        let cents = match event.decode::<Account>() {
            Some(Ok(AccountEvent::Deposited(d))) => d.cents as i64,
            _ => 0,
        };
        let (position, id) = (event.position, event.event_id.to_string());
        match tx {
            ProjectionTx::Postgres(tx) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {} (position, event_id, cents) VALUES ($1, $2, $3)",
                    self.table
                )))
                .bind(position)
                .bind(id)
                .bind(cents)
                .execute(&mut **tx)
                .await?;
            }
            ProjectionTx::Sqlite(tx) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {} (position, event_id, cents) VALUES (?1, ?2, ?3)",
                    self.table
                )))
                .bind(position)
                .bind(id)
                .bind(cents)
                .execute(&mut **tx)
                .await?;
            }
        }
        self.handled += 1;
        if let Some((after, stopped)) = &self.pause_after
            && self.handled == *after
        {
            stopped.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn reset(&mut self, tx: &mut ProjectionTx) -> Result<(), eventbus::HandlerError> {
        let sql = format!("DELETE FROM {}", self.table);
        match tx {
            ProjectionTx::Postgres(tx) => {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut **tx)
                    .await?;
            }
            ProjectionTx::Sqlite(tx) => {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }
}

/// The projection's rows: (rows, distinct positions, cents).
async fn effects_of(store: &EventStore<Petstore>, table: &str) -> (i64, i64, i64) {
    let sql = format!(
        "SELECT COUNT(*), COUNT(DISTINCT position), CAST(COALESCE(SUM(cents), 0) AS BIGINT) FROM {table}"
    );
    match store.database() {
        Database::Postgres(pool) => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await
            .unwrap(),
        Database::Sqlite(pool) => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await
            .unwrap(),
        Database::Url(_) => unreachable!("a built bus has a pool"),
    }
}

/// A projection killed mid-batch (its task aborted while a transaction is open) resumes, in a
/// new runner, from its checkpoint: every event's effect is committed exactly once. Then a
/// rebuild from position 0 and a spawned runner that follows new appends.
async fn projection_resumes(layer: Layer) {
    let (_bus, store) = store_on(&layer).await;
    let table = format!("{}_effects", layer.table);
    let ddl = format!(
        "CREATE TABLE {table} (position BIGINT NOT NULL, event_id TEXT NOT NULL, cents BIGINT NOT NULL)"
    );
    match store.database() {
        Database::Postgres(pool) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
                .execute(&pool)
                .await
                .unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
                .execute(&pool)
                .await
                .unwrap();
        }
        Database::Url(_) => unreachable!(),
    }
    // 3 accounts, 40 deposits of 1..=40 cents each, in appends of 10: 123 events.
    for _ in 0..3 {
        let id = Uuid::now_v7();
        store
            .append::<Account>(&id, 0, &Account::default().open(id, "kay"))
            .await
            .unwrap();
        for round in 0..4u64 {
            let events: Vec<AccountEvent> = (1..=10)
                .map(|i| {
                    Account::event(Deposited {
                        account_id: id,
                        cents: round * 10 + i,
                        by: 0,
                    })
                })
                .collect();
            store
                .append::<Account>(&id, 1 + round * 10, &events)
                .await
                .unwrap();
        }
    }
    let all = store.read_all(0, 1000).await.unwrap();
    assert_eq!(all.len(), 123);
    let total: i64 = 3 * (1..=40).sum::<i64>();

    // Killed after 70 events: the first batch of 50 committed, 20 of the second handled in
    // the open transaction.
    let stopped = Arc::new(tokio::sync::Notify::new());
    let runner = ProjectionRunner::new(
        &store,
        Effects {
            table: table.clone(),
            pause_after: Some((70, Arc::clone(&stopped))),
            handled: 0,
        },
    )
    .batch(50);
    let task = runner.spawn();
    tokio::time::timeout(Duration::from_secs(60), stopped.notified())
        .await
        .unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let (rows, distinct, _) = effects_of(&store, &table).await;
    assert_eq!(
        (rows, distinct),
        (50, 50),
        "{}: only the committed batch",
        layer.name
    );

    // A new runner continues from the checkpoint.
    let mut runner = ProjectionRunner::new(
        &store,
        Effects {
            table: table.clone(),
            pause_after: None,
            handled: 0,
        },
    )
    .batch(50);
    assert_eq!(runner.checkpoint().await.unwrap(), all[49].position);
    assert_eq!(runner.run_until_caught_up().await.unwrap(), 73);
    assert_eq!(runner.projection().handled, 73);
    assert_eq!(
        effects_of(&store, &table).await,
        (123, 123, total),
        "{}: every event's effect exactly once",
        layer.name
    );
    assert_eq!(runner.checkpoint().await.unwrap(), all[122].position);
    assert_eq!(runner.run_until_caught_up().await.unwrap(), 0);

    // Rebuild: cleared and the checkpoint back to 0 in one transaction, then replayed.
    runner.rebuild().await.unwrap();
    assert_eq!(runner.checkpoint().await.unwrap(), 0);
    assert_eq!(effects_of(&store, &table).await, (0, 0, 0));
    assert_eq!(runner.run_until_caught_up().await.unwrap(), 123);
    assert_eq!(effects_of(&store, &table).await, (123, 123, total));

    // Spawned, it follows new appends.
    let task = runner.interval(Duration::from_millis(20)).spawn();
    let id = Uuid::now_v7();
    store
        .append::<Account>(&id, 0, &Account::default().open(id, "new"))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while effects_of(&store, &table).await.0 < 124 {
        assert!(std::time::Instant::now() < deadline, "the runner follows");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    assert_eq!(effects_of(&store, &table).await, (124, 124, total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_resumes_embedded() {
    projection_resumes(support::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_resumes_real() {
    if let Some(layer) = support::real().await {
        projection_resumes(layer).await;
    }
}
