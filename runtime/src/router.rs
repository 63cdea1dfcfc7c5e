//! The router: `call`, `cast` and `publish` addressed by service type, with
//! deadlines, bulkheads and typed errors.
//!
//! Today every target is local (delivered to the entry actor without
//! serialization). The registry is keyed by service name so that a remote
//! instance can later stand behind the same API: callers never hold actor
//! references themselves.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use ractor::{ActorRef, MessagingErr};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::breaker::{BreakerConfig, Breakers, CircuitState};
use crate::bulkhead::Bulkhead;
use crate::cluster::codec;
use crate::cluster::link::{Announcement, Inbound, Link, LinkError, RemoteFailure};
use crate::envelope::{CallContext, Envelope, MessageId};
use crate::error::{CallError, CastError, OverloadedBound, UnavailableReason};
use crate::service::{
    Call, Cast, EventPayload, Reply, Service, ServiceConfig, ServiceMsg, Topic, TopicEvent,
};

/// Whether a service can take messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceStatus {
    /// Its tree is starting or its entry actor is restarting.
    Starting,
    /// Its entry actor is running.
    Up,
    /// Its root supervisor gave up; calls fail with `Unavailable` until the
    /// node has restarted it.
    Down,
}

/// Load figures of one service's bulkhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLoad {
    /// Messages queued and not yet taken by the entry actor.
    pub mailbox_len: usize,
    /// Calls sent and not yet answered.
    pub in_flight: usize,
}

enum Entry<S: Service> {
    Starting,
    Up(ActorRef<ServiceMsg<S>>),
    Down,
}

/// The router's view of one local service: where its entry actor is now,
/// and its bulkhead.
pub(crate) struct ServiceSlot<S: Service> {
    /// The entry actor, replaced at every restart. A watch channel so a call
    /// that finds the entry restarting can wait for the next one instead of
    /// failing (bounded by its deadline).
    entry: watch::Sender<Entry<S>>,
    bulkhead: Arc<Bulkhead>,
}

impl<S: Service> ServiceSlot<S> {
    pub(crate) fn new(config: ServiceConfig) -> Arc<Self> {
        Arc::new(Self {
            entry: watch::Sender::new(Entry::Starting),
            bulkhead: Bulkhead::new(config.mailbox_len_max, config.in_flight_max),
        })
    }

    pub(crate) fn set_up(&self, actor: ActorRef<ServiceMsg<S>>) {
        self.entry.send_replace(Entry::Up(actor));
    }

    pub(crate) fn set_starting(&self) {
        self.entry.send_replace(Entry::Starting);
    }

    pub(crate) fn set_down(&self) {
        self.entry.send_replace(Entry::Down);
    }

    /// The running entry actor, or why there is none.
    fn current(entry: &Entry<S>) -> Result<Option<ActorRef<ServiceMsg<S>>>, UnavailableReason> {
        match entry {
            Entry::Up(actor) => Ok(Some(actor.clone())),
            Entry::Starting => Ok(None),
            Entry::Down => Err(UnavailableReason::Down),
        }
    }

    /// Enqueues `msg` for the entry actor. When the entry is restarting,
    /// waits for its successor until `deadline`.
    async fn deliver(
        &self,
        msg: ServiceMsg<S>,
        deadline: Instant,
    ) -> Result<(), UnavailableReason> {
        let mut msg = match Self::current(&self.entry.borrow())? {
            Some(actor) => match actor.send_message(msg) {
                Ok(()) => return Ok(()),
                Err(MessagingErr::SendErr(msg)) => msg,
                Err(_) => return Err(UnavailableReason::Restarting),
            },
            None => msg,
        };
        // Slow path: subscribe first, then look, so a restart that lands in
        // between is not missed.
        let mut rx = self.entry.subscribe();
        loop {
            if let Some(actor) = Self::current(&rx.borrow_and_update())? {
                match actor.send_message(msg) {
                    Ok(()) => return Ok(()),
                    Err(MessagingErr::SendErr(returned)) => msg = returned,
                    Err(_) => return Err(UnavailableReason::Restarting),
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(UnavailableReason::Restarting),
            }
        }
    }

    /// Enqueues without waiting: for casts and events.
    fn try_deliver(&self, msg: ServiceMsg<S>) -> Result<(), UnavailableReason> {
        match Self::current(&self.entry.borrow())? {
            Some(actor) => actor
                .send_message(msg)
                .map_err(|_| UnavailableReason::Restarting),
            None => Err(UnavailableReason::Restarting),
        }
    }
}

/// What the router needs of a slot without knowing its service type.
trait AnySlot: Send + Sync {
    fn status(&self) -> ServiceStatus;
    fn load(&self) -> ServiceLoad;
    fn deliver_event(
        &self,
        topic: Arc<str>,
        envelope: Envelope<EventPayload>,
        ack: Option<oneshot::Sender<()>>,
    ) -> Result<(), CastError>;
}

impl<S: Service> AnySlot for ServiceSlot<S> {
    fn status(&self) -> ServiceStatus {
        match &*self.entry.borrow() {
            Entry::Starting => ServiceStatus::Starting,
            Entry::Up(actor) if actor.get_status() <= ractor::ActorStatus::Running => {
                ServiceStatus::Up
            }
            Entry::Up(_) => ServiceStatus::Starting,
            Entry::Down => ServiceStatus::Down,
        }
    }

