//! Membership: which nodes make up the cluster, where they accept links,
//! what they run, and whether they are reachable.
//!
//! A node listens for links on its cluster address and dials its seeds.
//! Every link opens with an [`Announcement`] carrying the node's services,
//! topics, address and the members it has live links to; a node announces
//! again to every link whenever a member comes or goes. A node that learns
//! of a member it has no link to dials it when its own name sorts first
//! (the other side waits to be dialed), so any two members end up with one
//! link between them however they joined. A member whose links all closed
//! (process gone: its socket closes; host gone: [`PEER_SILENCE_MAX`] of
//! silence) is `Unreachable`: its routes stay, so calls to its services
//! fail fast, until it comes back and announces again.
//!
//! [`PEER_SILENCE_MAX`]: super::link::PEER_SILENCE_MAX

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::handshake::Cookie;
use super::link::{Announcement, Inbound, Link, MemberAddr, RemoteFailure};
use super::tls::Tls;
use super::{accept_links_with, maintain_link_with};
use crate::envelope::CallContext;
use crate::router::Router;

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where this node accepts links (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Seed nodes to dial; the rest are learned from their announcements.
    pub join: Vec<SocketAddr>,
    /// The shared secret every member proves (it never crosses the wire).
    pub cookie: Cookie,
    /// Mutual TLS on every link, when set.
    pub tls: Option<Tls>,
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node-link address could not be bound.
    #[error("cannot listen for node links on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Whether a member can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// This node.
    Local,
    /// At least one live link to it.
    Up,
    /// Every link to it closed; calls to its services fail fast.
    Unreachable,
}

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The node's name.
    pub name: String,
    /// Where it accepts node links, if it said.
    pub addr: Option<SocketAddr>,
    /// Whether it is reachable.
    pub state: MemberState,
    /// The services it runs (as last announced).
    pub services: Vec<String>,
}

#[derive(Debug, Default)]
struct Member {
    addr: Option<SocketAddr>,
    services: Vec<String>,
    /// Open links to it (usually one; two when both sides list the other
    /// as a seed).
    links: Vec<Link>,
}

impl Member {
    fn is_up(&self) -> bool {
        self.links.iter().any(|l| !l.is_closed())
    }
}

