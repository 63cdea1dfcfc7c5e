//! A node: one process's services, their router and their actor tree, with
//! self-healing restarts and a graceful shutdown.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bulwark_supervisors::{
    ActorInfo, ActorState, Backoff, ChildKind, KillError, SupervisorActor, SupervisorMsg, Tree,
};
use futures::future::BoxFuture;
use ractor::ActorRef;
use ractor::concurrency::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::breaker::BreakerConfig;
use crate::cluster::{Cluster, ClusterConfig};
use crate::error::NodeError;
use crate::router::{Router, ServiceSlot, ServiceStatus};
use crate::service::{Service, ServiceConfig, ServiceContext};

/// Node settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name (unique in a cluster).
    pub name: String,
    /// Deadline of a call whose caller sets none.
    pub call_timeout: Duration,
    /// Bound on each phase of shutdown: draining in-flight calls, then
    /// stopping each service.
    pub shutdown_timeout: Duration,
    /// Delay before the node restarts a service whose root gave up; doubles
    /// with each consecutive failure, up to its max.
    pub service_restart_backoff: Backoff,
    /// A service that stayed up this long starts its backoff over.
    pub service_restart_reset_after: Duration,
    /// The circuit breaker every call target gets.
    pub breaker: BreakerConfig,
}

impl NodeConfig {
    /// Defaults for a node named `name`.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            call_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            service_restart_backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(30),
            },
            service_restart_reset_after: Duration::from_secs(60),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Starts a registered service (the second phase of adding one).
type Start = Box<dyn FnOnce() -> BoxFuture<'static, Result<RunningService, NodeError>> + Send>;
/// Registers a service with the router (the first phase): every service is
/// registered, with its topics, before any starts, so the first services'
/// events find the later ones' subscriptions.
type Register = Box<dyn FnOnce(NodeParts) -> Start + Send>;

/// What a service starter needs from the node being built.
#[derive(Clone)]
struct NodeParts {
    config: Arc<NodeConfig>,
    router: Router,
    tree: Tree,
}

