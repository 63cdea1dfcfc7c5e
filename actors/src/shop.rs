//! Installs the five shop services on a node, each on its own store.

use std::path::PathBuf;

use crate::notifications::webhook::WebhookConfig;
use bulwark_runtime::{MetricKind, MetricSample, NodeBuilder, ServiceConfig};
use bulwark_storage::{Store, StoreConfig, StoreError};

use crate::users::shards::UserShards;
use crate::{Notifications, Orders, Payments, PaymentsConfig, Products, Users};

/// One of the shop's services, as `--services` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShopService {
    /// Accounts.
    Users,
    /// The catalog and its stock.
    Products,
    /// The simulated payment provider.
    Payments,
    /// One notification per event.
    Notifications,
    /// Orders and their sagas.
    Orders,
}

impl ShopService {
    /// Every service, in start order.
    pub const ALL: [Self; 5] = [
        Self::Users,
        Self::Products,
        Self::Payments,
        Self::Notifications,
        Self::Orders,
    ];

    /// The service's name (its router name and its store's folder).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Products => "products",
            Self::Payments => "payments",
            Self::Notifications => "notifications",
            Self::Orders => "orders",
        }
    }

    /// The service named `name`, if there is one.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Where and how the shop runs on one node.
#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// This node's data directory; each service's store is a subfolder
    /// named after it.
    pub data_dir: PathBuf,
    /// The payment simulator's settings.
    pub payments: PaymentsConfig,
    /// Bulkhead bounds applied to each service.
    pub bounds: ServiceConfig,
    /// Settings of every store.
    pub store: StoreConfig,
    /// The services this node runs (all five on a single node; in a
    /// cluster, each node its share).
    pub services: Vec<ShopService>,
    /// How users is split across the cluster.
    pub users: UserShards,
    /// The users shards this node runs, when it runs users; `None`: all.
    pub user_shards: Option<Vec<u32>>,
    /// Where notifications are delivered, if anywhere.
    pub webhook: Option<WebhookConfig>,
}

impl ShopConfig {
    /// Defaults, with data under `data_dir`.
    #[must_use]
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            payments: PaymentsConfig::default(),
            bounds: ServiceConfig::default(),
            store: StoreConfig::default(),
            services: ShopService::ALL.to_vec(),
            users: UserShards::SINGLE,
            user_shards: None,
            webhook: None,
        }
    }
}

/// Why the shop could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShopSetupError {
    /// A service's store could not be opened (locked by another process,
    /// unreadable, corrupt).
    #[error("cannot open the store of the {service} service")]
    Store {
        /// The service.
        service: &'static str,
        /// What the store reported.
        #[source]
        source: StoreError,
    },
    /// The webhook's HTTP client could not be set up.
    #[error("cannot set up the notifications webhook client")]
    Webhook(#[source] reqwest::Error),
}

/// Adds the configured services — of users, products, payments,
/// notifications and orders, in that order: orders starts last because
/// resuming its sagas calls the others, and it stops first — to `builder`,
/// opening their stores. Services this node does not run are reached on
/// the nodes that do, through the router.
///
/// # Errors
/// [`ShopSetupError::Store`] naming the service whose store failed.
pub fn install(
    mut builder: NodeBuilder,
    config: &ShopConfig,
) -> Result<NodeBuilder, ShopSetupError> {
    let open = |service: &'static str| {
        Store::open(config.data_dir.join(service), config.store.clone())
            .map_err(|source| ShopSetupError::Store { service, source })
    };
    let wrap = |service: &'static str| move |source| ShopSetupError::Store { service, source };
    for service in ShopService::ALL {
        if !config.services.contains(&service) {
            continue;
        }
        let name = service.name();
        if service == ShopService::Users {
            builder = install_users(builder, config)?;
            continue;
        }
        let store = open(name)?;
        builder = with_store_check(builder, name, &store);
        builder = match service {
            ShopService::Users => builder,
            ShopService::Products => {
                builder.service(Products::new(store).map_err(wrap(name))?, config.bounds)
            }
            ShopService::Payments => builder.service(
                Payments::new(store, config.payments.clone()).map_err(wrap(name))?,
                config.bounds,
            ),
            ShopService::Notifications => {
                let mut notifications = Notifications::new(store).map_err(wrap(name))?;
                if let Some(webhook) = &config.webhook {
                    notifications = notifications
                        .with_webhook(webhook.clone())
                        .map_err(ShopSetupError::Webhook)?;
                }
                builder
                    .metrics(notifications.metrics())
                    .service(notifications, config.bounds)
            }
            ShopService::Orders => {
                let orders = Orders::new(store)
                    .map_err(wrap(name))?
                    .with_user_shards(config.users);
                builder
                    .metrics(orders.metrics())
                    .service(orders, config.bounds)
            }
        };
    }
    Ok(builder)
}