struct ClusterInner {
    me: String,
    addr: SocketAddr,
    router: Router,
    cookie: Cookie,
    tls: Option<Tls>,
    members: DashMap<String, Member>,
    /// Addresses a dial loop runs for (seeds and discovered members).
    dialing: DashMap<SocketAddr, ()>,
    /// The seeds this node was told to join (itself left out).
    seeds: Vec<SocketAddr>,
    /// Whether some member has been up at least once: a node with seeds has
    /// joined the cluster from then on; a node without seeds (the first one)
    /// starts joined.
    joined: AtomicBool,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// This node's membership in a cluster: the listener, the dial loops and
/// the member table. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<ClusterInner>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("me", &self.inner.me)
            .field("addr", &self.inner.addr)
            .field("members", &self.inner.members.len())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Binds the node-link listener, accepts links and dials the seeds.
    /// Calls arriving over links are served by `router`; services the
    /// members announce become routable through it.
    ///
    /// # Errors
    /// [`ClusterError::Bind`] when the listen address cannot be bound.
    pub async fn start(
        me: &str,
        router: Router,
        config: ClusterConfig,
    ) -> Result<Self, ClusterError> {
        let bind = |source| ClusterError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let seeds: Vec<SocketAddr> = config
            .join
            .iter()
            .copied()
            .filter(|&seed| seed != addr)
            .collect();
        let cluster = Self {
            inner: Arc::new(ClusterInner {
                me: me.to_owned(),
                addr,
                router,
                cookie: config.cookie,
                tls: config.tls,
                members: DashMap::new(),
                dialing: DashMap::new(),
                joined: AtomicBool::new(seeds.is_empty()),
                seeds,
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        let inbound: Arc<dyn Inbound> = Arc::new(cluster.clone());
        // Accepted links announce through the inbound on their first frame;
        // nothing else to do with them here.
        let on_link: Arc<dyn Fn(Link) + Send + Sync> = Arc::new(|_link| {});
        cluster.inner.tasks.spawn(accept_links_with(
            listener,
            me.to_owned(),
            cluster.inner.cookie.clone(),
            cluster.inner.tls.clone(),
            inbound,
            on_link,
            cluster.inner.stop.clone(),
        ));
        for &seed in &cluster.inner.seeds {
            cluster.dial(seed);
        }
        info!(node = me, %addr, "cluster listener started");
        Ok(cluster)
    }

    /// Where this node accepts links (the bound address).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// This node's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.me
    }

    /// Whether this node has joined its cluster: some member has been up
    /// at least once (always, for a node started without seeds). A member
    /// lost later does not undo it: the node still serves what does not
    /// need that member.
    #[must_use]
    pub fn joined(&self) -> bool {
        self.inner.joined.load(Ordering::Acquire)
    }

    /// Why this node has not joined its cluster yet; `Ok` once it has.
    ///
    /// # Errors
    /// Names the seeds it is still dialing.
    pub fn check_joined(&self) -> Result<(), String> {
        if self.joined() {
            return Ok(());
        }
        let seeds: Vec<String> = self.inner.seeds.iter().map(ToString::to_string).collect();
        Err(format!(
            "no member reached yet; dialing the seeds {}",
            seeds.join(", ")
        ))
    }

    /// Every member this node knows, itself first, then by name.
    #[must_use]
    pub fn members(&self) -> Vec<MemberInfo> {
        let mut others: Vec<MemberInfo> = self
            .inner
            .members
            .iter()
            .map(|m| MemberInfo {
                name: m.key().clone(),
                addr: m.addr,
                state: if m.is_up() {
                    MemberState::Up
                } else {
                    MemberState::Unreachable
                },
                services: m.services.clone(),
            })
            .collect();
        others.sort_by(|a, b| a.name.cmp(&b.name));
        let local = MemberInfo {
            name: self.inner.me.clone(),
            addr: Some(self.inner.addr),
            state: MemberState::Local,
            services: self
                .inner
                .router
                .services()
                .into_iter()
                .map(|(name, _)| name.to_string())
                .collect(),
        };
        std::iter::once(local).chain(others).collect()
    }

    /// Stops accepting and dialing, closes every link and waits for the
    /// cluster's tasks. Calls waiting on a link fail at once.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        for member in &self.inner.members {
            for link in &member.links {
                link.close();
            }
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Keeps a link to `addr` open (re-dialing with backoff) until stop,
    /// unless a loop for it already runs.
    fn dial(&self, addr: SocketAddr) {
        if self.inner.stop.is_cancelled() || self.inner.dialing.insert(addr, ()).is_some() {
            return;
        }
        let inbound: Arc<dyn Inbound> = Arc::new(self.clone());
        self.inner.tasks.spawn(maintain_link_with(
            addr,
            self.inner.me.clone(),
            self.inner.cookie.clone(),
            self.inner.tls.clone(),
            inbound,
            self.inner.stop.clone(),
        ));
    }

    /// Sends a fresh announcement on every open link.
    fn announce_all(&self) {
        let announcement = self.announcement();
        for member in &self.inner.members {
            for link in member.links.iter().filter(|l| !l.is_closed()) {
                if !link.announce(announcement.clone()) {
                    warn!(peer = link.peer(), "cannot queue an announcement");
                }
            }
        }
    }
}

impl Inbound for Cluster {
    fn announcement(&self) -> Announcement {
        let mut announcement = self.inner.router.announcement();
        announcement.addr = Some(self.inner.addr);
        announcement.members = self
            .inner
            .members
            .iter()
            .filter(|m| m.is_up())
            .filter_map(|m| {
                Some(MemberAddr {
                    name: m.key().clone(),
                    addr: m.addr?,
                })
            })
            .collect();
        announcement
    }

    fn announced(&self, link: &Link, announcement: Announcement) {
        let peer = link.peer().to_owned();
        if peer == self.inner.me {
            warn!(node = %peer, "a node link to a node of our own name; closing it");
            link.close();
            return;
        }
        if self.inner.stop.is_cancelled() {
            link.close();
            return;
        }
        if let Some(member) = self.inner.members.get(&peer)
            && member.is_up()
            && !member.links.iter().any(|l| l.same(link))
            && member.addr.is_some()
            && announcement.addr.is_some()
            && member.addr != announcement.addr
        {
            warn!(
                node = %peer,
                known_at = ?member.addr,
                impostor_at = ?announcement.addr,
                "a second node calls itself by a live member's name; refusing its link"
            );
            drop(member);
            link.close();
            return;
        }
        self.inner.router.announced(link, announcement.clone());
        let joined = {
            let mut member = self.inner.members.entry(peer.clone()).or_default();
            let was_up = member.is_up();
            member.links.retain(|l| !l.is_closed());
            if !member.links.iter().any(|l| l.same(link)) {
                member.links.push(link.clone());
            }
            if announcement.addr.is_some() {
                member.addr = announcement.addr;
            }
            member.services.clone_from(&announcement.services);
            member.services.sort_unstable();
            !was_up
        };
        if joined {
            if !self.inner.joined.swap(true, Ordering::AcqRel) {
                info!(node = %self.inner.me, via = %peer, "joined the cluster");
            }
            info!(peer = %peer, addr = ?announcement.addr, services = ?announcement.services, "member up");
            let local: HashSet<String> = self
                .inner
                .router
                .services()
                .into_iter()
                .map(|(name, _)| name.to_string())
                .collect();
            let both: Vec<&String> = announcement
                .services
                .iter()
                .filter(|name| local.contains(name.as_str()))
                .collect();
            if !both.is_empty() {
                warn!(
                    peer = %peer,
                    services = ?both,
                    "a member runs services this node runs too: each instance keeps its own store, so their data splits between the nodes; run each service on one node (--services) or shard it"
                );
            }
            self.announce_all();
        }
        let linked: HashSet<String> = self
            .inner
            .members
            .iter()
            .filter(|m| m.is_up())
            .map(|m| m.key().clone())
            .collect();
        for member in announcement.members {
            // The name that sorts first dials; the other waits to be dialed.
            if member.name > self.inner.me
                && !linked.contains(&member.name)
                && member.addr != self.inner.addr
            {
                self.dial(member.addr);
            }
        }
    }

    fn closed(&self, link: &Link) {
        self.inner.router.closed(link);
        let gone = match self.inner.members.get_mut(link.peer()) {
            Some(mut member) => {
                member.links.retain(|l| !l.is_closed() && !l.same(link));
                member.links.is_empty()
            }
            None => false,
        };
        if gone && !self.inner.stop.is_cancelled() {
            warn!(peer = link.peer(), "member unreachable");
        }
    }

    fn serve(
        &self,
        service: String,
        context: CallContext,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteFailure>> {
        self.inner.router.serve(service, context, payload)
    }

    fn cast(&self, service: String, context: CallContext, payload: Vec<u8>) {
        Inbound::cast(&self.inner.router, service, context, payload);
    }
}
