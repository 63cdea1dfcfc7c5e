//! The products service's tables: products (with the stock they hold for
//! open reservations) and reservations by order id.

use std::collections::BTreeMap;

use bulwark_storage::{IdGenerator, Outbox, Store, StoreError, Table, Tx};
use serde::{Deserialize, Serialize};

use super::messages::{NewProduct, Product, ProductPatch, ReservationState};
use crate::common::{EventKind, LineItem, Page, PageRequest, ShopError, check_text, money, now_ms};

/// Stock at or below which a `stock.low` event is emitted (once, when the
/// stock crosses it).
pub(crate) const STOCK_LOW_MARK: u64 = 5;
/// Largest price or quantity accepted: JSON numbers stay exact below 2^53.
pub(crate) const AMOUNT_MAX: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProductRow {
    product: Product,
    /// Units held by reservations not yet committed or released.
    reserved: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reservation {
    /// Units per product.
    lines: BTreeMap<u64, u64>,
    state: ReservationState,
}

/// The products store.
#[derive(Debug, Clone)]
pub(crate) struct ProductsStore {
    store: Store,
    products: Table<u64, ProductRow>,
    reservations: Table<u64, Reservation>,
    ids: IdGenerator,
    pub(crate) outbox: Outbox<EventKind>,
}

fn check_amount(field: &str, value: u64) -> Result<u64, ShopError> {
    if value > AMOUNT_MAX {
        let max = if field == "price" {
            money(AMOUNT_MAX)
        } else {
            AMOUNT_MAX.to_string()
        };
        return Err(ShopError::invalid(field, format!("must be at most {max}")));
    }
    Ok(value)
}

impl ProductsStore {
    pub(crate) fn open(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            products: store.table("products")?,
            reservations: store.table("reservations")?,
            ids: store.id_generator("products")?,
            outbox: store.outbox("events")?,
            store,
        })
    }

    pub(crate) async fn create(&self, new: NewProduct) -> Result<Product, ShopError> {
        let name = check_text("name", &new.name)?;
        let price_cents = check_amount("price", new.price_cents)?;
        let quantity = check_amount("quantity", new.quantity)?;
        let id = self.ids.next_id().await?;
        let product = Product {
            id,
            name,
            price_cents,
            quantity,
            created_at_ms: now_ms(),
            version: 1,
        };
        let row = ProductRow {
            product: product.clone(),
            reserved: 0,
        };
        self.store
            .write(|tx| self.products.insert(tx, &id, &row))
            .await?;
        Ok(product)
    }

    pub(crate) fn get(&self, id: u64) -> Result<Product, ShopError> {
        self.products
            .get(&id)?
            .map(|row| row.product)
            .ok_or_else(|| ShopError::not_found("product", id))
    }

    pub(crate) fn list(&self, page: PageRequest) -> Result<Page<Product>, ShopError> {
        Page::collect(self.products.iter(), page, |(_, row)| Ok(row.product))
    }

    pub(crate) async fn update(&self, id: u64, patch: ProductPatch) -> Result<Product, ShopError> {
        let name = patch
            .name
            .as_deref()
            .map(|n| check_text("name", n))
            .transpose()?;
        let price = patch
            .price_cents
            .map(|p| check_amount("price", p))
            .transpose()?;
        let quantity = patch
            .quantity
            .map(|q| check_amount("quantity", q))
            .transpose()?;
        self.store
            .write(|tx| {
                let mut row = self.row(tx, id)?;
                let before = row.product.clone();
                if let Some(name) = &name {
                    row.product.name.clone_from(name);
                }
                if let Some(price) = price {
                    row.product.price_cents = price;
                }
                if let Some(quantity) = quantity {
                    row.product.quantity = quantity;
                }
                // Nothing changed: no write, no new version (the empty
                // write still waits until what it read is durable).
                if row.product == before {
                    return Ok(row.product);
                }
                row.product.version += 1;
                self.products.insert(tx, &id, &row)?;
                Ok::<_, ShopError>(row.product)
            })
            .await
    }

    pub(crate) async fn delete(&self, id: u64) -> Result<(), ShopError> {
        self.store
            .write(|tx| {
                let row = self.row(tx, id)?;
                if row.reserved > 0 {
                    return Err(ShopError::conflict(format!(
                        "product {id} has {} units reserved by open orders",
                        row.reserved
                    )));
                }
                self.products.remove(tx, &id)?;
                Ok(())
            })
            .await
    }

    fn row(&self, tx: &Tx<'_>, id: u64) -> Result<ProductRow, ShopError> {
        self.products
            .get_in(tx, &id)?
            .ok_or_else(|| ShopError::not_found("product", id))
    }

    /// Holds stock for every line, all or nothing. Idempotent by order id.
    pub(crate) async fn reserve(
        &self,
        order_id: u64,
        items: &[LineItem],
    ) -> Result<ReservationState, ShopError> {
        let mut lines: BTreeMap<u64, u64> = BTreeMap::new();
        for item in items {
            let line = lines.entry(item.product_id).or_default();
            *line = line
                .checked_add(item.quantity)
                .ok_or_else(|| ShopError::invalid("quantity", "too large"))?;
        }
        self.store
            .write(|tx| {
                if let Some(existing) = self.reservations.get_in(tx, &order_id)? {
                    return match existing.state {
                        ReservationState::Released => Err(ShopError::rejected(format!(
                            "order {order_id} was already cancelled"
                        ))),
                        state => Ok(state),
                    };
                }
                let mut rows = Vec::with_capacity(lines.len());
                for (&product_id, &quantity) in &lines {
                    let Some(row) = self.products.get_in(tx, &product_id)? else {
                        return Err(ShopError::rejected(format!(
                            "product {product_id} does not exist"
                        )));
                    };
                    if let Some(item) = items.iter().find(|i| {
                        i.product_id == product_id && i.price_cents != row.product.price_cents
                    }) {
                        return Err(ShopError::rejected(format!(
                            "price of product {product_id} is {}, not {}",
                            money(row.product.price_cents),
                            money(item.price_cents)
                        )));
                    }
                    if row.product.quantity < quantity {
                        return Err(ShopError::rejected(format!(
                            "product {product_id} is out of stock ({} left, {quantity} wanted)",
                            row.product.quantity
                        )));
                    }
                    rows.push((product_id, quantity, row));
                }
                for (product_id, quantity, mut row) in rows {
                    let before = row.product.quantity;
                    row.product.quantity -= quantity;
                    row.reserved += quantity;
                    row.product.version += 1;
                    if before > STOCK_LOW_MARK && row.product.quantity <= STOCK_LOW_MARK {
                        self.outbox.push(
                            tx,
                            &EventKind::StockLow {
                                product_id,
                                quantity: row.product.quantity,
                            },
                        )?;
                    }
                    self.products.insert(tx, &product_id, &row)?;
                }
                self.reservations.insert(
                    tx,
                    &order_id,
                    &Reservation {
                        lines: lines.clone(),
                        state: ReservationState::Reserved,
                    },
                )?;
                Ok(ReservationState::Reserved)
            })
            .await
    }

    /// Gives a reservation's stock back. Idempotent; an unknown order is
    /// recorded as released so that a late reserve for it is refused.
    pub(crate) async fn release(&self, order_id: u64) -> Result<ReservationState, ShopError> {
        self.store
            .write(|tx| {
                let Some(mut reservation) = self.reservations.get_in(tx, &order_id)? else {
                    self.reservations.insert(
                        tx,
                        &order_id,
                        &Reservation {
                            lines: BTreeMap::new(),
                            state: ReservationState::Released,
                        },
                    )?;
                    return Ok(ReservationState::Released);
                };
                match reservation.state {
                    ReservationState::Released => return Ok(ReservationState::Released),
                    ReservationState::Committed => {
                        return Err(ShopError::conflict(format!(
                            "order {order_id}'s stock is already committed"
                        )));
                    }
                    ReservationState::Reserved => {}
                }
                for (&product_id, &quantity) in &reservation.lines {
                    if let Some(mut row) = self.products.get_in(tx, &product_id)? {
                        row.product.quantity += quantity;
                        row.reserved = row.reserved.saturating_sub(quantity);
                        row.product.version += 1;
                        self.products.insert(tx, &product_id, &row)?;
                    }
                }
                reservation.state = ReservationState::Released;
                self.reservations.insert(tx, &order_id, &reservation)?;
                Ok(ReservationState::Released)
            })
            .await
    }

    /// Makes a reservation final. Idempotent.
    pub(crate) async fn commit(&self, order_id: u64) -> Result<ReservationState, ShopError> {
        self.store
            .write(|tx| {
                let Some(mut reservation) = self.reservations.get_in(tx, &order_id)? else {
                    return Err(ShopError::conflict(format!(
                        "order {order_id} has no reservation"
                    )));
                };
                match reservation.state {
                    ReservationState::Committed => return Ok(ReservationState::Committed),
                    ReservationState::Released => {
                        return Err(ShopError::conflict(format!(
                            "order {order_id}'s reservation was released"
                        )));
                    }
                    ReservationState::Reserved => {}
                }
                for (&product_id, &quantity) in &reservation.lines {
                    if let Some(mut row) = self.products.get_in(tx, &product_id)? {
                        row.reserved = row.reserved.saturating_sub(quantity);
                        self.products.insert(tx, &product_id, &row)?;
                    }
                }
                reservation.state = ReservationState::Committed;
                self.reservations.insert(tx, &order_id, &reservation)?;
                Ok(ReservationState::Committed)
            })
            .await
    }
}
