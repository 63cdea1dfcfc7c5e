//! Real `bulwark serve` processes forming a cluster on 127.0.0.1.
//!
//! Pinned here: with the shop's services spread over three nodes, the full
//! order flow works through the edge of every node (each request routed to
//! the node that owns the service); a node killed with SIGKILL makes the
//! calls that need it fail with 503 at once while the rest keeps serving,
//! and once it is back on its data directory the flow works again with
//! nothing acknowledged lost; a node with the wrong cookie never joins; and
//! hostile bytes or idle sockets on the node port leave the node serving
//! and other nodes able to join.
#![allow(clippy::unwrap_used)]

mod process;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use process::{EVENTUALLY, POLL_INTERVAL, Server, get, post, settled_order};
use reqwest::{Client, StatusCode};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::time::Instant;

const COOKIE: &str = "cluster-test-cookie";
/// The acceptance bound: calls needing a dead node fail within this.
const FAIL_FAST: Duration = Duration::from_secs(2);

/// Starts node `name` running `services`, its data under `data`, listening
/// for links on `cluster` and joining `join`.
fn node(
    name: &str,
    data: &Path,
    services: &str,
    cluster: SocketAddr,
    join: &[SocketAddr],
) -> Server {
    node_with(name, data, services, cluster, join, &[])
}

