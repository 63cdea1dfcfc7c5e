use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{id, problem, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_200() {
    let app = spawn_app().await;
    let response = app.health().await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_lists_every_service_up() {
    let app = spawn_app().await;
    let response = app.ready().await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let names: Vec<&str> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["status"], "up");
            s["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        ["notifications", "orders", "payments", "products", "users"]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_sync_failed_makes_the_node_unready_and_names_the_store() {
    let app = spawn_app().await;
    let body: Value = app.ready().await.json().await.unwrap();
    let checks: Vec<(&str, &str)> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("store users", "ok"),
            ("store products", "ok"),
            ("store payments", "ok"),
            ("store notifications", "ok"),
            ("store orders", "ok"),
        ]
    );
    let product = app.create_product("lamp", 9.5, 3).await;

    // The users store's committer lists its blob directory in every sync:
    // without it the next sync fails, as a failed fsync would.
    std::fs::remove_dir_all(app.store_dir("users").join("blobs")).unwrap();
    let response = app
        .post_user(&json!({"username": "ada", "email": "ada@example.com"}))
        .await;
    let failed = problem(response, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(failed["type"], "/problems/internal");

    let response = app.ready().await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let metrics = app.metrics().await.text().await.unwrap();
    assert!(
        metrics.contains(r#"bulwark_health_check_ok{check="store users"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bulwark_health_check_ok{check="store orders"} 1"#),
        "{metrics}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    for check in body["checks"].as_array().unwrap() {
        if check["name"] == "store users" {
            assert_eq!(check["status"], "failed");
            let detail = check["detail"].as_str().unwrap();
            assert!(detail.contains("users"), "{detail}");
        } else {
            assert_eq!(check["status"], "ok", "{check}");
            assert!(check.get("detail").is_none(), "{check}");
        }
    }
    // Every later write to that store fails too; the other services serve on.
    let response = app
        .post_user(&json!({"username": "bob", "email": "bob@example.com"}))
        .await;
    problem(response, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(app.get_product(id(&product)).await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_the_api() {
    let app = spawn_app().await;
    let response = app.openapi().await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/users",
        "/api/v1/orders/{id}",
        "/api/v1/payments",
        "/health",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.health().await;
    app.get("/api/v1/users/77").await;
    app.create_user("counted").await;
    let text = app.metrics().await.text().await.unwrap();
    assert!(
        text.contains(
            r#"bulwark_http_requests_total{method="GET",route="/health",status="200"} 1"#
        ),
        "{text}"
    );
    // Every store's sync counters, each family declared once.
    assert_eq!(
        text.matches("# TYPE bulwark_store_syncs_total counter")
            .count(),
        1,
        "{text}"
    );
    for store in ["users", "products", "payments", "notifications", "orders"] {
        assert!(
            text.contains(&format!("bulwark_store_syncs_total{{store=\"{store}\"}}")),
            "{text}"
        );
    }
    // The user written above took at least one sync.
    let synced_users = text
        .lines()
        .find_map(|line| line.strip_prefix(r#"bulwark_store_synced_writes_total{store="users"} "#))
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap();
    assert!(synced_users >= 1.0, "{text}");
    // The users call went through its circuit, which is closed.
    assert!(
        text.contains(r#"bulwark_circuit_open{target="users"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"bulwark_http_requests_total{method="GET",route="/api/v1/users/{id}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"bulwark_service_up{service="users"} 1"#),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sane_x_request_id_is_echoed_and_a_missing_one_generated() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/users/1"))
        .header("x-request-id", "checkout-42")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "checkout-42");
    let response = app.health().await;
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 32);
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "x".repeat(200))
        .header("traceparent", "garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"].len(), 32);
    app.stop().await;
}
