//! The bulwark side of the benchmark: an echo service whose entry actor
//! answers every call with the request's payload.
//!
//! Two services share the actor: [`RemoteEcho`] runs in the serving child
//! process and is reached over the node link; [`LocalEcho`] runs on the
//! measuring node itself, for the in-process figures. They need distinct
//! names because a local instance always wins the router's choice.

use std::marker::PhantomData;

use bulwark_runtime::{Service, ServiceContext, ServiceMsg, ServiceTree, Strategy};
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// The echo service the child process runs (called over the node link).
#[derive(Debug)]
pub(crate) struct RemoteEcho;

/// The same echo service, run on the measuring node (called in-process).
#[derive(Debug)]
pub(crate) struct LocalEcho;

/// Never produced: echo cannot fail.
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("echo never fails")]
pub(crate) struct Never;

impl Service for RemoteEcho {
    const NAME: &'static str = "echo";
    type Request = Vec<u8>;
    type Response = Vec<u8>;
    type Error = Never;

    fn tree(&self, _ctx: &ServiceContext) -> ServiceTree<Self> {
        ServiceTree::new(Strategy::OneForOne).entry("entry", || (EchoActor::new(), ()))
    }
}

impl Service for LocalEcho {
    const NAME: &'static str = "echo-local";
    type Request = Vec<u8>;
    type Response = Vec<u8>;
    type Error = Never;

    fn tree(&self, _ctx: &ServiceContext) -> ServiceTree<Self> {
        ServiceTree::new(Strategy::OneForOne).entry("entry", || (EchoActor::new(), ()))
    }
}

/// The entry actor of either echo service: replies with the payload it got.
pub(crate) struct EchoActor<S>(PhantomData<fn() -> S>);

impl<S> EchoActor<S> {
    fn new() -> Self {
        Self(PhantomData)
    }
}

impl<S> Actor for EchoActor<S>
where
    S: Service<Request = Vec<u8>, Response = Vec<u8>>,
{
    type Msg = ServiceMsg<S>;
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
