//! The users service: users with unique usernames and emails.

mod actor;
pub(crate) mod messages;
pub(crate) mod shards;
mod store;

use bulwark_runtime::{Service, ServiceContext, ServiceTree, Strategy};
use bulwark_storage::{Store, StoreError};

use crate::common::ShopError;
use crate::relay::with_relay_as;
use crate::worker::Kick;
use actor::{ShardState, UsersActor, UsersState};
use messages::{UsersRequest, UsersResponse};
use shards::UserShards;
use store::UsersStore;

/// The users service (one instance, or one shard of several). Holds its
/// open store and its shard state, which outlive actor restarts.
#[derive(Debug)]
pub struct Users {
    store: UsersStore,
    kick: Kick,
    shard: ShardState,
}

impl Users {
    /// The service on an open store, unsharded.
    ///
    /// # Errors
    /// A [`StoreError`] when the store's tables cannot be opened.
    pub fn new(store: Store) -> Result<Self, StoreError> {
        Self::shard(store, UserShards::SINGLE, 0)
    }

    /// Shard `shard` of `shards` on an open store; run it under the name
    /// `shards.instance(shard)`.
    ///
    /// # Errors
    /// A [`StoreError`] when the store's tables cannot be opened.
    pub fn shard(store: Store, shards: UserShards, shard: u32) -> Result<Self, StoreError> {
        Ok(Self {
            store: UsersStore::open(store)?,
            kick: Kick::default(),
            shard: ShardState::new(shards, shard),
        })
    }
}

impl Service for Users {
    const NAME: &'static str = "users";
    type Request = UsersRequest;
    type Response = UsersResponse;
    type Error = ShopError;

    /// Reads are retried after a crash of the serving actor.
    fn idempotent_copy(request: &UsersRequest) -> Option<UsersRequest> {
        matches!(
            request,
            UsersRequest::Get(_)
                | UsersRequest::List(_)
                | UsersRequest::Head { .. }
                | UsersRequest::Holds { .. }
                | UsersRequest::PendingEvents
        )
        .then(|| request.clone())
    }

    fn tree(&self, ctx: &ServiceContext) -> ServiceTree<Self> {
        let state = UsersState {
            store: self.store.clone(),
            kick: self.kick.clone(),
            tasks: ctx.tasks.clone(),
            router: ctx.router.clone(),
            shard: self.shard.clone(),
        };
        let tree = ServiceTree::new(Strategy::OneForOne)
            .entry("entry", move || (UsersActor::new(), state.clone()));
        let instance = self.shard.shards.instance(self.shard.shard);
        with_relay_as(
            tree,
            instance.into(),
            self.store.outbox.clone(),
            ctx.router.clone(),
            self.kick.clone(),
        )
    }
}
