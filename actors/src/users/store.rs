//! The users service's tables and the operations on them. Each write is one
//! transaction (row, unique indexes, outbox together), acknowledged once
//! durable.

use bulwark_storage::{IdGenerator, Outbox, Store, StoreError, Table, UniqueIndex};

use super::messages::{NewUser, User, UserPatch};
use crate::common::{EventKind, Page, PageRequest, ShopError, check_text, now_ms};

/// The users store: rows by id, unique lower-cased username and email.
#[derive(Debug, Clone)]
pub(crate) struct UsersStore {
    store: Store,
    users: Table<u64, User>,
    by_username: UniqueIndex<String>,
    by_email: UniqueIndex<String>,
    ids: IdGenerator,
    pub(crate) outbox: Outbox<EventKind>,
}

fn check_email(email: &str) -> Result<String, ShopError> {
    let email = check_text("email", email)?;
    let valid = email.split('@').count() == 2
        && !email.starts_with('@')
        && !email.ends_with('@')
        && !email.chars().any(char::is_whitespace);
    if !valid {
        return Err(ShopError::invalid("email", "must look like name@domain"));
    }
    Ok(email)
}

fn duplicate(err: StoreError) -> ShopError {
    match err {
        StoreError::Duplicate { index, .. } => {
            let field = if index.contains("email") {
                "email"
            } else {
                "username"
            };
            ShopError::conflict(format!("{field} is already taken"))
        }
        other => other.into(),
    }
}

impl UsersStore {
    pub(crate) fn open(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            users: store.table("users")?,
            by_username: store.unique_index("users_by_username")?,
            by_email: store.unique_index("users_by_email")?,
            ids: store.id_generator("users")?,
            outbox: store.outbox("events")?,
            store,
        })
    }

    pub(crate) async fn create(&self, new: NewUser) -> Result<User, ShopError> {
        let username = check_text("username", &new.username)?;
        let email = check_email(&new.email)?;
        let id = self.ids.next_id().await?;
        let user = User {
            id,
            username,
            email,
            created_at_ms: now_ms(),
            version: 1,
        };
        self.store
            .write(|tx| {
                self.by_username
                    .claim(tx, &user.username.to_lowercase(), id)
                    .map_err(duplicate)?;
                self.by_email
                    .claim(tx, &user.email.to_lowercase(), id)
                    .map_err(duplicate)?;
                self.users.insert(tx, &id, &user)?;
                self.outbox.push(
                    tx,
                    &EventKind::UserCreated {
                        user_id: id,
                        username: user.username.clone(),
                    },
                )?;
                Ok::<_, ShopError>(())
            })
            .await?;
        Ok(user)
    }

    pub(crate) fn get(&self, id: u64) -> Result<User, ShopError> {
        self.users
            .get(&id)?
            .ok_or_else(|| ShopError::not_found("user", id))
    }

    pub(crate) fn list(&self, page: PageRequest) -> Result<Page<User>, ShopError> {
        Page::collect(self.users.iter(), page, |(_, user)| Ok(user))
    }

    pub(crate) async fn update(&self, id: u64, patch: UserPatch) -> Result<User, ShopError> {
        let username = patch
            .username
            .as_deref()
            .map(|u| check_text("username", u))
            .transpose()?;
        let email = patch.email.as_deref().map(check_email).transpose()?;
        self.store
            .write(|tx| {
                let mut user = self
                    .users
                    .get_in(tx, &id)?
                    .ok_or_else(|| ShopError::not_found("user", id))?;
                if let Some(username) = &username {
                    self.by_username
                        .release(tx, &user.username.to_lowercase(), id)?;
                    self.by_username
                        .claim(tx, &username.to_lowercase(), id)
                        .map_err(duplicate)?;
                    user.username.clone_from(username);
                }
                if let Some(email) = &email {
                    self.by_email.release(tx, &user.email.to_lowercase(), id)?;
                    self.by_email
                        .claim(tx, &email.to_lowercase(), id)
                        .map_err(duplicate)?;
                    user.email.clone_from(email);
                }
                user.version += 1;
                self.users.insert(tx, &id, &user)?;
                Ok::<_, ShopError>(user)
            })
            .await
    }

    pub(crate) async fn delete(&self, id: u64) -> Result<(), ShopError> {
        self.store
            .write(|tx| {
                let user = self
                    .users
                    .get_in(tx, &id)?
                    .ok_or_else(|| ShopError::not_found("user", id))?;
                self.by_username
                    .release(tx, &user.username.to_lowercase(), id)?;
                self.by_email.release(tx, &user.email.to_lowercase(), id)?;
                self.users.remove(tx, &id)?;
                self.outbox
                    .push(tx, &EventKind::UserDeleted { user_id: id })?;
                Ok::<_, ShopError>(())
            })
            .await
    }
}
