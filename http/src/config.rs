//! The edge's limits. Every one has a bound and a reason.

use bulwark_actors::UserShards;
use std::time::Duration;

use crate::auth::{ApiKeys, RateLimit};

/// Default [`EdgeConfig::request_timeout`]: long enough for a write that
/// waits on a group commit (an fsync) under load, short enough that a stuck
/// dependency frees the client well before a typical proxy gives up (30 s).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default [`EdgeConfig::body_limit_bytes`]: the largest real body is an
/// order of at most 100 lines (about 8 KiB); 64 KiB leaves room without
/// letting one request pin much memory.
pub const BODY_LIMIT_BYTES_DEFAULT: usize = 64 * 1024;
/// Default [`EdgeConfig::header_read_timeout`]: a client on a slow link
/// sends its request head in well under a second; ten seconds of silence is
/// a stalled or hostile client holding a connection.
pub const HEADER_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default [`EdgeConfig::concurrency_limit`]: requests handled at once. Each
/// waits on at most a few service calls; past this the services' own
/// bulkheads would be the next to shed, so the edge sheds first and cheaper.
pub const CONCURRENCY_LIMIT_DEFAULT: usize = 512;
/// Default [`EdgeConfig::connections_max`]: open connections (idle
/// keep-alive ones included). A connection costs a task and a read buffer
/// (at most [`HEADER_BYTES_MAX`]); 1024 of them is a few tens of MiB.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Default [`EdgeConfig::drain_timeout`]: how long a shutdown waits for
/// in-flight requests; a request is bounded by the request timeout, so a
/// little more than that lets every one finish.
pub const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(6);
/// Largest request head (request line and headers) a connection buffers:
/// real heads are below 8 KiB; this is hyper's read buffer bound.
pub const HEADER_BYTES_MAX: usize = 32 * 1024;

/// The edge's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Deadline of one request, from its head being read to its response;
    /// also the deadline of every service call made for it. Past it: 504.
    pub request_timeout: Duration,
    /// Largest request body; larger bodies are refused with 413.
    pub body_limit_bytes: usize,
    /// How long a connection may take to send a request head (the first one,
    /// and each next one on a keep-alive connection) before it is closed.
    pub header_read_timeout: Duration,
    /// Requests handled at once; one more is shed at once with 503 and
    /// `Retry-After` rather than queued.
    pub concurrency_limit: usize,
    /// Open connections; past it the listener stops accepting until one
    /// closes (new clients wait in the kernel's accept backlog).
    pub connections_max: usize,
    /// How long a shutdown lets in-flight requests finish before their
    /// connections are dropped.
    pub drain_timeout: Duration,
    /// How users is split across the cluster: the edge sends each users
    /// request to its shard and gathers lists from all of them.
    pub users_shards: UserShards,
    /// The key of the admin API (`/admin/...`); `None` disables it (its
    /// routes answer 404).
    pub admin_key: Option<AdminKey>,
    /// The REST API's keys; empty: the API is open.
    pub api_keys: ApiKeys,
    /// The rate limit of each client (API key, or IP address without one);
    /// `None`: no limit.
    pub rate_limit: Option<RateLimit>,
}

/// The admin API's bearer key: compared in constant time, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKey(String);

impl AdminKey {
    /// The key `text`; `None` when it is empty (an empty key would let an
    /// empty `Authorization: Bearer ` in).
    #[must_use]
    pub fn new(text: impl Into<String>) -> Option<Self> {
        let text = text.into();
        (!text.is_empty()).then_some(Self(text))
    }

    /// Whether `presented` is this key. The time taken depends on the
    /// lengths only, never on where the first differing byte is.
    #[must_use]
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(<redacted>)")
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            body_limit_bytes: BODY_LIMIT_BYTES_DEFAULT,
            header_read_timeout: HEADER_READ_TIMEOUT_DEFAULT,
            concurrency_limit: CONCURRENCY_LIMIT_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            drain_timeout: DRAIN_TIMEOUT_DEFAULT,
            users_shards: UserShards::SINGLE,
            admin_key: None,
            api_keys: ApiKeys::default(),
            rate_limit: None,
        }
    }
}
