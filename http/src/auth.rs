//! Who may call the API, and how often: API keys with scopes, and a rate
//! limit per client.
//!
//! - **API keys** ([`ApiKeys`]). With none configured the REST API is open
//!   (a single-node shop works out of the box). With any, every request
//!   under `/api/v1` needs `Authorization: Bearer <secret>` of a key whose
//!   [`Scope`] covers it: `read` for GET, `write` for POST, PUT and DELETE.
//!   A missing or unknown key is a 401, a key without the scope a 403. The
//!   `admin` scope opens the admin API, as the admin key does. Secrets are
//!   kept only as SHA-256 digests and compared in constant time.
//! - **Rate limits** ([`RateLimit`], GCRA buckets from `governor`): one
//!   bucket per API key, or per client IP address when the request carries
//!   no valid key (an open API, or a client guessing keys). Past its
//!   bucket a request is a 429 with `Retry-After`, before any service is
//!   asked. Probes and the admin API are never limited.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock, Reference as _};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;
use crate::state::AppState;

/// Shortest accepted secret: 16 characters of the token alphabet is about
/// 96 bits, out of reach of guessing through a rate-limited API.
pub const API_KEY_SECRET_LEN_MIN: usize = 16;
/// Longest key name: it is a log field and a metric label.
pub const API_KEY_NAME_LEN_MAX: usize = 64;
/// Past this many buckets the limiter forgets the idle ones (full again),
/// at most once per [`PRUNE_INTERVAL`].
const BUCKETS_PRUNE_OVER: usize = 10_000;
/// Shortest time between two prunes: a prune walks the whole map.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);
/// Most buckets the limiter keeps: past it (a flood from more addresses
/// than any real client base) every request without a valid key takes from
/// one shared bucket until pruning brings the count back down, so memory
/// stays bounded whatever the number of addresses. Keys keep their own
/// buckets.
const PEER_BUCKETS_MAX: usize = 100_000;
/// How often (in checks) the limiter looks at its size.
const SIZE_CHECK_EVERY: u64 = 64;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// GET (and HEAD) under `/api/v1`.
    Read,
    /// POST, PUT and DELETE under `/api/v1`.
    Write,
    /// The admin API (`/admin/...`).
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Self; 3] = [Self::Read, Self::Write, Self::Admin];

    /// The scope's name in configuration and errors.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    /// The scope named `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.name() == name)
    }

    /// The scope a REST request with `method` needs.
    fn for_method(method: &Method) -> Self {
        if method == Method::GET || method == Method::HEAD {
            Self::Read
        } else {
            Self::Write
        }
    }
}

/// Why an API key setting was refused. No message quotes the setting: in a
/// spec written in the wrong order any field may be the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// Not `NAME:SCOPES:SECRET`.
    #[error("expected NAME:SCOPES:SECRET with scopes joined by '+' (web:read+write:SECRET)")]
    Format,
    /// The name is empty, too long or has other characters.
    #[error("invalid name: 1 to {API_KEY_NAME_LEN_MAX} letters, digits, '-' or '_'")]
    Name,
    /// A scope that does not exist.
    #[error("unknown scope; the scopes are read, write and admin")]
    Scope,
    /// A key without any scope.
    #[error("it has no scope")]
    NoScope,
    /// The secret is too short to resist guessing.
    #[error("the secret is shorter than {API_KEY_SECRET_LEN_MIN} characters")]
    ShortSecret,
    /// The secret cannot be sent as a bearer token.
    #[error("the secret may hold only letters, digits and - . _ ~ + / =")]
    SecretAlphabet,
    /// Two keys share a name (their places in the list, from 1).
    #[error("keys {0} and {1} have the same name")]
    DuplicateName(usize, usize),
    /// Two keys share a secret (their places in the list, from 1).
    #[error("keys {0} and {1} have the same secret")]
    DuplicateSecret(usize, usize),
}

/// One API key: a name (logs, errors), its scopes and the digest of its
/// secret. The secret itself is not kept and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    name: Arc<str>,
    scopes: Vec<Scope>,
    digest: [u8; 32],
}

