//! Test services for the runtime's black-box tests: `Svc<N>` is a service
//! named `svc-N` whose entry actor obeys [`Req`] and records what it sees.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark_runtime::{
    CallContext, Node, NodeConfig, Router, Service, ServiceConfig, ServiceContext, ServiceMsg,
    ServiceTree, Strategy, Topic,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Generous: the machine running the tests may be loaded.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub const NAMES: [&str; 3] = ["svc-0", "svc-1", "svc-2"];

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Req {
    Echo(u64),
    /// Waits in the handler until the test opens the gate.
    Block,
    Panic,
    Sleep(Duration),
    /// Calls `svc-1` with `Echo` inside this call's context.
    Forward(u64),
    Fail,
    /// Idempotent: panics the first time any actor of this node sees one,
    /// then echoes.
    PanicOnce(u64),
    /// Idempotent, and always panics.
    PanicIdempotent,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[error("refused")]
pub struct Refused;

pub struct Greetings;

impl Topic for Greetings {
    const NAME: &'static str = "greetings";
    type Event = String;
}

/// What the test observes; shared by every service of a node.
#[derive(Debug, Clone)]
pub struct Shared {
    pub gate: Arc<Semaphore>,
    pub contexts: Arc<Mutex<Vec<(usize, CallContext)>>>,
    pub events: Arc<Mutex<Vec<(usize, String)>>>,
    pub stopped: Arc<Mutex<Vec<usize>>>,
    pub late_replies: Arc<Mutex<Vec<bool>>>,
    pub panicked_once: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            contexts: Arc::default(),
            events: Arc::default(),
            stopped: Arc::default(),
            late_replies: Arc::default(),
            panicked_once: Arc::default(),
        }
    }
}

impl Shared {
    pub fn open_gate(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// The contexts of the calls and casts `svc-N` took, in order.
    pub fn delivered_to(&self, n: usize) -> Vec<CallContext> {
        self.contexts
            .lock()
            .unwrap()
            .iter()
            .filter(|(to, _)| *to == n)
            .map(|(_, context)| context.clone())
            .collect()
    }
}

pub struct Svc<const N: usize> {
    pub shared: Shared,
    /// Root restart intensity (restarts per minute).
    pub root_max_restarts: u32,
}

impl<const N: usize> Svc<N> {
    pub fn new(shared: &Shared) -> Self {
        Self {
            shared: shared.clone(),
            root_max_restarts: 10,
        }
    }
}

impl<const N: usize> Service for Svc<N> {
    const NAME: &'static str = NAMES[N];
    type Request = Req;
    type Response = u64;
    type Error = Refused;

    fn tree(&self, ctx: &ServiceContext) -> ServiceTree<Self> {
        let shared = self.shared.clone();
        let router = ctx.router.clone();
        ServiceTree::new(Strategy::OneForOne)
            .intensity(self.root_max_restarts, Duration::from_secs(60))
            .entry("entry", move || {
                (SvcActor::<N>, (shared.clone(), router.clone()))
            })
    }

    fn topics(&self) -> Vec<&'static str> {
        vec![Greetings::NAME]
    }

    fn idempotent_copy(request: &Req) -> Option<Req> {
        match request {
            Req::Echo(x) => Some(Req::Echo(*x)),
            Req::PanicOnce(x) => Some(Req::PanicOnce(*x)),
            Req::PanicIdempotent => Some(Req::PanicIdempotent),
            _ => None,
        }
    }
}

pub struct SvcActor<const N: usize>;

impl<const N: usize> Actor for SvcActor<N> {
    type Msg = ServiceMsg<Svc<N>>;
    type State = (Shared, Router);
    type Arguments = (Shared, Router);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        (shared, router): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ServiceMsg::Call(call) => {
                let (envelope, reply) = call.into_parts();
                shared
                    .contexts
                    .lock()
                    .unwrap()
                    .push((N, envelope.context.clone()));
                let result = match envelope.payload {
                    Req::Echo(x) => Ok(x),
                    Req::Block => {
                        let _permit = shared.gate.acquire().await?;
                        Ok(0)
                    }
                    Req::Panic => panic!("told to panic"),
                    Req::Sleep(d) => {
                        tokio::time::sleep(d).await;
                        let delivered = reply.send(Ok(1));
                        shared.late_replies.lock().unwrap().push(delivered);
                        return Ok(());
                    }
                    Req::Forward(x) => router
                        .call_with::<Svc<1>>(envelope.context(), Req::Echo(x))
                        .await
                        .map_err(|_| Refused),
                    Req::Fail => Err(Refused),
                    Req::PanicOnce(x) => {
                        if !shared
                            .panicked_once
                            .swap(true, std::sync::atomic::Ordering::SeqCst)
                        {
                            panic!("told to panic once");
                        }
                        Ok(x)
                    }
                    Req::PanicIdempotent => panic!("told to panic, idempotently"),
                };
                reply.send(result);
            }
            ServiceMsg::Cast(cast) => {
                let envelope = cast.into_envelope();
                shared.contexts.lock().unwrap().push((N, envelope.context));
            }
            ServiceMsg::Event(mut event) => {
                if let Some(text) = event.get::<Greetings>().cloned() {
                    // "unconfirmed" events are dropped without an ack.
                    let confirm = text != "unconfirmed";
                    shared.events.lock().unwrap().push((N, text));
                    if confirm {
                        event.ack();
                    }
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        (shared, _): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        shared.stopped.lock().unwrap().push(N);
        Ok(())
    }
}

pub fn config() -> NodeConfig {
    NodeConfig::new("test-node")
}

/// A node running `svc-0`, `svc-1` and `svc-2` with default bounds.
pub async fn node(shared: &Shared) -> Node {
    Node::builder(config())
        .service(Svc::<0>::new(shared), ServiceConfig::default())
        .service(Svc::<1>::new(shared), ServiceConfig::default())
        .service(Svc::<2>::new(shared), ServiceConfig::default())
        .start()
        .await
        .expect("node starts")
}

/// Polls `cond` until it holds, failing after [`DEADLINE`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