    fn load(&self) -> ServiceLoad {
        ServiceLoad {
            mailbox_len: self.bulkhead.mailbox_len(),
            in_flight: self.bulkhead.in_flight(),
        }
    }

    fn deliver_event(
        &self,
        topic: Arc<str>,
        envelope: Envelope<EventPayload>,
        ack: Option<oneshot::Sender<()>>,
    ) -> Result<(), CastError> {
        let mailbox = self
            .bulkhead
            .try_mailbox()
            .map_err(|bound| CastError::Overloaded {
                service: S::NAME,
                bound,
            })?;
        self.try_deliver(ServiceMsg::Event(TopicEvent {
            topic,
            envelope,
            mailbox,
            ack,
        }))
        .map_err(|reason| CastError::Unavailable {
            service: S::NAME,
            reason,
        })
    }
}

/// One registered service: the same slot seen typed (for calls) and
/// untyped (for events and status).
#[derive(Clone)]
struct Registered {
    typed: Arc<dyn Any + Send + Sync>,
    erased: Arc<dyn AnySlot>,
}

/// Serves a call that arrived over a link: decodes the request, calls the
/// local instance, encodes the answer.
type RemoteHandler = Arc<
    dyn Fn(CallContext, Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RemoteFailure>>
        + Send
        + Sync,
>;

/// Delivers a cast that arrived over a link to the local instance.
type RemoteCastHandler = Arc<dyn Fn(CallContext, &[u8]) -> Result<(), CastError> + Send + Sync>;

/// How a local instance is served to other nodes.
#[derive(Clone)]
struct RemoteHandlers {
    call: RemoteHandler,
    cast: RemoteCastHandler,
}

struct RouterInner {
    node: Arc<str>,
    call_timeout: Duration,
    /// Local service instances by name (`users`, or a shard's `users#1`).
    services: DashMap<Arc<str>, Registered>,
    /// How to serve each local instance for remote callers.
    handlers: DashMap<Arc<str>, RemoteHandlers>,
    /// Links to the nodes running services that have no local instance.
    remotes: DashMap<String, Link>,
    /// Links to the nodes with subscribers of each topic.
    remote_topics: DashMap<String, Vec<Link>>,
    topics: DashMap<&'static str, Vec<Arc<dyn AnySlot>>>,
    /// Set at shutdown: new messages are refused while in-flight ones drain.
    closed: AtomicBool,
    /// One circuit per call target.
    breakers: Breakers,
}

/// Carries calls, casts and topic events to services. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<RouterInner>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("node", &self.inner.node)
            .field("services", &self.inner.services.len())
            .finish_non_exhaustive()
    }
}

/// Why a confirmed publish did not reach every subscriber.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Some subscribers could not take the event.
    #[error("{} subscriber(s) refused the event", .0.len())]
    Refused(Vec<CastError>),
    /// A subscriber dropped the event without confirming it.
    #[error("a subscriber dropped the event unconfirmed")]
    Unconfirmed,
    /// A subscriber did not confirm before the deadline.
    #[error("a subscriber did not confirm before the deadline")]
    Timeout,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Published {
    /// Local subscribers the event was enqueued for, plus subscribing
    /// nodes it was sent to (each counts once, whatever its subscribers).
    pub delivered: usize,
    /// Subscribers (or subscribing nodes) that could not take it
    /// (overloaded, down, restarting, unreachable).
    pub dropped: Vec<CastError>,
}

