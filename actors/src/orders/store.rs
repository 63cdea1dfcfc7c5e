//! The orders service's tables: the event log (source of truth), the read
//! model by id and by user, idempotency keys, and the outbox.

use bulwark_storage::{EventLog, IdGenerator, Outbox, Store, StoreError, Table};

use super::messages::{Order, OrderEventRecord, OrderStatus, PlaceOrder};
use super::state::{OrderEvent, OrderState};
use crate::common::{EventKind, Page, PageRequest, ShopError, now_ms};

/// Most lines in one order.
pub(crate) const ORDER_LINES_MAX: usize = 100;
/// Most units of one line.
pub(crate) const LINE_QUANTITY_MAX: u64 = 1_000_000;
/// Longest idempotency key, in bytes.
pub(crate) const IDEMPOTENCY_KEY_LEN_MAX: usize = 128;
/// Largest total, in cents: JSON numbers stay exact below 2^53.
const TOTAL_MAX: u64 = (1 << 53) - 1;

fn stream(id: u64) -> String {
    format!("order-{id}")
}

/// FNV-1a over the request's canonical text: the same request always
/// fingerprints the same, across processes and versions.
fn fingerprint(order: &PlaceOrder) -> u64 {
    let mut canonical = format!("{}", order.user_id);
    for item in &order.items {
        canonical.push_str(&format!(
            ";{}:{}:{}",
            item.product_id, item.quantity, item.price_cents
        ));
    }
    canonical
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn validate(order: &PlaceOrder) -> Result<u64, ShopError> {
    if order.user_id == 0 {
        return Err(ShopError::invalid("user_id", "must be a positive id"));
    }
    if order.items.is_empty() || order.items.len() > ORDER_LINES_MAX {
        return Err(ShopError::invalid(
            "items",
            format!("must hold between 1 and {ORDER_LINES_MAX} lines"),
        ));
    }
    let mut total = 0_u64;
    for (i, item) in order.items.iter().enumerate() {
        if item.product_id == 0 {
            return Err(ShopError::invalid(
                &format!("items[{i}].product_id"),
                "must be a positive id",
            ));
        }
        if item.quantity == 0 || item.quantity > LINE_QUANTITY_MAX {
            return Err(ShopError::invalid(
                &format!("items[{i}].quantity"),
                format!("must be between 1 and {LINE_QUANTITY_MAX}"),
            ));
        }
        total = item
            .quantity
            .checked_mul(item.price_cents)
            .and_then(|line| total.checked_add(line))
            .filter(|t| *t <= TOTAL_MAX)
            .ok_or_else(|| ShopError::invalid("items", "the order total is too large"))?;
    }
    if let Some(key) = &order.idempotency_key
        && (key.is_empty()
            || key.len() > IDEMPOTENCY_KEY_LEN_MAX
            || !key.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(ShopError::invalid(
            "Idempotency-Key",
            format!("must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} visible ASCII characters"),
        ));
    }
    Ok(total)
}

/// A new order, validated: a replay of an earlier one, or the id it gets.
#[derive(Debug)]
pub(crate) enum Prepared {
    Replay(Order),
    New { id: u64, total_cents: u64 },
}

/// Why recording events failed.
#[derive(Debug)]
pub(crate) enum RecordError {
    /// Someone else appended first: reload and decide again.
    Conflict,
    Failed(ShopError),
}

/// The orders store.
#[derive(Debug, Clone)]
pub(crate) struct OrdersStore {
    store: Store,
    log: EventLog<OrderEvent>,
    orders: Table<u64, Order>,
    by_user: Table<(u64, u64), ()>,
    idempotency: Table<String, (u64, u64)>,
    ids: IdGenerator,
    pub(crate) outbox: Outbox<EventKind>,
}

impl OrdersStore {
    pub(crate) fn open(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            log: store.event_log("orders")?,
            orders: store.table("orders")?,
            by_user: store.table("orders_by_user")?,
            idempotency: store.table("idempotency_keys")?,
            ids: store.id_generator("orders")?,
            outbox: store.outbox("events")?,
            store,
        })
    }

    /// Records a new order (or finds the one its idempotency key made).
    /// Returns the order and whether it is new.
    pub(crate) async fn place(&self, order: PlaceOrder) -> Result<(Order, bool), ShopError> {
        match self.prepare(&order).await? {
            Prepared::Replay(existing) => Ok((existing, false)),
            Prepared::New { id, total_cents } => self.write_new(order, id, total_cents).await,
        }
    }

    /// Validates a new order and finds its replay, or gives it an id.
    pub(crate) async fn prepare(&self, order: &PlaceOrder) -> Result<Prepared, ShopError> {
        let total_cents = validate(order)?;
        let print = fingerprint(order);
        if let Some(key) = &order.idempotency_key
            && let Some(existing) = self.idempotent(key, print)?
        {
            // The first request's write may not be durable yet: a 2xx for
            // the replay must not come before it is.
            self.store.sync().await?;
            return Ok(Prepared::Replay(existing));
        }
        let id = self.ids.next_id().await?;
        Ok(Prepared::New { id, total_cents })
    }

    /// Writes a prepared new order (or finds the one its idempotency key
    /// made meanwhile). Returns the order and whether it is new.
    pub(crate) async fn write_new(
        &self,
        order: PlaceOrder,
        id: u64,
        total_cents: u64,
    ) -> Result<(Order, bool), ShopError> {
        let print = fingerprint(&order);
        let placed = OrderEvent::Placed {
            user_id: order.user_id,
            items: order.items.clone(),
            total_cents,
            created_at_ms: now_ms(),
        };
        let state = OrderState::fold([&placed]);
        let view = state.view(id);
        self.store
            .write(|tx| {
                if let Some(key) = &order.idempotency_key {
                    match self.idempotency.get_in(tx, key)? {
                        Some((p, _)) if p != print => return Err(reused_key()),
                        Some((_, existing)) => {
                            let order = self
                                .orders
                                .get_in(tx, &existing)?
                                .ok_or_else(|| ShopError::not_found("order", existing))?;
                            return Ok((order, false));
                        }
                        None => self.idempotency.insert(tx, key, &(print, id))?,
                    }
                }
                self.log
                    .append(tx, &stream(id), 0, std::slice::from_ref(&placed))?;
                self.orders.insert(tx, &id, &view)?;
                self.by_user.insert(tx, &(order.user_id, id), &())?;
                Ok((view.clone(), true))
            })
            .await
    }

    fn idempotent(&self, key: &String, print: u64) -> Result<Option<Order>, ShopError> {
        match self.idempotency.get(key)? {
            Some((p, _)) if p != print => Err(reused_key()),
            Some((_, id)) => Ok(Some(self.get(id)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn get(&self, id: u64) -> Result<Order, ShopError> {
        self.orders
            .get(&id)?
            .ok_or_else(|| ShopError::not_found("order", id))
    }

    /// The version of the order's stream (0 for an unknown order): one
    /// read of its head.
    pub(crate) fn version(&self, id: u64) -> Result<u64, ShopError> {
        Ok(self.log.version(&stream(id))?)
    }

    /// The order's state, folded from its whole stream.
    pub(crate) fn load(&self, id: u64) -> Result<OrderState, ShopError> {
        let mut state = OrderState::default();
        for row in self.log.read(&stream(id), 1) {
            let (_, event) = row?;
            state.apply(&event);
        }
        if state.version == 0 {
            return Err(ShopError::not_found("order", id));
        }
        Ok(state)
    }

    /// The order's history: every event of its stream with the status it
    /// left the order in.
    pub(crate) fn events(&self, id: u64) -> Result<Vec<OrderEventRecord>, ShopError> {
        let mut state = OrderState::default();
        let mut records = Vec::new();
        for row in self.log.read(&stream(id), 1) {
            let (_, event) = row?;
            state.apply(&event);
            records.push(OrderEventRecord {
                version: state.version,
                name: event.name().to_owned(),
                reason: event.reason().map(str::to_owned),
                status: state.status(),
            });
        }
        if records.is_empty() {
            return Err(ShopError::not_found("order", id));
        }
        Ok(records)
    }

    /// Appends `events` after `state` (expected version) and updates the
    /// read model and the outbox in the same transaction. Returns the new
    /// state once durable.
    pub(crate) async fn record(
        &self,
        id: u64,
        state: &OrderState,
        events: &[OrderEvent],
    ) -> Result<OrderState, RecordError> {
        let mut next = state.clone();
        for event in events {
            next.apply(event);
        }
        let view = next.view(id);
        let finished = match (&state.outcome, &next.outcome) {
            (None, Some((OrderStatus::Completed, _))) => Some(EventKind::OrderCompleted {
                order_id: id,
                user_id: next.user_id,
                total_cents: next.total_cents,
            }),
            (None, Some((OrderStatus::Cancelled, reason))) => Some(EventKind::OrderCancelled {
                order_id: id,
                user_id: next.user_id,
                reason: reason.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        let result = self
            .store
            .write(|tx| {
                self.log.append(tx, &stream(id), state.version, events)?;
                self.orders.insert(tx, &id, &view)?;
                if let Some(event) = &finished {
                    self.outbox.push(tx, event)?;
                }
                Ok::<_, StoreError>(())
            })
            .await;
        match result {
            Ok(()) => Ok(next),
            Err(StoreError::Conflict { .. }) => Err(RecordError::Conflict),
            Err(other) => Err(RecordError::Failed(other.into())),
        }
    }

    pub(crate) fn list_by_user(
        &self,
        user_id: u64,
        page: PageRequest,
    ) -> Result<Page<Order>, ShopError> {
        Page::collect(
            self.by_user.with_first(&user_id),
            page,
            |((_, order_id), ())| self.get(order_id),
        )
    }

    /// Ids of the orders whose saga has not finished.
    pub(crate) fn pending(&self) -> Result<Vec<u64>, ShopError> {
        let mut ids = Vec::new();
        for row in self.orders.iter() {
            let (id, order) = row?;
            if order.status == OrderStatus::Pending {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

fn reused_key() -> ShopError {
    ShopError::conflict("Idempotency-Key was already used with a different request")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::LineItem;

    fn order(quantity: u64) -> PlaceOrder {
        PlaceOrder {
            user_id: 1,
            items: vec![LineItem {
                product_id: 7,
                quantity,
                price_cents: 250,
            }],
            idempotency_key: Some("k-1".into()),
        }
    }

    #[test]
    fn fingerprints_tell_different_requests_apart() {
        assert_eq!(fingerprint(&order(2)), fingerprint(&order(2)));
        assert_ne!(fingerprint(&order(2)), fingerprint(&order(3)));
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut bad = order(0);
        assert!(
            matches!(validate(&bad), Err(ShopError::Invalid { field, .. }) if field == "items[0].quantity")
        );
        bad = order(1);
        bad.items[0].price_cents = u64::MAX;
        assert!(
            matches!(validate(&bad), Err(ShopError::Invalid { field, .. }) if field == "items")
        );
        bad = order(1);
        bad.idempotency_key = Some("has space".into());
        assert!(
            matches!(validate(&bad), Err(ShopError::Invalid { field, .. }) if field == "Idempotency-Key")
        );
        assert_eq!(validate(&order(4)), Ok(1000));
    }
}
