//! The admin API: absent (404) without a configured key, 401 with a missing
//! or wrong one, and a kill through it followed by a restart visible in the
//! listing.

use bulwark_http::AdminKey;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{ADMIN_KEY as KEY, TestApp, eventually, spawn_app, spawn_app_with};

async fn admin_app() -> TestApp {
    spawn_app_with(|config| config.edge.admin_key = AdminKey::new(KEY)).await
}

/// The listing entry of `path`.
async fn actor(app: &TestApp, path: &str) -> Option<Value> {
    let response = app.admin_get("/admin/actors", Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == path)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_key_the_admin_routes_are_404() {
    let app = spawn_app().await;
    for (response, path) in [
        (
            app.admin_get("/admin/actors", Some(KEY)).await,
            "/admin/actors",
        ),
        (
            app.admin_get("/admin/outboxes", None).await,
            "/admin/outboxes",
        ),
        (
            app.admin_kill("orders/entry", Some(KEY)).await,
            "/admin/actors/kill",
        ),
    ] {
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "/problems/route-not-found", "{path}");
    }
    // Nothing was killed.
    assert!(app.get("/ready").await.status().is_success());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_key_is_401_and_kills_nothing() {
    let app = admin_app().await;
    let before = actor(&app, "orders/entry").await.unwrap();
    for key in [None, Some("wrong"), Some(""), Some("admin-test-ke")] {
        let response = app.admin_get("/admin/actors", key).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{key:?}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "/problems/unauthorized");
        assert!(!body.to_string().contains(KEY));
        let response = app.admin_kill("orders/entry", key).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{key:?}");
    }
    let after = actor(&app, "orders/entry").await.unwrap();
    assert_eq!(after["restarts"], before["restarts"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_shows_every_services_tree() {
    let app = admin_app().await;
    let entry = actor(&app, "orders/entry").await.unwrap();
    assert_eq!(entry["service"], "orders");
    assert_eq!(entry["kind"], "worker");
    assert_eq!(entry["state"], "running");
    assert_eq!(entry["restarts"], 0);
    assert_eq!(entry["in_flight"], 0);
    let root = actor(&app, "orders").await.unwrap();
    assert_eq!(root["kind"], "supervisor");
    assert!(root.get("in_flight").is_none());
    for service in ["users", "products", "payments", "notifications"] {
        assert!(actor(&app, &format!("{service}/entry")).await.is_some());
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_is_followed_by_a_restart_visible_in_the_listing() {
    let app = admin_app().await;
    let response = app.admin_kill("users/entry", Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let killed: Value = response.json().await.unwrap();
    assert_eq!(killed["path"], "users/entry");
    assert_eq!(killed["restarts"], 0);
    eventually("users/entry to be restarted", || async {
        let entry = actor(&app, "users/entry").await?;
        (entry["restarts"] == 1 && entry["state"] == "running").then_some(())
    })
    .await;
    // The restarted service serves, and the restart is counted.
    app.create_user("after-kill").await;
    let metrics = app.metrics().await.text().await.unwrap();
    assert!(
        metrics.contains(r#"bulwark_actor_restarts_total{path="users/entry"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bulwark_actor_restarts_total{path="orders/entry"} 0"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_unknown_path_is_404_and_a_missing_path_422() {
    let app = admin_app().await;
    let response = app.admin_kill("nope/entry", Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .client
        .post(app.url("/admin/actors/kill"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outboxes_drain_to_zero_after_writes() {
    let app = admin_app().await;
    app.create_user("outboxed").await;
    eventually("every outbox to drain", || async {
        let response = app.admin_get("/admin/outboxes", Some(KEY)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let outboxes = body["outboxes"].as_array().unwrap().clone();
        assert_eq!(outboxes.len(), 3);
        outboxes.iter().all(|o| o["pending"] == 0).then_some(())
    })
    .await;
    app.stop().await;
}