impl Router {
    pub(crate) fn new(node: Arc<str>, call_timeout: Duration, breaker: BreakerConfig) -> Self {
        Self {
            inner: Arc::new(RouterInner {
                node,
                call_timeout,
                breakers: Breakers::new(breaker),
                services: DashMap::new(),
                handlers: DashMap::new(),
                remotes: DashMap::new(),
                remote_topics: DashMap::new(),
                topics: DashMap::new(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn register<S: Service>(
        &self,
        instance: Arc<str>,
        slot: &Arc<ServiceSlot<S>>,
        topics: &[&'static str],
    ) {
        let typed: Arc<dyn Any + Send + Sync> = Arc::clone(slot) as _;
        let erased: Arc<dyn AnySlot> = Arc::clone(slot) as _;
        for topic in topics {
            self.inner
                .topics
                .entry(topic)
                .or_default()
                .push(Arc::clone(&erased));
        }
        self.inner
            .services
            .insert(Arc::clone(&instance), Registered { typed, erased });
        // Weak: the handler lives inside the router it calls.
        let router = Arc::downgrade(&self.inner);
        let name = Arc::clone(&instance);
        let handler: RemoteHandler = Arc::new(move |context, payload| {
            let router = router.clone();
            let name = Arc::clone(&name);
            Box::pin(async move {
                let inner = router.upgrade().ok_or(RemoteFailure::Unavailable)?;
                Router { inner }
                    .serve_remote::<S>(&name, context, &payload)
                    .await
            })
        });
        let router = Arc::downgrade(&self.inner);
        let name = Arc::clone(&instance);
        let cast: RemoteCastHandler = Arc::new(move |context, payload| {
            let unavailable = |reason| CastError::Unavailable {
                service: S::NAME,
                reason,
            };
            let inner = router
                .upgrade()
                .ok_or(unavailable(UnavailableReason::ShuttingDown))?;
            let request: S::Request = codec::decode("request", payload)
                .map_err(|_| unavailable(UnavailableReason::Codec))?;
            Router { inner }.cast_local::<S>(&name, context, request)
        });
        self.inner.handlers.insert(
            instance,
            RemoteHandlers {
                call: handler,
                cast,
            },
        );
    }

    /// Routes calls to `service` over `link` while the service has no local
    /// instance: the caller's API does not change.
    pub fn add_remote(&self, service: &str, link: Link) {
        self.inner.remotes.insert(service.to_owned(), link);
    }

    /// Serves a call that arrived over a link, on the local instance only.
    async fn serve_remote<S: Service>(
        &self,
        instance: &str,
        context: CallContext,
        payload: &[u8],
    ) -> Result<Vec<u8>, RemoteFailure> {
        let request: S::Request =
            codec::decode("request", payload).map_err(|e| RemoteFailure::Decode(e.to_string()))?;
        let slot = self
            .slot::<S>(instance)
            .map_err(|_| RemoteFailure::Unavailable)?;
        match self.call_local::<S>(&slot, context, request, true).await {
            Ok(response) => codec::encode("response", &response)
                .map_err(|e| RemoteFailure::Decode(e.to_string())),
            Err(CallError::Service { error, .. }) => Err(RemoteFailure::Service(
                codec::encode("error", &error).map_err(|e| RemoteFailure::Decode(e.to_string()))?,
            )),
            Err(CallError::Timeout { .. }) => Err(RemoteFailure::Timeout),
            Err(CallError::Overloaded { .. }) => Err(RemoteFailure::Overloaded),
            Err(CallError::Restarted { .. }) => Err(RemoteFailure::Restarted),
            Err(CallError::Unavailable { .. }) => Err(RemoteFailure::Unavailable),
        }
    }

    /// A call to a service with no local instance, over its link.
    async fn call_remote<S: Service>(
        &self,
        instance: &str,
        context: CallContext,
        request: S::Request,
    ) -> Result<S::Response, CallError<S::Error>> {
        let service = S::NAME;
        let unavailable = |reason| CallError::Unavailable { service, reason };
        let link = self
            .inner
            .remotes
            .get(instance)
            .map(|l| l.clone())
            .ok_or(unavailable(UnavailableReason::NotRegistered))?;
        let payload = codec::encode("request", &request)
            .map_err(|_| unavailable(UnavailableReason::Codec))?;
        let decoded = |bytes: &[u8]| {
            codec::decode::<S::Response>("response", bytes)
                .map_err(|_| unavailable(UnavailableReason::Codec))
        };
        match link.call(instance, &context, payload).await {
            Ok(bytes) => decoded(&bytes),
            Err(LinkError::Closed { .. }) => Err(unavailable(UnavailableReason::Unreachable)),
            // Sent, then the link went: as if the serving actor had stopped
            // before replying (the request may have been applied).
            Err(LinkError::Lost { .. }) => Err(CallError::Restarted { service }),
            Err(LinkError::Overloaded { .. }) => Err(CallError::Overloaded {
                service,
                bound: OverloadedBound::InFlight,
            }),
            Err(LinkError::Timeout { .. }) => Err(CallError::Timeout { service }),
            Err(LinkError::Remote { failure, .. }) => Err(match failure {
                RemoteFailure::Timeout => CallError::Timeout { service },
                RemoteFailure::Overloaded => CallError::Overloaded {
                    service,
                    bound: OverloadedBound::InFlight,
                },
                RemoteFailure::Restarted => CallError::Restarted { service },
                RemoteFailure::Service(bytes) => match codec::decode::<S::Error>("error", &bytes) {
                    Ok(error) => CallError::Service { service, error },
                    Err(_) => unavailable(UnavailableReason::Codec),
                },
                RemoteFailure::Decode(_) => unavailable(UnavailableReason::Codec),
                _ => unavailable(UnavailableReason::Down),
            }),
        }
    }

    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }

    /// The node this router belongs to.
    #[must_use]
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The deadline a call gets when the caller sets none.
    #[must_use]
    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    /// The context of a new call: while serving a message (inside
    /// [`CallContext::scope`]) a child of that message's context — same
    /// correlation id and trace, its deadline capped by the default call
    /// timeout — else a fresh one with the default call timeout.
    #[must_use]
    pub fn context(&self) -> CallContext {
        match CallContext::current() {
            Some(current) => current.child(self.inner.call_timeout),
            None => CallContext::new(self.inner.call_timeout),
        }
    }

    /// The status of a service, `None` if no such service is registered.
    #[must_use]
    pub fn status(&self, service: &str) -> Option<ServiceStatus> {
        self.inner.services.get(service).map(|r| r.erased.status())
    }

    /// The bulkhead load of a service.
    #[must_use]
    pub fn load(&self, service: &str) -> Option<ServiceLoad> {
        self.inner.services.get(service).map(|r| r.erased.load())
    }

    /// Every local service instance and its status, by name.
    #[must_use]
    pub fn services(&self) -> Vec<(Arc<str>, ServiceStatus)> {
        let mut all: Vec<_> = self
            .inner
            .services
            .iter()
            .map(|r| (Arc::clone(r.key()), r.erased.status()))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Whether a service instance of that name runs here or on a member
    /// this node has heard from.
    #[must_use]
    pub fn knows(&self, instance: &str) -> bool {
        self.inner.services.contains_key(instance) || self.inner.remotes.contains_key(instance)
    }

    fn slot<S: Service>(&self, instance: &str) -> Result<Arc<ServiceSlot<S>>, UnavailableReason> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(UnavailableReason::ShuttingDown);
        }
        let typed = self
            .inner
            .services
            .get(instance)
            .map(|r| Arc::clone(&r.typed))
            .ok_or(UnavailableReason::NotRegistered)?;
        // A different type registered under the same name is a wiring bug;
        // it is reported as not registered rather than delivered wrongly.
        typed
            .downcast::<ServiceSlot<S>>()
            .map_err(|_| UnavailableReason::NotRegistered)
    }

    fn envelope<T>(&self, context: CallContext, payload: T) -> Envelope<T> {
        Envelope {
            id: MessageId::next(),
            context,
            sender_node: Arc::clone(&self.inner.node),
            payload,
        }
    }

    /// Request/reply with the default deadline and a fresh context.
    ///
    /// # Errors
    /// See [`Router::call_with`].
    pub async fn call<S: Service>(
        &self,
        request: S::Request,
    ) -> Result<S::Response, CallError<S::Error>> {
        // A fresh context cannot have expired: skip the clock read.
        self.call_in::<S>(S::NAME, self.context(), request, false)
            .await
    }

    /// Request/reply within `context` (its deadline, correlation id and
    /// trace context travel with the request).
    ///
    /// # Errors
    /// - [`CallError::Overloaded`] at once when the service's bulkhead is full;
    /// - [`CallError::Unavailable`] at once when the service is unknown, down,
    ///   its circuit is open (its calls kept timing out; see
    ///   [`BreakerConfig`]) or the node is shutting down; after waiting (up to
    ///   the deadline) when it is restarting;
    /// - [`CallError::Restarted`] when the actor stopped before replying;
    /// - [`CallError::Timeout`] when the deadline passed (the late reply is
    ///   dropped);
    /// - [`CallError::Service`] with the service's own error.
    pub async fn call_with<S: Service>(
        &self,
        context: CallContext,
        request: S::Request,
    ) -> Result<S::Response, CallError<S::Error>> {
        self.call_in::<S>(S::NAME, context, request, true).await
    }

    /// Request/reply to the service instance named `instance` (a shard
    /// such as `users#1`), local or on another node, with a fresh context.
    ///
    /// # Errors
    /// See [`Router::call_with`].
    pub async fn call_instance<S: Service>(
        &self,
        instance: &str,
        request: S::Request,
    ) -> Result<S::Response, CallError<S::Error>> {
        self.call_in::<S>(instance, self.context(), request, false)
            .await
    }

    /// [`Router::call_instance`] within `context`.
    ///
    /// # Errors
    /// See [`Router::call_with`].
    pub async fn call_instance_with<S: Service>(
        &self,
        instance: &str,
        context: CallContext,
        request: S::Request,
    ) -> Result<S::Response, CallError<S::Error>> {
        self.call_in::<S>(instance, context, request, true).await
    }

    /// A call from this node's callers. An idempotent request
    /// ([`Service::idempotent_copy`]) whose serving actor stopped before
    /// replying is sent again, after a short pause, up to
    /// [`CALL_ATTEMPTS_MAX`] attempts and never past the deadline.
    async fn call_in<S: Service>(
        &self,
        instance: &str,
        context: CallContext,
        request: S::Request,
        check_deadline: bool,
    ) -> Result<S::Response, CallError<S::Error>> {
        let mut request = request;
        let mut check_deadline = check_deadline;
        let mut pause = RETRY_PAUSE_INITIAL;
        let mut attempt = 1;
        loop {
            // Not idempotent, or the last attempt: the context and the
            // request are not copied.
            let copy = if attempt < CALL_ATTEMPTS_MAX {
                S::idempotent_copy(&request)
            } else {
                None
            };
            let Some(copy) = copy else {
                return self
                    .call_attempt::<S>(instance, context, request, check_deadline)
                    .await;
            };
            match self
                .call_attempt::<S>(instance, context.clone(), request, check_deadline)
                .await
            {
                Err(CallError::Restarted { .. }) if Instant::now() + pause < context.deadline => {
                    tracing::debug!(
                        service = S::NAME,
                        instance,
                        attempt,
                        "idempotent call retried after a restart"
                    );
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    request = copy;
                    check_deadline = true;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One attempt of a call: through the target's circuit breaker, to the
    /// local instance or over its node's link.
    async fn call_attempt<S: Service>(
        &self,
        instance: &str,
        context: CallContext,
        request: S::Request,
        check_deadline: bool,
    ) -> Result<S::Response, CallError<S::Error>> {
        let service = S::NAME;
        // An expired deadline is not worth sending, and not the target's
        // fault (one clock read, skipped for contexts made just now).
        if check_deadline && Instant::now() >= context.deadline {
            return Err(CallError::Timeout { service });
        }
        let slot = match self.slot::<S>(instance) {
            Ok(slot) => Some(slot),
            Err(UnavailableReason::NotRegistered) => None,
            Err(reason) => return Err(CallError::Unavailable { service, reason }),
        };
        let admission =
            self.inner
                .breakers
                .admit(instance)
                .map_err(|()| CallError::Unavailable {
                    service,
                    reason: UnavailableReason::CircuitOpen,
                })?;
        let result = match slot {
            Some(slot) => self.call_local::<S>(&slot, context, request, false).await,
            None => self.call_remote::<S>(instance, context, request).await,
        };
        admission.finish(matches!(result, Err(CallError::Timeout { .. })));
        result
    }

    /// The circuit of every target this router has called, by name.
    #[must_use]
    pub fn circuits(&self) -> Vec<(Arc<str>, CircuitState)> {
        self.inner.breakers.states()
    }

    async fn call_local<S: Service>(
        &self,
        slot: &Arc<ServiceSlot<S>>,
        context: CallContext,
        request: S::Request,
        check_deadline: bool,
    ) -> Result<S::Response, CallError<S::Error>> {
        let service = S::NAME;
        let unavailable = |reason| CallError::Unavailable { service, reason };
        let overloaded = |bound| CallError::Overloaded { service, bound };
        let deadline = context.deadline;
        // An expired deadline is not worth sending (one clock read, skipped
        // for contexts made just now).
        if check_deadline && Instant::now() >= deadline {
            return Err(CallError::Timeout { service });
        }
        let _in_flight = slot.bulkhead.try_in_flight().map_err(overloaded)?;
        let mailbox = slot.bulkhead.try_mailbox().map_err(overloaded)?;
        let (tx, rx) = oneshot::channel();
        let call = Call {
            envelope: self.envelope(context, request),
            reply: Reply { tx },
            mailbox,
        };
        slot.deliver(ServiceMsg::Call(call), deadline)
            .await
            .map_err(unavailable)?;
        match (ReplyBefore {
            rx,
            deadline,
            timer: TimerState::Unarmed,
        })
        .await
        {
            Some(Ok(Ok(response))) => Ok(response),
            Some(Ok(Err(error))) => Err(CallError::Service { service, error }),
            Some(Err(_dropped)) => Err(CallError::Restarted { service }),
            None => Err(CallError::Timeout { service }),
        }
    }

    /// Fire-and-forget with a fresh context.
    ///
    /// # Errors
    /// See [`Router::cast_with`].
    pub fn cast<S: Service>(&self, request: S::Request) -> Result<(), CastError> {
        self.cast_with::<S>(self.context(), request)
    }

    /// Fire-and-forget within `context`. Never waits: a service that is
    /// restarting refuses the cast.
    ///
    /// # Errors
    /// [`CastError::Overloaded`] when the mailbox bound is reached,
    /// [`CastError::Unavailable`] when the service is unknown, down,
    /// restarting or the node is shutting down.
    pub fn cast_with<S: Service>(
        &self,
        context: CallContext,
        request: S::Request,
    ) -> Result<(), CastError> {
        match self.slot::<S>(S::NAME) {
            Err(UnavailableReason::NotRegistered) => {
                self.cast_remote::<S>(S::NAME, &context, &request)
            }
            slot => self.cast_to::<S>(slot, context, request),
        }
    }

    /// A cast to the local instance named `instance`.
    fn cast_local<S: Service>(
        &self,
        instance: &str,
        context: CallContext,
        request: S::Request,
    ) -> Result<(), CastError> {
        self.cast_to::<S>(self.slot::<S>(instance), context, request)
    }

    /// A cast to an instance with no local slot, over its link.
    fn cast_remote<S: Service>(
        &self,
        instance: &str,
        context: &CallContext,
        request: &S::Request,
    ) -> Result<(), CastError> {
        let service = S::NAME;
        let unavailable = |reason| CastError::Unavailable { service, reason };
        let link = self
            .inner
            .remotes
            .get(instance)
            .map(|l| l.clone())
            .ok_or(unavailable(UnavailableReason::NotRegistered))?;
        let payload =
            codec::encode("request", request).map_err(|_| unavailable(UnavailableReason::Codec))?;
        link.cast(instance, context, payload)
            .map_err(|err| match err {
                LinkError::Overloaded { .. } => CastError::Overloaded {
                    service,
                    bound: OverloadedBound::Mailbox,
                },
                _ => unavailable(UnavailableReason::Unreachable),
            })
    }

    fn cast_to<S: Service>(
        &self,
        slot: Result<Arc<ServiceSlot<S>>, UnavailableReason>,
        context: CallContext,
        request: S::Request,
    ) -> Result<(), CastError> {
        let service = S::NAME;
        let unavailable = |reason| CastError::Unavailable { service, reason };
        let slot = slot.map_err(unavailable)?;
        let mailbox = slot
            .bulkhead
            .try_mailbox()
            .map_err(|bound| CastError::Overloaded { service, bound })?;
        let cast = Cast {
            envelope: self.envelope(context, request),
            mailbox,
        };
        slot.try_deliver(ServiceMsg::Cast(cast))
            .map_err(unavailable)
    }

    /// Publishes an event on topic `T` to every subscribed service, with a
    /// fresh context.
    pub fn publish<T: Topic>(&self, event: T::Event) -> Published {
        self.publish_with::<T>(&self.context(), event)
    }

    /// Publishes within `context` to this node's subscribers and, as one
    /// cast per subscribing node, to other nodes'. Delivery is at most once
    /// per subscriber: a subscriber that is overloaded, restarting or
    /// unreachable misses the event, and the result says which did. Effects
    /// that must not be lost go through a store's outbox and
    /// [`Router::publish_confirmed`], which retries until confirmed.
    pub fn publish_with<T: Topic>(&self, context: &CallContext, event: T::Event) -> Published {
        let mut published = Published::default();
        if self.inner.closed.load(Ordering::Acquire) {
            return published;
        }
        let payload: Arc<dyn Any + Send + Sync> = Arc::new(event);
        let topic: Arc<str> = Arc::from(T::NAME);
        for (subscriber, envelope) in self.local_deliveries(&topic, context, &payload) {
            match subscriber.deliver_event(Arc::clone(&topic), envelope, None) {
                Ok(()) => published.delivered += 1,
                Err(err) => {
                    tracing::warn!(topic = T::NAME, error = %err, "event not delivered");
                    published.dropped.push(err);
                }
            }
        }
        let remotes: Vec<Link> = self
            .inner
            .remote_topics
            .get(T::NAME)
            .map(|links| links.clone())
            .unwrap_or_default();
        if remotes.is_empty() {
            return published;
        }
        let unavailable = |reason| CastError::Unavailable {
            service: T::NAME,
            reason,
        };
        let Some(event) = payload.downcast_ref::<T::Event>() else {
            return published;
        };
        let bytes = match codec::encode("event", event) {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::warn!(topic = T::NAME, error = %err, "event does not encode");
                published
                    .dropped
                    .push(unavailable(UnavailableReason::Codec));
                return published;
            }
        };
        let service = format!("{TOPIC_PREFIX}{}", T::NAME);
        for link in remotes {
            match link.cast(&service, context, bytes.clone()) {
                Ok(()) => published.delivered += 1,
                Err(LinkError::Overloaded { .. }) => {
                    published.dropped.push(CastError::Overloaded {
                        service: T::NAME,
                        bound: OverloadedBound::Mailbox,
                    })
                }
                Err(_) => published
                    .dropped
                    .push(unavailable(UnavailableReason::Unreachable)),
            }
        }
        published
    }

    /// The local subscribers of `topic`, each with its envelope of the one
    /// shared event.
    fn local_deliveries(
        &self,
        topic: &str,
        context: &CallContext,
        payload: &Arc<dyn Any + Send + Sync>,
    ) -> Vec<(Arc<dyn AnySlot>, Envelope<EventPayload>)> {
        self.deliveries(topic, context, || EventPayload::Local(Arc::clone(payload)))
    }

    /// This node's subscribers of `topic`, each with an envelope (one
    /// message id for all) whose payload `payload` makes.
    fn deliveries(
        &self,
        topic: &str,
        context: &CallContext,
        payload: impl Fn() -> EventPayload,
    ) -> Vec<(Arc<dyn AnySlot>, Envelope<EventPayload>)> {
        let subscribers = self
            .inner
            .topics
            .get(topic)
            .map(|s| s.clone())
            .unwrap_or_default();
        let id = MessageId::next();
        subscribers
            .into_iter()
            .map(|subscriber| {
                let envelope = Envelope {
                    id,
                    context: context.clone(),
                    sender_node: Arc::clone(&self.inner.node),
                    payload: payload(),
                };
                (subscriber, envelope)
            })
            .collect()
    }

    /// Publishes within `context` and waits until every subscriber has
    /// confirmed the event ([`TopicEvent::ack`]) or the deadline passes.
    /// This is the at-least-once path an outbox relay uses: on `Err` it
    /// publishes the same event again later, and subscribers dedupe.
    ///
    /// # Errors
    /// [`PublishError`] when a subscriber could not take the event, dropped
    /// it unconfirmed, or did not confirm before the deadline.
    pub async fn publish_confirmed<T: Topic>(
        &self,
        context: &CallContext,
        event: T::Event,
    ) -> Result<usize, PublishError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(PublishError::Refused(vec![CastError::Unavailable {
                service: T::NAME,
                reason: UnavailableReason::ShuttingDown,
            }]));
        }
        let remotes: Vec<Link> = self
            .inner
            .remote_topics
            .get(T::NAME)
            .map(|links| links.clone())
            .unwrap_or_default();
        let encoded = if remotes.is_empty() {
            None
        } else {
            Some(codec::encode("event", &event).map_err(|_| PublishError::Unconfirmed)?)
        };
        let payload: Arc<dyn Any + Send + Sync> = Arc::new(event);
        let topic: Arc<str> = Arc::from(T::NAME);
        let deliveries = self.local_deliveries(&topic, context, &payload);
        let mut count = deliver_confirmed(&topic, deliveries, context).await?;
        if let Some(bytes) = encoded {
            let service = format!("{TOPIC_PREFIX}{}", T::NAME);
            let calls = remotes
                .iter()
                .map(|link| link.call(&service, context, bytes.clone()));
            for result in futures::future::join_all(calls).await {
                let delivered = match result {
                    Ok(reply) => codec::decode::<u64>("event count", &reply)
                        .map_err(|_| PublishError::Unconfirmed)?,
                    Err(LinkError::Timeout { .. }) => return Err(PublishError::Timeout),
                    Err(_) => return Err(PublishError::Unconfirmed),
                };
                count += usize::try_from(delivered).unwrap_or(usize::MAX);
            }
        }
        Ok(count)
    }

    /// Delivers an event that arrived over a link to this node's own
    /// subscribers and waits for their acks: the remote half of
    /// `publish_confirmed`. Answers with how many confirmed it.
    async fn serve_remote_event(
        &self,
        topic: &str,
        context: CallContext,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, RemoteFailure> {
        let topic: Arc<str> = Arc::from(topic);
        let deliveries = self.remote_deliveries(&topic, &context, payload);
        match deliver_confirmed(&topic, deliveries, &context).await {
            Ok(count) => codec::encode("event count", &(count as u64))
                .map_err(|e| RemoteFailure::Decode(e.to_string())),
            Err(PublishError::Timeout) => Err(RemoteFailure::Timeout),
            Err(_) => Err(RemoteFailure::Unavailable),
        }
    }

    /// Delivers an event published (unconfirmed) on another node to this
    /// node's subscribers: the remote half of `publish`.
    fn deliver_remote_event(&self, topic: &str, context: &CallContext, payload: Vec<u8>) {
        let topic: Arc<str> = Arc::from(topic);
        for (subscriber, envelope) in self.remote_deliveries(&topic, context, payload) {
            if let Err(err) = subscriber.deliver_event(Arc::clone(&topic), envelope, None) {
                tracing::warn!(%topic, error = %err, "remote event not delivered");
            }
        }
    }

    /// This node's subscribers of `topic`, each with an envelope of the
    /// event's bytes (decoded lazily, once per subscriber that reads it).
    fn remote_deliveries(
        &self,
        topic: &Arc<str>,
        context: &CallContext,
        payload: Vec<u8>,
    ) -> Vec<(Arc<dyn AnySlot>, Envelope<EventPayload>)> {
        let bytes: Arc<[u8]> = Arc::from(payload);
        self.deliveries(topic, context, || EventPayload::Remote {
            bytes: Arc::clone(&bytes),
            decoded: None,
        })
    }

    /// Total calls in flight across services (used to drain at shutdown).
    pub(crate) fn in_flight_total(&self) -> usize {
        self.inner
            .services
            .iter()
            .map(|r| r.erased.load().in_flight)
            .sum()
    }
}

enum TimerState {
    /// First poll: no timer yet.
    Unarmed,
    /// Yielded once so the target could run; still no timer.
    Yielded,
    /// Armed: the reply is slow enough to need a real timer.
    Armed(Pin<Box<tokio::time::Sleep>>),
}

/// Awaits a reply until a deadline, arming a timer only for slow replies.
///
/// A timer per call costs a timer-wheel insert and removal on every call,
/// yet nearly every reply arrives within one scheduling round. So the first
/// poll yields instead: the woken target runs, replies, and the call
/// completes without ever touching the timer. Only a reply still missing
/// after that round arms the timer, at the same absolute deadline.
struct ReplyBefore<T> {
    rx: oneshot::Receiver<T>,
    deadline: Instant,
    timer: TimerState,
}

impl<T> Future for ReplyBefore<T> {
    /// `None` when the deadline passed first.
    type Output = Option<Result<T, oneshot::error::RecvError>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(reply) = Pin::new(&mut this.rx).poll(cx) {
            return Poll::Ready(Some(reply));
        }
        loop {
            match &mut this.timer {
                TimerState::Unarmed => {
                    this.timer = TimerState::Yielded;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                TimerState::Yielded => {
                    this.timer =
                        TimerState::Armed(Box::pin(tokio::time::sleep_until(this.deadline)));
                }
                TimerState::Armed(timer) => {
                    return match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

impl Inbound for Router {
    fn announcement(&self) -> Announcement {
        Announcement {
            services: self
                .inner
                .services
                .iter()
                .map(|r| r.key().to_string())
                .collect(),
            topics: self
                .inner
                .topics
                .iter()
                .map(|t| (*t.key()).to_owned())
                .collect(),
            ..Announcement::default()
        }
    }

    fn announced(&self, link: &Link, announcement: Announcement) {
        for service in announcement.services {
            // A local instance always wins; the link is the way to the rest.
            if !self.inner.services.contains_key(service.as_str()) {
                self.inner.remotes.insert(service, link.clone());
            }
        }
        for topic in announcement.topics {
            let mut links = self.inner.remote_topics.entry(topic).or_default();
            // One link per peer: a new link replaces the peer's old one.
            links.retain(|l| l.peer() != link.peer());
            links.push(link.clone());
        }
    }

    // A closed link keeps its routes: calls to its services fail fast with
    // `Unreachable` (not `NotRegistered`) until the peer's next link
    // announces them again.

    fn serve(
        &self,
        service: String,
        context: CallContext,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteFailure>> {
        if let Some(topic) = service.strip_prefix(TOPIC_PREFIX) {
            let router = self.clone();
            let topic = topic.to_owned();
            return Box::pin(
                async move { router.serve_remote_event(&topic, context, payload).await },
            );
        }
        let handler = self
            .inner
            .handlers
            .get(service.as_str())
            .map(|h| Arc::clone(&h.call));
        match handler {
            Some(handler) => handler(context, payload),
            None => Box::pin(async { Err(RemoteFailure::Unavailable) }),
        }
    }

    fn cast(&self, service: String, context: CallContext, payload: Vec<u8>) {
        if let Some(topic) = service.strip_prefix(TOPIC_PREFIX) {
            self.deliver_remote_event(topic, &context, payload);
            return;
        }
        let handler = self
            .inner
            .handlers
            .get(service.as_str())
            .map(|h| Arc::clone(&h.cast));
        let outcome = match handler {
            Some(handler) => handler(context, &payload),
            None => Err(CastError::Unavailable {
                service: "(unknown)",
                reason: UnavailableReason::NotRegistered,
            }),
        };
        if let Err(err) = outcome {
            tracing::debug!(%service, error = %err, "remote cast dropped");
        }
    }
}

/// Enqueues each delivery with an ack port, then waits for every ack until
/// the context's deadline.
async fn deliver_confirmed(
    topic: &Arc<str>,
    deliveries: Vec<(Arc<dyn AnySlot>, Envelope<EventPayload>)>,
    context: &CallContext,
) -> Result<usize, PublishError> {
    let mut acks = Vec::with_capacity(deliveries.len());
    let mut refused = Vec::new();
    for (subscriber, envelope) in deliveries {
        let (tx, rx) = oneshot::channel();
        match subscriber.deliver_event(Arc::clone(topic), envelope, Some(tx)) {
            Ok(()) => acks.push(rx),
            Err(err) => refused.push(err),
        }
    }
    if !refused.is_empty() {
        return Err(PublishError::Refused(refused));
    }
    let count = acks.len();
    for ack in acks {
        match tokio::time::timeout_at(context.deadline, ack).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(PublishError::Unconfirmed),
            Err(_) => return Err(PublishError::Timeout),
        }
    }
    Ok(count)
}

/// Calls whose "service" starts with this carry a topic event to the
/// peer's subscribers (no service name starts with `@`).
const TOPIC_PREFIX: &str = "@topic/";

/// Attempts of an idempotent call whose serving actor keeps stopping before
/// it replies ([`Service::idempotent_copy`]).
pub const CALL_ATTEMPTS_MAX: u32 = 3;
/// Pause before the first retry of such a call; doubles for the next.
const RETRY_PAUSE_INITIAL: Duration = Duration::from_millis(10);
