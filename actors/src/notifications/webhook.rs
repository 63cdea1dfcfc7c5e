//! Webhook delivery of notifications: each notification recorded while a
//! webhook is configured is POSTed to it as JSON, at least once, by a
//! worker actor beside the service's entry.
//!
//! The pending delivery is written in the same store write as the
//! notification, so it survives any crash; the worker makes attempts in the
//! background (at most `BATCH_LEN_MAX` at once), records each attempt's
//! outcome durably, and retries failures with exponential backoff until the
//! webhook answers 2xx or [`WebhookConfig::attempts_max`] attempts failed.
//! A crash between a successful POST and its record means one more POST:
//! receivers dedupe on `X-Bulwark-Notification-Id`.
//!
//! Each request carries `X-Bulwark-Notification-Id`, `X-Bulwark-Attempt`
//! and, with a secret, `X-Bulwark-Signature: sha256=<hex>`: the HMAC-SHA256
//! of the body under the secret, so the receiver can tell the request came
//! from this shop. Redirects are not followed (a 3xx is a failed attempt).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bulwark_runtime::{MetricKind, MetricSample};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::{debug, warn};

use super::messages::Delivery;
use super::store::{Attempt, NotificationsStore, StoredNotification};
use crate::common::{ShopError, now_ms};
use crate::worker::{Kick, Next, Worker};

/// Default [`WebhookConfig::attempts_max`]: with the default backoff the
/// last attempt comes about 8.5 minutes after the first, long enough to
/// ride out a receiver's restart or deploy.
pub const WEBHOOK_ATTEMPTS_DEFAULT: u32 = 10;
/// Default [`WebhookConfig::timeout`] of one attempt.
pub const WEBHOOK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default [`WebhookConfig::backoff_initial`].
pub const WEBHOOK_BACKOFF_INITIAL_DEFAULT: Duration = Duration::from_secs(1);
/// Default [`WebhookConfig::backoff_max`].
pub const WEBHOOK_BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(300);
/// Attempts made at once, in one pass.
const BATCH_LEN_MAX: usize = 16;
/// A pass runs at least this often without a kick.
const IDLE_PASS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest error text kept with a delivery.
const ERROR_LEN_MAX: usize = 256;

/// Where and how notifications are delivered.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    url: reqwest::Url,
    secret: Option<String>,
    /// Attempts before a delivery is given up (`failed`).
    pub attempts_max: u32,
    /// Pause after the first failed attempt; doubles after each next one.
    pub backoff_initial: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
    /// Deadline of one attempt (connect, send, answer).
    pub timeout: Duration,
}

impl WebhookConfig {
    /// Delivery to `url` (`http://` or `https://`, with a host) with the
    /// default attempts, backoff and timeout, unsigned.
    ///
    /// # Errors
    /// What is wrong with the URL.
    pub fn new(url: &str) -> Result<Self, String> {
        // The URL is not quoted back: its path or user part may hold a token.
        let url = reqwest::Url::parse(url).map_err(|err| format!("invalid URL: {err}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "unsupported scheme {:?}: use http:// or https://",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".to_owned());
        }
        Ok(Self {
            url,
            secret: None,
            attempts_max: WEBHOOK_ATTEMPTS_DEFAULT,
            backoff_initial: WEBHOOK_BACKOFF_INITIAL_DEFAULT,
            backoff_max: WEBHOOK_BACKOFF_MAX_DEFAULT,
            timeout: WEBHOOK_TIMEOUT_DEFAULT,
        })
    }

    /// Signs every request with `secret` (`X-Bulwark-Signature`).
    ///
    /// # Errors
    /// An empty secret.
    pub fn with_secret(mut self, secret: &str) -> Result<Self, String> {
        if secret.is_empty() {
            return Err("must not be empty".to_owned());
        }
        self.secret = Some(secret.to_owned());
        Ok(self)
    }

    /// The URL notifications are POSTed to.
    #[must_use]
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The URL without what may be secret: scheme, host and port only.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        let path = if self.url.path() == "/" { "/" } else { "/…" };
        match self.url.port() {
            Some(port) => format!("{}://{host}:{port}{path}", self.url.scheme()),
            None => format!("{}://{host}{path}", self.url.scheme()),
        }
    }

    /// The pause after the `failures`-th failed attempt.
    fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.backoff_initial
            .checked_mul(1 << shift)
            .map_or(self.backoff_max, |d| d.min(self.backoff_max))
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.redacted_url())
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("attempts_max", &self.attempts_max)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The `X-Bulwark-Signature` value of `body` under `secret`.
#[must_use]
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// What the delivery worker did since the process started (`/metrics`).
#[derive(Debug, Default)]
pub(crate) struct WebhookStats {
    /// Attempts the webhook answered 2xx.
    pub(crate) delivered: AtomicU64,
    /// Failed attempts that will be retried.
    pub(crate) retried: AtomicU64,
    /// Failed last attempts: deliveries given up.
    pub(crate) given_up: AtomicU64,
}

