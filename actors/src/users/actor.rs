//! The users service's request logic, run by the shared entry actor.

use std::sync::Arc;

use bulwark_runtime::{CallError, Router};
use dashmap::DashMap;
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::task::TaskTracker;

use super::Users;
use super::messages::{UsersRequest, UsersResponse};
use super::shards::{UserShards, call_users, fnv1a};
use super::store::UsersStore;
use crate::common::ShopError;
use crate::entry::{EntryActor, Handler};
use crate::worker::Kick;

/// The users entry actor.
pub(crate) type UsersActor = EntryActor<UsersState>;

/// Lock stripes for claims: bounded memory whatever the number of values.
const CLAIM_LOCK_STRIPES: u64 = 64;

/// What outlives the entry actor's restarts: the claims this shard is
/// writing users with, and the per-value claim locks. A restarted actor
/// must still see a write its predecessor's task is finishing.
#[derive(Debug, Clone)]
pub(crate) struct ShardState {
    /// This shard's index and the split.
    pub(crate) shards: UserShards,
    pub(crate) shard: u32,
    /// (claim key, user id) of writes in progress on this shard.
    pending: Arc<DashMap<(String, u64), ()>>,
    /// Claims on one value are decided one at a time.
    locks: Arc<[Mutex<()>]>,
}

impl ShardState {
    pub(crate) fn new(shards: UserShards, shard: u32) -> Self {
        Self {
            shards,
            shard,
            pending: Arc::default(),
            locks: (0..CLAIM_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let stripe = usize::try_from(fnv1a(key.as_bytes()) % CLAIM_LOCK_STRIPES).unwrap_or(0);
        self.locks[stripe].lock().await
    }
}

/// Marks claims as being written until dropped (after the write).
struct Pending {
    map: Arc<DashMap<(String, u64), ()>>,
    entries: Vec<(String, u64)>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        for entry in &self.entries {
            self.map.remove(entry);
        }
    }
}

/// What each request's task works with.
#[derive(Debug, Clone)]
pub(crate) struct UsersState {
    pub(crate) tasks: TaskTracker,
    pub(crate) store: UsersStore,
    pub(crate) kick: Kick,
    pub(crate) router: Router,
    pub(crate) shard: ShardState,
}

/// The claim key of a unique value.
fn claim_key(field: &str, value: &str) -> String {
    format!("{field}:{}", value.to_lowercase())
}

impl UsersState {
    /// With several shards: claims each value for user `id` on the shard
    /// that owns it, and marks the claims pending until the returned guard
    /// drops (after the local write). One shard: nothing to claim.
    async fn claim_all(
        &self,
        id: u64,
        keys: impl IntoIterator<Item = String>,
    ) -> Result<Pending, ShopError> {
        let map = Arc::clone(&self.shard.pending);
        if !self.shard.shards.is_sharded() {
            return Ok(Pending {
                map,
                entries: Vec::new(),
            });
        }
        let entries: Vec<(String, u64)> = keys.into_iter().map(|key| (key, id)).collect();
        for entry in &entries {
            map.insert(entry.clone(), ());
        }
        let pending = Pending { map, entries };
        for (key, _) in &pending.entries {
            let request = UsersRequest::Claim {
                key: key.clone(),
                user_id: id,
            };
            self.call(request).await?;
        }
        Ok(pending)
    }

    /// Calls another shard (or this one) through the router.
    async fn call(&self, request: UsersRequest) -> Result<UsersResponse, ShopError> {
        call_users(
            &self.router,
            self.shard.shards,
            self.router.context(),
            request,
        )
        .await
        .map_err(|err| match err {
            CallError::Service { error, .. } => error,
            other => ShopError::Transient {
                reason: format!("a users shard could not be asked: {other}"),
            },
        })
    }

    /// Records claim `key` for `user_id` unless another user holds it.
    async fn claim(&self, key: String, user_id: u64) -> Result<UsersResponse, ShopError> {
        let _lock = self.shard.lock(&key).await;
        if let Some(holder) = self.store.claim_holder(&key)?
            && holder != user_id
        {
            let held = self
                .call(UsersRequest::Holds {
                    key: key.clone(),
                    user_id: holder,
                })
                .await?;
            if held == UsersResponse::Holds(true) {
                let field = key.split_once(':').map_or("value", |(field, _)| field);
                return Err(ShopError::conflict(format!("{field} is already taken")));
            }
        }
        self.store.record_claim(&key, user_id).await?;
        Ok(UsersResponse::Claimed)
    }
}

impl Handler for UsersState {
    fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    type Service = Users;

    async fn serve(&self, request: UsersRequest) -> Result<UsersResponse, ShopError> {
        match request {
            UsersRequest::Create(new) => {
                let (username, email) = UsersStore::check_new(&new)?;
                let shard = &self.shard;
                let id = self
                    .store
                    .next_id(|id| shard.shards.of_id(id) == shard.shard)
                    .await?;
                // Lazy: the keys are only made when users is sharded.
                let keys = [("username", &username), ("email", &email)]
                    .into_iter()
                    .map(|(field, value)| claim_key(field, value));
                let pending = self.claim_all(id, keys).await?;
                let user = self.store.create(id, username, email).await?;
                drop(pending);
                self.kick.kick();
                Ok(UsersResponse::User(user))
            }
            UsersRequest::Get(id) => self.store.get(id).map(UsersResponse::User),
            UsersRequest::List(page) => self.store.list(page).map(UsersResponse::Page),
            UsersRequest::Head { limit } => self.store.head(limit).map(UsersResponse::Page),
            UsersRequest::Update { id, patch } => {
                let (username, email) = UsersStore::check_patch(&patch)?;
                let keys = username
                    .iter()
                    .map(|u| claim_key("username", u))
                    .chain(email.iter().map(|e| claim_key("email", e)));
                let pending = self.claim_all(id, keys).await?;
                let user = self.store.update(id, username, email).await;
                drop(pending);
                user.map(UsersResponse::User)
            }
            UsersRequest::Delete(id) => {
                self.store.delete(id).await?;
                self.kick.kick();
                Ok(UsersResponse::Deleted)
            }
            UsersRequest::Claim { key, user_id } => self.claim(key, user_id).await,
            UsersRequest::Holds { key, user_id } => {
                let pending = self.shard.pending.contains_key(&(key.clone(), user_id));
                Ok(UsersResponse::Holds(
                    pending || self.store.has_value(user_id, &key)?,
                ))
            }
            UsersRequest::PendingEvents => Ok(UsersResponse::PendingEvents(
                self.store.outbox.pending_len()?,
            )),
        }
    }
}
