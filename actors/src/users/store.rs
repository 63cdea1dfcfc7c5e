//! The users service's tables and the operations on them. Each write is one
//! transaction (row, unique indexes, outbox together), acknowledged once
//! durable.

use bulwark_storage::{IdGenerator, Outbox, Store, StoreError, Table, UniqueIndex};

use super::messages::{NewUser, User, UserPatch};
use crate::common::{EventKind, Page, PageRequest, ShopError, check_identifier, now_ms};

/// The users store: rows by id, unique lower-cased username and email.
#[derive(Debug, Clone)]
pub(crate) struct UsersStore {
    store: Store,
    users: Table<u64, User>,
    by_username: UniqueIndex<String>,
    by_email: UniqueIndex<String>,
    /// Claims on unique values this shard owns, by claim key: the user
    /// (on any shard) the value was last claimed for. Used only when
    /// users is sharded.
    claims: Table<String, u64>,
    ids: IdGenerator,
    pub(crate) outbox: Outbox<EventKind>,
}

fn check_email(email: &str) -> Result<String, ShopError> {
    let email = check_identifier("email", email)?;
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
            claims: store.table("users_claims")?,
            ids: store.id_generator("users")?,
            outbox: store.outbox("events")?,
            store,
        })
    }

    /// The new user's fields, checked: (username, email).
    pub(crate) fn check_new(new: &NewUser) -> Result<(String, String), ShopError> {
        Ok((
            check_identifier("username", &new.username)?,
            check_email(&new.email)?,
        ))
    }

    /// A patch's fields, checked: (username, email).
    pub(crate) fn check_patch(
        patch: &UserPatch,
    ) -> Result<(Option<String>, Option<String>), ShopError> {
        let username = patch
            .username
            .as_deref()
            .map(|u| check_identifier("username", u))
            .transpose()?;
        let email = patch.email.as_deref().map(check_email).transpose()?;
        Ok((username, email))
    }

    /// The next id of this store's generator for which `keep` holds (a
    /// shard keeps the ids that map to itself).
    pub(crate) async fn next_id(&self, keep: impl Fn(u64) -> bool) -> Result<u64, ShopError> {
        loop {
            let id = self.ids.next_id().await?;
            if keep(id) {
                return Ok(id);
            }
        }
    }

    /// Creates user `id` (from [`Self::next_id`]) with checked fields.
    pub(crate) async fn create(
        &self,
        id: u64,
        username: String,
        email: String,
    ) -> Result<User, ShopError> {
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

    /// The first `limit` users by id, and how many there are.
    pub(crate) fn head(&self, limit: u32) -> Result<Page<User>, ShopError> {
        let mut items = Vec::new();
        let mut total = 0_u64;
        for row in self.users.iter() {
            let (_, user) = row?;
            total += 1;
            if items.len() < limit as usize {
                items.push(user);
            }
        }
        Ok(Page {
            items,
            total,
            page: 1,
            page_size: limit,
        })
    }

    /// Whether user `id` has the value of claim `key` now.
    pub(crate) fn has_value(&self, id: u64, key: &str) -> Result<bool, ShopError> {
        let Some(user) = self.users.get(&id)? else {
            return Ok(false);
        };
        Ok(match key.split_once(':') {
            Some(("username", value)) => user.username.to_lowercase() == value,
            Some(("email", value)) => user.email.to_lowercase() == value,
            _ => false,
        })
    }

    /// The user claim `key` was last recorded for.
    pub(crate) fn claim_holder(&self, key: &str) -> Result<Option<u64>, ShopError> {
        Ok(self.claims.get(&key.to_owned())?)
    }

    /// Durably records claim `key` for user `id`.
    pub(crate) async fn record_claim(&self, key: &str, id: u64) -> Result<(), ShopError> {
        let key = key.to_owned();
        self.store
            .write(|tx| {
                self.claims.insert(tx, &key, &id)?;
                Ok::<_, ShopError>(())
            })
            .await
    }

    pub(crate) async fn update(
        &self,
        id: u64,
        username: Option<String>,
        email: Option<String>,
    ) -> Result<User, ShopError> {
        self.store
            .write(|tx| {
                let mut user = self
                    .users
                    .get_in(tx, &id)?
                    .ok_or_else(|| ShopError::not_found("user", id))?;
                // Nothing to change: no write, no new version (the empty
                // write still waits until what it read is durable).
                let username = username.filter(|u| *u != user.username);
                let email = email.filter(|e| *e != user.email);
                if username.is_none() && email.is_none() {
                    return Ok(user);
                }
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
