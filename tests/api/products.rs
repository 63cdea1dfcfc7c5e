use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{id, problem, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_price_round_trips_as_a_number_with_two_decimals() {
    let app = spawn_app().await;
    let response = app
        .post_product(&json!({"name": "pen", "price": 12.5, "quantity": 10}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let text = response.text().await.unwrap();
    assert!(text.contains("\"price\":12.50"), "{text}");
    let read: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(read["price"].as_f64(), Some(12.5));
    assert_eq!(read["quantity"], 10);
    assert_eq!(read["name"], "pen");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_are_listed_updated_and_deleted() {
    let app = spawn_app().await;
    let pen = app.create_product("pen", 1.99, 5).await;
    app.create_product("ink", 0.5, 50).await;
    let page: Value = app.list_products("").await.json().await.unwrap();
    assert_eq!(page["total"], 2);
    let response = app
        .put_product(id(&pen), &json!({"price": 2.25, "quantity": 7}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["price"].as_f64(), Some(2.25));
    assert_eq!(updated["quantity"], 7);
    assert_eq!(updated["name"], "pen");
    assert_eq!(
        app.delete_product(id(&pen)).await.status(),
        StatusCode::NO_CONTENT
    );
    problem(app.get_product(id(&pen)).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_price_is_422_naming_price() {
    let app = spawn_app().await;
    for price in [
        json!(12.345),
        json!(-1),
        json!("12.00"),
        json!(1e20),
        json!(null),
    ] {
        let response = app
            .post_product(&json!({"name": "pen", "price": price, "quantity": 1}))
            .await;
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(body["field"], "price", "{price}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_update_that_changes_nothing_keeps_its_version() {
    let app = spawn_app().await;
    let product = app.create_product("kettle", 20.5, 7).await;
    for patch in [
        json!({}),
        json!({"name": "kettle", "price": 20.50, "quantity": 7}),
    ] {
        let response = app.put_product(id(&product), &patch).await;
        assert_eq!(response.status(), StatusCode::OK, "{patch}");
        let after: Value = response.json().await.unwrap();
        assert_eq!(after, product, "{patch}");
    }
    let response = app.put_product(id(&product), &json!({"quantity": 8})).await;
    let after: Value = response.json().await.unwrap();
    assert_eq!(after["version"], product["version"].as_u64().unwrap() + 1);
    app.stop().await;
}
