//! The history of a run, as Jepsen records one: every operation's invocation
//! and completion, the completion being `ok` (it took effect), `fail` (a
//! definite error: it did not) or `info` (unknown: a timeout, a lost
//! connection, a 5xx that may have been applied).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::Value;

/// How an operation completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect (a 2xx).
    Ok,
    /// It did not take effect: a 4xx, a refused connection, a load shed.
    Fail,
    /// Unknown: it may or may not have taken effect (timeout, 5xx, a
    /// connection lost mid-request).
    Info,
}

impl Outcome {
    /// `ok`, `fail` or `info`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "fail",
            Self::Info => "info",
        }
    }
}

/// One line of an order as the workload sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// The product.
    pub product_id: u64,
    /// Units.
    pub quantity: u64,
    /// Unit price in cents.
    pub price_cents: u64,
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// `POST /api/v1/users`.
    CreateUser {
        /// The username sent (unique in the run).
        username: String,
    },
    /// `POST /api/v1/products`.
    CreateProduct {
        /// Initial stock.
        quantity: u64,
        /// Unit price in cents.
        price_cents: u64,
    },
    /// `POST /api/v1/orders`, one attempt.
    PlaceOrder {
        /// The user (each user places at most one logical order).
        user_id: u64,
        /// The lines.
        lines: Vec<Line>,
        /// The `Idempotency-Key`, when sent; retries reuse it.
        key: Option<String>,
        /// 1 for the first attempt, then 2, 3, ...
        attempt: u32,
    },
    /// `POST /api/v1/orders/{id}/cancel`.
    CancelOrder {
        /// The order.
        order_id: u64,
    },
    /// `GET /api/v1/orders/{id}`.
    ReadOrder {
        /// The order.
        order_id: u64,
    },
}

impl OpKind {
    /// A short name: `create-user`, `create-product`, `place-order`,
    /// `cancel-order`, `read-order`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::CreateUser { .. } => "create-user",
            Self::CreateProduct { .. } => "create-product",
            Self::PlaceOrder { .. } => "place-order",
            Self::CancelOrder { .. } => "cancel-order",
            Self::ReadOrder { .. } => "read-order",
        }
    }
}

/// One completed operation.
#[derive(Debug, Clone)]
pub struct Op {
    /// The client that ran it.
    pub client: usize,
    /// What it did.
    pub kind: OpKind,
    /// When it was invoked, ms since the run started.
    pub invoke_ms: u64,
    /// When it completed, ms since the run started.
    pub complete_ms: u64,
    /// How it completed.
    pub outcome: Outcome,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The answer's JSON body (the created resource, the problem), or the
    /// transport error's text.
    pub body: Value,
}

impl Op {
    /// The `id` of the answer's body, for an `ok` create.
    #[must_use]
    pub fn id(&self) -> Option<u64> {
        (self.outcome == Outcome::Ok)
            .then(|| self.body["id"].as_u64())
            .flatten()
    }
}

/// A run's history, appended to by every client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct History {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// An empty history starting now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            ops: Arc::default(),
        }
    }

    /// Milliseconds since the history started.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a completed operation.
    pub fn push(&self, op: Op) {
        self.ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(op);
    }

    /// Every operation so far, in completion order.
    #[must_use]
    pub fn ops(&self) -> Vec<Op> {
        self.ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