/// A check of something a node's services depend on beside their actors —
/// a store whose sync failed, for one. `Err` carries what is wrong.
type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The outcome of one health check ([`Node::health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The check's name, as registered.
    pub name: String,
    /// `None` when it passed, else what failed.
    pub failure: Option<String>,
}

/// Whether a metric only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (Prometheus `counter`).
    Counter,
    /// Goes up and down (Prometheus `gauge`).
    Gauge,
}

/// One sample of a metric a node's parts report beside the runtime's own
/// ([`NodeBuilder::metrics`]): a store's sync counters, for one.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// The metric's name (`bulwark_store_syncs_total`).
    pub name: &'static str,
    /// What it measures, one line.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// The name of a cluster member's built-in health check: failing until the
/// node has reached some member (a node started with seeds, before any
/// answered), passing for good from then on.
pub const CLUSTER_JOINED_CHECK: &str = "cluster joined";

/// A source of metric samples.
type MetricSource = Arc<dyn Fn() -> Vec<MetricSample> + Send + Sync>;

/// Collects services, then starts them in the order they were added.
pub struct NodeBuilder {
    config: NodeConfig,
    cluster: Option<ClusterConfig>,
    names: Vec<Arc<str>>,
    registers: Vec<Register>,
    checks: Vec<(String, Check)>,
    metrics: Vec<MetricSource>,
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field("services", &self.names)
            .field("cluster", &self.cluster.as_ref().map(|c| c.listen))
            .field(
                "checks",
                &self.checks.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl NodeBuilder {
    /// Adds a service with its bulkhead bounds. Services start in the order
    /// they are added and stop in reverse.
    #[must_use]
    pub fn service<S: Service>(self, service: S, config: ServiceConfig) -> Self {
        self.instance(S::NAME, service, config)
    }

    /// Adds an instance of a service under its own name — a shard such as
    /// `users#1` — so one node (or a cluster) can run several instances of
    /// the same service type, each addressed by name
    /// ([`Router::call_instance`](crate::Router::call_instance)). The
    /// instance's actors live under that name in the tree.
    #[must_use]
    pub fn instance<S: Service>(
        mut self,
        name: impl Into<Arc<str>>,
        service: S,
        config: ServiceConfig,
    ) -> Self {
        let name: Arc<str> = name.into();
        self.names.push(Arc::clone(&name));
        self.registers.push(Box::new(move |parts: NodeParts| {
            let slot = ServiceSlot::<S>::new(config);
            parts
                .router
                .register(Arc::clone(&name), &slot, &service.topics());
            let service = Arc::new(service);
            Box::new(move || Box::pin(start_service(name, service, slot, parts)))
        }));
        self
    }

    /// Adds a health check, run by [`Node::health`] (and so by readiness
    /// probes): for what a service depends on beside its actors, such as its
    /// store. A failed check does not stop anything; it makes the node
    /// report itself not ready, naming the check. Keep it cheap and
    /// non-blocking: probes run it on every request.
    #[must_use]
    pub fn health_check(
        mut self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push((name.into(), Arc::new(check)));
        self
    }

    /// Adds a source of metric samples, read by [`Node::metric_samples`]
    /// (and so by the edge's `/metrics`) on every scrape: for what the node's
    /// services own beside their actors, such as a store's sync counters.
    /// Keep it cheap and non-blocking.
    #[must_use]
    pub fn metrics(
        mut self,
        source: impl Fn() -> Vec<MetricSample> + Send + Sync + 'static,
    ) -> Self {
        self.metrics.push(Arc::new(source));
        self
    }

    /// Makes the node a cluster member: once its services are up it
    /// accepts node links on `config.listen` and dials `config.join`.
    #[must_use]
    pub fn cluster(mut self, config: ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    /// Starts every service, then joins the cluster if one is configured.
    /// Returns once each service's tree is up.
    ///
    /// # Errors
    /// [`NodeError::DuplicateService`] when a name is added twice,
    /// [`NodeError::NoEntry`] / [`NodeError::ServiceStart`] when a tree
    /// cannot start, [`NodeError::Cluster`] when the node-link address
    /// cannot be bound; the services already started are stopped again.
    pub async fn start(self) -> Result<Node, NodeError> {
        for (i, name) in self.names.iter().enumerate() {
            if self.names[..i].contains(name) {
                return Err(NodeError::DuplicateService(name.to_string()));
            }
        }
        let config = Arc::new(self.config);
        let router = Router::new(
            Arc::from(config.name.as_str()),
            config.call_timeout,
            config.breaker,
        );
        let parts = NodeParts {
            config: Arc::clone(&config),
            router: router.clone(),
            tree: Tree::new(),
        };
        let mut running: Vec<RunningService> = Vec::new();
        let starts: Vec<Start> = self
            .registers
            .into_iter()
            .map(|register| register(parts.clone()))
            .collect();
        for start in starts {
            match start().await {
                Ok(service) => running.push(service),
                Err(err) => {
                    router.close();
                    stop_services(running).await;
                    return Err(err);
                }
            }
        }
        let cluster = match self.cluster {
            Some(cluster) => match Cluster::start(&config.name, router.clone(), cluster).await {
                Ok(cluster) => Some(cluster),
                Err(err) => {
                    router.close();
                    stop_services(running).await;
                    return Err(err.into());
                }
            },
            None => None,
        };
        info!(node = %config.name, services = ?self.names, "node started");
        Ok(Node {
            inner: Arc::new(NodeInner {
                parts,
                cluster,
                checks: self.checks,
                metrics: self.metrics,
                services: Mutex::new(Some(running)),
                stopped: tokio::sync::watch::Sender::new(false),
            }),
        })
    }
}

struct RunningService {
    name: Arc<str>,
    /// Cancelled at shutdown: the keeper then stops the service's root.
    stop: CancellationToken,
    keeper: tokio::task::JoinHandle<()>,
}

struct NodeInner {
    parts: NodeParts,
    cluster: Option<Cluster>,
    checks: Vec<(String, Check)>,
    metrics: Vec<MetricSource>,
    /// Taken by the first shutdown.
    services: Mutex<Option<Vec<RunningService>>>,
    /// Set once the first shutdown has finished; later callers wait on it.
    stopped: tokio::sync::watch::Sender<bool>,
}

/// A running node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.parts.config.name)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A builder for a node with `config`.
    #[must_use]
    pub fn builder(config: NodeConfig) -> NodeBuilder {
        NodeBuilder {
            config,
            cluster: None,
            names: Vec::new(),
            registers: Vec::new(),
            checks: Vec::new(),
            metrics: Vec::new(),
        }
    }

    /// The node's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.parts.config.name
    }

    /// The node's router.
    #[must_use]
    pub fn router(&self) -> &Router {
        &self.inner.parts.router
    }

    /// The node's cluster membership, when it is a member of one.
    #[must_use]
    pub fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.as_ref()
    }

    /// Every supervised actor on this node, sorted by path.
    #[must_use]
    pub fn actors(&self) -> Vec<ActorInfo> {
        self.inner.parts.tree.list()
    }

    /// One actor of the listing.
    #[must_use]
    pub fn actor(&self, path: &str) -> Option<ActorInfo> {
        self.inner.parts.tree.get(path)
    }

    /// Kills the actor at `path`; its supervisor applies its strategy.
    ///
    /// # Errors
    /// [`KillError`] when no running actor has that path.
    pub fn kill(&self, path: &str) -> Result<(), KillError> {
        self.inner.parts.tree.kill(path)
    }

    /// Runs every health check added with [`NodeBuilder::health_check`],
    /// in the order they were added, and for a cluster member the built-in
    /// [`CLUSTER_JOINED_CHECK`] last (failing until some member has been
    /// reached, see [`Cluster::joined`]).
    #[must_use]
    pub fn health(&self) -> Vec<HealthCheck> {
        let joined = self.inner.cluster.as_ref().map(|cluster| HealthCheck {
            name: CLUSTER_JOINED_CHECK.to_owned(),
            failure: cluster.check_joined().err(),
        });
        self.inner
            .checks
            .iter()
            .map(|(name, check)| HealthCheck {
                name: name.clone(),
                failure: check().err(),
            })
            .chain(joined)
            .collect()
    }

    /// The samples of every source added with [`NodeBuilder::metrics`], in
    /// the order the sources were added.
    #[must_use]
    pub fn metric_samples(&self) -> Vec<MetricSample> {
        self.inner
            .metrics
            .iter()
            .flat_map(|source| source())
            .collect()
    }

    /// A service's status, `None` for an unknown service.
    #[must_use]
    pub fn status(&self, service: &str) -> Option<ServiceStatus> {
        self.inner.parts.router.status(service)
    }

    /// Graceful shutdown: refuse new messages, let in-flight calls finish
    /// (up to the shutdown timeout), then stop services in reverse start
    /// order, each root stopping its children in reverse order, then wait
    /// for the tasks each service spawned. A concurrent or later call
    /// returns once the first has finished.
    pub async fn shutdown(&self) {
        let taken = self
            .inner
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(services) = taken else {
            // Another call is shutting the node down (or did): wait for it.
            let mut stopped = self.inner.stopped.subscribe();
            let _ = stopped.wait_for(|done| *done).await;
            return;
        };
        let parts = &self.inner.parts;
        parts.router.close();
        let drain_deadline = Instant::now() + parts.config.shutdown_timeout;
        while parts.router.in_flight_total() > 0 && Instant::now() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop_services(services).await;
        // Links close last: remote calls in flight drained with the rest.
        if let Some(cluster) = &self.inner.cluster {
            cluster.stop().await;
        }
        self.inner.stopped.send_replace(true);
        info!(node = %parts.config.name, "node stopped");
    }
}

