//! API keys and rate limits at the edge: with keys configured the REST API
//! needs one whose scope covers the request (401, 403); a client over its
//! rate limit gets 429 + `Retry-After` and nothing is done; probes stay
//! open; without keys the limit is per client address.

use std::net::{IpAddr, Ipv4Addr};

use bulwark::Config;
use bulwark_http::{ApiKey, ApiKeys, RateLimit};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem, spawn_app_with};

const READER: &str = "reader-secret-0001";
const WRITER: &str = "writer-secret-0002";
const OPS: &str = "ops-secret-000003";

fn keys() -> ApiKeys {
    ApiKeys::new(vec![
        ApiKey::parse(&format!("reader:read:{READER}")).unwrap(),
        ApiKey::parse(&format!("writer:read+write:{WRITER}")).unwrap(),
        ApiKey::parse(&format!("ops:read+admin:{OPS}")).unwrap(),
    ])
    .unwrap()
}

fn with_keys(config: &mut Config) {
    config.edge.api_keys = keys();
}

/// `request` with `key` as its bearer key when given.
async fn send(request: RequestBuilder, key: Option<&str>) -> Response {
    match key {
        Some(key) => request.bearer_auth(key),
        None => request,
    }
    .send()
    .await
    .unwrap()
}

async fn post_user(app: &TestApp, key: Option<&str>, name: &str) -> Response {
    let body = json!({"username": name, "email": format!("{name}@example.com")});
    send(app.client.post(app.url("/api/v1/users")).json(&body), key).await
}

async fn users_total(app: &TestApp, key: Option<&str>) -> u64 {
    let response = send(app.client.get(app.url("/api/v1/users")), key).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_api_keys_every_request_needs_a_key_whose_scope_covers_it() {
    let app = spawn_app_with(with_keys).await;

    for key in [None, Some("not-a-configured-key"), Some("")] {
        let response = send(app.client.get(app.url("/api/v1/users")), key).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"bulwark\""
        );
        let body = problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(body["type"], "/problems/unauthorized", "{key:?}");
        let body = problem(
            post_user(&app, key, "mallory").await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert_eq!(body["type"], "/problems/unauthorized");
    }
    // Another scheme carrying a real secret is not a bearer key.
    let response = app
        .client
        .get(app.url("/api/v1/users"))
        .header("authorization", format!("Basic {WRITER}"))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;

    // read may read, not write; nothing is created by the refused POST.
    let body = problem(
        post_user(&app, Some(READER), "reggie").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(body["type"], "/problems/forbidden");
    assert!(
        body["detail"].as_str().unwrap().contains("write scope"),
        "{body}"
    );
    assert_eq!(users_total(&app, Some(READER)).await, 0);

    let response = post_user(&app, Some(WRITER), "wanda").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();
    let path = format!("/api/v1/users/{}", user["id"]);
    let response = send(app.client.get(app.url(&path)), Some(READER)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(users_total(&app, Some(READER)).await, 1);
    let response = send(app.client.delete(app.url(&path)), Some(READER)).await;
    problem(response, StatusCode::FORBIDDEN).await;
    let response = send(app.client.get(app.url("/api/v1/cluster")), None).await;
    problem(response, StatusCode::UNAUTHORIZED).await;

    // Probes and documents need no key.
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }

    // The admin scope opens the admin API; other keys are refused there.
    let response = app.admin_get("/admin/actors", Some(OPS)).await;
    assert_eq!(response.status(), StatusCode::OK);
    problem(
        app.admin_get("/admin/actors", Some(WRITER)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        app.admin_get("/admin/actors", Some("nope")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after_and_nothing_is_done() {
    // Three requests a minute: the fourth in a row must wait about 20 s,
    // far longer than this test takes even on a loaded machine.
    let app = spawn_app_with(|config| {
        with_keys(config);
        config.edge.rate_limit = RateLimit::parse("3/min").unwrap();
    })
    .await;

    for name in ["ann", "bob", "cat"] {
        let response = post_user(&app, Some(WRITER), name).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
    }
    let response = post_user(&app, Some(WRITER), "dan").await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "Retry-After {retry_after}");
    let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/rate-limited");
    assert!(
        body["detail"].as_str().unwrap().contains("writer"),
        "{body}"
    );

    // Another key has a bucket of its own, and sees that dan was never made.
    assert_eq!(users_total(&app, Some(READER)).await, 3);
    // Probes and the admin API are never limited.
    for _ in 0..5 {
        assert_eq!(app.health().await.status(), StatusCode::OK);
        let response = app.admin_get("/admin/outboxes", Some(OPS)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // A client guessing keys is limited by its address.
    for _ in 0..3 {
        problem(
            post_user(&app, Some("guess-0000000000"), "eve").await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    problem(
        post_user(&app, Some("guess-0000000001"), "eve").await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    // Guessing through the admin API is charged to the same address; the
    // admin key's holder is never limited.
    problem(
        app.admin_get("/admin/actors", Some("guess-0000000002"))
            .await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(
        app.admin_get("/admin/actors", Some(OPS)).await.status(),
        StatusCode::OK
    );
    let metrics = app.metrics().await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("bulwark_http_requests_total")
                && line.contains("status=\"429\"")),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_the_rate_limit_is_per_client_address() {
    let app = spawn_app_with(|config| {
        config.edge.rate_limit = RateLimit::parse("2/min").unwrap();
    })
    .await;
    // The whole of 127.0.0.0/8 is loopback: a second client address.
    let other = Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();

    for _ in 0..2 {
        assert_eq!(app.list_users("").await.status(), StatusCode::OK);
    }
    problem(app.list_users("").await, StatusCode::TOO_MANY_REQUESTS).await;
    let response = other.get(app.url("/api/v1/users")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.ready().await.status(), StatusCode::OK);
    app.stop().await;
}
