//! The gateway's side of a stdio server: reads the request body whole (bounded by
//! `gateway.max_body`) and hands it to the server's bridge (`crate::stdio`).

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Limited};

use super::conn::ClientBody;
use super::response::{self, Body, UpstreamBody};
use crate::stdio::{Options, Target};

/// Answers `request` through `target`, reading at most `max_body` bytes of body.
pub async fn forward(
    target: &Arc<Target>,
    server: &str,
    max_body: u64,
    options: &Options,
    request: Request<ClientBody>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is larger than gateway.max_body",
                Some(server),
            );
        }
        Err(_) => {
            return response::error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
                Some(server),
            );
        }
    };
    let (parts_out, body_out) = target.serve(&parts, body, options).await.into_parts();
    Response::from_parts(parts_out, Either::Right(UpstreamBody::bridged(body_out)))
}
