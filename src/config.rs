//! The application's configuration: defaults, then an optional TOML file
//! (`--config FILE`), then `BULWARK_*` environment variables, then CLI
//! flags; each later source wins. A bad value stops start-up with a message
//! naming the key as the source spells it (`BULWARK_HTTP: invalid socket
//! address "abc"`, `http.addr: ...`, `--http: ...`).
//!
//! Every setting has one entry in [`KEYS`]: its TOML key, its environment
//! variable and its flag. The README's configuration table lists them.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulwark_actors::{PaymentsConfig, SHARDS_MAX, ShopService, UserShards, WebhookConfig};
use bulwark_http::{AdminKey, ApiKey, ApiKeys, EdgeConfig, Price, RateLimit};
use bulwark_runtime::BreakerConfig;
use bulwark_runtime::cluster::tls::TlsPaths;
use clap::{Args, Parser, Subcommand};

/// Default HTTP address: loopback only, so a fresh install exposes nothing.
pub const HTTP_ADDR_DEFAULT: &str = "127.0.0.1:8080";
/// Default data directory.
pub const DATA_DIR_DEFAULT: &str = "./data";
/// Default node name.
pub const NODE_DEFAULT: &str = "n1";
/// Default bound on each phase of the node's shutdown (drain, then stop
/// each service): a group commit takes milliseconds, a saga step at most
/// the payment latency; ten seconds is far past both and still below the
/// usual 30 s grace period of process supervisors.
pub const SHUTDOWN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Longest simulated payment latency: one minute already stalls every saga;
/// more is a typo.
pub const PAYMENTS_LATENCY_MS_MAX: u64 = 60_000;
/// Longest accepted timeout setting: one hour; anything longer is a typo
/// for a smaller unit.
pub const TIMEOUT_MS_MAX: u64 = 3_600_000;
/// Longest node name: it is a directory name and a log field.
pub const NODE_NAME_LEN_MAX: usize = 64;
/// Largest accepted body limit: 16 MiB; the API's bodies are kilobytes.
pub const BODY_LIMIT_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Largest accepted concurrency or connection bound: each unit costs a
/// task and buffers; a million is far past what one node can serve.
pub const COUNT_MAX: u64 = 1_000_000;
/// Largest `circuit.timeouts`.
pub const CIRCUIT_TIMEOUTS_MAX: u64 = 1_000;
/// Largest `worker_threads`: far past the cores of any one machine.
pub const WORKER_THREADS_MAX: u64 = 1_024;

/// The `bulwark` command line.
#[derive(Debug, Parser)]
#[command(
    name = "bulwark",
    version,
    about = "The Bulwark shop: actor services behind a REST edge"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once at start-up: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the shop: open the stores, start the services, serve HTTP until
    /// SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Drive a seeded workload while killing actors and nodes, then check
    /// that nothing was lost.
    Chaos(crate::chaos::ChaosArgs),
}

/// Flags of `bulwark serve`. Values are parsed (and refused with the flag's
/// name) by [`Config::load`], the same way for every source.
#[derive(Debug, Default, Clone, Args)]
pub struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP listen address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Data directory; this node's stores live in <DIR>/<NODE>/<service>.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// This node's name.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Deadline of one HTTP request (and of its service calls).
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<String>,
    /// Largest request body.
    #[arg(long, value_name = "BYTES")]
    pub body_limit_bytes: Option<String>,
    /// Time a connection gets to send a request head.
    #[arg(long, value_name = "MS")]
    pub header_read_timeout_ms: Option<String>,
    /// Requests handled at once; more are shed with 503.
    #[arg(long, value_name = "N")]
    pub concurrency_limit: Option<String>,
    /// Open connections at once.
    #[arg(long, value_name = "N")]
    pub connections_max: Option<String>,
    /// Time in-flight requests get to finish at shutdown.
    #[arg(long, value_name = "MS")]
    pub drain_timeout_ms: Option<String>,
    /// Bound on each phase of the node's shutdown.
    #[arg(long, value_name = "MS")]
    pub shutdown_timeout_ms: Option<String>,
    /// Timed-out calls in a row that open a target's circuit (0: off).
    #[arg(long, value_name = "N")]
    pub circuit_timeouts: Option<String>,
    /// How long an open circuit fails calls fast before a probe.
    #[arg(long, value_name = "MS")]
    pub circuit_open_ms: Option<String>,
    /// Decline every charge above this amount (e.g. 100.00).
    #[arg(long, value_name = "AMOUNT")]
    pub payments_decline_over: Option<String>,
    /// Probability (0.0-1.0) that a charge fails transiently.
    #[arg(long, value_name = "RATE")]
    pub payments_failure_rate: Option<String>,
    /// Simulated payment provider latency.
    #[arg(long, value_name = "MS")]
    pub payments_latency_ms: Option<String>,
    /// Node-link listen address: makes this node a cluster member.
    #[arg(long, value_name = "ADDR")]
    pub cluster: Option<String>,
    /// Seed nodes' node-link addresses, comma-separated.
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    pub join: Option<String>,
    /// The cluster's shared secret (required in a cluster).
    #[arg(long, value_name = "SECRET")]
    pub cookie: Option<String>,
    /// The services this node runs, comma-separated (default: all five);
    /// `users#N` names one users shard.
    #[arg(long, value_name = "LIST")]
    pub services: Option<String>,
    /// Shards the users service is split into, cluster-wide (default 1).
    #[arg(long, value_name = "N")]
    pub users_shards: Option<String>,
    /// This node's certificate chain (PEM): node links use mutual TLS.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// This node's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,
    /// The cluster CA's certificate (PEM), which signs every node's.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<String>,
    /// The admin API's bearer key; without one, `/admin/...` answers 404.
    #[arg(long, value_name = "KEY")]
    pub admin_key: Option<String>,
    /// The REST API's keys, comma-separated NAME:SCOPES:SECRET (scopes
    /// read, write, admin joined by '+'); without any the API is open.
    #[arg(long, value_name = "LIST")]
    pub api_keys: Option<String>,
    /// Requests each client (API key, or IP address without one) may make:
    /// N/s, N/min or N/h, optionally "burst M"; "off" for no limit.
    #[arg(long, value_name = "RATE")]
    pub api_rate_limit: Option<String>,
    /// POST every notification to this URL (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Sign webhook requests with this secret (X-Bulwark-Signature).
    #[arg(long, value_name = "SECRET")]
    pub webhook_secret: Option<String>,
    /// Threads that run the node's tasks (default: the cores this process
    /// may use); 1 runs everything on one thread.
    #[arg(long, value_name = "N")]
    pub worker_threads: Option<String>,
}

