//! The entry actor every shop service uses: it takes each message off the
//! mailbox and serves it in its own task, so a slow request (a payment, a
//! durable write waiting for its fsync) never holds up the next one and
//! concurrent writes share one fsync. The service's bulkhead bounds how many
//! such tasks exist; the store's transactions keep them consistent.

use std::future::Future;
use std::marker::PhantomData;

use bulwark_runtime::{Service, ServiceMsg, TopicEvent};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::task::TaskTracker;

use crate::common::ShopError;

/// A service's request logic, cloned into each request's task.
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
    type State = H;
    type Arguments = H;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        handler: H,
    ) -> Result<H, ActorProcessingErr> {
        handler.on_start();
        Ok(handler)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        handler: &mut H,
    ) -> Result<(), ActorProcessingErr> {
        let handler = handler.clone();
        let tasks = handler.tasks().clone();
        match msg {
            ServiceMsg::Call(call) => {
                let (envelope, reply) = call.into_parts();
                tasks.spawn(async move {
                    reply.send(handler.serve(envelope.payload).await);
                });
            }
            ServiceMsg::Cast(cast) => {
                let envelope = cast.into_envelope();
                tasks.spawn(async move {
                    if let Err(err) = handler.serve(envelope.payload).await {
                        tracing::warn!(service = <H::Service as Service>::NAME, error = %err, "cast failed");
                    }
                });
            }
            ServiceMsg::Event(event) => {
                tasks.spawn(async move { handler.on_event(event).await });
            }
        }
        Ok(())
    }
}
