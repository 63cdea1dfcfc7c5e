//! The users service's typed API.

use serde::{Deserialize, Serialize};

use crate::common::{Page, PageRequest};

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Positive id below 2^53.
    pub id: u64,
    /// Unique, 1..=256 bytes.
    pub username: String,
    /// Unique, contains one `@`.
    pub email: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Incremented by every update (the edge's ETag).
    pub version: u64,
}

/// Fields of a new user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    /// Wanted username.
    pub username: String,
    /// Wanted email.
    pub email: String,
}

/// Fields to change; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPatch {
    /// New username.
    pub username: Option<String>,
    /// New email.
    pub email: Option<String>,
}

/// What the users service is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsersRequest {
    /// Create a user (`UsersResponse::User`).
    Create(NewUser),
    /// Read one (`UsersResponse::User`).
    Get(u64),
    /// Read a page, by id (`UsersResponse::Page`).
    List(PageRequest),
    /// Change one (`UsersResponse::User`).
    Update {
        /// The user.
        id: u64,
        /// What to change.
        patch: UserPatch,
    },
    /// Delete one (`UsersResponse::Deleted`).
    Delete(u64),
    /// Between shards: claim a unique value (`username:<lower-cased>` or
    /// `email:<lower-cased>`) on the shard that owns it, for a user about
    /// to be written with it (`UsersResponse::Claimed`; `Conflict` when
    /// another user holds it).
    Claim {
        /// The claim key.
        key: String,
        /// The user that wants the value.
        user_id: u64,
    },
    /// Between shards: whether this shard's user `user_id` has the value of
    /// `key`, or is being written with it (`UsersResponse::Holds`).
    Holds {
        /// The claim key.
        key: String,
        /// The user.
        user_id: u64,
    },
    /// The first `limit` users by id and the shard's total
    /// (`UsersResponse::Page`): one shard's part of a sharded list.
    Head {
        /// How many users at most.
        limit: u32,
    },
    /// How many events wait in the outbox (`UsersResponse::PendingEvents`).
    PendingEvents,
}

/// What the users service answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsersResponse {
    /// One user.
    User(User),
    /// A page of users.
    Page(Page<User>),
    /// The user is gone.
    Deleted,
    /// The claim is recorded for the user.
    Claimed,
    /// Whether the user holds the value.
    Holds(bool),
    /// Events written and not yet confirmed by every subscriber.
    PendingEvents(u64),
}
