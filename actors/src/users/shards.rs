//! Users as N shards: which shard owns a user, a username or an email, and
//! the one way every caller (the edge, the order saga) reaches users.
//!
//! A user lives on shard `jump(id, N)` (Lamping and Veach's jump consistent
//! hash): each shard draws ids from its own generator and keeps only those
//! that map to itself, so ids stay unique cluster-wide and any node finds a
//! user's shard from its id alone. Usernames and emails must be unique
//! across shards: the shard creating or renaming a user first *claims*
//! each value on the shard that owns the value (`jump(fnv(value), N)`).
//! A claim held for another user is checked with that user's shard, which
//! says whether the user still has the value or is being written with it;
//! a stale claim (the user changed it, was deleted, or its write never
//! happened) is taken over. With one shard none of this runs: the service
//! is the plain `users` instance with its local unique indexes.

use std::borrow::Cow;

use bulwark_runtime::{CallContext, CallError, Router, Service};

use super::Users;
use super::messages::{User, UsersRequest, UsersResponse};
use crate::common::{Page, PageRequest, ShopError};

/// Most shards a service may be split into.
pub const SHARDS_MAX: u32 = 64;
/// Deepest item a sharded list reaches (`page × page_size`): each shard
/// sends its first that many users, so deep pages cost in proportion.
pub const SHARDED_LIST_DEPTH_MAX: u32 = 10_000;

/// How the users service is split across the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserShards {
    count: u32,
}

impl Default for UserShards {
    fn default() -> Self {
        Self::SINGLE
    }
}

impl UserShards {
    /// One instance named `users`: no sharding.
    pub const SINGLE: Self = Self { count: 1 };

    /// `count` shards, `None` outside `1..=SHARDS_MAX`.
    #[must_use]
    pub fn new(count: u32) -> Option<Self> {
        (1..=SHARDS_MAX).contains(&count).then_some(Self { count })
    }

    /// How many shards.
    #[must_use]
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether users is split at all.
    #[must_use]
    pub fn is_sharded(self) -> bool {
        self.count > 1
    }

    /// The shard that owns user `id`.
    #[must_use]
    pub fn of_id(self, id: u64) -> u32 {
        if self.is_sharded() {
            jump_hash(id, self.count)
        } else {
            0
        }
    }

    /// The shard that owns a claim key (`username:ada`).
    #[must_use]
    pub fn of_key(self, key: &str) -> u32 {
        jump_hash(fnv1a(key.as_bytes()), self.count)
    }

    /// The router name of `shard`: `users` unsharded, else `users#<shard>`.
    #[must_use]
    pub fn instance(self, shard: u32) -> Cow<'static, str> {
        if self.is_sharded() {
            Cow::Owned(format!("{}#{shard}", Users::NAME))
        } else {
            Cow::Borrowed(Users::NAME)
        }
    }
}

/// Jump consistent hash (Lamping and Veach, 2014): maps `key` to one of
/// `buckets`, moving only 1/n of the keys when a bucket is added.
#[must_use]
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // (b + 1) * 2^31 / ((key >> 33) + 1), in floating point as in the
        // paper; exact enough for any bucket count below 2^31.
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        {
            j = ((b + 1) as f64 * (f64::from(1_u32 << 31) / ((key >> 33) + 1) as f64)) as i64;
        }
    }
    u32::try_from(b).unwrap_or(0)
}

/// FNV-1a, 64 bits: a hash every node computes alike, whatever its Rust
/// version (the standard library's hasher makes no such promise).
#[must_use]
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Sends `request` to the users shard it concerns: by id for reads,
/// updates and deletes, to a random shard for creates; a list gathers the
/// first `page × page_size` users of every shard and merges them by id.
///
/// # Errors
/// The [`CallError`] of the shard called (the first one that failed, for a
/// list); [`ShopError::Invalid`] for a sharded list page deeper than
/// [`SHARDED_LIST_DEPTH_MAX`].
pub async fn call_users(
    router: &Router,
    shards: UserShards,
    context: CallContext,
    request: UsersRequest,
) -> Result<UsersResponse, CallError<ShopError>> {
    let shard = match &request {
        UsersRequest::Get(id) | UsersRequest::Delete(id) | UsersRequest::Update { id, .. } => {
            shards.of_id(*id)
        }
        UsersRequest::Create(_) if shards.is_sharded() => rand::random_range(0..shards.count()),
        UsersRequest::Claim { key, .. } => shards.of_key(key),
        UsersRequest::Holds { user_id, .. } => shards.of_id(*user_id),
        UsersRequest::Head { .. } => 0,
        UsersRequest::List(page) if shards.is_sharded() => {
            return list(router, shards, context, *page).await;
        }
        UsersRequest::PendingEvents if shards.is_sharded() => {
            return pending_events(router, shards, context).await;
        }
        UsersRequest::Create(_) | UsersRequest::List(_) | UsersRequest::PendingEvents => 0,
    };
    router
        .call_instance_with::<Users>(&shards.instance(shard), context, request)
        .await
}

