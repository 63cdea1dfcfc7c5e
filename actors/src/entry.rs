//! The entry actor every shop service uses: it takes each message off the
//! mailbox and serves it in its own task, so a slow request (a payment, a
//! durable write waiting for its fsync) never holds up the next one and
//! concurrent writes share one fsync. The service's bulkhead bounds how many
//! such tasks exist; the store's transactions keep them consistent.
//!
//! Each task runs in its message's context ([`CallContext::scope`]): calls
//! it makes through `Router::context` keep the correlation id, the trace and
//! the deadline, on this node or another. And in a `message` span carrying
//! the service's name and the correlation id, so every log line a handler
//! writes says which request it belongs to.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use bulwark_runtime::{CallContext, Service, ServiceMsg, TopicEvent};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::common::ShopError;

/// A service's request logic, shared (behind an `Arc`) with each request's task.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    /// The service it serves.
    type Service: Service<Error = ShopError>;

    /// Serves one request.
    fn serve(
        &self,
        request: <Self::Service as Service>::Request,
    ) -> impl Future<Output = Result<<Self::Service as Service>::Response, ShopError>> + Send;

    /// The service's task tracker (`ServiceContext::tasks`): every request
    /// task is spawned on it, so the node waits for them at shutdown.
    fn tasks(&self) -> &TaskTracker;

    /// Runs when the entry actor (re)starts.
    fn on_start(&self) {}

    /// Applies one topic event; acknowledges it once applied.
    fn on_event(&self, mut event: TopicEvent) -> impl Future<Output = ()> + Send {
        async move { event.ack() }
    }
}

/// The entry actor of a service served by `H`.
#[derive(Debug)]
pub(crate) struct EntryActor<H>(PhantomData<fn() -> H>);

impl<H> EntryActor<H> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<H: Handler> Actor for EntryActor<H> {
    type Msg = ServiceMsg<H::Service>;
    /// Shared with every request task: a clone per message is one atomic
    /// increment, however many store handles the handler holds.
    type State = Arc<H>;
    type Arguments = H;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        handler: H,
    ) -> Result<Arc<H>, ActorProcessingErr> {
        handler.on_start();
        Ok(Arc::new(handler))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        handler: &mut Arc<H>,
    ) -> Result<(), ActorProcessingErr> {
        let handler = Arc::clone(handler);
        let tasks = handler.tasks().clone();
        match msg {
            ServiceMsg::Call(call) => {
                let (envelope, reply) = call.into_parts();
                let context = envelope.context();
                tasks.spawn(in_context::<H::Service, _>(context, "call", async move {
                    reply.send(handler.serve(envelope.payload).await);
                }));
            }
            ServiceMsg::Cast(cast) => {
                let envelope = cast.into_envelope();
                let context = envelope.context();
                tasks.spawn(in_context::<H::Service, _>(context, "cast", async move {
                    if let Err(err) = handler.serve(envelope.payload).await {
                        tracing::warn!(error = %err, "cast failed");
                    }
                }));
            }
            ServiceMsg::Event(event) => {
                let context = event.context().clone();
                tasks.spawn(in_context::<H::Service, _>(context, "event", async move {
                    handler.on_event(event).await
                }));
            }
        }
        Ok(())
    }
}

/// `fut` in `context` ([`CallContext::scope`]) and in a span naming the
/// service, the kind of message and its correlation id.
fn in_context<S: Service, F: Future<Output = ()>>(
    context: CallContext,
    kind: &'static str,
    fut: F,
) -> impl Future<Output = ()> {
    let span = tracing::info_span!(
        "message",
        service = S::NAME,
        kind,
        correlation_id = %context.correlation_id,
    );
    context.scope(fut).instrument(span)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use bulwark_runtime::{
        CorrelationId, Node, NodeConfig, Router, ServiceConfig, ServiceContext, ServiceTree,
        Strategy,
    };

    use super::*;

    /// Answers with the correlation id a further call it made would carry,
    /// and logs a line.
    #[derive(Debug)]
    struct Probe;

    #[derive(Debug, Clone)]
    struct ProbeHandler {
        tasks: TaskTracker,
        router: Router,
    }

    impl Service for Probe {
        const NAME: &'static str = "probe";
        type Request = ();
        type Response = String;
        type Error = ShopError;

        fn tree(&self, ctx: &ServiceContext) -> ServiceTree<Self> {
            let handler = ProbeHandler {
                tasks: ctx.tasks.clone(),
                router: ctx.router.clone(),
            };
            ServiceTree::new(Strategy::OneForOne).entry("entry", move || {
                (EntryActor::<ProbeHandler>::new(), handler.clone())
            })
        }
    }

    impl Handler for ProbeHandler {
        type Service = Probe;

        async fn serve(&self, (): ()) -> Result<String, ShopError> {
            tracing::warn!("probing");
            Ok(self.router.context().correlation_id.to_string())
        }

        fn tasks(&self) -> &TaskTracker {
            &self.tasks
        }
    }

    /// Installs, once per test process, a global subscriber that records
    /// nothing (at INFO and up, like the capturing ones). tracing-core
    /// computes a callsite's interest once, from the default subscriber of
    /// the thread that reaches it first: a parallel test thread without a
    /// subscriber would cache "never" for the `message` span process-wide,
    /// and the capturing subscriber below would not see it.
    fn subscriber_everywhere() {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            use tracing_subscriber::layer::SubscriberExt as _;
            let quiet =
                tracing_subscriber::registry().with(tracing::level_filters::LevelFilter::INFO);
            let _ = tracing::subscriber::set_global_default(quiet);
        });
    }

    /// Log output captured in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_message_is_served_in_its_context_and_its_logs_say_which_request() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        // The test's runtime has one thread: every task logs through this.
        subscriber_everywhere();
        let _default = tracing::subscriber::set_default(subscriber);
        // Re-ask every callsite reached before the subscribers were in place.
        tracing::callsite::rebuild_interest_cache();
        let node = Node::builder(NodeConfig::new("t"))
            .service(Probe, ServiceConfig::default())
            .start()
            .await
            .unwrap();
        let router = node.router();
        let context = router
            .context()
            .with_correlation_id(CorrelationId::external("req-42"));
        let deadline = context.deadline;
        let seen = router.call_with::<Probe>(context, ()).await.unwrap();
        assert_eq!(seen, "req-42");
        // Outside a message, a fresh correlation id.
        assert_ne!(router.context().correlation_id.to_string(), "req-42");
        assert!(router.context().deadline >= deadline);
        node.shutdown().await;
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = logs.lines().find(|l| l.contains("probing")).unwrap();
        assert!(line.contains("service=\"probe\""), "{line}");
        assert!(line.contains("kind=\"call\""), "{line}");
        assert!(line.contains("correlation_id=req-42"), "{line}");
    }
}