async fn stop_services(services: Vec<RunningService>) {
    for service in services.into_iter().rev() {
        service.stop.cancel();
        if let Err(err) = service.keeper.await {
            error!(service = %service.name, error = %err, "service keeper failed");
        }
    }
}

/// Starts one service and the keeper task that watches its root.
async fn start_service<S: Service>(
    instance: Arc<str>,
    service: Arc<S>,
    slot: Arc<ServiceSlot<S>>,
    parts: NodeParts,
) -> Result<RunningService, NodeError> {
    let stop = CancellationToken::new();
    let keeper = Keeper {
        instance: Arc::clone(&instance),
        service,
        slot,
        ctx: ServiceContext {
            node: Arc::from(parts.config.name.as_str()),
            router: parts.router.clone(),
            tasks: TaskTracker::new(),
            shutdown: stop.clone(),
        },
        parts,
        stop,
    };
    let (root, join) = keeper.start_root(0).await?;
    let stop = keeper.stop.clone();
    let keeper = tokio::spawn(keeper.run(root, join));
    Ok(RunningService {
        name: instance,
        stop,
        keeper,
    })
}

/// Watches a service's root supervisor: when it gives up, reports the
/// service down and restarts it after a backoff — the node heals itself, as
/// an orchestrator restarts a crashed pod.
struct Keeper<S: Service> {
    /// The instance's name: its router name and its tree path.
    instance: Arc<str>,
    service: Arc<S>,
    slot: Arc<ServiceSlot<S>>,
    ctx: ServiceContext,
    parts: NodeParts,
    stop: CancellationToken,
}