/// Everything the application needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// The data directory (of every node run from it).
    pub data_dir: PathBuf,
    /// This node's name.
    pub node: String,
    /// The edge's limits.
    pub edge: EdgeConfig,
    /// The payment simulator.
    pub payments: PaymentsConfig,
    /// Bound on each phase of the node's shutdown.
    pub shutdown_timeout: Duration,
    /// The circuit breaker of every call target.
    pub breaker: BreakerConfig,
    /// Where this node accepts node links; `None` outside a cluster.
    pub cluster_addr: Option<SocketAddr>,
    /// Seed nodes to dial.
    pub join: Vec<SocketAddr>,
    /// The cluster's shared secret.
    pub cookie: Option<Secret>,
    /// The services this node runs.
    pub services: Vec<ShopService>,
    /// How users is split across the cluster.
    pub users_shards: UserShards,
    /// The users shards this node runs (`users#N` in the services list);
    /// `None`: every shard, when it runs users.
    pub user_shards: Option<Vec<u32>>,
    /// Mutual TLS on node links: certificate, key and CA files.
    pub tls: Option<TlsPaths>,
    /// Where notifications are delivered (signed when a secret was set).
    pub webhook: Option<WebhookConfig>,
    /// The webhook secret as read, until [`Config::load`] puts it into
    /// [`Config::webhook`].
    pub webhook_secret: Option<Secret>,
    /// Threads that run the node's tasks; `None`: one per core this process
    /// may use ([`Config::worker_threads`]).
    pub worker_threads: Option<usize>,
}

/// A secret setting: compared, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's text.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            node: NODE_DEFAULT.to_owned(),
            edge: EdgeConfig::default(),
            payments: PaymentsConfig::default(),
            shutdown_timeout: SHUTDOWN_TIMEOUT_DEFAULT,
            breaker: BreakerConfig::default(),
            cluster_addr: None,
            join: Vec::new(),
            cookie: None,
            services: ShopService::ALL.to_vec(),
            users_shards: UserShards::SINGLE,
            user_shards: None,
            tls: None,
            webhook: None,
            webhook_secret: None,
            worker_threads: None,
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value could not be used.
    #[error("{key}: {message}")]
    Invalid {
        /// The key as its source spells it: `BULWARK_HTTP`, `http.addr`,
        /// `--http`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The TOML file has a key this program does not know.
    #[error("{file}: unknown key `{key}`")]
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
    },
    /// The TOML file could not be read.
    #[error("cannot read {file}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML file is not valid TOML.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    HttpAddr,
    DataDir,
    Node,
    RequestTimeoutMs,
    BodyLimitBytes,
    HeaderReadTimeoutMs,
    ConcurrencyLimit,
    ConnectionsMax,
    DrainTimeoutMs,
    ShutdownTimeoutMs,
    PaymentsDeclineOver,
    PaymentsFailureRate,
    PaymentsLatencyMs,
    ClusterAddr,
    Join,
    Cookie,
    Services,
    UsersShards,
    TlsCert,
    TlsKey,
    TlsCa,
    AdminKey,
    CircuitTimeouts,
    CircuitOpenMs,
    ApiKeys,
    ApiRateLimit,
    WebhookUrl,
    WebhookSecret,
    WorkerThreads,
}

/// A setting's names in each source.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    setting: Setting,
    /// Dotted TOML key.
    pub toml: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// CLI flag.
    pub flag: &'static str,
}

const fn key(setting: Setting, toml: &'static str, env: &'static str, flag: &'static str) -> Key {
    Key {
        setting,
        toml,
        env,
        flag,
    }
}

