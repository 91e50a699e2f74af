//! The gateway's side of a stdio server: hands the request, its body read whole (a POST was
//! already read and inspected by the router; other bodies are read here, bounded by
//! `gateway.max_body`), to the server's bridge (`crate::stdio`).

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Limited};

use super::conn::ClientBody;
use super::proxy::ForwardBody;
use super::response::{self, Body, UpstreamBody};
use crate::stdio::{Options, Target};

/// Answers `request` through `target`, reading at most `max_body` bytes of body.
pub async fn forward(
    target: &Arc<Target>,
    server: &str,
    max_body: u64,
    options: &Options,
    request: Request<ForwardBody>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match body {
        ForwardBody::Read(bytes) => bytes,
        ForwardBody::Stream(body) => match read_whole(body, max_body, server).await {
            Ok(bytes) => bytes,
            Err(answer) => return answer,
        },
    };
    let (parts_out, body_out) = target.serve(&parts, body, options).await.into_parts();
    Response::from_parts(parts_out, Either::Right(UpstreamBody::bridged(body_out)))
}

async fn read_whole(
    body: ClientBody,
    max_body: u64,
    server: &str,
) -> Result<bytes::Bytes, Response<Body>> {
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    Ok(match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return Err(response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is larger than gateway.max_body",
                Some(server),
            ));
        }
        Err(_) => {
            return Err(response::error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
                Some(server),
            ));
        }
    })
}