impl ApiKey {
    /// A key named `name` with `scopes` and `secret`.
    ///
    /// # Errors
    ///
    /// [`ApiKeyError`] for a bad name, no scope, or a secret that is too
    /// short or not a bearer token (RFC 6750 `b64token` characters).
    pub fn new(name: &str, scopes: &[Scope], secret: &str) -> Result<Self, ApiKeyError> {
        let name_ok = !name.is_empty()
            && name.len() <= API_KEY_NAME_LEN_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(ApiKeyError::Name);
        }
        if scopes.is_empty() {
            return Err(ApiKeyError::NoScope);
        }
        if secret.chars().count() < API_KEY_SECRET_LEN_MIN {
            return Err(ApiKeyError::ShortSecret);
        }
        let token = secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
        if !token {
            return Err(ApiKeyError::SecretAlphabet);
        }
        let mut scopes = scopes.to_vec();
        scopes.sort_unstable();
        scopes.dedup();
        Ok(Self {
            name: Arc::from(name),
            scopes,
            digest: digest(secret),
        })
    }

    /// Parses `NAME:SCOPES:SECRET`, scopes joined by `+`:
    /// `web:read+write:4f9c2a7be1d05e83`.
    ///
    /// # Errors
    ///
    /// [`ApiKeyError`] saying what is wrong (quoting nothing).
    pub fn parse(spec: &str) -> Result<Self, ApiKeyError> {
        let mut parts = spec.trim().splitn(3, ':');
        let (Some(name), Some(scopes), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ApiKeyError::Format);
        };
        let scopes = scopes
            .split('+')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|scope| Scope::from_name(scope).ok_or(ApiKeyError::Scope))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(name, &scopes, secret)
    }

    /// The key's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's scopes, sorted.
    #[must_use]
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Whether the key has `scope`.
    #[must_use]
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The configured API keys; none: the REST API is open to every client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

impl ApiKeys {
    /// `keys`, which must have distinct names and secrets.
    ///
    /// # Errors
    ///
    /// [`ApiKeyError::DuplicateName`], [`ApiKeyError::DuplicateSecret`].
    pub fn new(keys: Vec<ApiKey>) -> Result<Self, ApiKeyError> {
        for (i, key) in keys.iter().enumerate() {
            for (j, earlier) in keys[..i].iter().enumerate() {
                if earlier.name == key.name {
                    return Err(ApiKeyError::DuplicateName(j + 1, i + 1));
                }
                if earlier.digest == key.digest {
                    return Err(ApiKeyError::DuplicateSecret(j + 1, i + 1));
                }
            }
        }
        Ok(Self { keys })
    }

    /// Whether no key is configured (the REST API is open).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys.
    pub fn iter(&self) -> impl Iterator<Item = &ApiKey> {
        self.keys.iter()
    }

    /// The key whose secret is `presented`. Every key's digest is compared
    /// in full, so the time taken does not say which key (or which byte)
    /// came close.
    #[must_use]
    pub fn find(&self, presented: &str) -> Option<&ApiKey> {
        let presented = digest(presented);
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&presented)) {
                found = Some(key);
            }
        }
        found
    }
}

/// The unit of a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatePeriod {
    /// `/s`.
    Second,
    /// `/min`.
    Minute,
    /// `/h`.
    Hour,
}

impl RatePeriod {
    fn suffix(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "min",
            Self::Hour => "h",
        }
    }
}

/// A rate limit per client: `count` requests each `period` on average, at
/// most `burst` at once. Written `600/min`, or `600/min burst 20`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a bucket refills with each period.
    pub count: NonZeroU32,
    /// The period.
    pub period: RatePeriod,
    /// Requests a full bucket holds.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `count` a period, with a burst of one period's worth.
    #[must_use]
    pub fn new(count: NonZeroU32, period: RatePeriod) -> Self {
        Self {
            count,
            period,
            burst: count,
        }
    }

    /// Parses `N/s`, `N/min` or `N/h`, optionally followed by `burst M`;
    /// `off` (or `0`) is no limit.
    ///
    /// # Errors
    ///
    /// What is wrong, in words for a configuration error.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let expected = || {
            format!(
                "invalid rate limit {text:?}: expected N/s, N/min or N/h, optionally \"burst M\", or \"off\""
            )
        };
        let (rate, burst) = match words.as_slice() {
            ["off" | "0"] => return Ok(None),
            [rate] => (*rate, None),
            [rate, "burst", burst] => (*rate, Some(*burst)),
            _ => return Err(expected()),
        };
        let (count, period) = rate.split_once('/').ok_or_else(expected)?;
        let period = match period {
            "s" => RatePeriod::Second,
            "min" => RatePeriod::Minute,
            "h" => RatePeriod::Hour,
            _ => return Err(expected()),
        };
        let positive = |n: &str| {
            n.parse::<NonZeroU32>()
                .map_err(|_| format!("invalid rate limit {text:?}: {n:?} is not a positive count"))
        };
        let mut limit = Self::new(positive(count)?, period);
        if let Some(burst) = burst {
            limit.burst = positive(burst)?;
        }
        Ok(Some(limit))
    }

    fn quota(self) -> Quota {
        let quota = match self.period {
            RatePeriod::Second => Quota::per_second(self.count),
            RatePeriod::Minute => Quota::per_minute(self.count),
            RatePeriod::Hour => Quota::per_hour(self.count),
        };
        quota.allow_burst(self.burst)
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} burst {}",
            self.count,
            self.period.suffix(),
            self.burst
        )
    }
}

