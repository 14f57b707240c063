//! The orders service: its events, the `Order` aggregate and its commands, the read model
//! kept by a projection, and the write path of a new order (its stream and its audit record in
//! one transaction).

use eventbus::store::{
    Aggregate, Apply, EventStore, ExpectedVersion, Projection, ProjectionTx, StoredEvent,
};
use eventbus::{AuditEvent, Database, DomainEvent, EventBus, EventContext, HandlerError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Orders;

/// A customer placed an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(aggregate = "order")]
pub(crate) struct OrderPlaced {
    #[event(aggregate_id)]
    pub(crate) order_id: Uuid,
    pub(crate) customer: String,
    pub(crate) pet: String,
    pub(crate) total_cents: u64,
}

/// An order was paid (the orders service's own fact, on payments' `OrderPaid`).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(aggregate = "order")]
pub(crate) struct OrderSettled {
    #[event(aggregate_id)]
    pub(crate) order_id: Uuid,
    pub(crate) receipt: String,
}

/// An order was cancelled before it was paid.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(aggregate = "order")]
pub(crate) struct OrderCancelled {
    #[event(aggregate_id)]
    pub(crate) order_id: Uuid,
    pub(crate) reason: String,
}

/// An order, event sourced: rebuilt from its events by the store.
#[derive(Aggregate, Default, Debug)]
#[aggregate(events(OrderPlaced, OrderSettled, OrderCancelled))]
pub(crate) struct Order {
    pub(crate) id: Option<Uuid>,
    pub(crate) pet: String,
    pub(crate) state: OrderState,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrderState {
    #[default]
    New,
    Placed,
    Paid,
    Cancelled,
}

impl Apply<OrderPlaced> for Order {
    fn on(&mut self, event: &OrderPlaced) {
        self.id = Some(event.order_id);
        self.pet.clone_from(&event.pet);
        self.state = OrderState::Placed;
    }
}

impl Apply<OrderSettled> for Order {
    fn on(&mut self, _: &OrderSettled) {
        self.state = OrderState::Paid;
    }
}

impl Apply<OrderCancelled> for Order {
    fn on(&mut self, _: &OrderCancelled) {
        self.state = OrderState::Cancelled;
    }
}

// The commands: they decide, and return the events to append.
impl Order {
    pub(crate) fn place(&self, placed: OrderPlaced) -> Result<Vec<OrderEvent>, &'static str> {
        match self.state {
            OrderState::New => Ok(vec![Order::event(placed)]),
            _ => Err("the order is already placed"),
        }
    }

    /// Paying twice is a no-op (a redelivered `OrderPaid`).
    pub(crate) fn pay(&self, receipt: String) -> Result<Vec<OrderEvent>, &'static str> {
        match (self.state, self.id) {
            (OrderState::Placed, Some(order_id)) => {
                Ok(vec![Order::event(OrderSettled { order_id, receipt })])
            }
            (OrderState::Paid, _) => Ok(vec![]),
            (OrderState::Cancelled, _) => Err("the order was cancelled"),
            _ => Err("no such order"),
        }
    }

    pub(crate) fn cancel(&self, reason: &str) -> Result<Vec<OrderEvent>, &'static str> {
        match (self.state, self.id) {
            (OrderState::Placed, Some(order_id)) => Ok(vec![Order::event(OrderCancelled {
                order_id,
                reason: reason.to_owned(),
            })]),
            (OrderState::Cancelled, _) => Ok(vec![]),
            (OrderState::Paid, _) => Err("it is already paid"),
            _ => Err("no such order"),
        }
    }
}

/// The orders' read model, `petstore_order_view`: one row per order, kept by a projection over
/// the event store (its writes and its checkpoint commit together).
pub(crate) struct OrderView;

impl Projection for OrderView {
    fn name(&self) -> &str {
        "petstore-order-view"
    }

