//! HTTP to the nodes' edges, and the classification of every answer as
//! `ok`, `fail` or `info`.

use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::ChaosError;
use crate::history::Outcome;

/// Where the nodes listen and how to reach their admin API.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URLs of the nodes' edges (`http://127.0.0.1:8080`); every
    /// edge serves the whole API.
    pub edges: Vec<String>,
    /// The nodes' admin key (`--admin-key`).
    pub admin_key: String,
}

/// A client of the target: one connection pool, a per-request timeout.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    client: Client,
    target: Target,
}

/// An answer, classified.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) outcome: Outcome,
    pub(crate) status: Option<u16>,
    pub(crate) body: Value,
}

impl Api {
    pub(crate) fn new(target: Target, timeout: Duration) -> Result<Self, ChaosError> {
        let client = Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|err| ChaosError::Client(err.to_string()))?;
        Ok(Self { client, target })
    }

    pub(crate) fn edges(&self) -> usize {
        self.target.edges.len()
    }

    fn url(&self, edge: usize, path: &str) -> String {
        let base = &self.target.edges[edge % self.target.edges.len().max(1)];
        format!("{base}{path}")
    }

    /// A request to `path` on edge `edge`.
    pub(crate) fn request(&self, edge: usize, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(edge, path))
    }

    /// A request to the admin API.
    pub(crate) fn admin(&self, edge: usize, method: Method, path: &str) -> RequestBuilder {
        self.request(edge, method, path)
            .bearer_auth(&self.target.admin_key)
    }

    /// Sends `request` and classifies the answer.
    pub(crate) async fn send(request: RequestBuilder) -> Answer {
        match request.send().await {
            Ok(response) => classify(response).await,
            Err(err) => Answer {
                // A refused connection never carried the request: nothing
                // was done. Anything else (a timeout, a connection reset
                // mid-request) may have been applied.
                outcome: if err.is_connect() {
                    Outcome::Fail
                } else {
                    Outcome::Info
                },
                status: None,
                body: Value::String(err.to_string()),
            },
        }
    }

    /// GETs `path` and returns its JSON body when the answer is 200;
    /// `None` for a 404; an error otherwise (the checker retries those).
    pub(crate) async fn read(&self, edge: usize, path: &str) -> Result<Option<Value>, String> {
        let response = self
            .request(edge, Method::GET, path)
            .send()
            .await
            .map_err(|err| format!("GET {path}: {err}"))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != StatusCode::OK {
            return Err(format!("GET {path}: {status} {body}"));
        }
        Ok(Some(body))
    }

    /// GETs an admin route's JSON body (200 only).
    pub(crate) async fn admin_read(&self, edge: usize, path: &str) -> Result<Value, String> {
        let response = self
            .admin(edge, Method::GET, path)
            .send()
            .await
            .map_err(|err| format!("GET {path}: {err}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != StatusCode::OK {
            return Err(format!("GET {path}: {status} {body}"));
        }
        Ok(body)
    }
}

async fn classify(response: Response) -> Answer {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let outcome = if status.is_success() {
        Outcome::Ok
    } else if status == StatusCode::SERVICE_UNAVAILABLE
        && (body["type"] == "/problems/overloaded" || body["type"] == "/problems/unavailable")
    {
        // Shed by the edge or a bulkhead, or refused by a service that is
        // down, restarting or unreachable: nothing was sent.
        Outcome::Fail
    } else if status.is_client_error() {
        Outcome::Fail
    } else {
        // 500, 503 outcome-unknown (the service or its node was lost
        // mid-request), 504: the request may have been applied.
        Outcome::Info
    };
    Answer {
        outcome,
        status: Some(status.as_u16()),
        body,
    }
}
