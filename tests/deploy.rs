//! The deployment files (`deploy/`) against the real configuration loader
//! and route table: every `BULWARK_*` setting they give is one the binary
//! knows and accepts, the compose cluster's nodes join each other on the
//! addresses they listen on and run every service between them, and the
//! Kubernetes probes hit real routes. (This machine has no container
//! engine, so the images themselves are not built here.)

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;

use bulwark::Config;
use bulwark::config::{ServeArgs, unknown_env_keys};
use bulwark_actors::ShopService;

fn read(path: &str) -> String {
    fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Loads `env` the way `bulwark serve` does, refusing unknown variables.
fn load(what: &str, env: &[(String, String)]) -> Config {
    assert_eq!(unknown_env_keys(env), Vec::<String>::new(), "{what}");
    Config::load(&ServeArgs::default(), env.to_vec()).unwrap_or_else(|err| panic!("{what}: {err}"))
}

/// `BULWARK_X=value` pairs of the Dockerfile's `ENV` instruction.
fn dockerfile_env(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| line.trim().strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn the_dockerfile_sets_only_settings_the_binary_accepts() {
    let text = read("deploy/Dockerfile");
    let env = dockerfile_env(&text);
    assert!(env.iter().any(|(k, _)| k == "BULWARK_HTTP"), "{env:?}");
    let config = load("Dockerfile", &env);
    assert!(config.http_addr.ip().is_unspecified());
    assert_eq!(config.data_dir, std::path::Path::new("/data"));
    assert!(text.contains("--bin bulwark"));
    assert!(text.contains(r#"CMD ["serve"]"#));
    let port = config.http_addr.port().to_string();
    assert!(text.contains(&format!("EXPOSE {port}")), "EXPOSE {port}");
}

/// Each compose service's `- BULWARK_X=value` environment entries, with
/// `${VAR:?...}` references replaced by `substitute`.
fn compose_env(text: &str, substitute: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut services: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut in_services = false;
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_services = line == "services:";
            current = None;
            continue;
        }
        if in_services
            && let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            current = Some(name.to_owned());
            continue;
        }
        if let (Some(service), Some(entry)) = (&current, line.trim().strip_prefix("- BULWARK_"))
            && let Some((key, value)) = entry.split_once('=')
        {
            let value = if value.starts_with("${") {
                substitute.to_owned()
            } else {
                value.to_owned()
            };
            services
                .entry(service.clone())
                .or_default()
                .push((format!("BULWARK_{key}"), value));
        }
    }
    services
}

#[test]
fn the_compose_cluster_joins_on_its_own_addresses_and_runs_every_service() {
    let text = read("deploy/compose.yaml");
    let nodes = compose_env(&text, "compose-test-cookie");
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["n1", "n2", "n3"]);
    let configs: BTreeMap<&str, Config> = nodes
        .iter()
        .map(|(name, env)| (name.as_str(), load(name, env)))
        .collect();
    let mut services = Vec::new();
    for (name, config) in &configs {
        assert_eq!(config.node, *name);
        assert!(config.is_clustered(), "{name}");
        let addr = config.cluster_addr.unwrap();
        assert!(
            !addr.ip().is_unspecified(),
            "{name} must announce a dialable address"
        );
        assert!(
            text.contains(&format!("ipv4_address: {}", addr.ip())),
            "{name} listens on {addr}, not its network address"
        );
        for seed in &config.join {
            assert!(
                configs
                    .values()
                    .any(|other| other.cluster_addr == Some(*seed)),
                "{name} joins {seed}, where no node listens"
            );
        }
        services.extend(config.services.iter().copied());
    }
    services.sort_unstable();
    assert_eq!(services, ShopService::ALL);
}

#[test]
fn the_kubernetes_manifest_sets_accepted_settings_and_probes_real_routes() {
    let text = read("deploy/k8s/bulwark.yaml");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    // `- name: BULWARK_X` followed by `value: "..."` (secret references
    // are filled in with a valid key).
    let mut env = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("- name: BULWARK_") else {
            continue;
        };
        let value = match lines[i + 1].strip_prefix("value: ") {
            Some(value) => value.trim_matches('"').to_owned(),
            None if name == "API_KEYS" => "web:read+write:0123456789abcdef".to_owned(),
            None => panic!("BULWARK_{name} has no value"),
        };
        env.push((format!("BULWARK_{name}"), value));
    }
    let config = load("k8s", &env);
    let port = config.http_addr.port();
    assert!(text.contains(&format!("containerPort: {port}")));
    assert!(!config.edge.api_keys.is_empty());
    let routes: Vec<String> = bulwark_http::routes()
        .into_iter()
        .filter(|(method, _)| *method == reqwest::Method::GET)
        .map(|(_, path)| path.to_owned())
        .collect();
    let probes: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("path: "))
        .collect();
    assert_eq!(probes, ["/health", "/ready"]);
    for path in probes {
        assert!(routes.iter().any(|r| r == path), "{path} is not a route");
    }
}
