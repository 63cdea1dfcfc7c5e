//! Groundwork of the cluster: the wire codec and the node link's
//! authenticated opening. The link itself (multiplexed calls, heartbeats,
//! membership) and remote routing build on these.

pub mod codec;
pub mod handshake;
