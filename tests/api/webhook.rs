//! Webhook delivery of notifications: each notification is POSTed as JSON,
//! signed, retried with backoff until the receiver answers 2xx, given up
//! after its attempts, and still delivered after a restart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use bulwark::Config;
use bulwark_actors::WebhookConfig;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;

use crate::helpers::{TestApp, eventually, id, spawn_app_with};

const SECRET: &str = "hook-secret-1";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct Log {
    received: Vec<Received>,
    /// Requests still to be answered 503.
    failures_left: usize,
}

/// A webhook receiver on 127.0.0.1: answers 503 to the first `failures`
/// requests, then 200.
struct Receiver {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(listener: TcpListener, failures: usize) -> Self {
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log {
            received: Vec::new(),
            failures_left: failures,
        }));
        async fn hook(
            State(log): State<Arc<Mutex<Log>>>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> AxumStatus {
            let mut log = log.lock().unwrap();
            log.received.push(Received {
                headers,
                body: body.to_vec(),
            });
            if log.failures_left > 0 {
                log.failures_left -= 1;
                AxumStatus::SERVICE_UNAVAILABLE
            } else {
                AxumStatus::OK
            }
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(Arc::clone(&log));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, log, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().received.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn webhook(url: &str, attempts: u32) -> WebhookConfig {
    let mut config = WebhookConfig::new(url)
        .unwrap()
        .with_secret(SECRET)
        .unwrap();
    config.attempts_max = attempts;
    config.backoff_initial = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(100);
    config
}

/// The delivery of the user's only notification, once it has `status`.
async fn delivery(app: &TestApp, user_id: u64, status: &str) -> Value {
    eventually(&format!("a {status} delivery"), || async {
        let page = app.notifications_of(user_id).await;
        let delivery = &page["items"][0]["delivery"];
        (delivery["status"] == status).then(|| page["items"][0].clone())
    })
    .await
}

fn hmac_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_posted_signed_and_retried_until_the_webhook_takes_it() {
    let receiver = Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), 2).await;
    let url = receiver.url();
    let app = spawn_app_with(|config: &mut Config| config.webhook = Some(webhook(&url, 10))).await;
    let user = app.create_user("hooked").await;
    let notification = delivery(&app, id(&user), "delivered").await;
    assert_eq!(notification["delivery"]["attempts"], 3, "{notification}");
    assert!(notification["delivery"].get("last_error").is_none());

    let received = receiver.received();
    assert_eq!(received.len(), 3);
    for (i, request) in received.iter().enumerate() {
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(
            request.headers["x-bulwark-notification-id"],
            notification["id"].to_string().as_str()
        );
        assert_eq!(
            request.headers["x-bulwark-attempt"],
            (i + 1).to_string().as_str()
        );
        assert_eq!(
            request.headers["x-bulwark-signature"],
            format!("sha256={}", hmac_hex(&request.body)).as_str()
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["id"], notification["id"]);
        assert_eq!(body["user_id"], user["id"]);
        assert_eq!(body["kind"], "user.created");
    }
    assert_metrics(&app, [1, 2, 0]).await;
    app.stop().await;
}

/// `bulwark_webhook_attempts_total` by outcome: delivered, retried, given up.
async fn assert_metrics(app: &TestApp, [delivered, retried, given_up]: [u32; 3]) {
    let text = app.metrics().await.text().await.unwrap();
    for (outcome, count) in [
        ("delivered", delivered),
        ("retried", retried),
        ("given_up", given_up),
    ] {
        let line = format!("bulwark_webhook_attempts_total{{outcome=\"{outcome}\"}} {count}");
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_given_up_after_its_attempts_and_says_why() {
    let receiver =
        Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), usize::MAX).await;
    let url = receiver.url();
    let app = spawn_app_with(|config: &mut Config| config.webhook = Some(webhook(&url, 3))).await;
    let user = app.create_user("unlucky").await;
    let notification = delivery(&app, id(&user), "failed").await;
    let delivery = &notification["delivery"];
    assert_eq!(delivery["attempts"], 3, "{notification}");
    assert!(
        delivery["last_error"].as_str().unwrap().contains("503"),
        "{notification}"
    );
    assert!(delivery.get("next_attempt_at_ms").is_none());
    // No attempt after the last.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3);
    assert_metrics(&app, [0, 2, 1]).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_survives_a_restart_and_is_made_after_it() {
    // The receiver refuses everything until told otherwise.
    let receiver =
        Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), usize::MAX).await;
    let url = receiver.url();
    let configure = |config: &mut Config| config.webhook = Some(webhook(&url, 1000));
    let app = spawn_app_with(configure).await;
    let user = app.create_user("patient").await;
    eventually("a failed attempt", || async {
        let page = app.notifications_of(id(&user)).await;
        let delivery = &page["items"][0]["delivery"];
        (delivery["status"] == "pending" && delivery["attempts"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    let app = app.restart_with(configure).await;
    let refused = receiver.received().len();
    receiver.log.lock().unwrap().failures_left = 0;
    let notification = delivery(&app, id(&user), "delivered").await;
    let attempts = notification["delivery"]["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "{notification}");
    // Every recorded attempt reached the receiver (one cut short by the
    // stop may have too, unrecorded: at least once); the last was taken.
    let received = receiver.received();
    assert!(received.len() as u64 >= attempts);
    assert!(received.len() > refused);
    assert_eq!(
        received.last().unwrap().headers["x-bulwark-notification-id"],
        notification["id"].to_string().as_str()
    );
    app.stop().await;
}