/// Every setting and its names.
pub const KEYS: [Key; 29] = [
    key(Setting::HttpAddr, "http.addr", "BULWARK_HTTP", "--http"),
    key(
        Setting::DataDir,
        "data_dir",
        "BULWARK_DATA_DIR",
        "--data-dir",
    ),
    key(Setting::Node, "node", "BULWARK_NODE", "--node"),
    key(
        Setting::RequestTimeoutMs,
        "http.request_timeout_ms",
        "BULWARK_HTTP_REQUEST_TIMEOUT_MS",
        "--request-timeout-ms",
    ),
    key(
        Setting::BodyLimitBytes,
        "http.body_limit_bytes",
        "BULWARK_HTTP_BODY_LIMIT_BYTES",
        "--body-limit-bytes",
    ),
    key(
        Setting::HeaderReadTimeoutMs,
        "http.header_read_timeout_ms",
        "BULWARK_HTTP_HEADER_READ_TIMEOUT_MS",
        "--header-read-timeout-ms",
    ),
    key(
        Setting::ConcurrencyLimit,
        "http.concurrency_limit",
        "BULWARK_HTTP_CONCURRENCY_LIMIT",
        "--concurrency-limit",
    ),
    key(
        Setting::ConnectionsMax,
        "http.connections_max",
        "BULWARK_HTTP_CONNECTIONS_MAX",
        "--connections-max",
    ),
    key(
        Setting::DrainTimeoutMs,
        "http.drain_timeout_ms",
        "BULWARK_HTTP_DRAIN_TIMEOUT_MS",
        "--drain-timeout-ms",
    ),
    key(
        Setting::ShutdownTimeoutMs,
        "shutdown_timeout_ms",
        "BULWARK_SHUTDOWN_TIMEOUT_MS",
        "--shutdown-timeout-ms",
    ),
    key(
        Setting::PaymentsDeclineOver,
        "payments.decline_over",
        "BULWARK_PAYMENTS_DECLINE_OVER",
        "--payments-decline-over",
    ),
    key(
        Setting::PaymentsFailureRate,
        "payments.failure_rate",
        "BULWARK_PAYMENTS_FAILURE_RATE",
        "--payments-failure-rate",
    ),
    key(
        Setting::PaymentsLatencyMs,
        "payments.latency_ms",
        "BULWARK_PAYMENTS_LATENCY_MS",
        "--payments-latency-ms",
    ),
    key(
        Setting::ClusterAddr,
        "cluster.addr",
        "BULWARK_CLUSTER",
        "--cluster",
    ),
    key(Setting::Join, "cluster.join", "BULWARK_JOIN", "--join"),
    key(
        Setting::Cookie,
        "cluster.cookie",
        "BULWARK_COOKIE",
        "--cookie",
    ),
    key(
        Setting::Services,
        "services",
        "BULWARK_SERVICES",
        "--services",
    ),
    key(
        Setting::UsersShards,
        "users_shards",
        "BULWARK_USERS_SHARDS",
        "--users-shards",
    ),
    key(
        Setting::TlsCert,
        "cluster.tls_cert",
        "BULWARK_CLUSTER_TLS_CERT",
        "--tls-cert",
    ),
    key(
        Setting::TlsKey,
        "cluster.tls_key",
        "BULWARK_CLUSTER_TLS_KEY",
        "--tls-key",
    ),
    key(
        Setting::TlsCa,
        "cluster.tls_ca",
        "BULWARK_CLUSTER_TLS_CA",
        "--tls-ca",
    ),
    key(
        Setting::AdminKey,
        "admin.key",
        "BULWARK_ADMIN_KEY",
        "--admin-key",
    ),
    key(
        Setting::CircuitTimeouts,
        "circuit.timeouts",
        "BULWARK_CIRCUIT_TIMEOUTS",
        "--circuit-timeouts",
    ),
    key(
        Setting::CircuitOpenMs,
        "circuit.open_ms",
        "BULWARK_CIRCUIT_OPEN_MS",
        "--circuit-open-ms",
    ),
    key(
        Setting::ApiKeys,
        "api.keys",
        "BULWARK_API_KEYS",
        "--api-keys",
    ),
    key(
        Setting::ApiRateLimit,
        "api.rate_limit",
        "BULWARK_API_RATE_LIMIT",
        "--api-rate-limit",
    ),
    key(
        Setting::WebhookUrl,
        "notifications.webhook_url",
        "BULWARK_WEBHOOK_URL",
        "--webhook-url",
    ),
    key(
        Setting::WebhookSecret,
        "notifications.webhook_secret",
        "BULWARK_WEBHOOK_SECRET",
        "--webhook-secret",
    ),
    key(
        Setting::WorkerThreads,
        "worker_threads",
        "BULWARK_WORKER_THREADS",
        "--worker-threads",
    ),
];

/// `BULWARK_*` variables read elsewhere (by the binary's logging set-up),
/// so not unknown.
/// `BULWARK_INJECT_BUG` selects a deliberate bug in builds made with the
/// `injected-bugs` feature (the chaos checker's own tests).
pub const ENV_OTHER: [&str; 2] = ["BULWARK_LOG_FORMAT", "BULWARK_INJECT_BUG"];

impl Config {
    /// This node's data directory: `<data_dir>/<node>`.
    #[must_use]
    pub fn node_data_dir(&self) -> PathBuf {
        self.data_dir.join(&self.node)
    }

    /// Defaults, then `args.config` (a TOML file), then the `BULWARK_*`
    /// variables of `env`, then the flags of `args`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key of the first bad value, an unknown
    /// TOML key, or an unreadable or malformed file.
    pub fn load(
        args: &ServeArgs,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let mut sources = Sources::default();
        if let Some(file) = &args.config {
            config.apply_toml_file(file, &mut sources)?;
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        for key in &KEYS {
            if let Some((_, value)) = env.iter().find(|(name, _)| name == key.env) {
                config.apply(key.setting, key.env, value)?;
                sources.set(key.setting, key.env);
            }
        }
        for (key, value) in flags(args) {
            if let Some(value) = value {
                config.apply(key.setting, key.flag, value)?;
                sources.set(key.setting, key.flag);
            }
        }
        config.check(&sources)?;
        if let (Some(webhook), Some(secret)) = (&config.webhook, config.webhook_secret.take()) {
            config.webhook = Some(webhook.clone().with_secret(secret.expose()).map_err(
                |message| ConfigError::Invalid {
                    key: sources.name(Setting::WebhookSecret),
                    message,
                },
            )?);
        }
        Ok(config)
    }

    fn apply_toml_file(&mut self, file: &Path, sources: &mut Sources) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        self.apply_toml(file, &text, sources)
    }