/// Whose bucket a request takes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    /// A valid API key, by name.
    Key(Arc<str>),
    /// No valid key: the connection's peer address (an IPv6 address by its
    /// /64, which one host can fill).
    Peer(IpAddr),
    /// No valid key and no peer address (a request made in-process).
    Unknown,
    /// Every address past [`PEER_BUCKETS_MAX`].
    Crowd,
}

impl Client {
    /// The bucket of a request without a valid key from `addr`.
    fn peer(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                Self::Peer(IpAddr::V6(prefix.into()))
            }
            v4 @ IpAddr::V4(_) => Self::Peer(v4),
        }
    }
}

/// The edge's rate limiter: one GCRA bucket per client.
pub(crate) struct Limiter<C: Clock = DefaultClock> {
    buckets: RateLimiter<Client, DashMapStateStore<Client>, C, NoOpMiddleware<C::Instant>>,
    checks: AtomicU64,
    /// Whether the buckets are at [`PEER_BUCKETS_MAX`].
    crowded: AtomicBool,
    /// When the buckets were last pruned; held by the one pruning.
    pruned_at: Mutex<Option<C::Instant>>,
}

impl<C: Clock> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("buckets", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self::with_clock(limit, DefaultClock::default())
    }
}

impl<C: Clock> Limiter<C> {
    fn with_clock(limit: RateLimit, clock: C) -> Self {
        Self {
            buckets: RateLimiter::dashmap_with_clock(limit.quota(), clock),
            checks: AtomicU64::new(0),
            crowded: AtomicBool::new(false),
            pruned_at: Mutex::new(None),
        }
    }

    /// Takes one request from `client`'s bucket, or says how long until
    /// it holds one.
    fn check(&self, client: &Client) -> Result<(), Duration> {
        let now = self.buckets.clock().now();
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SIZE_CHECK_EVERY)
        {
            if self.buckets.len() > BUCKETS_PRUNE_OVER {
                self.prune(now);
            }
            self.crowded
                .store(self.buckets.len() >= PEER_BUCKETS_MAX, Ordering::Relaxed);
        }
        let client = match client {
            Client::Peer(_) if self.crowded.load(Ordering::Relaxed) => &Client::Crowd,
            other => other,
        };
        self.buckets
            .check_key(client)
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Forgets the buckets that are full again (their clients idle), unless
    /// another request is at it or it was done less than
    /// [`PRUNE_INTERVAL`] ago.
    fn prune(&self, now: C::Instant) {
        let Ok(mut pruned_at) = self.pruned_at.try_lock() else {
            return;
        };
        if pruned_at.is_some_and(|at| Duration::from(now.duration_since(at)) < PRUNE_INTERVAL) {
            return;
        }
        *pruned_at = Some(now);
        self.buckets.retain_recent();
    }

    /// Charges a refused request (no or a wrong key) to its address's
    /// bucket, so guessing keys is rate limited too: the refusal, or a 429
    /// once the address is over its limit.
    fn refused(&self, peer: &Client, refusal: ApiError) -> ApiError {
        match self.check(peer) {
            Ok(()) => refusal,
            Err(wait) => rate_limited(peer, wait),
        }
    }
}

/// The 429 of `client`, which may retry after `wait`.
fn rate_limited(client: &Client, wait: Duration) -> ApiError {
    ApiError::RateLimited {
        detail: match client {
            Client::Key(name) => format!("API key {name} is over its rate limit"),
            Client::Peer(_) | Client::Unknown | Client::Crowd => {
                "this client is over its rate limit".to_owned()
            }
        },
        // Whole seconds, rounded up: a client that waits that long finds a
        // request in its bucket.
        retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
    }
}

/// The bucket of a request without a valid key: its peer address.
fn peer_of(request: &Request) -> Client {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(Client::Unknown, |ConnectInfo(addr)| Client::peer(addr.ip()))
}

