//! Each error status and the input that causes it; every one is
//! problem+json.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, problem, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app
        .raw(
            "POST",
            "/api/v1/users",
            "application/json",
            b"{\"username\": ".to_vec(),
        )
        .await;
    problem(response, StatusCode::BAD_REQUEST).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_404() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/users/4242",
        "/api/v1/products/4242",
        "/api/v1/orders/4242",
    ] {
        let body = problem(app.get(path).await, StatusCode::NOT_FOUND).await;
        assert_eq!(body["type"], "/problems/not-found", "{path}");
    }
    problem(app.get_payment(4242).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_route_is_404() {
    let app = spawn_app().await;
    let body = problem(app.get("/api/v1/nothing-here").await, StatusCode::NOT_FOUND).await;
    assert_eq!(body["type"], "/problems/route-not-found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_numeric_or_zero_id_is_a_problem_not_a_panic() {
    let app = spawn_app().await;
    problem(app.get("/api/v1/users/abc").await, StatusCode::BAD_REQUEST).await;
    problem(app.get("/api/v1/users/0").await, StatusCode::NOT_FOUND).await;
    problem(app.cancel_order(0).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405() {
    let app = spawn_app().await;
    let response = app
        .raw(
            "PATCH",
            "/api/v1/users/1",
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert!(response.headers().contains_key("allow"));
    problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413() {
    let app = spawn_app().await;
    let big = "x".repeat(bulwark_http::BODY_LIMIT_BYTES_DEFAULT + 1);
    let body = serde_json::to_vec(&json!({"username": big, "email": "a@b.c"})).unwrap();
    let response = app
        .raw("POST", "/api/v1/users", "application/json", body)
        .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let response = app
        .raw(
            "POST",
            "/api/v1/users",
            "text/plain",
            br#"{"username":"a","email":"a@b.c"}"#.to_vec(),
        )
        .await;
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_validation_is_422_naming_the_field() {
    let app = spawn_app().await;
    let response = app
        .post_user(&json!({"username": "", "email": "a@b.c"}))
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["field"], "username");
    assert_eq!(body["errors"][0]["field"], "username");
    let response = app.post_user(&json!({"username": "ok"})).await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["field"], "email");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_body_field_is_422_so_a_client_cannot_set_id() {
    let app = spawn_app().await;
    let response = app
        .post_user(&json!({"id": 9, "username": "mallory", "email": "m@example.com"}))
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["field"], "id");
    problem(app.get_user(9).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

/// How many orders `user` has.
async fn orders_of(app: &TestApp, user: &serde_json::Value) -> u64 {
    let orders: serde_json::Value = app
        .list_orders(&format!("?user_id={}", user["id"]))
        .await
        .json()
        .await
        .unwrap();
    orders["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_a_json_array_is_400_and_creates_nothing() {
    let app = spawn_app().await;
    // serde would take a struct from its fields in order; the API does not.
    for (path, body) in [
        ("/api/v1/users", r#"["arrayuser","arrayuser@example.com"]"#),
        ("/api/v1/products", r#"["lamp",1.5,3]"#),
        ("/api/v1/products", "[]"),
    ] {
        let response = app
            .raw("POST", path, "application/json", body.as_bytes().to_vec())
            .await;
        let problem = problem(response, StatusCode::BAD_REQUEST).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("must be a JSON object"), "{body}: {detail}");
        assert!(!detail.contains("Body"), "no Rust type names: {detail}");
    }
    let user = app.create_user("buyer").await;
    let product = app.create_product("lamp", 1.5, 3).await;
    // A line of an order is an object too.
    let body = format!(
        r#"{{"user_id":{},"items":[[{},1,1.5]]}}"#,
        user["id"], product["id"]
    );
    let response = app
        .raw(
            "POST",
            "/api/v1/orders",
            "application/json",
            body.into_bytes(),
        )
        .await;
    let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["field"], "items[0]");
    let users: serde_json::Value = app.list_users("").await.json().await.unwrap();
    assert_eq!(users["total"], 1, "{users}");
    assert_eq!(orders_of(&app, &user).await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_sent_twice_is_422_and_places_nothing() {
    let app = spawn_app().await;
    let user = app.create_user("twice").await;
    let product = app.create_product("mug", 3.0, 10).await;
    let response = app
        .client
        .post(app.url("/api/v1/orders"))
        .header("idempotency-key", "one")
        .header("idempotency-key", "two")
        .json(&json!({
            "user_id": user["id"],
            "items": [{"product_id": product["id"], "quantity": 1, "price": 3.0}],
        }))
        .send()
        .await
        .unwrap();
    let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["field"], "Idempotency-Key");
    assert_eq!(orders_of(&app, &user).await, 0);
    app.stop().await;
}
