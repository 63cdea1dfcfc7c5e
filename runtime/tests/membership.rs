//! Membership through the node builder: nodes that join through one seed
//! each end up linked to every member, route to services they were never
//! told about, see a stopped member as unreachable (calls fail fast), and
//! route to it again when it comes back.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;

use bulwark_runtime::cluster::handshake::Cookie;
use bulwark_runtime::cluster::{ClusterConfig, MemberState};
use bulwark_runtime::{
    CLUSTER_JOINED_CHECK, CallError, Node, NodeConfig, ServiceConfig, UnavailableReason,
};
use common::{Req, Shared, Svc, eventually};
use tokio::time::Instant;

fn cluster(join: &[SocketAddr]) -> ClusterConfig {
    ClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        join: join.to_vec(),
        cookie: Cookie::new("membership-secret").unwrap(),
        tls: None,
    }
}

fn up(node: &Node) -> Vec<String> {
    node.cluster()
        .unwrap()
        .members()
        .into_iter()
        .filter(|m| m.state == MemberState::Up)
        .map(|m| m.name)
        .collect()
}

/// n1 runs svc-0, n2 svc-1, n3 svc-2; n2 joins n1, n3 joins n2 only.
async fn three(shared: &Shared) -> (Node, Node, Node) {
    let n1 = Node::builder(NodeConfig::new("n1"))
        .service(Svc::<0>::new(shared), ServiceConfig::default())
        .cluster(cluster(&[]))
        .start()
        .await
        .unwrap();
    let a1 = n1.cluster().unwrap().addr();
    let n2 = Node::builder(NodeConfig::new("n2"))
        .service(Svc::<1>::new(shared), ServiceConfig::default())
        .cluster(cluster(&[a1]))
        .start()
        .await
        .unwrap();
    let a2 = n2.cluster().unwrap().addr();
    let n3 = Node::builder(NodeConfig::new("n3"))
        .service(Svc::<2>::new(shared), ServiceConfig::default())
        .cluster(cluster(&[a2]))
        .start()
        .await
        .unwrap();
    (n1, n2, n3)
}

