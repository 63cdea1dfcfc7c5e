//! Supervision semantics through the public API: strategies, restart
//! policies, restart intensity with escalation, backoff, and the tree
//! listing that chaos tests read.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bulwark_supervisors::{
    ActorState, ChildSpec, Restart, Strategy, SupervisorActor, SupervisorSpec, Tree,
};
use ractor::concurrency::Instant;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// Generous: the machine running the tests may be loaded.
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug)]
enum WorkerMsg {
    /// Replies with how many times this worker has been started.
    Starts(RpcReplyPort<u32>),
    Panic,
    Fail,
    StopNormally,
}

/// A worker that counts its starts and logs when each start happened.
#[derive(Debug, Clone, Default)]
struct Probe {
    starts: Arc<AtomicU32>,
    started_at: Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl Probe {
    fn starts(&self) -> u32 {
        self.starts.load(Ordering::SeqCst)
    }
}

struct Worker;

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = Probe;
    type Arguments = Probe;

    async fn pre_start(
        &self,
        _myself: ActorRef<WorkerMsg>,
        probe: Probe,
    ) -> Result<Probe, ActorProcessingErr> {
        probe.starts.fetch_add(1, Ordering::SeqCst);
        probe.started_at.lock().unwrap().push(Instant::now());
        Ok(probe)
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        probe: &mut Probe,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Starts(reply) => {
                let _ = reply.send(probe.starts());
            }
            WorkerMsg::Panic => panic!("worker told to panic"),
            WorkerMsg::Fail => return Err("worker told to fail".into()),
            WorkerMsg::StopNormally => myself.stop(None),
        }
        Ok(())
    }
}

fn worker(name: &str, restart: Restart, probe: &Probe) -> ChildSpec {
    let probe = probe.clone();
    ChildSpec::actor(name, restart, move || (Worker, probe.clone()))
}

