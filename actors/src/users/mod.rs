//! The users service: users with unique usernames and emails.

mod actor;
pub(crate) mod messages;
mod store;

use bulwark_runtime::{Service, ServiceContext, ServiceTree, Strategy};
use bulwark_storage::{Store, StoreError};

use crate::common::ShopError;
use crate::relay::{Kick, with_relay};
use actor::{UsersActor, UsersState};
use messages::{UsersRequest, UsersResponse};
use store::UsersStore;

/// The users service. Holds its open store, which outlives actor restarts.
#[derive(Debug)]
pub struct Users {
    store: UsersStore,
    kick: Kick,
}

impl Users {
    /// The service on an open store.
    ///
    /// # Errors
    /// A [`StoreError`] when the store's tables cannot be opened.
    pub fn new(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            store: UsersStore::open(store)?,
            kick: Kick::default(),
        })
    }
}

impl Service for Users {
    const NAME: &'static str = "users";
    type Request = UsersRequest;
    type Response = UsersResponse;
    type Error = ShopError;

    fn tree(&self, ctx: &ServiceContext) -> ServiceTree<Self> {
        let state = UsersState {
            store: self.store.clone(),
            kick: self.kick.clone(),
            tasks: ctx.tasks.clone(),
        };
        let tree = ServiceTree::new(Strategy::OneForOne)
            .entry("entry", move || (UsersActor::new(), state.clone()));
        with_relay(
            tree,
            self.store.outbox.clone(),
            ctx.router.clone(),
            self.kick.clone(),
        )
    }
}
