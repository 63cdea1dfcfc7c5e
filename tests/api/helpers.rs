//! `spawn_app()`: the real application in-process on 127.0.0.1:0 with a
//! fresh data directory, and a `TestApp` with one method per endpoint
//! (zero2prod `tests/api/helpers.rs`). Logs are silent unless `TEST_LOG`
//! is set.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use bulwark::{App, AppError, Config};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a test waits for asynchronous work (a saga, an event) before
/// failing: generous for a loaded 2-core machine, still a bound.
pub(crate) const EVENTUALLY: Duration = Duration::from_secs(20);
/// Pause between two polls of a condition.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

static TRACING: Once = Once::new();

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug")),
                )
                .with_test_writer()
                .init();
        }
    });
}

/// A running application and a client for it.
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) client: Client,
    stop: Option<oneshot::Sender<()>>,
    running: Option<JoinHandle<Result<(), AppError>>>,
    /// Where this node keeps its stores (`<data dir>/<node>`).
    node_data_dir: std::path::PathBuf,
    _data: tempfile::TempDir,
}

/// The application with test defaults.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The admin key of [`spawn_app_with_admin`].
pub(crate) const ADMIN_KEY: &str = "admin-test-key";

/// The application with the admin API on (key [`ADMIN_KEY`]), so a test
/// can wait for the event pipeline ([`TestApp::events_settled`]).
pub(crate) async fn spawn_app_with_admin(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|config| {
        config.edge.admin_key = bulwark_http::AdminKey::new(ADMIN_KEY);
        configure(config);
    })
    .await
}

/// The application with `configure` applied to the test defaults.
pub(crate) async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(tempfile::tempdir().unwrap(), configure).await
}

/// The application on the data directory `data`, with `configure` applied
/// to the test defaults.
async fn spawn_app_on(data: tempfile::TempDir, configure: impl FnOnce(&mut Config)) -> TestApp {
    init_tracing();
    let mut config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.path().to_owned(),
        ..Config::default()
    };
    configure(&mut config);
    let node_data_dir = config.node_data_dir();
    let app = App::build(config).await.unwrap();
    let addr = app.http_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        client: Client::builder().build().unwrap(),
        stop: Some(stop),
        running: Some(running),
        node_data_dir,
        _data: data,
    }
}

/// Polls `check` until it returns `Some`, failing after [`EVENTUALLY`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

impl TestApp {
    /// The directory of one service's store.
    pub(crate) fn store_dir(&self, service: &str) -> std::path::PathBuf {
        self.node_data_dir.join(service)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the application gracefully and waits for it.
    pub(crate) async fn stop(mut self) {
        self.stop_in_place().await;
    }

    async fn stop_in_place(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
    }

    /// Stops the application gracefully and starts it again on the same
    /// data directory, with `configure` applied to the test defaults.
    pub(crate) async fn restart_with(mut self, configure: impl FnOnce(&mut Config)) -> TestApp {
        self.stop_in_place().await;
        spawn_app_on(self._data, configure).await
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A request with any method, content type and raw body.
    pub(crate) async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        self.client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                self.url(path),
            )
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    // admin

    /// GETs an admin route, with `key` as the bearer key when given.
    pub(crate) async fn admin_get(&self, path: &str, key: Option<&str>) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.unwrap()
    }

    /// Kills the actor at `path` through the admin API.
    pub(crate) async fn admin_kill(&self, path: &str, key: Option<&str>) -> Response {
        let mut request = self
            .client
            .post(self.url("/admin/actors/kill"))
            .query(&[("path", path)]);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.unwrap()
    }

    // users

    pub(crate) async fn post_user(&self, body: &Value) -> Response {
        self.post_json("/api/v1/users", body).await
    }