/// The events waiting in every shard's outbox, summed.
async fn pending_events(
    router: &Router,
    shards: UserShards,
    context: CallContext,
) -> Result<UsersResponse, CallError<ShopError>> {
    let calls = (0..shards.count()).map(|shard| {
        let instance = shards.instance(shard);
        let context = context.clone();
        async move {
            router
                .call_instance_with::<Users>(&instance, context, UsersRequest::PendingEvents)
                .await
        }
    });
    let mut total = 0;
    for answer in futures::future::join_all(calls).await {
        match answer? {
            UsersResponse::PendingEvents(pending) => total += pending,
            _ => {
                return Err(CallError::Service {
                    service: Users::NAME,
                    error: ShopError::Transient {
                        reason: "a users shard answered with something else".to_owned(),
                    },
                });
            }
        }
    }
    Ok(UsersResponse::PendingEvents(total))
}

async fn list(
    router: &Router,
    shards: UserShards,
    context: CallContext,
    page: PageRequest,
) -> Result<UsersResponse, CallError<ShopError>> {
    let service = Users::NAME;
    let invalid = |error| CallError::Service { service, error };
    let page = page.validate().map_err(invalid)?;
    let depth = page.page.saturating_mul(page.page_size);
    if depth > SHARDED_LIST_DEPTH_MAX {
        return Err(invalid(ShopError::invalid(
            "page",
            format!(
                "a sharded list reaches its first {SHARDED_LIST_DEPTH_MAX} users; \
                 page × page_size is {depth}"
            ),
        )));
    }
    let calls = (0..shards.count()).map(|shard| {
        let instance = shards.instance(shard);
        let context = context.clone();
        async move {
            router
                .call_instance_with::<Users>(
                    &instance,
                    context,
                    UsersRequest::Head { limit: depth },
                )
                .await
        }
    });
    let mut items: Vec<User> = Vec::new();
    let mut total = 0_u64;
    for answer in futures::future::join_all(calls).await {
        match answer? {
            UsersResponse::Page(head) => {
                total += head.total;
                items.extend(head.items);
            }
            _ => {
                return Err(invalid(ShopError::Transient {
                    reason: "a users shard answered a list with something else".to_owned(),
                }));
            }
        }
    }
    items.sort_unstable_by_key(|user| user.id);
    let items = items
        .into_iter()
        .skip(page.offset())
        .take(page.page_size as usize)
        .collect();
    Ok(UsersResponse::Page(Page {
        items,
        total,
        page: page.page,
        page_size: page.page_size,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_is_stable_balanced_and_moves_few_keys() {
        // Pinned values: every node and every version must agree.
        assert_eq!(jump_hash(0, 1), 0);
        assert_eq!(jump_hash(1, 2), jump_hash(1, 2));
        let counts = (1..=10_000_u64).fold([0_u32; 4], |mut counts, id| {
            counts[jump_hash(id, 4) as usize] += 1;
            counts
        });
        assert!(
            counts.iter().all(|&c| (2_200..2_800).contains(&c)),
            "{counts:?}"
        );
        // Growing from 4 to 5 buckets moves about a fifth of the keys, and
        // only to the new bucket.
        let moved = (1..=10_000_u64)
            .filter(|&id| jump_hash(id, 4) != jump_hash(id, 5))
            .inspect(|&id| assert_eq!(jump_hash(id, 5), 4))
            .count();
        assert!((1_600..2_400).contains(&moved), "{moved}");
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shard_names_and_bounds() {
        assert_eq!(UserShards::SINGLE.instance(0), "users");
        let two = UserShards::new(2).unwrap();
        assert_eq!(two.instance(1), "users#1");
        assert!(UserShards::new(0).is_none());
        assert!(UserShards::new(SHARDS_MAX + 1).is_none());
    }
}
