//! The status page for people at `/` and `/ui/` (off with `gateway.web: false`): the servers
//! shown in the web (`display_in_web`), a page per server with its tools, and client setup.
//!
//! Server-rendered from the same public data as the registry (`registry.rs`): no token, log
//! line, environment value or path ever appears. The CSS and the script are embedded in the
//! binary and served from `/ui/static/`; a strict Content-Security-Policy forbids everything
//! else, inline code included. The script only adds live updates (it polls the registry), so
//! the page works with JavaScript off. Every string a server or the configuration controls
//! goes through [`html::escape`].

mod html;
mod page;
#[cfg(test)]
mod tests;

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{Response, StatusCode};

use super::response::{self, Body};
use crate::config::DaemonConfig;
use crate::directory::Directory;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("live.js");
const ICON: &str = include_str!("icon.svg");

/// Everything the page loads comes from the gateway itself; nothing inline, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// A path of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebRoute<'a> {
    /// `/` or `/ui/`; `base` is the relative way back to `/ui/` from there.
    Index {
        base: &'static str,
    },
    /// `/ui`: redirected to `/ui/`.
    UiRedirect,
    /// `/ui/servers/<name>`.
    Server(&'a str),
    Style,
    Script,
    Icon,
}

/// The page's route for a request path, if it is one of the page's.
pub fn route(path: &str) -> Option<WebRoute<'_>> {
    match path {
        "/" => Some(WebRoute::Index { base: "ui/" }),
        "/ui/" => Some(WebRoute::Index { base: "" }),
        "/ui" => Some(WebRoute::UiRedirect),
        "/ui/static/style.css" => Some(WebRoute::Style),
        "/ui/static/live.js" => Some(WebRoute::Script),
        "/ui/static/icon.svg" => Some(WebRoute::Icon),
        _ => {
            let name = path.strip_prefix("/ui/servers/")?;
            (!name.is_empty() && !name.contains('/')).then_some(WebRoute::Server(name))
        }
    }
}

/// The answer to a GET or HEAD of a page route.
pub fn respond(
    directory: &Directory,
    config: &DaemonConfig,
    route: WebRoute<'_>,
) -> Response<Body> {
    if !config.gateway.web {
        return response::error(StatusCode::NOT_FOUND, "not found", None);
    }
    match route {
        WebRoute::Index { base } => html_response(
            StatusCode::OK,
            page::index(&page::displayed(directory), base),
        ),
        WebRoute::Server(name) => {
            let servers = page::displayed(directory);
            match servers.iter().find(|server| server.name == name) {
                Some(server) => html_response(StatusCode::OK, page::server(server)),
                None => html_response(StatusCode::NOT_FOUND, page::not_found(name)),
            }
        }
        WebRoute::UiRedirect => {
            let mut response = Response::new(response::full(""));
            *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
            response
                .headers_mut()
                .insert(LOCATION, HeaderValue::from_static("ui/"));
            response
        }
        WebRoute::Style => asset(STYLE, "text/css; charset=utf-8"),
        WebRoute::Script => asset(SCRIPT, "text/javascript; charset=utf-8"),
        WebRoute::Icon => asset(ICON, "image/svg+xml"),
    }
}

fn html_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(response::full(body));
    *response.status_mut() = status;
    secure_headers(&mut response, "text/html; charset=utf-8");
    // States change: never show a stale copy.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(response::full(text));
    secure_headers(&mut response, content_type);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn secure_headers(response: &mut Response<Body>, content_type: &'static str) {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}
