//! The `Service` trait and the messages a service's entry actor receives.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bulwark_supervisors::{ChildSpec, Restart, Strategy, SupervisorSpec};
use ractor::Actor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bulkhead::MailboxPermit;
use crate::cluster::codec;
use crate::envelope::{CallContext, Envelope, MessageId};
use crate::router::{Router, ServiceSlot};

/// A service: a name, a typed request/response API, and the supervision
/// tree that serves it.
///
/// The runtime starts the tree under a root supervisor at path
/// [`Service::NAME`], registers the service with the router, restarts it per
/// policy, and reports it down when its root gives up.
pub trait Service: Send + Sync + Sized + 'static {
    /// The service's name: its router key and the root of its actor paths.
    const NAME: &'static str;
    /// What callers send.
    /// Serializable so that a remote node can send it (the wire codec).
    type Request: Serialize + DeserializeOwned + Send + 'static;
    /// What the service answers.
    type Response: Serialize + DeserializeOwned + Send + 'static;
    /// The service's own domain error.
    type Error: std::error::Error + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Builds the tree: a root supervisor with its children, one of which is
    /// the entry actor that receives the service's messages. Called at every
    /// (re)start of the service.
    fn tree(&self, ctx: &ServiceContext) -> ServiceTree<Self>;

    /// Topics whose events the entry actor receives as
    /// [`ServiceMsg::Event`].
    fn topics(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// A copy of `request` when it is idempotent — a read, or a write whose
    /// effect is the same however often it is applied — else `None` (the
    /// default, for every request). The router retries an idempotent call
    /// whose serving actor stopped before replying
    /// ([`CallError::Restarted`](crate::CallError::Restarted): it crashed,
    /// was killed, or its node's link was lost mid-call) with this copy, up
    /// to [`CALL_ATTEMPTS_MAX`](crate::CALL_ATTEMPTS_MAX) attempts within the
    /// call's deadline, so a crash costs a read nothing but time.
    fn idempotent_copy(_request: &Self::Request) -> Option<Self::Request> {
        None
    }
}

/// A named topic and the type of its events.
pub trait Topic: 'static {
    /// The topic's name.
    const NAME: &'static str;
    /// The event type; events are shared between local subscribers, not
    /// copied, and encoded once for each remote node that subscribes.
    type Event: Serialize + DeserializeOwned + Send + Sync + 'static;
}

/// What a service's tree is built with.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// The node's name.
    pub node: Arc<str>,
    /// The node's router, for calls to other services.
    pub router: Router,
    /// Tasks the service spawns beside its actors (a request served in its
    /// own task, a saga). The node waits for them at shutdown, after the
    /// service's tree stopped, so none outlives the node (and keeps its
    /// store open). Spawn through it: `ctx.tasks.spawn(..)`.
    pub tasks: TaskTracker,
    /// Cancelled when the node starts shutting the service down: long-lived
    /// tasks stop on it (they resume from the store at the next start).
    pub shutdown: CancellationToken,
}

/// Bulkhead bounds of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Messages queued for the entry actor and not yet taken; past it,
    /// calls, casts and events are refused with `Overloaded`.
    pub mailbox_len_max: usize,
    /// Calls sent and not yet answered; past it, calls are refused with
    /// `Overloaded`.
    pub in_flight_max: usize,
}

/// Default for [`ServiceConfig::mailbox_len_max`]: deep enough to absorb a
/// burst, shallow enough that a queued call still meets a seconds-long
/// deadline at tens of microseconds per message.
pub const MAILBOX_LEN_MAX_DEFAULT: usize = 1024;
/// Default for [`ServiceConfig::in_flight_max`].
pub const IN_FLIGHT_MAX_DEFAULT: usize = 2048;

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            mailbox_len_max: MAILBOX_LEN_MAX_DEFAULT,
            in_flight_max: IN_FLIGHT_MAX_DEFAULT,
        }
    }
}

/// A message for a service's entry actor.
pub enum ServiceMsg<S: Service> {
    /// A request that wants a reply.
    Call(Call<S>),
    /// A request whose reply nobody waits for.
    Cast(Cast<S>),
    /// An event on a topic the service subscribes to.
    Event(TopicEvent),
}