/// Adds the health check `store <folder>`, which fails once the store's sync
/// failed (its writes fail from then on until the process restarts, so the
/// node must stop reporting itself ready), and the store's sync counters as
/// metrics labelled `store="<folder>"`.
fn with_store_check(builder: NodeBuilder, folder: &str, store: &Store) -> NodeBuilder {
    let health = store.health_view();
    let stats = health.clone();
    let label = folder.to_owned();
    builder
        .health_check(format!("store {folder}"), move || {
            health.check().map_err(|err| err.to_string())
        })
        .metrics(move || {
            let now = stats.sync_stats();
            let sample = |name, help, value| MetricSample {
                name,
                help,
                kind: MetricKind::Counter,
                labels: vec![("store", label.clone())],
                value,
            };
            #[allow(clippy::cast_precision_loss)] // counters far below 2^52
            let samples = vec![
                sample(
                    "bulwark_store_syncs_total",
                    "Flush + fsync rounds of a store's group commit.",
                    now.syncs as f64,
                ),
                sample(
                    "bulwark_store_synced_writes_total",
                    "Writes made durable by those rounds (mean batch: this / syncs).",
                    now.synced_writes as f64,
                ),
                sample(
                    "bulwark_store_sync_seconds_total",
                    "Time spent in those rounds (mean sync time: this / syncs).",
                    now.sync_time.as_secs_f64(),
                ),
            ];
            samples
        })
}

/// Adds this node's users instances: the one `users`, or its shards, each
/// on its own store (`users-<shard>`).
fn install_users(
    mut builder: NodeBuilder,
    config: &ShopConfig,
) -> Result<NodeBuilder, ShopSetupError> {
    let shards = config.users;
    let here: Vec<u32> = config
        .user_shards
        .clone()
        .unwrap_or_else(|| (0..shards.count()).collect());
    for shard in here {
        let service = "users";
        let folder = if shards.is_sharded() {
            format!("users-{shard}")
        } else {
            service.to_owned()
        };
        let store = Store::open(config.data_dir.join(&folder), config.store.clone())
            .map_err(|source| ShopSetupError::Store { service, source })?;
        builder = with_store_check(builder, &folder, &store);
        let users = Users::shard(store, shards, shard)
            .map_err(|source| ShopSetupError::Store { service, source })?;
        builder = builder.instance(shards.instance(shard), users, config.bounds);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use bulwark_runtime::Service;

    use super::*;
    use crate::common::PageRequest;
    use crate::{
        NewProduct, NewUser, NotificationsRequest, OrdersRequest, PaymentsRequest, ProductsRequest,
        UserPatch, UsersRequest,
    };

    /// Only reads may be sent twice by the router after a crash: a write
    /// sent again could apply twice.
    #[test]
    fn only_reads_are_retried_after_a_crash() {
        let page = PageRequest::default();
        let user = NewUser {
            username: "ada".to_owned(),
            email: "ada@example.com".to_owned(),
        };
        let users = [
            (UsersRequest::Get(1), true),
            (UsersRequest::List(page), true),
            (UsersRequest::Create(user), false),
            (
                UsersRequest::Update {
                    id: 1,
                    patch: UserPatch::default(),
                },
                false,
            ),
            (UsersRequest::Delete(1), false),
        ];
        for (request, read) in users {
            let copy = Users::idempotent_copy(&request);
            assert_eq!(copy.as_ref(), read.then_some(&request), "{request:?}");
        }
        let product = NewProduct {
            name: "lamp".to_owned(),
            price_cents: 100,
            quantity: 1,
        };
        for (request, read) in [
            (ProductsRequest::Get(1), true),
            (ProductsRequest::List(page), true),
            (ProductsRequest::Create(product), false),
            (ProductsRequest::Release { order_id: 1 }, false),
        ] {
            let copy = Products::idempotent_copy(&request);
            assert_eq!(copy.as_ref(), read.then_some(&request), "{request:?}");
        }
        for (request, read) in [
            (OrdersRequest::Get(1), true),
            (OrdersRequest::Events(1), true),
            (OrdersRequest::Cancel(1), false),
        ] {
            let copy = Orders::idempotent_copy(&request);
            assert_eq!(copy.as_ref(), read.then_some(&request), "{request:?}");
        }
        for (request, read) in [
            (PaymentsRequest::Get { order_id: 1 }, true),
            (PaymentsRequest::Ledger { order_id: 1 }, true),
            (
                PaymentsRequest::Charge {
                    order_id: 1,
                    amount_cents: 5,
                },
                false,
            ),
            (PaymentsRequest::Refund { order_id: 1 }, false),
        ] {
            let copy = Payments::idempotent_copy(&request);
            assert_eq!(copy.as_ref(), read.then_some(&request), "{request:?}");
        }
        let list = NotificationsRequest::ListByUser { user_id: 1, page };
        assert_eq!(Notifications::idempotent_copy(&list), Some(list));
    }
}