    fn apply_toml(
        &mut self,
        file: &Path,
        text: &str,
        sources: &mut Sources,
    ) -> Result<(), ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|err: toml::de::Error| ConfigError::Syntax {
                    file: file.to_owned(),
                    message: err.message().to_owned(),
                })?;
        let mut flat = Vec::new();
        flatten("", &table, &mut flat);
        for (name, value) in flat {
            let Some(key) = KEYS.iter().find(|k| k.toml == name) else {
                return Err(ConfigError::UnknownKey {
                    file: file.to_owned(),
                    key: name,
                });
            };
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                // Lists (`join`, `services`) may be TOML arrays of strings.
                toml::Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        toml::Value::String(s) => Ok(s.as_str()),
                        _ => Err(ConfigError::Invalid {
                            key: name.clone(),
                            message: "expected an array of strings".to_owned(),
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: name,
                        message: "expected a string or a number".to_owned(),
                    });
                }
            };
            self.apply(key.setting, key.toml, &text)?;
            sources.set(key.setting, key.toml);
        }
        Ok(())
    }

    /// Parses `value` for `setting`; errors name `name`.
    fn apply(&mut self, setting: Setting, name: &str, value: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            key: name.to_owned(),
            message,
        };
        let value = value.trim();
        match setting {
            Setting::HttpAddr => {
                self.http_addr = value
                    .parse()
                    .map_err(|_| invalid(format!("invalid socket address {value:?}")))?;
            }
            Setting::DataDir => {
                if value.is_empty() {
                    return Err(invalid("must not be empty".to_owned()));
                }
                self.data_dir = PathBuf::from(value);
            }
            Setting::Node => {
                let valid = !value.is_empty()
                    && value.len() <= NODE_NAME_LEN_MAX
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    return Err(invalid(format!(
                        "invalid node name {value:?}: 1 to {NODE_NAME_LEN_MAX} letters, digits, '-' or '_'"
                    )));
                }
                self.node = value.to_owned();
            }
            Setting::RequestTimeoutMs => {
                self.edge.request_timeout = millis(value, 1, TIMEOUT_MS_MAX).map_err(invalid)?;
            }
            Setting::HeaderReadTimeoutMs => {
                self.edge.header_read_timeout =
                    millis(value, 1, TIMEOUT_MS_MAX).map_err(invalid)?;
            }
            Setting::DrainTimeoutMs => {
                self.edge.drain_timeout = millis(value, 0, TIMEOUT_MS_MAX).map_err(invalid)?;
            }
            Setting::ShutdownTimeoutMs => {
                self.shutdown_timeout = millis(value, 1, TIMEOUT_MS_MAX).map_err(invalid)?;
            }
            Setting::CircuitTimeouts => {
                self.breaker.timeouts_to_open =
                    u32::try_from(count(value, 0, CIRCUIT_TIMEOUTS_MAX).map_err(invalid)?)
                        .map_err(|_| invalid(format!("{value} is too large")))?;
            }
            Setting::CircuitOpenMs => {
                self.breaker.open_for = millis(value, 1, TIMEOUT_MS_MAX).map_err(invalid)?;
            }
            Setting::BodyLimitBytes => {
                self.edge.body_limit_bytes =
                    count(value, 1, BODY_LIMIT_BYTES_MAX).map_err(invalid)?;
            }
            Setting::ConcurrencyLimit => {
                self.edge.concurrency_limit = count(value, 1, COUNT_MAX).map_err(invalid)?;
            }
            Setting::ConnectionsMax => {
                self.edge.connections_max = count(value, 1, COUNT_MAX).map_err(invalid)?;
            }
            Setting::PaymentsDeclineOver => {
                let price = Price::parse(value)
                    .map_err(|err| invalid(format!("invalid amount {value:?}: {err}")))?;
                self.payments.decline_over_cents = Some(price.cents());
            }
            Setting::PaymentsFailureRate => {
                let rate: f64 = value
                    .parse()
                    .map_err(|_| invalid(format!("invalid number {value:?}")))?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(invalid(format!("{value} is not between 0.0 and 1.0")));
                }
                self.payments.failure_rate = rate;
            }
            Setting::PaymentsLatencyMs => {
                let latency: u64 = value
                    .parse()
                    .map_err(|_| invalid(format!("invalid number {value:?}")))?;
                if latency > PAYMENTS_LATENCY_MS_MAX {
                    return Err(invalid(format!(
                        "{latency} is above {PAYMENTS_LATENCY_MS_MAX} ms"
                    )));
                }
                self.payments.latency_ms = latency;
            }
            Setting::ClusterAddr => {
                self.cluster_addr = Some(
                    value
                        .parse()
                        .map_err(|_| invalid(format!("invalid socket address {value:?}")))?,
                );
            }
            Setting::Join => {
                self.join = list(value)
                    .map(|addr| {
                        addr.parse()
                            .map_err(|_| invalid(format!("invalid socket address {addr:?}")))
                    })
                    .collect::<Result<_, _>>()?;
            }
            Setting::Cookie => {
                if value.is_empty() {
                    return Err(invalid("must not be empty".to_owned()));
                }
                self.cookie = Some(Secret(value.to_owned()));
            }
            Setting::Services => {
                let mut services = Vec::new();
                let mut shards: Option<Vec<u32>> = None;
                for name in list(value) {
                    if let Some(shard) = name.strip_prefix("users#") {
                        let shard: u32 = shard
                            .parse()
                            .map_err(|_| invalid(format!("invalid shard {name:?}")))?;
                        let here = shards.get_or_insert_with(Vec::new);
                        if here.contains(&shard) || services.contains(&ShopService::Users) {
                            return Err(invalid(format!("{name:?} is listed twice")));
                        }
                        here.push(shard);
                        continue;
                    }
                    let service = ShopService::from_name(name).ok_or_else(|| {
                        invalid(format!(
                            "unknown service {name:?}; the services are {}",
                            ShopService::ALL.map(ShopService::name).join(", ")
                        ))
                    })?;
                    if services.contains(&service)
                        || (service == ShopService::Users && shards.is_some())
                    {
                        return Err(invalid(format!("{name:?} is listed twice")));
                    }
                    services.push(service);
                }
                if shards.is_some() {
                    services.push(ShopService::Users);
                    services.sort_unstable();
                }
                if services.is_empty() {
                    return Err(invalid("lists no service".to_owned()));
                }
                self.services = services;
                self.user_shards = shards;
            }
            Setting::UsersShards => {
                let count: u32 = value
                    .parse()
                    .map_err(|_| invalid(format!("invalid number {value:?}")))?;
                self.users_shards = UserShards::new(count)
                    .ok_or_else(|| invalid(format!("{count} is not between 1 and {SHARDS_MAX}")))?;
            }
            Setting::ApiKeys => {
                let keys = list(value)
                    .enumerate()
                    .map(|(i, spec)| {
                        ApiKey::parse(spec).map_err(|err| invalid(format!("key {}: {err}", i + 1)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let keys = ApiKeys::new(keys).map_err(|err| invalid(err.to_string()))?;
                if keys.is_empty() {
                    return Err(invalid(
                        "lists no key; leave it unset for an open API".to_owned(),
                    ));
                }
                self.edge.api_keys = keys;
            }
            Setting::ApiRateLimit => {
                self.edge.rate_limit = RateLimit::parse(value).map_err(invalid)?;
            }
            Setting::WebhookUrl => {
                self.webhook = Some(WebhookConfig::new(value).map_err(invalid)?);
            }
            Setting::WebhookSecret => {
                if value.is_empty() {
                    return Err(invalid("must not be empty".to_owned()));
                }
                self.webhook_secret = Some(Secret(value.to_owned()));
            }
            Setting::WorkerThreads => {
                self.worker_threads = Some(count(value, 1, WORKER_THREADS_MAX).map_err(invalid)?);
            }
            Setting::AdminKey => {
                self.edge.admin_key = Some(
                    AdminKey::new(value).ok_or_else(|| invalid("must not be empty".to_owned()))?,
                );
            }
            Setting::TlsCert | Setting::TlsKey | Setting::TlsCa => {
                if value.is_empty() {
                    return Err(invalid("must not be empty".to_owned()));
                }
                let path = PathBuf::from(value);
                let tls = self.tls.get_or_insert_with(|| TlsPaths {
                    cert: PathBuf::new(),
                    key: PathBuf::new(),
                    ca: PathBuf::new(),
                });
                match setting {
                    Setting::TlsCert => tls.cert = path,
                    Setting::TlsKey => tls.key = path,
                    _ => tls.ca = path,
                }
            }
        }
        Ok(())
    }

    /// Checks the settings against each other once every source is in.
    fn check(&self, sources: &Sources) -> Result<(), ConfigError> {
        if let Some(addr) = self.cluster_addr
            && addr.ip().is_unspecified()
        {
            return Err(ConfigError::Invalid {
                key: sources.name(Setting::ClusterAddr),
                message: format!(
                    "{addr}: members learn this address from the node and dial it; \
                     give one they can reach (the node's own IP)"
                ),
            });
        }
        if self.webhook_secret.is_some() && self.webhook.is_none() {
            return Err(ConfigError::Invalid {
                key: sources.name(Setting::WebhookSecret),
                message: "signs webhook requests; set the webhook URL too".to_owned(),
            });
        }
        let clustered = self.cluster_addr.is_some() || !self.join.is_empty();
        if clustered && self.cookie.is_none() {
            return Err(ConfigError::Invalid {
                key: sources.name(Setting::Cookie),
                message: "required when the node joins a cluster (--cluster or --join)".to_owned(),
            });
        }
        if let Some(tls) = &self.tls {
            for (setting, path) in [
                (Setting::TlsCert, &tls.cert),
                (Setting::TlsKey, &tls.key),
                (Setting::TlsCa, &tls.ca),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(ConfigError::Invalid {
                        key: sources.name(setting),
                        message: "node-link TLS needs a certificate, its key and the CA".to_owned(),
                    });
                }
            }
            if !clustered {
                return Err(ConfigError::Invalid {
                    key: sources.name(Setting::ClusterAddr),
                    message: "TLS settings are for node links; set --cluster or --join".to_owned(),
                });
            }
        }
        if let Some(shards) = &self.user_shards {
            let count = self.users_shards.count();
            if let Some(shard) = shards.iter().find(|&&shard| shard >= count) {
                return Err(ConfigError::Invalid {
                    key: sources.name(Setting::Services),
                    message: format!(
                        "users#{shard} is not a shard: users has {count} (set --users-shards)"
                    ),
                });
            }
        }
        if !clustered
            && (self.services.len() != ShopService::ALL.len() || self.user_shards.is_some())
        {
            return Err(ConfigError::Invalid {
                key: sources.name(Setting::Services),
                message: "a node outside a cluster must run every service; \
                          set --cluster to run a share of them"
                    .to_owned(),
            });
        }
        Ok(())
    }

    /// Threads that run the node's tasks: as set, else one per core this
    /// process may use (its CPU affinity and cgroup quota, as
    /// `std::thread::available_parallelism` reads them; 1 when unknown).
    #[must_use]
    pub fn worker_threads(&self) -> usize {
        self.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// Whether this node is a cluster member.
    #[must_use]
    pub fn is_clustered(&self) -> bool {
        self.cluster_addr.is_some() || !self.join.is_empty()
    }
}

/// The flags of `args`, paired with their keys.
fn flags(args: &ServeArgs) -> [(Key, Option<&str>); 29] {
    fn value(v: &Option<String>) -> Option<&str> {
        v.as_deref()
    }
    KEYS.map(|key| {
        let v = match key.setting {
            Setting::HttpAddr => value(&args.http),
            Setting::DataDir => value(&args.data_dir),
            Setting::Node => value(&args.node),
            Setting::RequestTimeoutMs => value(&args.request_timeout_ms),
            Setting::BodyLimitBytes => value(&args.body_limit_bytes),
            Setting::HeaderReadTimeoutMs => value(&args.header_read_timeout_ms),
            Setting::ConcurrencyLimit => value(&args.concurrency_limit),
            Setting::ConnectionsMax => value(&args.connections_max),
            Setting::DrainTimeoutMs => value(&args.drain_timeout_ms),
            Setting::ShutdownTimeoutMs => value(&args.shutdown_timeout_ms),
            Setting::PaymentsDeclineOver => value(&args.payments_decline_over),
            Setting::PaymentsFailureRate => value(&args.payments_failure_rate),
            Setting::PaymentsLatencyMs => value(&args.payments_latency_ms),
            Setting::ClusterAddr => value(&args.cluster),
            Setting::Join => value(&args.join),
            Setting::Cookie => value(&args.cookie),
            Setting::Services => value(&args.services),
            Setting::UsersShards => value(&args.users_shards),
            Setting::TlsCert => value(&args.tls_cert),
            Setting::TlsKey => value(&args.tls_key),
            Setting::TlsCa => value(&args.tls_ca),
            Setting::AdminKey => value(&args.admin_key),
            Setting::CircuitTimeouts => value(&args.circuit_timeouts),
            Setting::CircuitOpenMs => value(&args.circuit_open_ms),
            Setting::ApiKeys => value(&args.api_keys),
            Setting::ApiRateLimit => value(&args.api_rate_limit),
            Setting::WebhookUrl => value(&args.webhook_url),
            Setting::WebhookSecret => value(&args.webhook_secret),
            Setting::WorkerThreads => value(&args.worker_threads),
        };
        (key, v)
    })
}

/// Which source last set each setting, so a check across settings names
/// the key as the user wrote it.
#[derive(Debug, Default)]
struct Sources(Vec<(Setting, &'static str)>);

impl Sources {
    fn set(&mut self, setting: Setting, name: &'static str) {
        self.0.retain(|(s, _)| *s != setting);
        self.0.push((setting, name));
    }

    /// The name that set `setting`, or its flag when no source did.
    fn name(&self, setting: Setting) -> String {
        self.0
            .iter()
            .find(|(s, _)| *s == setting)
            .map(|(_, name)| *name)
            .or_else(|| KEYS.iter().find(|k| k.setting == setting).map(|k| k.flag))
            .unwrap_or("?")
            .to_owned()
    }
}

/// The items of a comma-separated list, trimmed; empty items skipped.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn flatten<'a>(prefix: &str, table: &'a toml::Table, out: &mut Vec<(String, &'a toml::Value)>) {
    for (name, value) in table {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&full, inner, out),
            other => out.push((full, other)),
        }
    }
}