#[tokio::test]
async fn a_node_that_joins_through_one_seed_links_to_every_member_and_reaches_their_services() {
    let shared = Shared::default();
    let (n1, n2, n3) = three(&shared).await;
    eventually("every node sees the two others up", || {
        up(&n1) == ["n2", "n3"] && up(&n2) == ["n1", "n3"] && up(&n3) == ["n1", "n2"]
    })
    .await;
    // n3 was never told where n1 is, yet calls its service.
    assert_eq!(n3.router().call::<Svc<0>>(Req::Echo(7)).await, Ok(7));
    assert_eq!(n1.router().call::<Svc<2>>(Req::Echo(9)).await, Ok(9));
    let members = n3.cluster().unwrap().members();
    assert_eq!(members[0].name, "n3");
    assert_eq!(members[0].state, MemberState::Local);
    let n1_seen = members.iter().find(|m| m.name == "n1").unwrap();
    assert_eq!(n1_seen.services, ["svc-0"]);
    assert_eq!(n1_seen.addr, Some(n1.cluster().unwrap().addr()));
    for node in [&n3, &n2, &n1] {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_stopped_member_is_unreachable_at_once_and_routed_to_again_when_it_returns() {
    let shared = Shared::default();
    let (n1, n2, n3) = three(&shared).await;
    eventually("n1 reaches svc-2 on n3", || {
        up(&n1).contains(&"n3".to_owned())
    })
    .await;
    assert_eq!(n1.router().call::<Svc<2>>(Req::Echo(1)).await, Ok(1));
    let n3_addr = n3.cluster().unwrap().addr();
    n3.shutdown().await;
    eventually("n1 sees n3 unreachable", || {
        n1.cluster()
            .unwrap()
            .members()
            .iter()
            .any(|m| m.name == "n3" && m.state == MemberState::Unreachable)
    })
    .await;
    let started = Instant::now();
    let err = n1.router().call::<Svc<2>>(Req::Echo(2)).await.unwrap_err();
    assert_eq!(
        err,
        CallError::Unavailable {
            service: "svc-2",
            reason: UnavailableReason::Unreachable
        }
    );
    assert!(
        started.elapsed() < n1.router().call_timeout() / 2,
        "failed fast, not at the deadline"
    );
    // n3 comes back on the same address; n2, its seed, links it again and
    // n1 learns of it from n2.
    let n3 = Node::builder(NodeConfig::new("n3"))
        .service(Svc::<2>::new(&shared), ServiceConfig::default())
        .cluster(ClusterConfig {
            listen: n3_addr,
            ..cluster(&[n2.cluster().unwrap().addr()])
        })
        .start()
        .await
        .unwrap();
    eventually("n1 sees n3 up again", || up(&n1).contains(&"n3".to_owned())).await;
    assert_eq!(n1.router().call::<Svc<2>>(Req::Echo(3)).await, Ok(3));
    for node in [&n3, &n2, &n1] {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_second_node_with_a_live_members_name_is_refused() {
    let shared = Shared::default();
    let n1 = Node::builder(NodeConfig::new("n1"))
        .service(Svc::<0>::new(&shared), ServiceConfig::default())
        .cluster(cluster(&[]))
        .start()
        .await
        .unwrap();
    let a1 = n1.cluster().unwrap().addr();
    let n2 = Node::builder(NodeConfig::new("n2"))
        .service(Svc::<1>::new(&shared), ServiceConfig::default())
        .cluster(cluster(&[a1]))
        .start()
        .await
        .unwrap();
    eventually("n1 sees n2", || up(&n1) == ["n2"]).await;
    let impostor = Node::builder(NodeConfig::new("n2"))
        .service(Svc::<2>::new(&shared), ServiceConfig::default())
        .cluster(cluster(&[a1]))
        .start()
        .await
        .unwrap();
    // The impostor hears n1's announcement, then n1 closes the link on
    // hearing the impostor's.
    eventually("the impostor's link to n1 is refused", || {
        impostor
            .cluster()
            .unwrap()
            .members()
            .iter()
            .any(|m| m.name == "n1" && m.state == MemberState::Unreachable)
    })
    .await;
    assert!(!n1.router().knows("svc-2"), "n1 routed to the impostor");
    assert_eq!(n1.router().call::<Svc<1>>(Req::Echo(4)).await, Ok(4));
    for node in [&impostor, &n2, &n1] {
        node.shutdown().await;
    }
}

/// A log sink for one test: what the runtime logs while it is the default
/// subscriber of the test's (current-thread) runtime.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_member_running_a_service_this_node_runs_too_is_warned_about() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let shared = Shared::default();
    let n1 = Node::builder(NodeConfig::new("n1"))
        .service(Svc::<0>::new(&shared), ServiceConfig::default())
        .cluster(cluster(&[]))
        .start()
        .await
        .unwrap();
    let a1 = n1.cluster().unwrap().addr();
    let n2 = Node::builder(NodeConfig::new("n2"))
        .service(Svc::<0>::new(&shared), ServiceConfig::default())
        .service(Svc::<1>::new(&shared), ServiceConfig::default())
        .cluster(cluster(&[a1]))
        .start()
        .await
        .unwrap();
    eventually("the overlap is logged", || {
        logs.text()
            .contains("a member runs services this node runs too")
    })
    .await;
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("a member runs services this node runs too"))
        .unwrap();
    assert!(line.contains("svc-0") && !line.contains("svc-1"), "{line}");
    for node in [&n2, &n1] {
        node.shutdown().await;
    }
}

/// The failure of `node`'s built-in "cluster joined" check, `None` when it
/// passes.
fn not_joined(node: &Node) -> Option<String> {
    let checks = node.health();
    let check = checks
        .iter()
        .find(|c| c.name == CLUSTER_JOINED_CHECK)
        .unwrap();
    check.failure.clone()
}

#[tokio::test]
async fn a_node_with_seeds_is_not_joined_until_it_reaches_one_and_stays_joined_after() {
    let shared = Shared::default();
    // A seed address held by a socket that never answers, so no other
    // listener (n2's own) can take it before n1 does.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let seed = holder.local_addr().unwrap();
    let n2 = Node::builder(NodeConfig::new("n2"))
        .service(Svc::<1>::new(&shared), ServiceConfig::default())
        .cluster(cluster(&[seed]))
        .start()
        .await
        .unwrap();
    assert!(!n2.cluster().unwrap().joined());
    let failure = not_joined(&n2).unwrap();
    assert!(failure.contains(&seed.to_string()), "{failure}");
    // The first node has no seeds: joined from the start.
    drop(holder);
    let n1 = Node::builder(NodeConfig::new("n1"))
        .service(Svc::<0>::new(&shared), ServiceConfig::default())
        .cluster(ClusterConfig {
            listen: seed,
            ..cluster(&[])
        })
        .start()
        .await
        .unwrap();
    assert_eq!(not_joined(&n1), None);
    eventually("n2 joins through its seed", || not_joined(&n2).is_none()).await;
    assert!(up(&n2).contains(&"n1".to_owned()));
    // Losing the seed later does not make n2 unjoined.
    n1.shutdown().await;
    eventually("n2 sees n1 unreachable", || up(&n2).is_empty()).await;
    assert_eq!(not_joined(&n2), None);
    // A node outside a cluster has no such check.
    let single = Node::builder(NodeConfig::new("solo"))
        .service(Svc::<2>::new(&shared), ServiceConfig::default())
        .start()
        .await
        .unwrap();
    assert!(single.health().is_empty());
    single.shutdown().await;
    n2.shutdown().await;
}
