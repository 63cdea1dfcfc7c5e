//! The `serve` mode, run in the child process: a bulwark node with the echo
//! service accepting node links, and a tonic echo server, both on loopback
//! ports chosen by the system. Prints `<link port> <grpc port>` as one line
//! on stdout, then serves until its stdin closes (the parent exited or is
//! done).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result};
use bulwark_runtime::cluster::accept_links;
use bulwark_runtime::cluster::handshake::Cookie;
use bulwark_runtime::{Node, NodeConfig, ServiceConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::echo::RemoteEcho;
use crate::grpc::EchoImpl;
use crate::grpc::proto::echo_server::EchoServer;
use crate::{COOKIE, SERVER_NODE};

/// Runs the serving side until stdin closes.
pub(crate) async fn serve() -> Result<()> {
    let node = Node::builder(NodeConfig::new(SERVER_NODE))
        .service(RemoteEcho, ServiceConfig::default())
        .start()
        .await
        .context("starting the serving node")?;
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let links = TcpListener::bind(loopback)
        .await
        .context("binding the node link listener")?;
    let link_port = links.local_addr().context("link listener address")?.port();
    let stop = CancellationToken::new();
    let cookie = Cookie::new(COOKIE).context("the bench cookie")?;
    // The link's own tasks keep it alive; nothing here needs its handle.
    let accepting = tokio::spawn(accept_links(
        links,
        SERVER_NODE.to_owned(),
        cookie,
        None,
        node.router().clone(),
        Arc::new(|_link| {}),
        stop.clone(),
    ));

    let incoming = TcpIncoming::bind(loopback)
        .context("binding the gRPC listener")?
        .with_nodelay(Some(true));
    let grpc_port = incoming
        .local_addr()
        .context("gRPC listener address")?
        .port();
    let grpc_stop = stop.clone();
    let grpc = tokio::spawn(
        Server::builder()
            .add_service(EchoServer::new(EchoImpl))
            .serve_with_incoming_shutdown(incoming, grpc_stop.cancelled_owned()),
    );

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{link_port} {grpc_port}").context("printing the ports")?;
    stdout.flush().context("printing the ports")?;
    drop(stdout);

    // Serve until the parent closes our stdin (or exits, which closes it).
    // (A blocking thread: tokio's stdin needs a feature the workspace does
    // not enable.)
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await
        .context("the stdin reader panicked")?
        .context("reading stdin")?;

    stop.cancel();
    accepting.await.context("the link acceptor panicked")?;
    grpc.await
        .context("the gRPC server panicked")?
        .context("the gRPC server failed")?;
    node.shutdown().await;
    Ok(())
}
