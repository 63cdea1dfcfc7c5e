//! Request/reply round trip, in one run:
//! - `router_call`: `Router::call_with` to a service's entry actor, with a
//!   deadline (envelope, bulkhead, typed errors included);
//! - `ractor_call_with_timeout`: a raw ractor `call` with the same timeout to
//!   the same kind of actor;
//! - `tokio_mpsc_oneshot`: a tokio mpsc + oneshot round trip to a task, the
//!   floor.
//!
//! All on a current-thread runtime: the ratios are far more stable on a
//! 2-core machine than on the multi-thread one.
//!
//! Run: `cargo bench -p bulwark-runtime --bench router`

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use bulwark_runtime::{
    CallContext, Node, NodeConfig, Service, ServiceConfig, ServiceContext, ServiceMsg, ServiceTree,
    Strategy,
};
use criterion::{Criterion, criterion_group, criterion_main};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{mpsc, oneshot};

const TIMEOUT: Duration = Duration::from_secs(5);

struct Echo;

#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("never")]
struct Never;

impl Service for Echo {
    const NAME: &'static str = "echo";
    type Request = u64;
    type Response = u64;
    type Error = Never;

    fn tree(&self, _ctx: &ServiceContext) -> ServiceTree<Self> {
        ServiceTree::new(Strategy::OneForOne).entry("entry", || (EchoActor, ()))
    }
}

struct EchoActor;

impl Actor for EchoActor {
    type Msg = ServiceMsg<Echo>;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (): (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        (): &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let ServiceMsg::Call(call) = msg {
            let (envelope, reply) = call.into_parts();
            reply.send(Ok(envelope.payload));
        }
        Ok(())
    }
}

enum RawMsg {
    Echo(u64, RpcReplyPort<u64>),
}

struct RawActor;

impl Actor for RawActor {
    type Msg = RawMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (): (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        (): &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let RawMsg::Echo(x, reply) = msg;
        let _ = reply.send(x);
        Ok(())
    }
}

fn round_trips(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let node = rt.block_on(async {
        Node::builder(NodeConfig::new("bench"))
            .service(Echo, ServiceConfig::default())
            .start()
            .await
            .unwrap()
    });
    let (raw, _) = rt.block_on(Actor::spawn(None, RawActor, ())).unwrap();
    let (floor_tx, mut floor_rx) = mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
    rt.spawn(async move {
        while let Some((x, reply)) = floor_rx.recv().await {
            let _ = reply.send(x);
        }
    });

    let mut group = c.benchmark_group("round_trip");
    group.measurement_time(Duration::from_secs(3));

    let router = node.router().clone();
    group.bench_function("router_call", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let ctx = CallContext::new(TIMEOUT);
                    let out = router.call_with::<Echo>(ctx, i).await.unwrap();
                    std::hint::black_box(out);
                }
                start.elapsed()
            })
        });
    });

    group.bench_function("ractor_call_with_timeout", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let out = raw
                        .call(|reply| RawMsg::Echo(i, reply), Some(TIMEOUT))
                        .await
                        .unwrap()
                        .success_or(())
                        .unwrap();
                    std::hint::black_box(out);
                }
                start.elapsed()
            })
        });
    });

    group.bench_function("tokio_mpsc_oneshot", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let (tx, rx) = oneshot::channel();
                    floor_tx.send((i, tx)).unwrap();
                    std::hint::black_box(rx.await.unwrap());
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    rt.block_on(node.shutdown());
}

criterion_group!(benches, round_trips);
criterion_main!(benches);