impl<S: Service> Keeper<S> {
    async fn start_root(
        &self,
        restarts: u32,
    ) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), NodeError> {
        self.slot.set_starting();
        let spec = self
            .service
            .tree(&self.ctx)
            .into_spec(&self.slot)
            .ok_or(NodeError::NoEntry(S::NAME))?;
        let (root, join) =
            SupervisorActor::spawn(self.instance.to_string(), spec, self.parts.tree.clone())
                .await
                .map_err(|source| NodeError::ServiceStart {
                    service: S::NAME,
                    source,
                })?;
        self.parts.tree.set_running(
            &self.instance,
            ChildKind::Supervisor,
            root.get_cell(),
            restarts,
        );
        Ok((root, join))
    }

    async fn run(self, mut root: ActorRef<SupervisorMsg>, mut join: JoinHandle<()>) {
        let backoff = self.parts.config.service_restart_backoff;
        let reset_after = self.parts.config.service_restart_reset_after;
        let mut restarts = 0_u32;
        let mut failures = 0_u32;
        let mut up_since = Instant::now();
        loop {
            tokio::select! {
                _ = &mut join => {}
                () = self.stop.cancelled() => {
                    self.stop_root(&root, Some(join)).await;
                    return;
                }
            }
            if self.stop.is_cancelled() {
                self.stop_root(&root, None).await;
                return;
            }
            self.slot.set_down();
            self.parts
                .tree
                .set_stopped(&self.instance, ActorState::Down);
            error!(
                service = %self.instance,
                "root supervisor gave up; the service is down"
            );
            if up_since.elapsed() >= reset_after {
                failures = 0;
            }
            loop {
                failures = failures.saturating_add(1);
                let delay = backoff.delay(failures);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = self.stop.cancelled() => {
                        self.parts.tree.remove(&self.instance);
                        self.wait_tasks().await;
                        return;
                    }
                }
                restarts = restarts.saturating_add(1);
                match self.start_root(restarts).await {
                    Ok((new_root, new_join)) => {
                        info!(service = %self.instance, restarts, "service restarted by the node");
                        root = new_root;
                        join = new_join;
                        up_since = Instant::now();
                        break;
                    }
                    Err(err) => {
                        self.slot.set_down();
                        self.parts
                            .tree
                            .set_stopped(&self.instance, ActorState::Down);
                        warn!(service = %self.instance, error = %err, "service restart failed");
                    }
                }
            }
        }
    }

    /// Waits (bounded) for the tasks the service spawned; its tree is gone
    /// and they have seen `shutdown`.
    async fn wait_tasks(&self) {
        self.ctx.tasks.close();
        let timeout = self.parts.config.shutdown_timeout;
        if tokio::time::timeout(timeout, self.ctx.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                service = %self.instance,
                tasks = self.ctx.tasks.len(),
                "service tasks did not finish in time"
            );
        }
    }

    async fn stop_root(&self, root: &ActorRef<SupervisorMsg>, join: Option<JoinHandle<()>>) {
        let timeout = self.parts.config.shutdown_timeout;
        if root.stop_and_wait(None, Some(timeout)).await.is_err() {
            warn!(
                service = %self.instance,
                "service did not stop in time; killing it"
            );
            root.kill();
        }
        if let Some(join) = join {
            let _ = tokio::time::timeout(timeout, join).await;
        }
        self.wait_tasks().await;
        self.slot.set_down();
        self.parts.tree.remove(&self.instance);
        info!(service = %self.instance, "service stopped");
    }
}