impl WebhookStats {
    fn count(&self, attempt: &Attempt) {
        match attempt {
            Attempt::Delivered => &self.delivered,
            Attempt::Failed {
                retry_at_ms: Some(_),
                ..
            } => &self.retried,
            Attempt::Failed {
                retry_at_ms: None, ..
            } => &self.given_up,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// `bulwark_webhook_attempts_total{outcome}`.
    pub(crate) fn samples(&self) -> Vec<MetricSample> {
        let help = "Webhook delivery attempts of notifications, by outcome.";
        [
            ("delivered", &self.delivered),
            ("retried", &self.retried),
            ("given_up", &self.given_up),
        ]
        .into_iter()
        .map(|(outcome, count)| MetricSample {
            name: "bulwark_webhook_attempts_total",
            help,
            kind: MetricKind::Counter,
            labels: vec![("outcome", outcome.to_owned())],
            #[allow(clippy::cast_precision_loss)] // counters far below 2^52
            value: count.load(Ordering::Relaxed) as f64,
        })
        .collect()
    }
}

/// The delivery worker: the store, the webhook and an HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub(crate) store: NotificationsStore,
    pub(crate) config: Arc<WebhookConfig>,
    pub(crate) client: reqwest::Client,
    pub(crate) kick: Kick,
    pub(crate) stats: Arc<WebhookStats>,
}

/// The HTTP client of webhook attempts: no redirects followed.
///
/// # Errors
/// The TLS backend could not be set up (no usable CA certificates).
pub(crate) fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

impl Webhook {
    /// Makes the due attempts; returns whether a full batch was due (there
    /// may be more) and when the next pending one falls due.
    async fn deliver_due(&self) -> Result<(bool, Option<u64>), ShopError> {
        let now = now_ms();
        let (due, next_due) = self.store.due(now, BATCH_LEN_MAX)?;
        let full = due.len() == BATCH_LEN_MAX;
        let attempts = due
            .into_iter()
            .map(|(notification, delivery)| self.attempt(notification, delivery));
        for (id, outcome) in futures::future::join_all(attempts).await {
            self.stats.count(&outcome);
            self.store.record_attempt(id, outcome).await?;
        }
        Ok((full, next_due))
    }

    /// One POST of `notification`; its id and outcome.
    async fn attempt(
        &self,
        notification: StoredNotification,
        delivery: Delivery,
    ) -> (u64, Attempt) {
        let config = &self.config;
        let id = notification.id;
        let number = delivery.attempts.saturating_add(1);
        let body = match serde_json::to_vec(&notification) {
            Ok(body) => body,
            Err(err) => {
                return (
                    id,
                    Attempt::Failed {
                        error: format!("cannot encode the notification: {err}"),
                        retry_at_ms: None,
                    },
                );
            }
        };
        let mut request = self
            .client
            .post(config.url.clone())
            .timeout(config.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-bulwark-notification-id", id.to_string())
            .header("x-bulwark-attempt", number.to_string());
        if let Some(secret) = &config.secret {
            request = request.header("x-bulwark-signature", signature(secret, &body));
        }
        let error = match request.body(body).send().await {
            Ok(response) if response.status().is_success() => {
                debug!(
                    notification = id,
                    attempt = number,
                    "notification delivered"
                );
                return (id, Attempt::Delivered);
            }
            Ok(response) => format!("the webhook answered {}", response.status()),
            // Without the URL: it may hold credentials.
            Err(err) => err.without_url().to_string(),
        };
        let mut error = error;
        if error.len() > ERROR_LEN_MAX {
            let mut end = ERROR_LEN_MAX;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
        }
        let retry_at_ms = (number < config.attempts_max).then(|| {
            let pause = u64::try_from(config.backoff(number).as_millis()).unwrap_or(u64::MAX);
            now_ms().saturating_add(pause)
        });
        if retry_at_ms.is_none() {
            warn!(notification = id, attempts = number, %error, "notification not delivered; giving up");
        } else {
            debug!(notification = id, attempt = number, %error, "webhook attempt failed; will retry");
        }
        (id, Attempt::Failed { error, retry_at_ms })
    }
}

impl Worker for Webhook {
    async fn pass(&mut self) -> Next {
        let next_due = match self.deliver_due().await {
            Ok((true, _)) => return Next::Now,
            Ok((false, next_due)) => next_due,
            Err(err) => {
                warn!(error = %err, "webhook pass failed");
                None
            }
        };
        let until_due = next_due.map_or(IDLE_PASS_INTERVAL, |at| {
            Duration::from_millis(at.saturating_sub(now_ms())).min(IDLE_PASS_INTERVAL)
        });
        Next::Wait {
            at_most: until_due,
            linger: Duration::ZERO,
        }
    }

    fn kick(&self) -> &Kick {
        &self.kick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_with_a_host_are_accepted() {
        assert!(WebhookConfig::new("http://127.0.0.1:9000/hook").is_ok());
        assert!(WebhookConfig::new("https://hooks.example.com/x").is_ok());
        for bad in [
            "",
            "hooks.example.com",
            "ftp://x/y",
            "file:///etc/passwd",
            "http://",
        ] {
            assert!(WebhookConfig::new(bad).is_err(), "{bad}");
        }
        let config = WebhookConfig::new("http://h/").unwrap();
        assert!(config.clone().with_secret("").is_err());
        let signed = config.with_secret("s3cret-value").unwrap();
        assert!(!format!("{signed:?}").contains("s3cret-value"));
        // Tokens in the user part or the path are never printed.
        let tokened = WebhookConfig::new("https://u:pw@hooks.example.com:8443/T0K3N/x").unwrap();
        assert_eq!(tokened.redacted_url(), "https://hooks.example.com:8443/…");
        assert!(!format!("{tokened:?}").contains("T0K3N"));
        assert!(!format!("{tokened:?}").contains("pw"));
        let err = WebhookConfig::new("http://[T0K3N/").unwrap_err();
        assert!(!err.contains("T0K3N"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let mut config = WebhookConfig::new("http://h/").unwrap();
        config.backoff_initial = Duration::from_secs(1);
        config.backoff_max = Duration::from_secs(10);
        let pauses: Vec<u64> = (1..=6).map(|n| config.backoff(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 10, 10]);
        assert_eq!(config.backoff(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
