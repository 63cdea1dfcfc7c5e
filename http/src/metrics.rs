//! HTTP metrics in the Prometheus text format, kept by hand: a request
//! counter by method, route and status, and a latency histogram by route.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bulwark_runtime::{CircuitState, MetricKind, MetricSample, Node, ServiceStatus};

/// Upper bounds of the latency histogram's buckets, in seconds: from a
/// cached read (~1 ms) to the longest request timeout worth configuring.
const LATENCY_BUCKETS_SECS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Label of requests that matched no route. Unknown paths are folded into
/// one series so that a scan of random URLs cannot grow the metrics
/// without bound.
pub(crate) const ROUTE_UNMATCHED: &str = "unmatched";

#[derive(Debug, Default)]
struct Histogram {
    /// One count per bucket of [`LATENCY_BUCKETS_SECS`] (not cumulative).
    buckets: [u64; LATENCY_BUCKETS_SECS.len()],
    count: u64,
    sum_secs: f64,
}

/// What is kept per route.
#[derive(Debug, Default)]
struct RouteStats {
    /// (method, status) → requests.
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Inner {
    /// By route. Routes are the router's templates, methods and statuses
    /// are finite: the maps are bounded. Keyed by route so that a request
    /// of a route already seen is counted without allocating.
    routes: BTreeMap<String, RouteStats>,
}

/// The edge's request metrics. A std mutex: it is held for a few map
/// operations and never across an `.await`.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "PATCH" => "PATCH",
            "HEAD" => "HEAD",
            "OPTIONS" => "OPTIONS",
            _ => "OTHER",
        };
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.routes.contains_key(route) {
            inner.routes.insert(route.to_owned(), RouteStats::default());
        }
        let Some(stats) = inner.routes.get_mut(route) else {
            return;
        };
        *stats.requests.entry((method, status)).or_default() += 1;
        let histogram = &mut stats.latency;
        let secs = latency.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS_SECS.iter().position(|&bound| secs <= bound) {
            histogram.buckets[i] += 1;
        }
        histogram.count += 1;
        histogram.sum_secs += secs;
    }

    /// The metrics, with the node's service status and bulkhead load, in
    /// the Prometheus text format (version 0.0.4).
    #[must_use]
    pub fn render(&self, node: &Node) -> String {
        let mut out = String::new();
        {
            let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            out.push_str(
                "# HELP bulwark_http_requests_total HTTP requests by method, route and status.\n",
            );
            out.push_str("# TYPE bulwark_http_requests_total counter\n");
            for (route, stats) in &inner.routes {
                let route = escape(route);
                for ((method, status), count) in &stats.requests {
                    let _ = writeln!(
                        out,
                        "bulwark_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}",
                    );
                }
            }
            out.push_str(
                "# HELP bulwark_http_request_duration_seconds HTTP request latency by route.\n",
            );
            out.push_str("# TYPE bulwark_http_request_duration_seconds histogram\n");
            for (route, stats) in &inner.routes {
                let route = escape(route);
                let histogram = &stats.latency;
                let mut cumulative = 0;
                for (bound, count) in LATENCY_BUCKETS_SECS.iter().zip(histogram.buckets) {
                    cumulative += count;
                    let _ = writeln!(
                        out,
                        "bulwark_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out,
                    "bulwark_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "bulwark_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    histogram.sum_secs
                );
                let _ = writeln!(
                    out,
                    "bulwark_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    histogram.count
                );
            }
        }
        out.push_str(
            "# HELP bulwark_service_up Whether a local service's entry actor is running.\n",
        );
        out.push_str("# TYPE bulwark_service_up gauge\n");
        let services = node.router().services();
        for (name, status) in &services {
            let up = u8::from(*status == ServiceStatus::Up);
            let _ = writeln!(out, "bulwark_service_up{{service=\"{name}\"}} {up}");
        }
        out.push_str("# HELP bulwark_service_mailbox_len Messages queued for a service.\n");
        out.push_str("# TYPE bulwark_service_mailbox_len gauge\n");
        for (name, _) in &services {
            if let Some(load) = node.router().load(name) {
                let _ = writeln!(
                    out,
                    "bulwark_service_mailbox_len{{service=\"{name}\"}} {}",
                    load.mailbox_len
                );
            }
        }
        out.push_str(
            "# HELP bulwark_service_in_flight Calls sent to a service and not yet answered.\n",
        );
        out.push_str("# TYPE bulwark_service_in_flight gauge\n");
        for (name, _) in &services {
            if let Some(load) = node.router().load(name) {
                let _ = writeln!(
                    out,
                    "bulwark_service_in_flight{{service=\"{name}\"}} {}",
                    load.in_flight
                );
            }
        }
        out.push_str(
            "# HELP bulwark_actor_restarts_total Restarts of a supervised actor by its supervisor.\n",
        );
        out.push_str("# TYPE bulwark_actor_restarts_total counter\n");
        for actor in node.actors() {
            let _ = writeln!(
                out,
                "bulwark_actor_restarts_total{{path=\"{}\"}} {}",
                escape(&actor.path),
                actor.restarts
            );
        }
        out.push_str(
            "# HELP bulwark_circuit_open Whether calls to a target fail fast (1: open or half-open, 0: closed).\n",
        );
        out.push_str("# TYPE bulwark_circuit_open gauge\n");
        for (target, state) in node.router().circuits() {
            let open = u8::from(state != CircuitState::Closed);
            let _ = writeln!(
                out,
                "bulwark_circuit_open{{target=\"{}\"}} {open}",
                escape(&target)
            );
        }
        render_samples(&mut out, node.metric_samples());
        out.push_str(
            "# HELP bulwark_health_check_ok Whether a node health check passes (one per store: a failed sync fails it).\n",
        );
        out.push_str("# TYPE bulwark_health_check_ok gauge\n");
        for check in node.health() {
            let ok = u8::from(check.failure.is_none());
            let _ = writeln!(
                out,
                "bulwark_health_check_ok{{check=\"{}\"}} {ok}",
                escape(&check.name)
            );
        }
        out
    }
}

/// Writes the samples of the node's metric sources, each family once (its
/// `HELP` and `TYPE`, then its samples) in the order families first appear.
fn render_samples(out: &mut String, samples: Vec<MetricSample>) {
    let mut families: Vec<(&'static str, Vec<MetricSample>)> = Vec::new();
    for sample in samples {
        match families.iter_mut().find(|(name, _)| *name == sample.name) {
            Some((_, family)) => family.push(sample),
            None => families.push((sample.name, vec![sample])),
        }
    }
    for (name, family) in families {
        let kind = match family[0].kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {name} {}", family[0].help);
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for sample in family {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(label, value)| format!("{label}=\"{}\"", escape(value)))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {}", sample.value);
            } else {
                let _ = writeln!(out, "{name}{{{}}} {}", labels.join(","), sample.value);
            }
        }
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