fn millis(value: &str, min: u64, max: u64) -> Result<Duration, String> {
    let ms: u64 = value
        .parse()
        .map_err(|_| format!("invalid number of milliseconds {value:?}"))?;
    if ms < min || ms > max {
        return Err(format!("{ms} is not between {min} and {max} ms"));
    }
    Ok(Duration::from_millis(ms))
}

fn count(value: &str, min: u64, max: u64) -> Result<usize, String> {
    let n: u64 = value
        .parse()
        .map_err(|_| format!("invalid number {value:?}"))?;
    if n < min || n > max {
        return Err(format!("{n} is not between {min} and {max}"));
    }
    usize::try_from(n).map_err(|_| format!("{n} is too large for this machine"))
}

/// The `BULWARK_*` variables of `env` that no setting reads (typos, most
/// likely), for a warning at start-up.
#[must_use]
pub fn unknown_env_keys(env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("BULWARK_"))
        .filter(|name| !KEYS.iter().any(|k| k.env == name.as_str()))
        .filter(|name| !ENV_OTHER.contains(&name.as_str()))
        .cloned()
        .collect()
}

/// The process environment as UTF-8 pairs; variables that are not UTF-8
/// are skipped (no setting could use them).
#[must_use]
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v): (OsString, OsString)| {
            Some((k.into_string().ok()?, v.into_string().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_run_one_node_on_loopback_8080_under_data() {
        let config = Config::load(&ServeArgs::default(), env(&[])).unwrap();
        assert_eq!(config.http_addr.to_string(), HTTP_ADDR_DEFAULT);
        assert_eq!(config.node_data_dir(), PathBuf::from("./data/n1"));
        assert_eq!(config.payments.decline_over_cents, None);
    }

    #[test]
    fn a_bad_env_value_is_refused_naming_the_variable() {
        let err = Config::load(&ServeArgs::default(), env(&[("BULWARK_HTTP", "abc")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"BULWARK_HTTP: invalid socket address "abc""#
        );
        let err = Config::load(
            &ServeArgs::default(),
            env(&[("BULWARK_PAYMENTS_FAILURE_RATE", "1.5")]),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("BULWARK_PAYMENTS_FAILURE_RATE: "),
            "{err}"
        );
    }

    #[test]
    fn flags_beat_env_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bulwark.toml");
        std::fs::write(
            &file,
            "node = \"from-file\"\ndata_dir = \"/tmp/file\"\n[http]\naddr = \"127.0.0.1:1\"\n\
             [payments]\ndecline_over = 100.5\nlatency_ms = 7\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            http: Some("127.0.0.1:3".to_owned()),
            ..ServeArgs::default()
        };
        let config = Config::load(
            &args,
            env(&[
                ("BULWARK_HTTP", "127.0.0.1:2"),
                ("BULWARK_NODE", "from-env"),
            ]),
        )
        .unwrap();
        assert_eq!(config.http_addr.port(), 3);
        assert_eq!(config.node, "from-env");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/file"));
        assert_eq!(config.payments.decline_over_cents, Some(10_050));
        assert_eq!(config.payments.latency_ms, 7);
    }

    #[test]
    fn an_unknown_toml_key_is_refused_naming_it() {
        let mut config = Config::default();
        let err = config
            .apply_toml(
                Path::new("b.toml"),
                "[http]\nadress = \"x\"\n",
                &mut Sources::default(),
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "b.toml: unknown key `http.adress`");
    }

    #[test]
    fn decline_over_is_read_in_currency_units() {
        let config = Config::load(
            &ServeArgs::default(),
            env(&[("BULWARK_PAYMENTS_DECLINE_OVER", "100.00")]),
        )
        .unwrap();
        assert_eq!(config.payments.decline_over_cents, Some(10_000));
        let err = Config::load(
            &ServeArgs::default(),
            env(&[("BULWARK_PAYMENTS_DECLINE_OVER", "1.005")]),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("BULWARK_PAYMENTS_DECLINE_OVER: "),
            "{err}"
        );
    }

    #[test]
    fn circuit_settings_are_read_from_every_source_and_zero_turns_breaking_off() {
        assert_eq!(Config::default().breaker, BreakerConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bulwark.toml");
        std::fs::write(&file, "[circuit]\ntimeouts = 7\nopen_ms = 2500\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let config = Config::load(&args, env(&[])).unwrap();
        assert_eq!(config.breaker.timeouts_to_open, 7);
        assert_eq!(config.breaker.open_for, Duration::from_millis(2500));
        let config = Config::load(&args, env(&[("BULWARK_CIRCUIT_TIMEOUTS", "0")])).unwrap();
        assert_eq!(config.breaker.timeouts_to_open, 0);
        let flags = ServeArgs {
            circuit_open_ms: Some("0".to_owned()),
            ..ServeArgs::default()
        };
        let err = Config::load(&flags, env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("--circuit-open-ms: "), "{err}");
        let err = Config::load(
            &ServeArgs::default(),
            env(&[("BULWARK_CIRCUIT_TIMEOUTS", "many")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("BULWARK_CIRCUIT_TIMEOUTS: "),
            "{err}"
        );
    }

    #[test]
    fn worker_threads_default_to_the_usable_cores_and_are_read_from_every_source() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let config = Config::load(&ServeArgs::default(), env(&[])).unwrap();
        assert_eq!(config.worker_threads, None);
        assert_eq!(config.worker_threads(), cores);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bulwark.toml");
        std::fs::write(&file, "worker_threads = 3\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        assert_eq!(Config::load(&args, env(&[])).unwrap().worker_threads(), 3);
        let config = Config::load(&args, env(&[("BULWARK_WORKER_THREADS", "1")])).unwrap();
        assert_eq!(config.worker_threads(), 1);
        let flags = ServeArgs {
            worker_threads: Some("2".to_owned()),
            ..args
        };
        let config = Config::load(&flags, env(&[("BULWARK_WORKER_THREADS", "1")])).unwrap();
        assert_eq!(config.worker_threads(), 2);
        for bad in ["0", "-1", "many", "1025"] {
            let err = Config::load(
                &ServeArgs::default(),
                env(&[("BULWARK_WORKER_THREADS", bad)]),
            )
            .unwrap_err();
            assert!(
                err.to_string().starts_with("BULWARK_WORKER_THREADS: "),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let args = ServeArgs {
            node: Some("../etc".to_owned()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args, env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("--node: "), "{err}");
        let args = ServeArgs {
            concurrency_limit: Some("0".to_owned()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args, env(&[])).unwrap_err();
        assert!(
            err.to_string().starts_with("--concurrency-limit: "),
            "{err}"
        );
    }

    #[test]
    fn cluster_settings_are_read_from_every_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bulwark.toml");
        std::fs::write(
            &file,
            "services = [\"users\", \"orders\"]\n[cluster]\naddr = \"127.0.0.1:7001\"\n\
             join = [\"127.0.0.1:7002\", \"127.0.0.1:7003\"]\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let config = Config::load(&args, env(&[("BULWARK_COOKIE", "s3cret")])).unwrap();
        assert!(config.is_clustered());
        assert_eq!(config.cluster_addr, Some("127.0.0.1:7001".parse().unwrap()));
        assert_eq!(config.join.len(), 2);
        assert_eq!(config.services, [ShopService::Users, ShopService::Orders]);
        assert_eq!(config.cookie.as_ref().map(Secret::expose), Some("s3cret"));
        assert_eq!(format!("{:?}", config.cookie), "Some(Secret(<redacted>))");
        let args = ServeArgs {
            join: Some("127.0.0.1:1, 127.0.0.1:2".to_owned()),
            cookie: Some("c".to_owned()),
            services: Some("products".to_owned()),
            ..ServeArgs::default()
        };
        let config = Config::load(&args, env(&[])).unwrap();
        assert_eq!(config.join.len(), 2);
        assert_eq!(config.services, [ShopService::Products]);
    }

    #[test]
    fn a_cluster_without_a_cookie_or_a_partial_single_node_is_refused() {
        let args = ServeArgs {
            cluster: Some("127.0.0.1:7001".to_owned()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args, env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("--cookie: required"), "{err}");
        let err =
            Config::load(&ServeArgs::default(), env(&[("BULWARK_SERVICES", "users")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("BULWARK_SERVICES: a node outside a cluster"),
            "{err}"
        );
        let args = ServeArgs {
            services: Some("users,carts".to_owned()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args, env(&[])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"--services: unknown service "carts""#),
            "{err}"
        );
        let err =
            Config::load(&ServeArgs::default(), env(&[("BULWARK_JOIN", "nowhere")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"BULWARK_JOIN: invalid socket address "nowhere""#
        );
    }

    #[test]
    fn tls_needs_all_three_files_and_a_cluster() {
        let args = ServeArgs {
            cluster: Some("127.0.0.1:0".to_owned()),
            cookie: Some("c".to_owned()),
            tls_cert: Some("node.pem".to_owned()),
            tls_key: Some("node.key".to_owned()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args, env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("--tls-ca: "), "{err}");
        let config = Config::load(&args, env(&[("BULWARK_CLUSTER_TLS_CA", "ca.pem")])).unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.ca, PathBuf::from("ca.pem"));
        assert_eq!(tls.cert, PathBuf::from("node.pem"));
        let args = ServeArgs {
            tls_cert: Some("a".to_owned()),
            tls_key: Some("b".to_owned()),
            tls_ca: Some("c".to_owned()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args, env(&[])).unwrap_err();
        assert!(
            err.to_string().starts_with("--cluster: TLS settings"),
            "{err}"
        );
    }

    #[test]
    fn users_shards_are_named_in_the_services_list() {
        let args = ServeArgs {
            cluster: Some("127.0.0.1:0".to_owned()),
            cookie: Some("c".to_owned()),
            services: Some("users#1,products".to_owned()),
            users_shards: Some("2".to_owned()),
            ..ServeArgs::default()
        };
        let config = Config::load(&args, env(&[])).unwrap();
        assert_eq!(config.services, [ShopService::Users, ShopService::Products]);
        assert_eq!(config.user_shards, Some(vec![1]));
        assert_eq!(config.users_shards.count(), 2);
        let args = ServeArgs {
            users_shards: None,
            ..args
        };
        let err = Config::load(&args, env(&[])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--services: users#1 is not a shard"),
            "{err}"
        );
        let args = ServeArgs {
            services: Some("users,users#0".to_owned()),
            users_shards: Some("2".to_owned()),
            ..args
        };
        let err = Config::load(&args, env(&[])).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
        let err =
            Config::load(&ServeArgs::default(), env(&[("BULWARK_USERS_SHARDS", "0")])).unwrap_err();
        assert!(
            err.to_string().starts_with("BULWARK_USERS_SHARDS: "),
            "{err}"
        );
    }

    #[test]
    fn the_admin_key_is_read_from_every_source_and_never_printed() {
        assert_eq!(Config::default().edge.admin_key, None);
        let config =
            Config::load(&ServeArgs::default(), env(&[("BULWARK_ADMIN_KEY", "k1")])).unwrap();
        let key = config.edge.admin_key.unwrap();
        assert!(key.matches("k1") && !key.matches("k2"));
        assert_eq!(format!("{key:?}"), "AdminKey(<redacted>)");
        let args = ServeArgs {
            admin_key: Some(String::new()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args, env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("--admin-key: "), "{err}");
        let mut config = Config::default();
        config
            .apply_toml(
                Path::new("b.toml"),
                "[admin]\nkey = \"k3\"\n",
                &mut Sources::default(),
            )
            .unwrap();
        assert!(config.edge.admin_key.unwrap().matches("k3"));
    }

    #[test]
    fn api_keys_and_the_rate_limit_are_read_from_every_source() {
        let defaults = Config::default();
        assert!(defaults.edge.api_keys.is_empty());
        assert_eq!(defaults.edge.rate_limit, None);
        let vars = env(&[
            (
                "BULWARK_API_KEYS",
                "web:read+write:aaaaaaaaaaaaaaaa, ops:read+admin:bbbbbbbbbbbbbbbb",
            ),
            ("BULWARK_API_RATE_LIMIT", "100/s burst 10"),
        ]);
        let config = Config::load(&ServeArgs::default(), vars).unwrap();
        let names: Vec<&str> = config.edge.api_keys.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["web", "ops"]);
        assert_eq!(
            config
                .edge
                .api_keys
                .find("bbbbbbbbbbbbbbbb")
                .map(|k| k.name()),
            Some("ops")
        );
        assert!(!format!("{config:?}").contains("aaaaaaaa"));
        assert_eq!(
            config.edge.rate_limit.map(|l| l.to_string()),
            Some("100/s burst 10".to_owned())
        );

        let mut config = Config::default();
        config
            .apply_toml(
                Path::new("c.toml"),
                "[api]\nkeys = [\"web:read:cccccccccccccccc\"]\nrate_limit = \"30/min\"\n",
                &mut Sources::default(),
            )
            .unwrap();
        assert_eq!(config.edge.api_keys.iter().count(), 1);
        assert_eq!(
            config.edge.rate_limit.map(|l| l.to_string()),
            Some("30/min burst 30".to_owned())
        );

        for (vars, starts) in [
            (
                [("BULWARK_API_KEYS", "web:read:short")],
                "BULWARK_API_KEYS: key 1: the secret is shorter",
            ),
            (
                [("BULWARK_API_KEYS", " , ")],
                "BULWARK_API_KEYS: lists no key",
            ),
            (
                [(
                    "BULWARK_API_KEYS",
                    "a:read:dddddddddddddddd,b:write:dddddddddddddddd",
                )],
                "BULWARK_API_KEYS: keys 1 and 2 have the same secret",
            ),
            (
                [("BULWARK_API_RATE_LIMIT", "100/day")],
                "BULWARK_API_RATE_LIMIT: invalid rate limit",
            ),
        ] {
            let err = Config::load(&ServeArgs::default(), env(&vars)).unwrap_err();
            assert!(err.to_string().starts_with(starts), "{err}");
            assert!(!err.to_string().contains("dddd"), "{err}");
        }
        let args = ServeArgs {
            api_rate_limit: Some("off".to_owned()),
            ..ServeArgs::default()
        };
        let config = Config::load(&args, env(&[("BULWARK_API_RATE_LIMIT", "5/s")])).unwrap();
        assert_eq!(config.edge.rate_limit, None);
    }

    #[test]
    fn a_cluster_address_others_cannot_dial_is_refused() {
        let vars = env(&[("BULWARK_CLUSTER", "0.0.0.0:9000"), ("BULWARK_COOKIE", "c")]);
        let err = Config::load(&ServeArgs::default(), vars).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("BULWARK_CLUSTER: 0.0.0.0:9000: members learn"),
            "{err}"
        );
    }

    #[test]
    fn the_webhook_url_and_secret_are_checked_and_combined() {
        assert_eq!(Config::default().webhook, None);
        let vars = env(&[
            ("BULWARK_WEBHOOK_URL", "https://hooks.example.com/b"),
            ("BULWARK_WEBHOOK_SECRET", "hush-hush"),
        ]);
        let config = Config::load(&ServeArgs::default(), vars).unwrap();
        let webhook = config.webhook.unwrap();
        assert_eq!(webhook.url(), "https://hooks.example.com/b");
        let signed = WebhookConfig::new("https://hooks.example.com/b")
            .unwrap()
            .with_secret("hush-hush")
            .unwrap();
        assert_eq!(webhook, signed);
        assert_eq!(config.webhook_secret, None);
        assert!(!format!("{webhook:?}").contains("hush"));

        let args = ServeArgs {
            webhook_url: Some("ftp://x/y".to_owned()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args, env(&[])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--webhook-url: unsupported scheme"),
            "{err}"
        );
        let err = Config::load(
            &ServeArgs::default(),
            env(&[("BULWARK_WEBHOOK_SECRET", "s")]),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("BULWARK_WEBHOOK_SECRET: signs webhook requests"),
            "{err}"
        );
    }

    #[test]
    fn unknown_bulwark_variables_are_reported() {
        let vars = env(&[
            ("BULWARK_HTPP", "x"),
            ("BULWARK_HTTP", "127.0.0.1:1"),
            ("BULWARK_LOG_FORMAT", "json"),
            ("HOME", "/root"),
        ]);
        assert_eq!(unknown_env_keys(&vars), vec!["BULWARK_HTPP".to_owned()]);
    }
}