fn send(tree: &Tree, path: &str, msg: WorkerMsg) {
    let cell = tree.cell(path).expect("actor is running");
    ActorRef::<WorkerMsg>::from(cell)
        .send_message(msg)
        .expect("send");
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn restarts(tree: &Tree, path: &str) -> Option<u32> {
    tree.get(path)
        .filter(|a| a.state == ActorState::Running)
        .map(|a| a.restarts)
}

#[tokio::test]
async fn panicking_worker_is_restarted_and_the_listing_counts_the_restart() {
    let tree = Tree::new();
    let probe = Probe::default();
    let spec =
        SupervisorSpec::new(Strategy::OneForOne).child(worker("w", Restart::Permanent, &probe));
    let (root, _) = SupervisorActor::spawn("svc".into(), spec, tree.clone())
        .await
        .unwrap();
    assert_eq!(restarts(&tree, "svc/w"), Some(0));

    send(&tree, "svc/w", WorkerMsg::Panic);
    eventually("restart recorded", || restarts(&tree, "svc/w") == Some(1)).await;

    let cell = tree.cell("svc/w").unwrap();
    let starts = ractor::call!(ActorRef::<WorkerMsg>::from(cell), WorkerMsg::Starts).unwrap();
    assert_eq!(starts, 2, "the next call is served by the restarted worker");
    root.stop_and_wait(None, None).await.unwrap();
    assert!(tree.list().is_empty(), "a stopped tree leaves no entries");
}

#[tokio::test]
async fn one_for_all_restarts_every_sibling() {
    let tree = Tree::new();
    let probes = [Probe::default(), Probe::default(), Probe::default()];
    let spec = SupervisorSpec::new(Strategy::OneForAll)
        .child(worker("a", Restart::Permanent, &probes[0]))
        .child(worker("b", Restart::Permanent, &probes[1]))
        .child(worker("c", Restart::Permanent, &probes[2]));
    let (root, _) = SupervisorActor::spawn("svc".into(), spec, tree.clone())
        .await
        .unwrap();

    send(&tree, "svc/b", WorkerMsg::Fail);
    eventually("all three restarted", || {
        probes.iter().all(|p| p.starts() == 2)
            && ["svc/a", "svc/b", "svc/c"]
                .iter()
                .all(|p| restarts(&tree, p) == Some(1))
    })
    .await;
    root.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn rest_for_one_restarts_only_the_later_siblings() {
    let tree = Tree::new();
    let probes = [Probe::default(), Probe::default(), Probe::default()];
    let spec = SupervisorSpec::new(Strategy::RestForOne)
        .child(worker("a", Restart::Permanent, &probes[0]))
        .child(worker("b", Restart::Permanent, &probes[1]))
        .child(worker("c", Restart::Permanent, &probes[2]));
    let (root, _) = SupervisorActor::spawn("svc".into(), spec, tree.clone())
        .await
        .unwrap();

    send(&tree, "svc/b", WorkerMsg::Panic);
    eventually("b and c restarted", || {
        probes[1].starts() == 2
            && probes[2].starts() == 2
            && restarts(&tree, "svc/b") == Some(1)
            && restarts(&tree, "svc/c") == Some(1)
    })
    .await;
    assert_eq!(probes[0].starts(), 1, "the earlier sibling keeps running");
    assert_eq!(restarts(&tree, "svc/a"), Some(0));
    root.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn transient_child_is_restarted_after_a_crash_but_not_after_a_normal_stop() {
    let tree = Tree::new();
    let probe = Probe::default();
    let marker = Probe::default();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(worker("t", Restart::Transient, &probe))
        .child(worker("marker", Restart::Permanent, &marker));
    let (root, _) = SupervisorActor::spawn("svc".into(), spec, tree.clone())
        .await
        .unwrap();

    send(&tree, "svc/t", WorkerMsg::Panic);
    eventually("transient restarted after a panic", || {
        restarts(&tree, "svc/t") == Some(1)
    })
    .await;

    send(&tree, "svc/t", WorkerMsg::StopNormally);
    eventually("transient gone from the listing", || {
        tree.get("svc/t").is_none()
    })
    .await;
    // The supervisor handles events in order: once a later crash of the
    // marker has been handled, the transient's exit was handled long before.
    send(&tree, "svc/marker", WorkerMsg::Panic);
    eventually("marker restarted", || {
        restarts(&tree, "svc/marker") == Some(1)
    })
    .await;
    assert_eq!(probe.starts(), 2, "no restart after the normal stop");
    assert!(tree.get("svc/t").is_none());
    root.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn temporary_child_is_never_restarted() {
    let tree = Tree::new();
    let probe = Probe::default();
    let spec =
        SupervisorSpec::new(Strategy::OneForOne).child(worker("tmp", Restart::Temporary, &probe));
    let (root, _) = SupervisorActor::spawn("svc".into(), spec, tree.clone())
        .await
        .unwrap();
    send(&tree, "svc/tmp", WorkerMsg::Panic);
    eventually("temporary gone", || tree.get("svc/tmp").is_none()).await;
    assert_eq!(probe.starts(), 1);
    root.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn killing_an_actor_by_path_counts_as_a_crash() {
    let tree = Tree::new();
    let probe = Probe::default();
    let spec =
        SupervisorSpec::new(Strategy::OneForOne).child(worker("t", Restart::Transient, &probe));
    let (root, _) = SupervisorActor::spawn("svc".into(), spec, tree.clone())
        .await
        .unwrap();
    tree.kill("svc/t").unwrap();
    eventually("killed transient restarted", || {
        restarts(&tree, "svc/t") == Some(1)
    })
    .await;
    assert!(matches!(
        tree.kill("svc/nope"),
        Err(bulwark_supervisors::KillError::NotFound { .. })
    ));
    root.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn exceeding_the_intensity_escalates_to_the_parent_strategy() {
    let tree = Tree::new();
    let probe = Probe::default();
    let sibling = Probe::default();
    // The subtree tolerates one restart a minute; the root tolerates many.
    let sub = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(1, Duration::from_secs(60))
        .child(worker("w", Restart::Permanent, &probe));
    let spec = SupervisorSpec::new(Strategy::OneForAll)
        .intensity(10, Duration::from_secs(60))
        .child(ChildSpec::supervisor("sub", Restart::Permanent, sub))
        .child(worker("sibling", Restart::Permanent, &sibling));
    let (root, _) = SupervisorActor::spawn("svc".into(), spec, tree.clone())
        .await
        .unwrap();

    send(&tree, "svc/sub/w", WorkerMsg::Panic);
    eventually("first crash absorbed by the subtree", || {
        restarts(&tree, "svc/sub/w") == Some(1)
    })
    .await;
    assert_eq!(restarts(&tree, "svc/sub"), Some(0));

    send(&tree, "svc/sub/w", WorkerMsg::Panic);
    // The subtree gives up; the root's one-for-all restarts the subtree and
    // its sibling; the worker comes back fresh under the new subtree.
    eventually("root restarted the subtree and its sibling", || {
        restarts(&tree, "svc/sub") == Some(1)
            && restarts(&tree, "svc/sibling") == Some(1)
            && restarts(&tree, "svc/sub/w") == Some(0)
    })
    .await;
    assert_eq!(probe.starts(), 3);
    assert_eq!(sibling.starts(), 2);
    root.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_root_that_gives_up_stops_and_reports_the_failure() {
    let tree = Tree::new();
    let probe = Probe::default();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(0, Duration::from_secs(60))
        .child(worker("w", Restart::Permanent, &probe));
    let (root, join) = SupervisorActor::spawn("svc".into(), spec, tree.clone())
        .await
        .unwrap();
    send(&tree, "svc/w", WorkerMsg::Panic);
    tokio::time::timeout(DEADLINE, join)
        .await
        .expect("root exits")
        .unwrap();
    assert_eq!(root.get_status(), ractor::ActorStatus::Stopped);
    assert!(tree.get("svc/w").is_none(), "the children went with it");
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_each_restart_exponentially() {
    let tree = Tree::new();
    let probe = Probe::default();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(10, Duration::from_secs(3600))
        .backoff(Duration::from_millis(200), Duration::from_secs(10))
        .child(worker("w", Restart::Permanent, &probe));
    let (root, _) = SupervisorActor::spawn("svc".into(), spec, tree.clone())
        .await
        .unwrap();

    let mut crashed_at = Vec::new();
    for n in 1..=3_u32 {
        crashed_at.push(Instant::now());
        send(&tree, "svc/w", WorkerMsg::Panic);
        eventually("restarted", || restarts(&tree, "svc/w") == Some(n)).await;
    }
    let started = probe.started_at.lock().unwrap().clone();
    for (n, crash) in crashed_at.iter().enumerate() {
        let waited = started[n + 1].duration_since(*crash);
        let backoff = Duration::from_millis(200) * (1 << n);
        assert!(
            waited >= backoff,
            "restart {n} came after {waited:?}, before its backoff {backoff:?}"
        );
    }
    root.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stale_scheduled_restart_never_starts_later_siblings_ahead_of_an_earlier_one() {
    let tree = Tree::new();
    let probes = [Probe::default(), Probe::default(), Probe::default()];
    let spec = SupervisorSpec::new(Strategy::RestForOne)
        .intensity(10, Duration::from_secs(3600))
        .backoff(Duration::from_millis(200), Duration::from_secs(10))
        .child(worker("a", Restart::Permanent, &probes[0]))
        .child(worker("b", Restart::Permanent, &probes[1]))
        .child(worker("c", Restart::Permanent, &probes[2]));
    let (root, _) = SupervisorActor::spawn("svc".into(), spec, tree.clone())
        .await
        .unwrap();
    // b fails (b and c are due back after 200 ms), then a fails before that:
    // a, b and c must come back in that order, b and c after a.
    send(&tree, "svc/b", WorkerMsg::Panic);
    eventually("b and c waiting for their restart", || {
        ["svc/b", "svc/c"].iter().all(|p| {
            tree.get(p)
                .is_some_and(|a| a.state == ActorState::Restarting)
        })
    })
    .await;
    send(&tree, "svc/a", WorkerMsg::Panic);
    eventually("all three running again", || {
        ["svc/a", "svc/b", "svc/c"]
            .iter()
            .all(|p| tree.get(p).is_some_and(|a| a.state == ActorState::Running))
            && probes[0].starts() == 2
    })
    .await;
    let last = |p: &Probe| *p.started_at.lock().unwrap().last().unwrap();
    assert!(last(&probes[1]) >= last(&probes[0]), "b restarted before a");
    assert!(last(&probes[2]) >= last(&probes[1]), "c restarted before b");
    assert_eq!(probes[1].starts(), 2, "b started once after its crash");
    assert_eq!(probes[2].starts(), 2, "c started once after its crash");
    root.stop_and_wait(None, None).await.unwrap();
}
