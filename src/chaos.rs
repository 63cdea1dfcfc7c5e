//! `bulwark chaos`: a chaos run (see the `bulwark-chaos` crate) against
//! nodes it starts itself — `bulwark serve` children of this very binary on
//! 127.0.0.1, on a temporary data directory — or against running nodes
//! given with `--target`.
//!
//! Exit codes: 0 when every invariant held, 1 when one failed or the run
//! could not be carried out, 2 for bad flags.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bulwark_chaos::{NemesisConfig, Nodes, Report, RunConfig, Target};
use clap::Args;

/// The payment limit the spawned nodes decline above: the workload's
/// larger orders are declined after reserving stock, so every run also
/// exercises compensation.
const DECLINE_OVER: &str = "20.00";

/// Flags of `bulwark chaos`.
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Nodes to start: 1, or 3 as a cluster (users; products; orders,
    /// payments, notifications).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cluster: usize,
    /// Run against these running nodes' edges instead of starting any
    /// (comma-separated base URLs); needs --admin-key; no node kills.
    #[arg(long, value_name = "URL[,URL...]")]
    pub target: Option<String>,
    /// The nodes' admin key (generated for nodes this command starts).
    #[arg(long, value_name = "KEY")]
    pub admin_key: Option<String>,
    /// How long the workload runs, in seconds.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub duration_s: u64,
    /// The seed; the same seed replays the same schedule.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Pause between two actor kills, drawn from MIN-MAX ms; `0` disables
    /// actor kills.
    #[arg(long, value_name = "MIN-MAX", default_value = "10-50")]
    pub kill_interval_ms: String,
    /// Concurrent clients.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub clients: usize,
    /// Node kills (SIGKILL + restart on its data) spread over the run;
    /// default 1 with --cluster 3, else 0.
    #[arg(long, value_name = "N")]
    pub node_kills: Option<u32>,
    /// Keep the nodes' data and logs (`<dir>/n1.log`, ...) here instead of
    /// a temporary directory removed at the end.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The `--kill-interval-ms` range; `None` for `0` (no actor kills).
///
/// # Errors
/// A message naming the flag when the text is not `MIN-MAX` or `0`.
pub fn kill_interval(text: &str) -> anyhow::Result<Option<(u64, u64)>> {
    if text.trim() == "0" {
        return Ok(None);
    }
    let (low, high) = text
        .split_once('-')
        .context("--kill-interval-ms: expected MIN-MAX (e.g. 10-50) or 0")?;
    let low: u64 = low.trim().parse().context("--kill-interval-ms: bad MIN")?;
    let high: u64 = high.trim().parse().context("--kill-interval-ms: bad MAX")?;
    if low == 0 || high < low {
        bail!("--kill-interval-ms: expected 0 < MIN <= MAX");
    }
    Ok(Some((low, high)))
}

/// Runs the chaos run `args` describes and returns its report.
///
/// # Errors
/// Bad flags, nodes that do not start, a shop that cannot be read back.
pub async fn run(args: &ChaosArgs) -> anyhow::Result<Report> {
    let interval = kill_interval(&args.kill_interval_ms)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let mut config = RunConfig {
        seed,
        duration: Duration::from_secs(args.duration_s),
        clients: args.clients.max(1),
        nemesis: interval.map(|kill_interval_ms| NemesisConfig {
            kill_interval_ms,
            targets: Vec::new(),
        }),
        ..RunConfig::default()
    };
    if let Some(edges) = &args.target {
        let admin_key = args
            .admin_key
            .clone()
            .context("--target needs --admin-key")?;
        let target = Target {
            edges: edges
                .split(',')
                .map(|e| e.trim().trim_end_matches('/').to_owned())
                .filter(|e| !e.is_empty())
                .collect(),
            admin_key,
        };
        return Ok(bulwark_chaos::run(&config, target, None).await?);
    }
    if args.cluster != 1 && args.cluster != 3 {
        bail!("--cluster: 1 or 3 nodes");
    }
    config.node_kills = args
        .node_kills
        .unwrap_or(if args.cluster == 3 { 1 } else { 0 });
    let temp = tempfile::tempdir().context("cannot create a temporary data directory")?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let admin_key = args
        .admin_key
        .clone()
        .unwrap_or_else(|| format!("chaos-{seed}-{}", std::process::id()));
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut nodes = Nodes::start(
        &exe,
        args.cluster,
        &data_dir,
        &admin_key,
        vec![
            "--payments-decline-over".to_owned(),
            DECLINE_OVER.to_owned(),
        ],
    )
    .await?;
    let target = Target {
        edges: nodes.edges(),
        admin_key,
    };
    let report = bulwark_chaos::run(&config, target, Some(&mut nodes)).await?;
    drop(nodes);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_intervals_are_ranges_or_zero() {
        assert_eq!(kill_interval("10-50").unwrap(), Some((10, 50)));
        assert_eq!(kill_interval("0").unwrap(), None);
        assert!(kill_interval("50-10").is_err());
        assert!(kill_interval("fast").is_err());
    }
}