/// `refusal` of an admin request (no key, a wrong one, one without the
/// admin scope), charged to the address's bucket when a rate limit is
/// configured: the admin API is never limited for its users, only for
/// those guessing keys.
pub(crate) fn refuse_admin(state: &AppState, request: &Request, refusal: ApiError) -> ApiError {
    match &state.limiter {
        Some(limiter) => limiter.refused(&peer_of(request), refusal),
        None => refusal,
    }
}

/// The secret of `Authorization: Bearer <secret>` (scheme in any case).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(secret.trim())
}

/// The REST API's gate: the key and its scope, then the client's rate.
pub(crate) async fn guard_api(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match admit(&state, &request) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn admit(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let keys = &state.config.api_keys;
    let (client, refusal) = if keys.is_empty() {
        (peer_of(request), None)
    } else {
        match bearer(request.headers()) {
            None => (
                peer_of(request),
                Some(ApiError::Unauthorized {
                    detail: "this API needs `Authorization: Bearer <API key>`".to_owned(),
                }),
            ),
            Some(secret) => match keys.find(secret) {
                None => (
                    peer_of(request),
                    Some(ApiError::Unauthorized {
                        detail: "unknown API key".to_owned(),
                    }),
                ),
                Some(key) => {
                    let scope = Scope::for_method(request.method());
                    let refusal = (!key.allows(scope)).then(|| ApiError::Forbidden {
                        detail: format!(
                            "API key {} lacks the {} scope that {} needs",
                            key.name(),
                            scope.name(),
                            request.method()
                        ),
                    });
                    (Client::Key(Arc::clone(&key.name)), refusal)
                }
            },
        }
    };
    if let Some(limiter) = &state.limiter {
        limiter
            .check(&client)
            .map_err(|wait| rate_limited(&client, wait))?;
    }
    refusal.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef";

    #[test]
    fn a_key_spec_gives_name_and_scopes_and_keeps_only_a_digest() {
        let key = ApiKey::parse("web:write+read:0123456789abcdef").unwrap();
        assert_eq!(key.name(), "web");
        assert_eq!(key.scopes(), [Scope::Read, Scope::Write]);
        assert!(!key.allows(Scope::Admin));
        assert!(!format!("{key:?}").contains(SECRET));
        let keys = ApiKeys::new(vec![key]).unwrap();
        assert_eq!(keys.find(SECRET).map(ApiKey::name), Some("web"));
        assert!(keys.find("0123456789abcdeF").is_none());
        assert!(keys.find("").is_none());
    }

    #[test]
    fn bad_key_specs_are_refused_without_echoing_the_secret() {
        let cases = [
            ("web", ApiKeyError::Format),
            ("web:read", ApiKeyError::Format),
            ("we b:read:0123456789abcdef", ApiKeyError::Name),
            (":read:0123456789abcdef", ApiKeyError::Name),
            ("web::0123456789abcdef", ApiKeyError::NoScope),
            ("web:read+root:0123456789abcdef", ApiKeyError::Scope),
            ("web:read:short", ApiKeyError::ShortSecret),
            ("web:read:0123456789abcdef,x", ApiKeyError::SecretAlphabet),
            ("web:read:0123456789 abcdef", ApiKeyError::SecretAlphabet),
            // In the wrong order: the secret is never quoted either.
            ("web:0123456789abcdef:read", ApiKeyError::Scope),
            ("0123456789abcdef:read:web", ApiKeyError::ShortSecret),
        ];
        for (spec, expected) in cases {
            let err = ApiKey::parse(spec).unwrap_err();
            assert_eq!(err, expected, "{spec}");
            assert!(!err.to_string().contains("0123456789"), "{err}");
        }
    }

    #[test]
    fn keys_need_distinct_names_and_secrets() {
        let a = ApiKey::new("a", &[Scope::Read], SECRET).unwrap();
        let b = ApiKey::new("b", &[Scope::Read], SECRET).unwrap();
        let a2 = ApiKey::new("a", &[Scope::Write], "fedcba9876543210").unwrap();
        assert_eq!(
            ApiKeys::new(vec![a.clone(), b]).unwrap_err(),
            ApiKeyError::DuplicateSecret(1, 2)
        );
        assert_eq!(
            ApiKeys::new(vec![a, a2]).unwrap_err(),
            ApiKeyError::DuplicateName(1, 2)
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_other_schemes_are_not_keys() {
        let mut headers = HeaderMap::new();
        for (value, expected) in [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearerabc", None),
        ] {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer(&headers), expected, "{value}");
        }
    }

    #[test]
    fn rate_limits_are_written_as_count_per_period_with_an_optional_burst() {
        let limit = RateLimit::parse("600/min").unwrap().unwrap();
        assert_eq!(limit.to_string(), "600/min burst 600");
        let limit = RateLimit::parse(" 5/s  burst 20 ").unwrap().unwrap();
        assert_eq!(limit.to_string(), "5/s burst 20");
        assert_eq!(
            RateLimit::parse("1/h").unwrap().unwrap().period,
            RatePeriod::Hour
        );
        assert_eq!(RateLimit::parse("off"), Ok(None));
        assert_eq!(RateLimit::parse("0"), Ok(None));
        for bad in [
            "",
            "5",
            "5/d",
            "0/s",
            "-1/s",
            "5/s burst",
            "5/s burst 0",
            "5/s 20",
            "x/s",
        ] {
            let err = RateLimit::parse(bad).unwrap_err();
            assert!(err.starts_with("invalid rate limit"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_bucket_holds_its_burst_then_says_how_long_to_wait() {
        let limit = RateLimit::parse("6/min burst 2").unwrap().unwrap();
        let limiter = Limiter::new(limit);
        let alice = Client::Key(Arc::from("alice"));
        assert_eq!(limiter.check(&alice), Ok(()));
        assert_eq!(limiter.check(&alice), Ok(()));
        let wait = limiter.check(&alice).unwrap_err();
        // One request every 10 s refills the bucket.
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        // Another client has a bucket of its own.
        assert_eq!(limiter.check(&Client::Unknown), Ok(()));
    }

    #[test]
    fn idle_clients_are_forgotten_once_there_are_many() {
        let clock = governor::clock::FakeRelativeClock::default();
        let limit = RateLimit::parse("60/min burst 1").unwrap().unwrap();
        let limiter = Limiter::with_clock(limit, clock.clone());
        let peer = |n: u32| Client::peer(IpAddr::from(n.to_be_bytes()));
        let many = u32::try_from(BUCKETS_PRUNE_OVER).unwrap() + 100;
        for n in 0..many {
            assert_eq!(limiter.check(&peer(n)), Ok(()));
        }
        // A prune ran past 10,000 and found every client busy.
        assert_eq!(limiter.buckets.len(), BUCKETS_PRUNE_OVER + 100);
        assert!(limiter.check(&peer(0)).is_err());
        // A second later every bucket is full again: the next size check
        // prunes them all but the one in use.
        clock.advance(Duration::from_secs(1));
        for _ in 0..SIZE_CHECK_EVERY {
            assert_eq!(limiter.check(&peer(1)), Ok(()));
            clock.advance(Duration::from_secs(1));
        }
        assert!(limiter.buckets.len() <= 2, "{}", limiter.buckets.len());
    }

    #[test]
    fn past_the_bucket_bound_new_addresses_share_one_and_keys_keep_theirs() {
        let clock = governor::clock::FakeRelativeClock::default();
        let limit = RateLimit::parse("1/h burst 1").unwrap().unwrap();
        let limiter = Limiter::with_clock(limit, clock);
        let peer = |n: u32| Client::peer(IpAddr::from(n.to_be_bytes()));
        let bound = u32::try_from(PEER_BUCKETS_MAX).unwrap();
        for n in 0..bound {
            assert_eq!(limiter.check(&peer(n)), Ok(()));
        }
        // Let a size check see the bound (through a key's bucket).
        let key = Client::Key(Arc::from("web"));
        for _ in 0..SIZE_CHECK_EVERY {
            let _ = limiter.check(&key);
        }
        let len = limiter.buckets.len();
        // Every address now shares the crowd's bucket (one request an
        // hour), known or not; the map grows by that one bucket only.
        assert_eq!(limiter.check(&peer(bound + 1)), Ok(()));
        assert!(limiter.check(&peer(bound + 2)).is_err());
        assert!(limiter.check(&peer(7)).is_err());
        assert_eq!(limiter.buckets.len(), len + 1);
        // Keys keep their own buckets.
        assert_eq!(limiter.check(&Client::Key(Arc::from("ops"))), Ok(()));
    }

    #[test]
    fn an_ipv6_client_is_bucketed_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let addr = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(
            Client::peer(addr("2001:db8::1")),
            Client::peer(addr("2001:db8::ffff:2"))
        );
        assert_ne!(
            Client::peer(addr("2001:db8::1")),
            Client::peer(addr("2001:db8:0:1::1"))
        );
        assert_eq!(
            Client::peer(addr("::ffff:192.0.2.7")),
            Client::Peer(addr("192.0.2.7"))
        );
    }
}