/// [`node`] with extra flags.
fn node_with(
    name: &str,
    data: &Path,
    services: &str,
    cluster: SocketAddr,
    join: &[SocketAddr],
    extra: &[String],
) -> Server {
    let mut args: Vec<String> = vec![
        "--node".into(),
        name.into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--services".into(),
        services.into(),
        "--cluster".into(),
        cluster.to_string(),
        "--cookie".into(),
        COOKIE.into(),
    ];
    if !join.is_empty() {
        args.push("--join".into());
        args.push(
            join.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    args.extend_from_slice(extra);
    Server::start(args)
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The names of the members `server` sees up (itself included).
async fn members_up(client: &Client, server: &Server) -> Vec<String> {
    let (status, body) = get(client, server.url("/api/v1/cluster")).await;
    assert_eq!(status, StatusCode::OK);
    let mut names: Vec<String> = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "up" || m["state"] == "local")
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Polls until every server sees exactly `names` up.
async fn wait_for_members(client: &Client, servers: &[&Server], names: &[&str]) {
    let deadline = Instant::now() + EVENTUALLY;
    for server in servers {
        loop {
            let up = members_up(client, server).await;
            if up == names {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} sees {up:?}, expected {names:?}",
                server.addr
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

struct Three {
    n1: Server,
    n2: Server,
    n3: Server,
    _data: tempfile::TempDir,
}

/// users on n1, products on n2, orders + payments + notifications on n3;
/// n2 and n3 join through n1 only.
async fn three(client: &Client) -> Three {
    three_with(client, &[]).await
}

/// [`three`] with extra flags for n3 (orders, payments, notifications).
async fn three_with(client: &Client, n3_flags: &[String]) -> Three {
    let data = tempfile::tempdir().unwrap();
    let n1 = node("n1", data.path(), "users", any_port(), &[]);
    let seed = n1.cluster.unwrap();
    let n2 = node("n2", data.path(), "products", any_port(), &[seed]);
    let n3 = node_with(
        "n3",
        data.path(),
        "orders,payments,notifications",
        any_port(),
        &[seed],
        n3_flags,
    );
    wait_for_members(client, &[&n1, &n2, &n3], &["n1", "n2", "n3"]).await;
    Three {
        n1,
        n2,
        n3,
        _data: data,
    }
}

/// The full flow through `edge`: a user, a product with 100, an order of
/// 2 → completed, 98 left, exactly one order.completed notification.
/// Returns the product's id.
async fn full_flow(client: &Client, edge: &Server, tag: &str) -> u64 {
    let user = post(
        client,
        edge.url("/api/v1/users"),
        json!({"username": format!("user-{tag}"), "email": format!("{tag}@example.com")}),
    )
    .await;
    let product = post(
        client,
        edge.url("/api/v1/products"),
        json!({"name": format!("lamp {tag}"), "price": 10.25, "quantity": 100}),
    )
    .await;
    let order = post(
        client,
        edge.url("/api/v1/orders"),
        json!({"user_id": user["id"], "items": [{"product_id": product["id"], "quantity": 2, "price": 10.25}]}),
    )
    .await;
    assert_eq!(order["status"], "pending");
    let settled = settled_order(client, edge.url(&format!("/api/v1/orders/{}", order["id"]))).await;
    assert_eq!(settled["status"], "completed", "{settled}");
    let (status, body) = get(
        client,
        edge.url(&format!("/api/v1/products/{}", product["id"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["quantity"], 98);
    let notifications = format!("/api/v1/notifications?user_id={}", user["id"]);
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let (status, body) = get(client, edge.url(&notifications)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let completed = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "order.completed")
            .count();
        assert!(completed <= 1, "duplicate notifications: {body}");
        if completed == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no order.completed notification: {body}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    product["id"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_the_full_order_flow_through_every_edge() {
    let client = Client::new();
    let cluster = three(&client).await;
    for (tag, edge) in [("a", &cluster.n1), ("b", &cluster.n2), ("c", &cluster.n3)] {
        full_flow(&client, edge, tag).await;
    }
    let (status, body) = get(&client, cluster.n2.url("/api/v1/cluster")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["node"], "n2");
    assert_eq!(body["clustered"], true);
    let n3 = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "n3")
        .unwrap();
    assert_eq!(
        n3["services"],
        json!(["notifications", "orders", "payments"])
    );
    let (status, body) = get(&client, cluster.n1.url("/ready")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["members"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_fast_with_503_and_serves_again_after_restart() {
    let client = Client::new();
    let mut cluster = three(&client).await;
    let product = full_flow(&client, &cluster.n1, "before").await;
    let product_url = format!("/api/v1/products/{product}");
    let n2_cluster = cluster.n2.cluster.unwrap();

    cluster.n2.child.kill().unwrap();
    cluster.n2.exit_status(process::SHUTDOWN_TIMEOUT).await;
    // Calls that need products answer 503 quickly (once n1 has noticed the
    // closed link, they never wait for the deadline); users still serve.
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let started = Instant::now();
        let (status, body) = get(&client, cluster.n1.url(&product_url)).await;
        let took = started.elapsed();
        assert!(took < FAIL_FAST, "GET took {took:?}: {status} {body}");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["type"], "/problems/unavailable", "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "products still answer: {status}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let started = Instant::now();
    let (status, _) = get(&client, cluster.n3.url(&product_url)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < FAIL_FAST);
    let (status, _) = get(&client, cluster.n1.url("/api/v1/users?page=1")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = get(&client, cluster.n1.url("/api/v1/cluster")).await;
    let n2 = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "n2")
        .cloned()
        .unwrap();
    assert_eq!(n2["state"], "unreachable");

    // Back on its data directory and its node address.
    cluster.n2 = node(
        "n2",
        cluster._data.path(),
        "products",
        n2_cluster,
        &[cluster.n1.cluster.unwrap()],
    );
    wait_for_members(
        &client,
        &[&cluster.n1, &cluster.n2, &cluster.n3],
        &["n1", "n2", "n3"],
    )
    .await;
    let (status, body) = get(&client, cluster.n1.url(&product_url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["quantity"], 98,
        "the acknowledged stock change survived"
    );
    full_flow(&client, &cluster.n3, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_that_span_a_node_loss_end_completed_or_cancelled_once_it_is_back() {
    const ORDERS: usize = 6;
    let client = Client::new();
    // A slow provider keeps the sagas in flight while products goes away.
    let latency = ["--payments-latency-ms".to_owned(), "300".to_owned()];
    let mut cluster = three_with(&client, &latency).await;
    let user = post(
        &client,
        cluster.n1.url("/api/v1/users"),
        json!({"username": "spanner", "email": "spanner@example.com"}),
    )
    .await;
    let product = post(
        &client,
        cluster.n1.url("/api/v1/products"),
        json!({"name": "lamp", "price": 3.5, "quantity": 100}),
    )
    .await;
    let mut orders = Vec::new();
    for _ in 0..ORDERS {
        let order = post(
            &client,
            cluster.n3.url("/api/v1/orders"),
            json!({"user_id": user["id"], "items": [{"product_id": product["id"], "quantity": 2, "price": 3.5}]}),
        )
        .await;
        orders.push(order["id"].as_u64().unwrap());
    }
    let n2_cluster = cluster.n2.cluster.unwrap();
    cluster.n2.child.kill().unwrap();
    cluster.n2.exit_status(process::SHUTDOWN_TIMEOUT).await;
    cluster.n2 = node(
        "n2",
        cluster._data.path(),
        "products",
        n2_cluster,
        &[cluster.n1.cluster.unwrap()],
    );
    let mut completed = 0;
    for id in &orders {
        let order = settled_order(&client, cluster.n1.url(&format!("/api/v1/orders/{id}"))).await;
        match order["status"].as_str().unwrap() {
            "completed" => completed += 1,
            "cancelled" => {}
            other => panic!("order {id} ended {other}"),
        }
        let (_, payments) = get(
            &client,
            cluster.n1.url(&format!("/api/v1/payments?order_id={id}")),
        )
        .await;
        let paid = payments["status"] == "charged";
        assert_eq!(
            paid,
            order["status"] == "completed",
            "order {order} payment {payments}"
        );
    }
    let (status, body) = get(
        &client,
        cluster
            .n1
            .url(&format!("/api/v1/products/{}", product["id"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["quantity"],
        100 - 2 * completed,
        "stock matches completed orders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_cookie_never_joins() {
    let client = Client::new();
    let data = tempfile::tempdir().unwrap();
    let n1 = node("n1", data.path(), "users", any_port(), &[]);
    let seed = n1.cluster.unwrap();
    let intruder = Server::start([
        "--node",
        "intruder",
        "--data-dir",
        &data.path().display().to_string(),
        "--services",
        "products",
        "--cluster",
        "127.0.0.1:0",
        "--join",
        &seed.to_string(),
        "--cookie",
        "not-the-cookie",
    ]);
    // A good node joins after the intruder has been dialing.
    let n2 = node("n2", data.path(), "products", any_port(), &[seed]);
    wait_for_members(&client, &[&n1, &n2], &["n1", "n2"]).await;
    assert_eq!(members_up(&client, &intruder).await, ["intruder"]);
    // The intruder cannot reach users; n1 never routed anything to it.
    let (status, _) = get(&client, intruder.url("/api/v1/users/1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_and_idle_sockets_on_the_node_port_leave_the_node_serving() {
    let client = Client::new();
    let data = tempfile::tempdir().unwrap();
    let n1 = node("n1", data.path(), "users", any_port(), &[]);
    let port = n1.cluster.unwrap();

    // Random bytes, a frame claiming 4 GiB, a half-sent frame that stalls.
    let mut garbage = TcpStream::connect(port).await.unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = garbage.write_all(&noise).await;
    let mut huge = TcpStream::connect(port).await.unwrap();
    let _ = huge.write_all(&u32::MAX.to_be_bytes()).await;
    let _ = huge.write_all(&[0u8; 1024]).await;
    let mut half = TcpStream::connect(port).await.unwrap();
    let _ = half.write_all(&100u32.to_be_bytes()).await;
    let _ = half.write_all(&[1u8; 10]).await;
    // And a crowd of idle sockets.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(port).await.unwrap());
    }

    // The edge still serves.
    let user = post(
        &client,
        n1.url("/api/v1/users"),
        json!({"username": "still-here", "email": "still@example.com"}),
    )
    .await;
    // Another node can still join and reach users through its own edge.
    let n2 = node("n2", data.path(), "products", any_port(), &[port]);
    wait_for_members(&client, &[&n1, &n2], &["n1", "n2"]).await;
    let (status, body) = get(&client, n2.url(&format!("/api/v1/users/{}", user["id"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["username"], "still-here");
    drop((garbage, huge, half, idle));
}

/// A cluster CA and the PEM files of the node certificates it signs.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self { ca, dir }
    }

    /// Writes a certificate for `node` on 127.0.0.1 and its key; returns
    /// the `--tls-*` flags that use them with this CA.
    fn flags(&self, node: &str) -> Vec<String> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose};
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, node);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let cert_path = self.dir.path().join(format!("{node}.pem"));
        let key_path = self.dir.path().join(format!("{node}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        vec![
            "--tls-cert".to_owned(),
            cert_path.display().to_string(),
            "--tls-key".to_owned(),
            key_path.display().to_string(),
            "--tls-ca".to_owned(),
            self.dir.path().join("ca.pem").display().to_string(),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_across_nodes_and_refuses_a_node_of_another_ca() {
    let client = Client::new();
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::new("bulwark test cluster CA");
    let rogue = Pki::new("rogue CA");
    let n1 = node_with(
        "n1",
        data.path(),
        "users",
        any_port(),
        &[],
        &pki.flags("n1"),
    );
    let seed = n1.cluster.unwrap();
    let outsider = node_with(
        "outsider",
        data.path(),
        "products",
        any_port(),
        &[seed],
        &rogue.flags("outsider"),
    );
    let n2 = node_with(
        "n2",
        data.path(),
        "products",
        any_port(),
        &[seed],
        &pki.flags("n2"),
    );
    wait_for_members(&client, &[&n1, &n2], &["n1", "n2"]).await;
    let user = post(
        &client,
        n2.url("/api/v1/users"),
        json!({"username": "tls-user", "email": "tls@example.com"}),
    )
    .await;
    let (status, body) = get(&client, n1.url(&format!("/api/v1/users/{}", user["id"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["username"], "tls-user");
    assert_eq!(members_up(&client, &outsider).await, ["outsider"]);
    let (status, _) = get(&client, outsider.url("/api/v1/users/1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn unusable_tls_files_stop_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--cluster",
            "127.0.0.1:0",
            "--cookie",
            "c",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(&garbage)
        .arg("--tls-key")
        .arg(&garbage)
        .arg("--tls-ca")
        .arg(&garbage)
        .output()
        .unwrap();
    // A bad setting, like any other: exit 2.
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("garbage.pem"), "{stderr}");
}

/// n1 runs users#0 and the rest of the shop, n2 users#1.
async fn sharded(client: &Client, data: &Path) -> (Server, Server) {
    let shards = ["--users-shards".to_owned(), "2".to_owned()];
    let n1 = node_with(
        "n1",
        data,
        "users#0,products,payments,notifications,orders",
        any_port(),
        &[],
        &shards,
    );
    let n2 = node_with(
        "n2",
        data,
        "users#1",
        any_port(),
        &[n1.cluster.unwrap()],
        &shards,
    );
    wait_for_members(client, &[&n1, &n2], &["n1", "n2"]).await;
    (n1, n2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_in_two_shards_are_readable_everywhere_and_listed_once() {
    const USERS: usize = 200;
    const WRITERS: usize = 8;
    let client = Client::new();
    let data = tempfile::tempdir().unwrap();
    let (n1, mut n2) = sharded(&client, data.path()).await;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (client, url) = (client.clone(), n1.url("/api/v1/users"));
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (writer..USERS).step_by(WRITERS) {
                let user = post(
                    &client,
                    url.clone(),
                    json!({"username": format!("u{n}"), "email": format!("u{n}@example.com")}),
                )
                .await;
                ids.push((user["id"].as_u64().unwrap(), format!("u{n}")));
            }
            ids
        }));
    }
    let mut users = Vec::new();
    for writer in writers {
        users.extend(writer.await.unwrap());
    }
    assert_eq!(users.len(), USERS);
    let on_shard_1 = users
        .iter()
        .filter(|(id, _)| bulwark_actors::jump_hash(*id, 2) == 1)
        .count();
    assert!(
        (40..=160).contains(&on_shard_1),
        "{on_shard_1} of {USERS} users on shard 1"
    );
    for edge in [&n1, &n2] {
        for (id, name) in &users {
            let (status, body) = get(&client, edge.url(&format!("/api/v1/users/{id}"))).await;
            assert_eq!(status, StatusCode::OK, "user {id} through {}", edge.addr);
            assert_eq!(&body["username"], name.as_str());
        }
    }
    // Every page through the other edge: each user exactly once, by id.
    let mut listed = Vec::new();
    for page in 1..=7 {
        let (status, body) = get(
            &client,
            n2.url(&format!("/api/v1/users?page={page}&page_size=30")),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["total"], USERS);
        listed.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_u64().unwrap()),
        );
    }
    let mut expected: Vec<u64> = users.iter().map(|(id, _)| *id).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);

    // The split is real: with n2 gone, exactly its shard's users answer 503.
    n2.child.kill().unwrap();
    n2.exit_status(process::SHUTDOWN_TIMEOUT).await;
    let (id_0, _) = users
        .iter()
        .find(|(id, _)| bulwark_actors::jump_hash(*id, 2) == 0)
        .unwrap();
    let (id_1, _) = users
        .iter()
        .find(|(id, _)| bulwark_actors::jump_hash(*id, 2) == 1)
        .unwrap();
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let (status, _) = get(&client, n1.url(&format!("/api/v1/users/{id_1}"))).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(Instant::now() < deadline, "shard 1 still answers: {status}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let (status, _) = get(&client, n1.url(&format!("/api/v1/users/{id_0}"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_and_emails_stay_unique_across_shards() {
    let client = Client::new();
    let data = tempfile::tempdir().unwrap();
    let (n1, n2) = sharded(&client, data.path()).await;
    let first = post(
        &client,
        n1.url("/api/v1/users"),
        json!({"username": "ada", "email": "ada@example.com"}),
    )
    .await;
    // Creates land on a random shard: a dozen tries cross shards.
    for n in 0..12 {
        let edge = if n % 2 == 0 { &n1 } else { &n2 };
        for body in [
            json!({"username": "ADA", "email": format!("other{n}@example.com")}),
            json!({"username": format!("other{n}"), "email": "Ada@Example.com"}),
        ] {
            let response = client
                .post(edge.url("/api/v1/users"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CONFLICT, "{body}");
        }
    }
    // A value given up becomes free again: ada renames, then "ada" is
    // taken by someone else, and ada cannot take it back.
    let response = client
        .put(n2.url(&format!("/api/v1/users/{}", first["id"])))
        .json(&json!({"username": "ada-lovelace"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    post(
        &client,
        n2.url("/api/v1/users"),
        json!({"username": "ada", "email": "second-ada@example.com"}),
    )
    .await;
    let response = client
        .put(n1.url(&format!("/api/v1/users/{}", first["id"])))
        .json(&json!({"username": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let (_, body) = get(&client, n1.url("/api/v1/users?page=1&page_size=10")).await;
    assert_eq!(body["total"], 2);
}