    async fn handle(
        &mut self,
        event: &StoredEvent,
        tx: &mut ProjectionTx,
    ) -> Result<(), HandlerError> {
        let Some(decoded) = event.decode::<Order>() else {
            return Ok(()); // another aggregate's
        };
        let run = event.headers.get("ce_tags").cloned().unwrap_or_default();
        let id = event.stream_id.as_str();
        macro_rules! write {
            ($conn:expr, $insert:literal, $update:literal) => {
                match decoded? {
                    OrderEvent::OrderPlaced(p) => {
                        sqlx::query($insert)
                            .bind(id)
                            .bind(run)
                            .bind(p.customer)
                            .bind(p.pet)
                            .bind(p.total_cents as i64)
                            .execute($conn)
                            .await?;
                    }
                    other => {
                        let state = match other {
                            OrderEvent::OrderSettled(_) => "paid",
                            _ => "cancelled",
                        };
                        sqlx::query($update)
                            .bind(state)
                            .bind(id)
                            .execute($conn)
                            .await?;
                    }
                }
            };
        }
        match tx {
            ProjectionTx::Postgres(_) => write!(
                tx.postgres()?,
                "INSERT INTO petstore_order_view VALUES ($1, $2, $3, $4, $5, 'placed') ON CONFLICT (id) DO NOTHING",
                "UPDATE petstore_order_view SET state = $1 WHERE id = $2"
            ),
            ProjectionTx::Sqlite(_) => write!(
                tx.sqlite()?,
                "INSERT INTO petstore_order_view VALUES (?1, ?2, ?3, ?4, ?5, 'placed') ON CONFLICT (id) DO NOTHING",
                "UPDATE petstore_order_view SET state = ?1 WHERE id = ?2"
            ),
        }
        Ok(())
    }
}

/// Someone placed an order (who did what, for compliance).
#[derive(AuditEvent, Serialize, Deserialize, Debug, Clone)]
#[event(audit_category = "orders")]
pub(crate) struct OrderAudited {
    #[event(actor)]
    pub(crate) customer: String,
    pub(crate) action: String,
    pub(crate) order_id: Uuid,
}

/// The orders' read model (kept by [`OrderView`]).
pub(crate) async fn create_orders_table(db: &Database) -> Result<(), sqlx::Error> {
    let ddl = "CREATE TABLE IF NOT EXISTS petstore_order_view \
               (id TEXT PRIMARY KEY, run TEXT NOT NULL, customer TEXT NOT NULL, pet TEXT NOT NULL, \
                total_cents BIGINT NOT NULL, state TEXT NOT NULL)";
    match db {
        Database::Postgres(pool) => sqlx::query(ddl).execute(pool).await.map(|_| ()),
        Database::Sqlite(pool) => sqlx::query(ddl).execute(pool).await.map(|_| ()),
        Database::Url(_) => Ok(()),
    }
}

/// Orders per state in the read model, for the run tagged `run` (and its cancelled order).
pub(crate) async fn order_states(
    db: &Database,
    run: &str,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let like = format!("%{run}%");
    match db {
        Database::Postgres(pool) => {
            sqlx::query_as(
                "SELECT state, COUNT(*) FROM petstore_order_view WHERE run LIKE $1 GROUP BY state ORDER BY state DESC",
            )
            .bind(like)
            .fetch_all(pool)
            .await
        }
        Database::Sqlite(pool) => {
            sqlx::query_as(
                "SELECT state, COUNT(*) FROM petstore_order_view WHERE run LIKE ?1 GROUP BY state ORDER BY state DESC",
            )
            .bind(like)
            .fetch_all(pool)
            .await
        }
        Database::Url(_) => Ok(vec![]),
    }
}

/// The order placed (appended to its new stream, which publishes `OrderPlaced` through the
/// outbox) and its audit record: one transaction.
pub(crate) async fn place_order(
    bus: &EventBus<Orders>,
    db: &Database,
    order: OrderPlaced,
    tag: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let audit = OrderAudited {
        customer: order.customer.clone(),
        action: "place_order".into(),
        order_id: order.order_id,
    };
    let id = order.order_id;
    let bus = bus.with_context(
        EventContext::default()
            .with_correlation_id(id.to_string())
            .with_tag(tag),
    );
    let store = EventStore::new(&bus)?;
    let events = Order::default().place(order)?;
    macro_rules! in_tx {
        ($pool:expr) => {{
            let mut tx = $pool.begin().await?;
            store
                .append_in::<Order, _>(&mut tx, &id, ExpectedVersion::NoStream, &events)
                .await?;
            bus.enqueue(&mut tx, &audit).await?;
            tx.commit().await?;
        }};
    }
    match db {
        Database::Postgres(pool) => in_tx!(pool),
        Database::Sqlite(pool) => in_tx!(pool),
        Database::Url(_) => return Err("a built bus has a pool".into()),
    }
    Ok(())
}
