//! `GET /api/v1/cluster`: the members this node knows, what they run and
//! whether they are reachable.

use axum::extract::State;
use bulwark_runtime::Node;
use bulwark_runtime::cluster::MemberState;
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::Json;
use crate::state::AppState;

/// The cluster as this node sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClusterBody {
    /// This node's name.
    node: String,
    /// Whether this node is a cluster member (false: a single node).
    clustered: bool,
    /// Every member, this node first.
    members: Vec<MemberBody>,
}

/// One member.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct MemberBody {
    /// The node's name.
    name: String,
    /// Where it accepts node links (absent for a single node).
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<String>,
    /// `local` (this node), `up` or `unreachable`.
    state: &'static str,
    /// The services it runs.
    services: Vec<String>,
}

/// The members of `node`'s cluster; a single node is its only member.
pub(crate) fn members(node: &Node) -> Vec<MemberBody> {
    match node.cluster() {
        Some(cluster) => cluster
            .members()
            .into_iter()
            .map(|m| MemberBody {
                name: m.name,
                addr: m.addr.map(|a| a.to_string()),
                state: match m.state {
                    MemberState::Local => "local",
                    MemberState::Up => "up",
                    MemberState::Unreachable => "unreachable",
                },
                services: m.services,
            })
            .collect(),
        None => vec![MemberBody {
            name: node.name().to_owned(),
            addr: None,
            state: "local",
            services: node
                .router()
                .services()
                .into_iter()
                .map(|(name, _)| name.to_string())
                .collect(),
        }],
    }
}

/// The cluster's members, their services and their state.
#[utoipa::path(get, path = "/api/v1/cluster", tag = "cluster",
    responses((status = 200, description = "The members this node knows", body = ClusterBody)))]
pub(crate) async fn get(State(state): State<AppState>) -> Json<ClusterBody> {
    Json(ClusterBody {
        node: state.node.name().to_owned(),
        clustered: state.node.cluster().is_some(),
        members: members(&state.node),
    })
}
