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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
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
/// The rate limiter forgets idle clients once it tracks more than this
/// many, so a scan from many addresses cannot grow it without bound.
const BUCKETS_PRUNE_OVER: usize = 10_000;
/// How often (in checks) the limiter looks at its size.
const PRUNE_CHECK_EVERY: u64 = 1_024;

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

/// Why an API key setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// Not `NAME:SCOPES:SECRET`.
    #[error("expected NAME:SCOPES:SECRET with scopes joined by '+' (web:read+write:SECRET)")]
    Format,
    /// The name is empty, too long or has other characters.
    #[error("invalid key name {0:?}: 1 to {API_KEY_NAME_LEN_MAX} letters, digits, '-' or '_'")]
    Name(String),
    /// A scope that does not exist.
    #[error("key {key}: unknown scope {scope:?}; the scopes are read, write and admin")]
    Scope {
        /// The key's name.
        key: String,
        /// The scope given.
        scope: String,
    },
    /// A key without any scope.
    #[error("key {0}: it has no scope")]
    NoScope(String),
    /// The secret is too short to resist guessing.
    #[error("key {0}: the secret is shorter than {API_KEY_SECRET_LEN_MIN} characters")]
    ShortSecret(String),
    /// The secret cannot be sent as a bearer token.
    #[error("key {0}: the secret may hold only letters, digits and - . _ ~ + / =")]
    SecretAlphabet(String),
    /// Two keys share a name.
    #[error("two keys are named {0}")]
    DuplicateName(String),
    /// Two keys share a secret.
    #[error("keys {0} and {1} have the same secret")]
    DuplicateSecret(String, String),
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
            return Err(ApiKeyError::Name(name.to_owned()));
        }
        if scopes.is_empty() {
            return Err(ApiKeyError::NoScope(name.to_owned()));
        }
        if secret.chars().count() < API_KEY_SECRET_LEN_MIN {
            return Err(ApiKeyError::ShortSecret(name.to_owned()));
        }
        let token = secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
        if !token {
            return Err(ApiKeyError::SecretAlphabet(name.to_owned()));
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
    /// [`ApiKeyError`] naming what is wrong (never the secret).
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
            .map(|scope| {
                Scope::from_name(scope).ok_or_else(|| ApiKeyError::Scope {
                    key: name.to_owned(),
                    scope: scope.to_owned(),
                })
            })
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
            for earlier in &keys[..i] {
                if earlier.name == key.name {
                    return Err(ApiKeyError::DuplicateName(key.name.to_string()));
                }
                if earlier.digest == key.digest {
                    return Err(ApiKeyError::DuplicateSecret(
                        earlier.name.to_string(),
                        key.name.to_string(),
                    ));
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
    /// No valid key: the connection's peer address.
    Peer(IpAddr),
    /// No valid key and no peer address (a request made in-process).
    Unknown,
}

/// The edge's rate limiter: one GCRA bucket per client.
pub(crate) struct Limiter<C: Clock = DefaultClock> {
    buckets: RateLimiter<Client, DashMapStateStore<Client>, C, NoOpMiddleware<C::Instant>>,
    checks: AtomicU64,
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
        }
    }

    /// Takes one request from `client`'s bucket, or says how long until
    /// it holds one. Now and then forgets the buckets that are full again
    /// (their clients idle), so the map stays bounded.
    fn check(&self, client: &Client) -> Result<(), Duration> {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(PRUNE_CHECK_EVERY)
            && self.buckets.len() > BUCKETS_PRUNE_OVER
        {
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
        }
        self.buckets
            .check_key(client)
            .map_err(|not_until| not_until.wait_time_from(self.buckets.clock().now()))
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
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(Client::Unknown, |ConnectInfo(addr)| Client::Peer(addr.ip()));
    let (client, refusal) = if keys.is_empty() {
        (peer, None)
    } else {
        match bearer(request.headers()) {
            None => (
                peer,
                Some(ApiError::Unauthorized {
                    detail: "this API needs `Authorization: Bearer <API key>`".to_owned(),
                }),
            ),
            Some(secret) => match keys.find(secret) {
                None => (
                    peer,
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
            .map_err(|wait| ApiError::RateLimited {
                detail: match &client {
                    Client::Key(name) => format!("API key {name} is over its rate limit"),
                    Client::Peer(_) | Client::Unknown => {
                        "this client is over its rate limit".to_owned()
                    }
                },
                // Whole seconds, rounded up: a client that waits that long
                // finds a request in its bucket.
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            })?;
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
            (
                "we b:read:0123456789abcdef",
                ApiKeyError::Name("we b".into()),
            ),
            (":read:0123456789abcdef", ApiKeyError::Name(String::new())),
            ("web::0123456789abcdef", ApiKeyError::NoScope("web".into())),
            (
                "web:read+root:0123456789abcdef",
                ApiKeyError::Scope {
                    key: "web".into(),
                    scope: "root".into(),
                },
            ),
            ("web:read:short", ApiKeyError::ShortSecret("web".into())),
            (
                "web:read:0123456789abcdef,x",
                ApiKeyError::SecretAlphabet("web".into()),
            ),
            (
                "web:read:0123456789 abcdef",
                ApiKeyError::SecretAlphabet("web".into()),
            ),
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
            ApiKeyError::DuplicateSecret("a".into(), "b".into())
        );
        assert_eq!(
            ApiKeys::new(vec![a, a2]).unwrap_err(),
            ApiKeyError::DuplicateName("a".into())
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
        let peer = |n: u32| Client::Peer(IpAddr::from(n.to_be_bytes()));
        let many = u32::try_from(BUCKETS_PRUNE_OVER).unwrap() + 100;
        for n in 0..many {
            assert_eq!(limiter.check(&peer(n)), Ok(()));
        }
        assert_eq!(limiter.buckets.len(), BUCKETS_PRUNE_OVER + 100);
        // Busy clients keep their state: peer 0 is still empty.
        assert!(limiter.check(&peer(0)).is_err());
        // A second later every bucket is full again; the next prune drops
        // them all but the one just used.
        clock.advance(Duration::from_secs(1));
        while limiter.checks.load(Ordering::Relaxed) % PRUNE_CHECK_EVERY != 0 {
            assert_eq!(limiter.check(&peer(0)), Ok(()));
            clock.advance(Duration::from_secs(1));
        }
        assert!(limiter.buckets.len() > BUCKETS_PRUNE_OVER);
        limiter.check(&peer(1)).unwrap();
        assert!(limiter.buckets.len() <= 2, "{}", limiter.buckets.len());
    }
}
