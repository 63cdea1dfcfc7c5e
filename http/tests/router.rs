//! The edge's router in-process (`Router::oneshot`, axum `examples/testing`)
//! over a real node with the shop installed on a temporary directory.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use bulwark_actors::ShopConfig;
use bulwark_http::{AdminKey, EdgeConfig, PROBLEM_JSON, openapi, router, routes};
use bulwark_runtime::{Node, NodeConfig};
use serde_json::Value;
use tower::ServiceExt as _;

/// Largest response body a test reads.
const BODY_BYTES_MAX: usize = 1 << 20;

struct Shop {
    node: Node,
    _dir: tempfile::TempDir,
}

async fn shop() -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let config = ShopConfig::new(dir.path());
    let node = bulwark_actors::install(Node::builder(NodeConfig::new("t")), &config)
        .unwrap()
        .start()
        .await
        .unwrap();
    Shop { node, _dir: dir }
}

async fn send(shop: &Shop, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    // With an admin key, so the admin routes exist (without one they are
    // 404 like unknown routes).
    let config = EdgeConfig {
        admin_key: AdminKey::new("router-test-key"),
        ..EdgeConfig::default()
    };
    let response = router(shop.node.clone(), config)
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), BODY_BYTES_MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

fn json(method: Method, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn documented_routes() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(openapi()).unwrap();
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

#[test]
fn openapi_paths_are_exactly_the_routers_routes() {
    let served: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect();
    assert_eq!(documented_routes(), served);
}

#[test]
fn every_api_operation_documents_its_key_and_the_gates_answers_and_probes_do_not() {
    let doc = serde_json::to_value(openapi()).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let gated = path.starts_with("/api/v1");
            let responses = &operation["responses"];
            for status in ["401", "403", "429"] {
                assert_eq!(
                    responses.get(status).is_some(),
                    gated || path.starts_with("/admin") && status != "429",
                    "{method} {path} {status}"
                );
            }
            let has_key = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("api_key").is_some()));
            assert_eq!(
                has_key,
                gated || path.starts_with("/admin"),
                "{method} {path}"
            );
        }
    }
}

#[test]
fn every_api_operation_documents_the_edges_answers_and_its_parameters_bounds() {
    let doc = serde_json::to_value(openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let responses = &operation["responses"];
            for status in ["400", "503", "504"] {
                assert!(responses.get(status).is_some(), "{method} {path} {status}");
            }
            let with_body = operation.get("requestBody").is_some();
            for status in ["413", "415"] {
                assert_eq!(
                    responses.get(status).is_some(),
                    with_body,
                    "{method} {path} {status}"
                );
            }
            let Some(parameters) = operation["parameters"].as_array() else {
                continue;
            };
            for parameter in parameters {
                let name = parameter["name"].as_str().unwrap();
                let description = parameter["description"].as_str().unwrap_or_default();
                if description.contains("(required)") || parameter["in"] == "path" {
                    assert_eq!(parameter["required"], true, "{method} {path} {name}");
                }
                if name == "id" || name.ends_with("_id") || name == "page" {
                    assert_eq!(parameter["schema"]["minimum"], 1, "{method} {path} {name}");
                }
                if name == "page_size" {
                    assert_eq!(parameter["schema"]["minimum"], 1, "{method} {path} {name}");
                    assert_eq!(
                        parameter["schema"]["maximum"], 100,
                        "{method} {path} {name}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn every_documented_route_is_served_not_404_route_or_405() {
    let shop = shop().await;
    for (method, path) in documented_routes() {
        let uri = path.replace("{id}", "1");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, _, body) = send(&shop, json(method.clone(), &uri, "{}")).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_ne!(
            body["type"], "/problems/route-not-found",
            "{method} {uri} is documented but not routed"
        );
    }
    shop.node.shutdown().await;
}

#[tokio::test]
async fn a_nested_price_with_three_decimals_is_422_naming_the_line() {
    let shop = shop().await;
    let body = r#"{"user_id":1,"items":[{"product_id":1,"quantity":1,"price":1.005}]}"#;
    let (status, headers, problem) = send(&shop, json(Method::POST, "/api/v1/orders", body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON);
    assert_eq!(problem["field"], "items[0].price");
    assert_eq!(problem["errors"][0]["field"], "items[0].price");
    shop.node.shutdown().await;
}

#[tokio::test]
async fn a_client_cannot_set_id_or_status() {
    let shop = shop().await;
    let body = r#"{"user_id":1,"items":[],"status":"completed"}"#;
    let (status, _, problem) = send(&shop, json(Method::POST, "/api/v1/orders", body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "status");
    let body = r#"{"id":7,"username":"a","email":"a@b.c"}"#;
    let (status, _, problem) = send(&shop, json(Method::POST, "/api/v1/users", body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "id");
    shop.node.shutdown().await;
}

#[tokio::test]
async fn a_wrong_method_is_a_problem_405_that_keeps_allow() {
    let shop = shop().await;
    let (status, headers, problem) =
        send(&shop, json(Method::PATCH, "/api/v1/users/1", "{}")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON);
    assert!(headers.contains_key(header::ALLOW));
    assert_eq!(problem["status"], 405);
    shop.node.shutdown().await;
}

#[tokio::test]
async fn a_bad_query_value_is_422_naming_the_parameter() {
    let shop = shop().await;
    let request = Request::builder()
        .uri("/api/v1/users?page=abc")
        .body(Body::empty())
        .unwrap();
    let (status, _, problem) = send(&shop, request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "page");
    let request = Request::builder()
        .uri("/api/v1/users?page_size=1000")
        .body(Body::empty())
        .unwrap();
    let (status, _, problem) = send(&shop, request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "page_size");
    shop.node.shutdown().await;
}

#[tokio::test]
async fn ids_that_are_zero_or_not_numbers_never_reach_a_service() {
    let shop = shop().await;
    for (uri, status) in [
        ("/api/v1/users/0", StatusCode::NOT_FOUND),
        ("/api/v1/users/abc", StatusCode::BAD_REQUEST),
        ("/api/v1/users/-1", StatusCode::BAD_REQUEST),
        (
            "/api/v1/users/99999999999999999999999",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/orders/%FF", StatusCode::BAD_REQUEST),
    ] {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let (got, headers, _) = send(&shop, request).await;
        assert_eq!(got, status, "{uri}");
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON, "{uri}");
    }
    shop.node.shutdown().await;
}
