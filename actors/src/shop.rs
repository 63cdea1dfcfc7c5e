//! Installs the five shop services on a node, each on its own store.

use std::path::PathBuf;

use bulwark_runtime::{NodeBuilder, ServiceConfig};
use bulwark_storage::{Store, StoreConfig, StoreError};

use crate::{Notifications, Orders, Payments, PaymentsConfig, Products, Users};

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
}

/// Adds users, products, payments, notifications and orders (in that order:
/// orders starts last because resuming its sagas calls the others, and it
/// stops first) to `builder`, opening their stores.
///
/// # Errors
/// [`ShopSetupError::Store`] naming the service whose store failed.
pub fn install(builder: NodeBuilder, config: &ShopConfig) -> Result<NodeBuilder, ShopSetupError> {
    let open = |service: &'static str| {
        Store::open(config.data_dir.join(service), config.store.clone())
            .map_err(|source| ShopSetupError::Store { service, source })
    };
    let wrap = |service: &'static str| move |source| ShopSetupError::Store { service, source };
    let users = Users::new(open("users")?).map_err(wrap("users"))?;
    let products = Products::new(open("products")?).map_err(wrap("products"))?;
    let payments =
        Payments::new(open("payments")?, config.payments.clone()).map_err(wrap("payments"))?;
    let notifications =
        Notifications::new(open("notifications")?).map_err(wrap("notifications"))?;
    let orders = Orders::new(open("orders")?).map_err(wrap("orders"))?;
    Ok(builder
        .service(users, config.bounds)
        .service(products, config.bounds)
        .service(payments, config.bounds)
        .service(notifications, config.bounds)
        .service(orders, config.bounds))
}
