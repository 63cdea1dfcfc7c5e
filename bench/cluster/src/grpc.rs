//! The gRPC baseline: a tonic unary `Echo` call carrying the same payload
//! as the bulwark echo service, generated from `proto/echo.proto`.

/// The code tonic-prost-build generated (messages, client, server).
pub(crate) mod proto {
    #![allow(
        unreachable_pub,
        missing_debug_implementations,
        clippy::all,
        clippy::pedantic
    )]
    tonic::include_proto!("bench.echo");
}

use proto::echo_server::Echo;
use proto::{EchoReply, EchoRequest};
use tonic::{Request, Response, Status};

/// The tonic echo service: answers with the payload it got.
#[derive(Debug, Default)]
pub(crate) struct EchoImpl;

#[tonic::async_trait]
impl Echo for EchoImpl {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(EchoReply {
            payload: request.into_inner().payload,
        }))
    }
}
