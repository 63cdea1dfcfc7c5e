//! Baseline for `bench/http.sh`: two bare axum handlers doing the same durable
//! write as `POST /api/v1/users` (a user row, its two unique-index claims and
//! an outbox entry, in one store write) without actors or the router:
//!
//! - `POST /bare/group/users` — concurrent requests share fsyncs (group commit);
//! - `POST /bare/fsync/users` — requests are serialized, so each one pays its
//!   own flush + fsync.
//!
//! Run: `BARE_ADDR=127.0.0.1:18081 BARE_DATA_DIR=/tmp/bare cargo run --release -p bulwark-http --example bare`

#![allow(clippy::unwrap_used)] // a benchmark fixture: failing loudly is the point

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bulwark_storage::{IdGenerator, Outbox, Store, StoreConfig, StoreError, Table, UniqueIndex};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

#[derive(Debug, Clone, Deserialize)]
struct NewUser {
    username: String,
    email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    username: String,
    email: String,
}

#[derive(Clone)]
struct Bare {
    store: Store,
    users: Table<u64, User>,
    by_username: UniqueIndex<String>,
    by_email: UniqueIndex<String>,
    outbox: Outbox<String>,
    ids: IdGenerator,
    /// Held across the whole write by the fsync-per-request handler.
    one_at_a_time: Arc<Mutex<()>>,
}

impl Bare {
    async fn write(&self, new: NewUser) -> Result<User, StoreError> {
        let id = self.ids.next_id().await?;
        let user = User {
            id,
            username: new.username,
            email: new.email,
        };
        self.store
            .write(|tx| {
                self.by_username
                    .claim(tx, &user.username.to_lowercase(), id)?;
                self.by_email.claim(tx, &user.email.to_lowercase(), id)?;
                self.users.insert(tx, &id, &user)?;
                self.outbox.push(tx, &format!("user.created {id}"))?;
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok(user)
    }
}

async fn group(State(bare): State<Bare>, Json(new): Json<NewUser>) -> (StatusCode, Json<User>) {
    let user = bare.write(new).await.unwrap();
    (StatusCode::CREATED, Json(user))
}

async fn fsync_each(
    State(bare): State<Bare>,
    Json(new): Json<NewUser>,
) -> (StatusCode, Json<User>) {
    let _alone = bare.one_at_a_time.lock().await;
    let user = bare.write(new).await.unwrap();
    (StatusCode::CREATED, Json(user))
}

/// The allocator the `bulwark` binary uses, so the comparison is of the
/// request paths, not of allocators.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let addr = std::env::var("BARE_ADDR").unwrap_or_else(|_| "127.0.0.1:18081".to_owned());
    let dir = std::env::var("BARE_DATA_DIR").unwrap_or_else(|_| "./data-bare".to_owned());
    let store = Store::open(&dir, StoreConfig::default()).unwrap();
    let bare = Bare {
        users: store.table("users").unwrap(),
        by_username: store.unique_index("users_by_username").unwrap(),
        by_email: store.unique_index("users_by_email").unwrap(),
        outbox: store.outbox("events").unwrap(),
        ids: store.id_generator("users").unwrap(),
        store,
        one_at_a_time: Arc::new(Mutex::new(())),
    };
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/bare/group/users", post(group))
        .route("/bare/fsync/users", post(fsync_each))
        .with_state(bare);
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