impl<S: Service> fmt::Debug for ServiceMsg<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Call(c) => write!(f, "Call({})", c.envelope.id),
            Self::Cast(c) => write!(f, "Cast({})", c.envelope.id),
            Self::Event(e) => write!(f, "Event({}, {})", e.topic, e.envelope.id),
        }
    }
}

/// A request and the port its reply goes to.
pub struct Call<S: Service> {
    pub(crate) envelope: Envelope<S::Request>,
    pub(crate) reply: Reply<S>,
    pub(crate) mailbox: MailboxPermit,
}

impl<S: Service> Call<S> {
    /// Takes the call apart. This frees its place in the service's mailbox
    /// bound.
    pub fn into_parts(mut self) -> (Envelope<S::Request>, Reply<S>) {
        self.mailbox.release();
        (self.envelope, self.reply)
    }
}

impl<S: Service> fmt::Debug for Call<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("id", &self.envelope.id)
            .field("context", &self.envelope.context)
            .finish_non_exhaustive()
    }
}

/// Where a call's answer goes. Dropping it unanswered makes the caller see
/// `Restarted`.
pub struct Reply<S: Service> {
    pub(crate) tx: oneshot::Sender<Result<S::Response, S::Error>>,
}

impl<S: Service> Reply<S> {
    /// Sends the answer. Returns `false` when the caller stopped waiting
    /// (its deadline passed); the answer is then dropped.
    #[allow(clippy::needless_pass_by_value)] // consumes the port: one answer per call
    pub fn send(self, result: Result<S::Response, S::Error>) -> bool {
        self.tx.send(result).is_ok()
    }

    /// Whether the caller stopped waiting.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<S: Service> fmt::Debug for Reply<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A request sent without waiting for a reply.
pub struct Cast<S: Service> {
    pub(crate) envelope: Envelope<S::Request>,
    pub(crate) mailbox: MailboxPermit,
}

impl<S: Service> Cast<S> {
    /// The request. This frees its place in the mailbox bound.
    pub fn into_envelope(mut self) -> Envelope<S::Request> {
        self.mailbox.release();
        self.envelope
    }
}

impl<S: Service> fmt::Debug for Cast<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cast")
            .field("id", &self.envelope.id)
            .field("context", &self.envelope.context)
            .finish_non_exhaustive()
    }
}

/// An event's payload: shared as is within the node, or still encoded
/// when it came from another node (decoded on first access).
pub(crate) enum EventPayload {
    Local(Arc<dyn Any + Send + Sync>),
    Remote {
        bytes: Arc<[u8]>,
        decoded: Option<Box<dyn Any + Send + Sync>>,
    },
}

/// An event delivered from a topic.
pub struct TopicEvent {
    pub(crate) topic: Arc<str>,
    pub(crate) envelope: Envelope<EventPayload>,
    pub(crate) mailbox: MailboxPermit,
    /// Present when the publisher waits for confirmation
    /// ([`crate::Router::publish_confirmed`]).
    pub(crate) ack: Option<oneshot::Sender<()>>,
}

impl TopicEvent {
    /// The topic's name.
    #[must_use]
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The event's id.
    #[must_use]
    pub fn id(&self) -> MessageId {
        self.envelope.id
    }

    /// The publisher's context (correlation id, trace context, deadline).
    #[must_use]
    pub fn context(&self) -> &CallContext {
        &self.envelope.context
    }

    /// The node that published it.
    #[must_use]
    pub fn sender_node(&self) -> &str {
        &self.envelope.sender_node
    }

    /// The event, if it was published on topic `T` (and, from another node,
    /// decodes as `T::Event`). This frees its place in the mailbox bound.
    #[must_use]
    pub fn get<T: Topic>(&mut self) -> Option<&T::Event> {
        self.mailbox.release();
        if &*self.topic != T::NAME {
            return None;
        }
        match &mut self.envelope.payload {
            EventPayload::Local(event) => event.downcast_ref::<T::Event>(),
            EventPayload::Remote { bytes, decoded } => {
                if decoded.is_none() {
                    let event: T::Event = codec::decode("event", bytes).ok()?;
                    *decoded = Some(Box::new(event));
                }
                decoded.as_ref()?.downcast_ref::<T::Event>()
            }
        }
    }