    /// Creates a user and returns its body.
    pub(crate) async fn create_user(&self, username: &str) -> Value {
        let response = self
            .post_user(&json!({"username": username, "email": format!("{username}@example.com")}))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    pub(crate) async fn get_user(&self, id: u64) -> Response {
        self.get(&format!("/api/v1/users/{id}")).await
    }

    pub(crate) async fn list_users(&self, query: &str) -> Response {
        self.get(&format!("/api/v1/users{query}")).await
    }

    pub(crate) async fn put_user(&self, id: u64, body: &Value) -> Response {
        self.client
            .put(self.url(&format!("/api/v1/users/{id}")))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn delete_user(&self, id: u64) -> Response {
        self.client
            .delete(self.url(&format!("/api/v1/users/{id}")))
            .send()
            .await
            .unwrap()
    }

    // products

    pub(crate) async fn post_product(&self, body: &Value) -> Response {
        self.post_json("/api/v1/products", body).await
    }

    /// Creates a product and returns its body.
    pub(crate) async fn create_product(&self, name: &str, price: f64, quantity: u64) -> Value {
        let response = self
            .post_product(&json!({"name": name, "price": price, "quantity": quantity}))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    pub(crate) async fn get_product(&self, id: u64) -> Response {
        self.get(&format!("/api/v1/products/{id}")).await
    }

    pub(crate) async fn list_products(&self, query: &str) -> Response {
        self.get(&format!("/api/v1/products{query}")).await
    }

    pub(crate) async fn put_product(&self, id: u64, body: &Value) -> Response {
        self.client
            .put(self.url(&format!("/api/v1/products/{id}")))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn delete_product(&self, id: u64) -> Response {
        self.client
            .delete(self.url(&format!("/api/v1/products/{id}")))
            .send()
            .await
            .unwrap()
    }

    // orders

    pub(crate) async fn post_order(&self, body: &Value, idempotency_key: Option<&str>) -> Response {
        let mut request = self.client.post(self.url("/api/v1/orders")).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    pub(crate) async fn get_order(&self, id: u64) -> Response {
        self.get(&format!("/api/v1/orders/{id}")).await
    }

    pub(crate) async fn list_orders(&self, query: &str) -> Response {
        self.get(&format!("/api/v1/orders{query}")).await
    }

    pub(crate) async fn cancel_order(&self, id: u64) -> Response {
        self.client
            .post(self.url(&format!("/api/v1/orders/{id}/cancel")))
            .send()
            .await
            .unwrap()
    }

    /// Polls the order until its saga has finished; returns its body.
    pub(crate) async fn settled_order(&self, id: u64) -> Value {
        eventually(&format!("order {id} to leave pending"), || async {
            let order: Value = self.get_order(id).await.json().await.unwrap();
            (order["status"] != "pending").then_some(order)
        })
        .await
    }

    // notifications and payments

    pub(crate) async fn list_notifications(&self, query: &str) -> Response {
        self.get(&format!("/api/v1/notifications{query}")).await
    }

    /// The first page of `user_id`'s notifications.
    pub(crate) async fn notifications_of(&self, user_id: u64) -> Value {
        let response = self
            .list_notifications(&format!("?user_id={user_id}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// How many of `user_id`'s notifications are of `kind`.
    pub(crate) async fn notifications_of_kind(&self, user_id: u64, kind: &str) -> usize {
        let page = self.notifications_of(user_id).await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == kind)
            .count()
    }

    /// Waits until a notification of `kind` reached `user_id`, then until
    /// every outbox is drained (needs [`spawn_app_with_admin`]): from then
    /// on no delivery is in flight, so the count is final. Returns it.
    pub(crate) async fn settled_notifications(&self, user_id: u64, kind: &str) -> usize {
        eventually(
            &format!("a {kind} notification for user {user_id}"),
            || async { (self.notifications_of_kind(user_id, kind).await > 0).then_some(()) },
        )
        .await;
        self.events_settled().await;
        self.notifications_of_kind(user_id, kind).await
    }

    /// Waits until every service's outbox is empty: each event written so
    /// far was delivered and confirmed.
    pub(crate) async fn events_settled(&self) {
        eventually("every outbox to drain", || async {
            let response = self.admin_get("/admin/outboxes", Some(ADMIN_KEY)).await;
            if response.status() != StatusCode::OK {
                return None;
            }
            let body: Value = response.json().await.ok()?;
            let outboxes = body["outboxes"].as_array()?;
            (!outboxes.is_empty() && outboxes.iter().all(|o| o["pending"] == 0)).then_some(())
        })
        .await;
    }

    pub(crate) async fn get_payment(&self, order_id: u64) -> Response {
        self.get(&format!("/api/v1/payments?order_id={order_id}"))
            .await
    }

    // probes

    pub(crate) async fn health(&self) -> Response {
        self.get("/health").await
    }

    pub(crate) async fn ready(&self) -> Response {
        self.get("/ready").await
    }

    pub(crate) async fn openapi(&self) -> Response {
        self.get("/openapi.json").await
    }

    pub(crate) async fn metrics(&self) -> Response {
        self.get("/metrics").await
    }
}

/// The id of a created resource's body.
pub(crate) fn id(body: &Value) -> u64 {
    body["id"].as_u64().unwrap()
}

/// Asserts a problem+json response with `status`; returns the body.
pub(crate) async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    body
}
