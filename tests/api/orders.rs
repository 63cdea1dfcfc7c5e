//! The order flow through the saga: completed, declined, cancelled,
//! idempotent placing. Sagas run after the answer, so tests poll the order
//! (with a deadline) until it leaves `pending`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, eventually, id, problem, spawn_app, spawn_app_with, spawn_app_with_admin,
};

fn order_of(user: &Value, product: &Value, quantity: u64) -> Value {
    json!({
        "user_id": id(user),
        "items": [{"product_id": id(product), "quantity": quantity, "price": product["price"]}],
    })
}

/// Waits for the order's saga and checks it ended `cancelled` with a
/// reason containing `why`, the product's stock back at `stock`, nothing
/// charged, and exactly one order.cancelled notification for the user.
async fn cancelled_without_effects(
    app: &TestApp,
    placed: &Value,
    user: &Value,
    product: &Value,
    why: &str,
    stock: u64,
) {
    let order = app.settled_order(id(placed)).await;
    assert_eq!(order["status"], "cancelled");
    assert!(order["reason"].as_str().unwrap().contains(why), "{order}");
    let left: Value = app.get_product(id(product)).await.json().await.unwrap();
    assert_eq!(left["quantity"], stock);
    problem(app.get_payment(id(placed)).await, StatusCode::NOT_FOUND).await;
    let cancelled = app.settled_notifications(id(user), "order.cancelled").await;
    assert_eq!(cancelled, 1, "exactly one order.cancelled notification");
    assert_eq!(
        app.notifications_of_kind(id(user), "order.completed").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_placed_pending_and_its_saga_completes_it() {
    let app = spawn_app_with_admin(|_| {}).await;
    let user = app.create_user("buyer").await;
    let product = app.create_product("lamp", 12.5, 100).await;
    let response = app.post_order(&order_of(&user, &product, 2), None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let placed: Value = response.json().await.unwrap();
    assert_eq!(placed["status"], "pending");
    assert_eq!(placed["total"].as_f64(), Some(25.0));
    let order = app.settled_order(id(&placed)).await;
    assert_eq!(order["status"], "completed");
    let stock: Value = app.get_product(id(&product)).await.json().await.unwrap();
    assert_eq!(stock["quantity"], 98);
    let payment: Value = app.get_payment(id(&placed)).await.json().await.unwrap();
    assert_eq!(payment["status"], "charged");
    assert_eq!(payment["amount"].as_f64(), Some(25.0));
    let listed: Value = app
        .list_orders(&format!("?user_id={}", id(&user)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 1);
    let completed = app
        .settled_notifications(id(&user), "order.completed")
        .await;
    assert_eq!(completed, 1, "exactly one order.completed notification");
    let expanded: Value = app
        .get(&format!(
            "/api/v1/orders/{}?expand=user,products",
            id(&placed)
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(expanded["user"]["username"], "buyer");
    assert_eq!(expanded["products"][0]["name"], "lamp");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_cancels_the_order_and_releases_the_stock() {
    let app = spawn_app_with_admin(|config| config.payments.decline_over_cents = Some(1000)).await;
    let user = app.create_user("big-spender").await;
    let product = app.create_product("tv", 499.99, 3).await;
    let placed: Value = app
        .post_order(&order_of(&user, &product, 1), None)
        .await
        .json()
        .await
        .unwrap();
    // The reason speaks the API's units: currency with two decimals.
    cancelled_without_effects(
        &app,
        &placed,
        &user,
        &product,
        "payment declined: 499.99 is over the limit of 10.00",
        3,
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_at_a_stale_price_is_cancelled_with_both_prices_in_the_reason() {
    let app = spawn_app_with_admin(|_| {}).await;
    let user = app.create_user("bargain-hunter").await;
    let product = app.create_product("lamp", 5.25, 4).await;
    let body = json!({
        "user_id": id(&user),
        "items": [{"product_id": id(&product), "quantity": 1, "price": 5.00}],
    });
    let placed: Value = app.post_order(&body, None).await.json().await.unwrap();
    let why = format!("price of product {} is 5.25, not 5.00", id(&product));
    cancelled_without_effects(&app, &placed, &user, &product, &why, 4).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_for_more_than_the_stock_is_cancelled_and_nothing_is_charged() {
    let app = spawn_app_with_admin(|_| {}).await;
    let user = app.create_user("hoarder").await;
    let product = app.create_product("rare vase", 80.0, 2).await;
    let response = app.post_order(&order_of(&user, &product, 3), None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let placed: Value = response.json().await.unwrap();
    cancelled_without_effects(&app, &placed, &user, &product, "out of stock", 2).await;
    let ledger: Value = app
        .get(&format!("/api/v1/payments/ledger?order_id={}", id(&placed)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["movements"].as_array().unwrap().len(), 0, "{ledger}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_and_body_give_the_same_order() {
    let app = spawn_app().await;
    let user = app.create_user("retrier").await;
    let product = app.create_product("mug", 3.0, 100).await;
    let body = order_of(&user, &product, 1);
    let first: Value = app
        .post_order(&body, Some("key-1"))
        .await
        .json()
        .await
        .unwrap();
    let second = app.post_order(&body, Some("key-1")).await;
    assert!(second.status().is_success());
    let second: Value = second.json().await.unwrap();
    assert_eq!(id(&first), id(&second));
    let listed: Value = app
        .list_orders(&format!("?user_id={}", id(&user)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 1);
    let other = order_of(&user, &product, 2);
    problem(
        app.post_order(&other, Some("key-1")).await,
        StatusCode::CONFLICT,
    )
    .await;
    app.settled_order(id(&first)).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_order_can_be_cancelled_once() {
    // A slow provider keeps the saga in its charge step long enough for
    // the cancel to arrive while the order is pending.
    let app = spawn_app_with(|config| config.payments.latency_ms = 3000).await;
    let user = app.create_user("hesitant").await;
    let product = app.create_product("chair", 40.0, 4).await;
    let placed: Value = app
        .post_order(&order_of(&user, &product, 1), None)
        .await
        .json()
        .await
        .unwrap();
    let response = app.cancel_order(id(&placed)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let order = app.settled_order(id(&placed)).await;
    assert_eq!(order["status"], "cancelled");
    let stock: Value = app.get_product(id(&product)).await.json().await.unwrap();
    assert_eq!(stock["quantity"], 4);
    problem(app.cancel_order(id(&placed)).await, StatusCode::CONFLICT).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_need_a_user_id_to_list() {
    let app = spawn_app().await;
    let body = problem(app.list_orders("").await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["field"], "user_id");
    let body = problem(
        app.list_notifications("").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["field"], "user_id");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_orders_events_and_ledger_show_each_step_once() {
    let app = spawn_app().await;
    let user = app.create_user("historian").await;
    let product = app.create_product("clock", 3.25, 5).await;
    let placed: Value = app
        .post_order(&order_of(&user, &product, 2), None)
        .await
        .json()
        .await
        .unwrap();
    app.settled_order(id(&placed)).await;
    let history: Value = app
        .get(&format!("/api/v1/orders/{}/events", id(&placed)))
        .await
        .json()
        .await
        .unwrap();
    let events: Vec<(&str, &str)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            ("placed", "pending"),
            ("user_validated", "pending"),
            ("stock_reserved", "pending"),
            ("payment_charged", "pending"),
            ("commit_started", "pending"),
            ("stock_committed", "pending"),
            ("completed", "completed"),
        ]
    );
    let ledger: Value = app
        .get(&format!("/api/v1/payments/ledger?order_id={}", id(&placed)))
        .await
        .json()
        .await
        .unwrap();
    let movements = ledger["movements"].as_array().unwrap();
    assert_eq!(movements.len(), 1, "{ledger}");
    assert_eq!(movements[0]["kind"], "charge");
    assert_eq!(movements[0]["amount"].as_f64(), Some(6.5));
    problem(
        app.get("/api/v1/orders/999/events").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_orders_ledger_shows_the_charge_and_its_refund() {
    let app = spawn_app_with(|config| config.payments.latency_ms = 300).await;
    let user = app.create_user("refundee").await;
    let product = app.create_product("kettle", 4.0, 5).await;
    let placed: Value = app
        .post_order(&order_of(&user, &product, 1), None)
        .await
        .json()
        .await
        .unwrap();
    // Cancel while the charge is at the provider: the saga charges, then
    // compensates with a refund.
    eventually("the charge to start", || async {
        let history: Value = app
            .get(&format!("/api/v1/orders/{}/events", id(&placed)))
            .await
            .json()
            .await
            .unwrap();
        history["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "stock_reserved")
            .then_some(())
    })
    .await;
    let response = app
        .post_json(
            &format!("/api/v1/orders/{}/cancel", id(&placed)),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let order = app.settled_order(id(&placed)).await;
    assert_eq!(order["status"], "cancelled");
    let ledger: Value = app
        .get(&format!("/api/v1/payments/ledger?order_id={}", id(&placed)))
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = ledger["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    // Cancelled before the charge recorded: either it never reached the
    // provider, or it did and was refunded; never a charge alone.
    assert!(
        kinds.is_empty() || kinds == ["charge", "refund"],
        "{ledger}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_outcomes_are_counted_in_the_metrics() {
    let app = spawn_app_with(|config| config.payments.decline_over_cents = Some(1000)).await;
    let user = app.create_user("counted").await;
    let cheap = app.create_product("pen", 2.0, 10).await;
    let dear = app.create_product("piano", 900.0, 1).await;
    for product in [&cheap, &dear, &cheap] {
        let placed: Value = app
            .post_order(&order_of(&user, product, 1), None)
            .await
            .json()
            .await
            .unwrap();
        app.settled_order(id(&placed)).await;
    }
    // Two completed, one declined and cancelled.
    let expected = [
        r#"bulwark_saga_outcomes_total{outcome="completed"} 2"#,
        r#"bulwark_saga_outcomes_total{outcome="cancelled"} 1"#,
        "bulwark_sagas_running 0",
        "bulwark_saga_step_retries_total 0",
    ];
    eventually("both outcomes in the metrics", || async {
        let text = app.metrics().await.text().await.unwrap();
        expected
            .iter()
            .all(|line| text.lines().any(|l| l == *line))
            .then_some(())
    })
    .await;
    let text = app.metrics().await.text().await.unwrap();
    assert_eq!(
        text.matches("# TYPE bulwark_saga_outcomes_total counter")
            .count(),
        1,
        "{text}"
    );
    app.stop().await;
}
