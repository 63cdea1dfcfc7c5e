//! The seeded workload: concurrent clients creating users and products,
//! placing orders (half with an `Idempotency-Key`, retried with it after an
//! unknown outcome), cancelling some and reading some.
//!
//! Each user places at most one logical order (its attempts share one
//! key), so the checker can tell every order apart by its user: a user
//! with two orders is an operation that took effect twice.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{Answer, Api};
use crate::history::{History, Line, Op, OpKind, Outcome};

/// Attempts of one keyed order while its outcome stays unknown.
pub(crate) const KEYED_ATTEMPTS_MAX: u32 = 3;
/// Products created before the clients start.
pub(crate) const INITIAL_PRODUCTS: usize = 8;
/// Stock of each initial product: enough that most orders of a minute's
/// run find stock, few enough that some run out.
pub(crate) const INITIAL_STOCK: u64 = 2_000;

/// A product the clients may order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known {
    pub(crate) id: u64,
    pub(crate) price_cents: u64,
}

/// The products created so far, shared by the clients.
pub(crate) type Catalog = Arc<Mutex<Vec<Known>>>;

/// One client's state.
pub(crate) struct Client {
    pub(crate) index: usize,
    pub(crate) seed: u64,
    pub(crate) api: Api,
    pub(crate) history: History,
    pub(crate) catalog: Catalog,
    rng: StdRng,
    /// Users created by this client that have not ordered yet.
    fresh_users: Vec<u64>,
    /// Orders this client placed (ok).
    orders: Vec<u64>,
    counter: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// The client's own random stream: the run's seed and its index.
pub(crate) fn client_rng(seed: u64, index: usize) -> StdRng {
    StdRng::seed_from_u64(
        seed ^ (index as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    )
}

impl Client {
    pub(crate) fn new(
        index: usize,
        seed: u64,
        api: Api,
        history: History,
        catalog: Catalog,
    ) -> Self {
        Self {
            index,
            seed,
            api,
            history,
            catalog,
            rng: client_rng(seed, index),
            fresh_users: Vec::new(),
            orders: Vec::new(),
            counter: 0,
        }
    }

    /// Runs operations until `until`.
    pub(crate) async fn run(mut self, until: Instant) {
        while Instant::now() < until {
            let roll = self.rng.random_range(0..100);
            match roll {
                0..15 => {
                    self.create_user().await;
                }
                15..20 => self.create_product().await,
                20..75 => self.place_order().await,
                75..88 => self.cancel_order().await,
                _ => self.read_order().await,
            }
        }
    }

    fn edge(&mut self) -> usize {
        self.rng.random_range(0..self.api.edges().max(1))
    }

    /// Sends `request`, records the operation, returns the answer.
    async fn op(&self, kind: OpKind, request: reqwest::RequestBuilder) -> Answer {
        let invoke_ms = self.history.now_ms();
        let answer = Api::send(request).await;
        self.history.push(Op {
            client: self.index,
            kind,
            invoke_ms,
            complete_ms: self.history.now_ms(),
            outcome: answer.outcome,
            status: answer.status,
            body: answer.body.clone(),
        });
        answer
    }

    async fn create_user(&mut self) -> Option<u64> {
        self.counter += 1;
        let username = format!("s{}c{}u{}", self.seed, self.index, self.counter);
        let edge = self.edge();
        let request = self
            .api
            .request(edge, Method::POST, "/api/v1/users")
            .json(&json!({"username": username, "email": format!("{username}@chaos.test")}));
        let answer = self.op(OpKind::CreateUser { username }, request).await;
        let id = (answer.outcome == Outcome::Ok)
            .then(|| answer.body["id"].as_u64())
            .flatten()?;
        self.fresh_users.push(id);
        Some(id)
    }

    async fn create_product(&mut self) {
        let quantity = self.rng.random_range(50..=500);
        let price_cents = self.rng.random_range(100..=999);
        let edge = self.edge();
        self.counter += 1;
        let request = self
            .api
            .request(edge, Method::POST, "/api/v1/products")
            .json(&json!({
                "name": format!("s{}c{}p{}", self.seed, self.index, self.counter),
                "price": price(price_cents),
                "quantity": quantity,
            }));
        let answer = self
            .op(
                OpKind::CreateProduct {
                    quantity,
                    price_cents,
                },
                request,
            )
            .await;
        if let (Outcome::Ok, Some(id)) = (answer.outcome, answer.body["id"].as_u64()) {
            self.catalog
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Known { id, price_cents });
        }
    }

    async fn place_order(&mut self) {
        let user_id = match self.fresh_users.pop() {
            Some(id) => id,
            None => match self.create_user().await {
                Some(_) => match self.fresh_users.pop() {
                    Some(id) => id,
                    None => return,
                },
                None => return,
            },
        };
        let catalog = self
            .catalog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if catalog.is_empty() {
            return;
        }
        let line_count = self.rng.random_range(1..=3);
        let mut lines: Vec<Line> = Vec::new();
        for _ in 0..line_count {
            let product = catalog[self.rng.random_range(0..catalog.len())];
            if lines.iter().any(|l| l.product_id == product.id) {
                continue;
            }
            lines.push(Line {
                product_id: product.id,
                quantity: self.rng.random_range(1..=3),
                price_cents: product.price_cents,
            });
        }
        self.counter += 1;
        let key = self
            .rng
            .random_bool(0.5)
            .then(|| format!("chaos-{}-{}-{}", self.seed, self.index, self.counter));
        let body = json!({
            "user_id": user_id,
            "items": lines.iter().map(|l| json!({
                "product_id": l.product_id,
                "quantity": l.quantity,
                "price": price(l.price_cents),
            })).collect::<Vec<Value>>(),
        });
        let attempts = if key.is_some() { KEYED_ATTEMPTS_MAX } else { 1 };
        for attempt in 1..=attempts {
            let edge = self.edge();
            let mut request = self
                .api
                .request(edge, Method::POST, "/api/v1/orders")
                .json(&body);
            if let Some(key) = &key {
                request = request.header("idempotency-key", key);
            }
            let kind = OpKind::PlaceOrder {
                user_id,
                lines: lines.clone(),
                key: key.clone(),
                attempt,
            };
            let answer = self.op(kind, request).await;
            match answer.outcome {
                Outcome::Ok => {
                    if let Some(id) = answer.body["id"].as_u64() {
                        self.orders.push(id);
                    }
                    return;
                }
                Outcome::Fail => return,
                // Unknown: a keyed order is retried with its key after a
                // pause (a client backing off after a timeout).
                Outcome::Info => {
                    tokio::time::sleep(Duration::from_millis(self.rng.random_range(10..=100)))
                        .await;
                }
            }
        }
    }

    async fn cancel_order(&mut self) {
        if self.orders.is_empty() {
            return;
        }
        let order_id = self.orders[self.rng.random_range(0..self.orders.len())];
        let edge = self.edge();
        let request = self.api.request(
            edge,
            Method::POST,
            &format!("/api/v1/orders/{order_id}/cancel"),
        );
        self.op(OpKind::CancelOrder { order_id }, request).await;
    }

    async fn read_order(&mut self) {
        if self.orders.is_empty() {
            return;
        }
        let order_id = self.orders[self.rng.random_range(0..self.orders.len())];
        let edge = self.edge();
        let request = self
            .api
            .request(edge, Method::GET, &format!("/api/v1/orders/{order_id}"));
        self.op(OpKind::ReadOrder { order_id }, request).await;
    }
}

/// Cents as the API's decimal number.
pub(crate) fn price(cents: u64) -> Value {
    // Two decimals, exactly: serde_json prints the shortest form that
    // round-trips, which the edge reads back as these cents.
    let text = format!("{}.{:02}", cents / 100, cents % 100);
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Creates the initial products through edge 0, retrying each until it is
/// created (the nemesis has not started yet).
pub(crate) async fn setup(
    api: &Api,
    history: &History,
    catalog: &Catalog,
    seed: u64,
    deadline: Instant,
) -> Result<(), String> {
    let mut rng = client_rng(seed, usize::MAX);
    for n in 0..INITIAL_PRODUCTS {
        let price_cents = rng.random_range(100..=999);
        loop {
            let invoke_ms = history.now_ms();
            let request = api
                .request(0, Method::POST, "/api/v1/products")
                .json(&json!({
                    "name": format!("s{seed}-initial-{n}"),
                    "price": price(price_cents),
                    "quantity": INITIAL_STOCK,
                }));
            let answer = Api::send(request).await;
            history.push(Op {
                client: usize::MAX,
                kind: OpKind::CreateProduct {
                    quantity: INITIAL_STOCK,
                    price_cents,
                },
                invoke_ms,
                complete_ms: history.now_ms(),
                outcome: answer.outcome,
                status: answer.status,
                body: answer.body.clone(),
            });
            if let (Outcome::Ok, Some(id)) = (answer.outcome, answer.body["id"].as_u64()) {
                catalog
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Known { id, price_cents });
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "cannot create the initial products: {}",
                    answer.body
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
