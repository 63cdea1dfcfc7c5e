//! The users service's request logic, run by the shared entry actor.

use super::Users;
use super::messages::{UsersRequest, UsersResponse};
use super::store::UsersStore;
use crate::common::ShopError;
use crate::entry::{EntryActor, Handler};
use crate::relay::Kick;
use tokio_util::task::TaskTracker;

/// The users entry actor.
pub(crate) type UsersActor = EntryActor<UsersState>;

/// What each request's task works with: the store and the relay's kick.
#[derive(Debug, Clone)]
pub(crate) struct UsersState {
    pub(crate) tasks: TaskTracker,
    pub(crate) store: UsersStore,
    pub(crate) kick: Kick,
}

impl Handler for UsersState {
    fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    type Service = Users;

    async fn serve(&self, request: UsersRequest) -> Result<UsersResponse, ShopError> {
        match request {
            UsersRequest::Create(new) => {
                let user = self.store.create(new).await?;
                self.kick.kick();
                Ok(UsersResponse::User(user))
            }
            UsersRequest::Get(id) => self.store.get(id).map(UsersResponse::User),
            UsersRequest::List(page) => self.store.list(page).map(UsersResponse::Page),
            UsersRequest::Update { id, patch } => {
                self.store.update(id, patch).await.map(UsersResponse::User)
            }
            UsersRequest::Delete(id) => {
                self.store.delete(id).await?;
                self.kick.kick();
                Ok(UsersResponse::Deleted)
            }
            UsersRequest::PendingEvents => Ok(UsersResponse::PendingEvents(
                self.store.outbox.pending_len()?,
            )),
        }
    }
}