    /// Confirms the event is applied (durably, if the subscriber stores
    /// it). A confirmed publisher waits for this from every subscriber; an
    /// event dropped unconfirmed counts as not delivered and is published
    /// again, so subscribers must dedupe.
    pub fn ack(&mut self) {
        self.mailbox.release();
        if let Some(ack) = self.ack.take() {
            let _ = ack.send(());
        }
    }
}

impl fmt::Debug for TopicEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicEvent")
            .field("topic", &self.topic)
            .field("id", &self.envelope.id)
            .finish_non_exhaustive()
    }
}

type EntryFactory<S> = Box<dyn FnOnce(Arc<ServiceSlot<S>>) -> ChildSpec + Send>;

enum TreeChild<S: Service> {
    Entry(EntryFactory<S>),
    Child(ChildSpec),
}

/// A service's supervision tree: a root supervisor spec plus the entry
/// actor (the one that receives [`ServiceMsg`]s).
pub struct ServiceTree<S: Service> {
    spec: SupervisorSpec,
    children: Vec<TreeChild<S>>,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> fmt::Debug for ServiceTree<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let children: Vec<&str> = self
            .children
            .iter()
            .map(|c| match c {
                TreeChild::Entry(_) => "<entry>",
                TreeChild::Child(spec) => spec.name(),
            })
            .collect();
        f.debug_struct("ServiceTree")
            .field("service", &S::NAME)
            .field("strategy", &self.spec.strategy)
            .field("children", &children)
            .finish()
    }
}

impl<S: Service> ServiceTree<S> {
    /// A root with `strategy`, default intensity and no children yet.
    #[must_use]
    pub fn new(strategy: Strategy) -> Self {
        Self {
            spec: SupervisorSpec::new(strategy),
            children: Vec::new(),
            _service: PhantomData,
        }
    }

    /// Sets the root's restart intensity.
    #[must_use]
    pub fn intensity(mut self, max_restarts: u32, window: Duration) -> Self {
        self.spec = self.spec.intensity(max_restarts, window);
        self
    }

    /// Sets a backoff before the root's restarts.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.spec = self.spec.backoff(initial, max);
        self
    }

    /// Adds the entry actor (permanent), built by `make` at every start.
    /// The router delivers the service's messages to it. A tree has exactly
    /// one entry; a second call replaces the first.
    #[must_use]
    pub fn entry<A, F>(mut self, name: &str, make: F) -> Self
    where
        A: Actor<Msg = ServiceMsg<S>>,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let name = name.to_owned();
        let make = Arc::new(make);
        let factory: EntryFactory<S> = Box::new(move |slot: Arc<ServiceSlot<S>>| {
            ChildSpec::new(name, Restart::Permanent, move |ctx| {
                let (handler, args) = make();
                let slot = Arc::clone(&slot);
                async move {
                    let (actor, _join) =
                        A::spawn_linked(None, handler, args, ctx.supervisor).await?;
                    let cell = actor.get_cell();
                    slot.set_up(actor);
                    Ok(cell)
                }
            })
        });
        self.children.retain(|c| !matches!(c, TreeChild::Entry(_)));
        self.children.push(TreeChild::Entry(factory));
        self
    }

    /// Adds another child (a worker or a nested supervisor).
    #[must_use]
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(TreeChild::Child(child));
        self
    }

    /// The supervisor spec with the entry wired to `slot`; `None` when the
    /// tree has no entry.
    pub(crate) fn into_spec(self, slot: &Arc<ServiceSlot<S>>) -> Option<SupervisorSpec> {
        let mut spec = self.spec;
        let mut has_entry = false;
        for child in self.children {
            spec.children.push(match child {
                TreeChild::Entry(factory) => {
                    has_entry = true;
                    factory(Arc::clone(slot))
                }
                TreeChild::Child(child) => child,
            });
        }
        has_entry.then_some(spec)
    }
}
