//! Baseline for `bench/http.sh`: two bare axum handlers doing the same durable
//! write as `POST /api/v1/users` (a user row, its two unique-index claims and
//! an outbox entry, in one store write) without actors or the router:
//!
//! - `POST /bare/group/users` — concurrent requests share fsyncs (group commit);
//! - `POST /bare/fsync/users` — requests are serialized, so each one pays its
//!   own flush + fsync;
//! - `POST /bare/pipeline/users` — the group-commit handler on stores of its own,
//!   plus the event pipeline's storage work that `POST /api/v1/users` causes: a
//!   task kicked after each write drains the outbox (up to 128 entries, after a
//!   10 ms linger, as the relay does), records one notification per event in a
//!   second store in one write with a per-source mark, and confirms (removes) the
//!   entries. This is the work the actor path cannot avoid, without the runtime;
//!   the actor path's ratio to it is the runtime's own cost.
//!
//! Run: `BARE_ADDR=127.0.0.1:18081 BARE_DATA_DIR=/tmp/bare cargo run --release -p bulwark-http --example bare`

#![allow(clippy::unwrap_used)] // a benchmark fixture: failing loudly is the point

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bulwark_storage::{IdGenerator, Outbox, Store, StoreConfig, StoreError, Table, UniqueIndex};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};

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

/// The outbox event of a new user (as the shop's `user.created`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Created {
    user_id: u64,
    username: String,
}

/// A notification as the shop's notifications service stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Note {
    id: u64,
    user_id: u64,
    kind: String,
    order_id: Option<u64>,
    message: String,
    event_id: String,
    created_at_ms: u64,
}

#[derive(Clone)]
struct Bare {
    store: Store,
    users: Table<u64, User>,
    by_username: UniqueIndex<String>,
    by_email: UniqueIndex<String>,
    outbox: Outbox<Created>,
    ids: IdGenerator,
    /// Wakes the pipeline's relay after each write (pipeline stores only).
    kick: Option<Arc<Notify>>,
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
                self.outbox.push(
                    tx,
                    &Created {
                        user_id: id,
                        username: user.username.clone(),
                    },
                )?;
                Ok::<_, StoreError>(())
            })
            .await?;
        if let Some(kick) = &self.kick {
            kick.notify_one();
        }
        Ok(user)
    }

    fn open(dir: &str, kick: Option<Arc<Notify>>) -> Self {
        let store = Store::open(dir, StoreConfig::default()).unwrap();
        Self {
            users: store.table("users").unwrap(),
            by_username: store.unique_index("users_by_username").unwrap(),
            by_email: store.unique_index("users_by_email").unwrap(),
            outbox: store.outbox("events").unwrap(),
            ids: store.id_generator("users").unwrap(),
            store,
            kick,
            one_at_a_time: Arc::new(Mutex::new(())),
        }
    }
}

/// The notifications side of the pipeline: a store of its own.
struct Notes {
    store: Store,
    notes: Table<(u64, u64), Note>,
    applied: Table<String, u64>,
    ids: IdGenerator,
}

impl Notes {
    /// One notification per entry and the source's mark, in one durable write.
    async fn apply(&self, entries: &[bulwark_storage::OutboxEntry<Created>]) {
        let mut notes = Vec::with_capacity(entries.len());
        for entry in entries {
            notes.push(Note {
                id: self.ids.next_id().await.unwrap(),
                user_id: entry.event.user_id,
                kind: "user.created".to_owned(),
                order_id: None,
                message: format!("Welcome, {}!", entry.event.username),
                event_id: format!("users:{}", entry.seq),
                created_at_ms: u64::try_from(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_millis(),
                )
                .unwrap(),
            });
        }
        let mark = entries.last().map_or(0, |entry| entry.seq);
        self.store
            .write(|tx| {
                let source = "users".to_owned();
                if self.applied.get_in(tx, &source)?.unwrap_or(0) >= mark {
                    return Ok(());
                }
                for note in &notes {
                    self.notes.insert(tx, &(note.user_id, note.id), note)?;
                }
                self.applied.insert(tx, &source, &mark)?;
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }
}

/// The relay of the pipeline: outbox → notifications → confirm.
async fn relay(outbox: Outbox<Created>, notes: Notes, kick: Arc<Notify>) {
    const BATCH_LEN_MAX: usize = 128;
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(250), kick.notified()).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        loop {
            let entries = outbox.drain(BATCH_LEN_MAX).await.unwrap();
            if entries.is_empty() {
                break;
            }
            notes.apply(&entries).await;
            let seqs: Vec<u64> = entries.iter().map(|entry| entry.seq).collect();
            outbox.confirm(&seqs).await.unwrap();
            if entries.len() < BATCH_LEN_MAX {
                break;
            }
        }
    }
}

async fn group(State(bare): State<Bare>, Json(new): Json<NewUser>) -> (StatusCode, Json<User>) {
    let user = bare.write(new).await.unwrap();
    (StatusCode::CREATED, Json(user))
}

/// How many events the pipeline's outbox still holds (0 once it caught up).
async fn pending(State(bare): State<Bare>) -> String {
    bare.outbox.pending_len().unwrap().to_string()
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
    let bare = Bare::open(&format!("{dir}/users"), None);
    let kick = Arc::new(Notify::new());
    let piped = Bare::open(&format!("{dir}/pipeline-users"), Some(kick.clone()));
    let notes_store = Store::open(
        format!("{dir}/pipeline-notifications"),
        StoreConfig::default(),
    )
    .unwrap();
    let notes = Notes {
        notes: notes_store.table("notifications").unwrap(),
        applied: notes_store.table("events_applied").unwrap(),
        ids: notes_store.id_generator("notifications").unwrap(),
        store: notes_store,
    };
    tokio::spawn(relay(piped.outbox.clone(), notes, kick));
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/bare/group/users", post(group))
        .route("/bare/fsync/users", post(fsync_each))
        .with_state(bare)
        .merge(
            Router::new()
                .route("/bare/pipeline/users", post(group))
                .route("/bare/pipeline/pending", get(pending))
                .with_state(piped),
        );
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
