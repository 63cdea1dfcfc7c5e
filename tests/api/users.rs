use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{id, problem, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_user_has_a_location_and_reads_back() {
    let app = spawn_app().await;
    let response = app
        .post_user(&json!({"username": "ada", "email": "ada@example.com"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/users/{}", id(&created)));
    let read: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(read["username"], "ada");
    assert_eq!(read["email"], "ada@example.com");
    assert_eq!(read, created);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_listed_in_pages() {
    let app = spawn_app().await;
    for name in ["u1", "u2", "u3"] {
        app.create_user(name).await;
    }
    let page: Value = app
        .list_users("?page=1&page_size=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 3);
    assert_eq!(page["page"], 1);
    assert_eq!(page["page_size"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let page: Value = app
        .list_users("?page=2&page_size=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["username"], "u3");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_changes_only_the_fields_sent_and_the_etag() {
    let app = spawn_app().await;
    let user = app.create_user("grace").await;
    let response = app.get_user(id(&user)).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let response = app
        .put_user(id(&user), &json!({"email": "grace@navy.mil"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let new_etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(etag, new_etag);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["username"], "grace");
    assert_eq!(updated["email"], "grace@navy.mil");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_changes_nothing_keeps_the_version_and_the_etag() {
    let app = spawn_app().await;
    let user = app.create_user("hopper").await;
    let response = app.get_user(id(&user)).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let before: Value = response.json().await.unwrap();
    for patch in [
        json!({}),
        json!({"username": null}),
        json!({"username": "hopper", "email": before["email"]}),
    ] {
        let response = app.put_user(id(&user), &patch).await;
        assert_eq!(response.status(), StatusCode::OK, "{patch}");
        assert_eq!(
            response.headers()["etag"].to_str().unwrap(),
            etag,
            "{patch}"
        );
        let after: Value = response.json().await.unwrap();
        assert_eq!(after, before, "{patch}");
    }
    // A real change still moves both.
    let response = app
        .put_user(id(&user), &json!({"username": "Hopper"}))
        .await;
    assert_ne!(response.headers()["etag"].to_str().unwrap(), etag);
    let after: Value = response.json().await.unwrap();
    assert_eq!(after["version"], before["version"].as_u64().unwrap() + 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_the_current_etag_is_304() {
    let app = spawn_app().await;
    let user = app.create_user("linus").await;
    let path = format!("/api/v1/users/{}", id(&user));
    let etag = app.get(&path).await.headers()["etag"].clone();
    let response = app
        .client
        .get(app.url(&path))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()["etag"], etag);
    let response = app
        .client
        .get(app.url(&path))
        .header("if-none-match", "\"999\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_user_is_gone() {
    let app = spawn_app().await;
    let user = app.create_user("temp").await;
    assert_eq!(
        app.delete_user(id(&user)).await.status(),
        StatusCode::NO_CONTENT
    );
    problem(app.get_user(id(&user)).await, StatusCode::NOT_FOUND).await;
    problem(app.delete_user(id(&user)).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_username_is_409() {
    let app = spawn_app().await;
    app.create_user("taken").await;
    let response = app
        .post_user(&json!({"username": "taken", "email": "other@example.com"}))
        .await;
    problem(response, StatusCode::CONFLICT).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_typed_with_combining_characters_is_the_same_name() {
    let app = spawn_app().await;
    // "josé" precomposed (U+00E9), then as "e" + combining acute (U+0301).
    let first = app
        .post_user(&json!({"username": "jos\u{e9}", "email": "nfc@example.com"}))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let response = app
        .post_user(&json!({"username": "jose\u{301}", "email": "nfd@example.com"}))
        .await;
    problem(response, StatusCode::CONFLICT).await;
    // A name sent decomposed is stored composed.
    let created: Value = app
        .post_user(&json!({"username": "ren\u{65}\u{301}e", "email": "renee@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(created["username"], "ren\u{e9}e");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_and_control_characters_are_refused_naming_the_field() {
    let app = spawn_app().await;
    app.create_user("zwsp").await;
    for (body, field) in [
        (
            json!({"username": "zw\u{200b}sp", "email": "z@example.com"}),
            "username",
        ),
        (
            json!({"username": "rtl\u{202e}", "email": "r@example.com"}),
            "username",
        ),
        (
            json!({"username": "nul\u{0}", "email": "n@example.com"}),
            "username",
        ),
        (
            json!({"username": "ok-name", "email": "a\u{feff}b@example.com"}),
            "email",
        ),
    ] {
        let response = app.post_user(&body).await;
        let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["field"], field, "{body}");
    }
    let response = app
        .post_product(&json!({"name": "\u{0}", "price": 1.0, "quantity": 1}))
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["field"], "name");
    // Nothing was written: the only user is the first one.
    let page: Value = app.list_users("").await.json().await.unwrap();
    assert_eq!(page["total"], 1, "{page}");
    app.stop().await;
}
