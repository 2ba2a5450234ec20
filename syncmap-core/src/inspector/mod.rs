//! A live debug page for every memoized function's cache (feature `inspector`), like Go's
//! `expvar` and `net/http/pprof`: an [axum](https://docs.rs/axum) [`Router`] to nest into an
//! application, or [`serve`] on a background thread with its own runtime.
//!
//! # Pages
//!
//! Paths are relative to where the router is nested (`/debug/memo` below).
//!
//! | method and path | what |
//! |---|---|
//! | `GET /` | every cache: name, entries, hits, misses, waits, hit ratio (with a bar), evictions, rejections, expirations, capacity, TTL |
//! | `GET /cache/{name}?filter=&offset=` | one cache's entries (`Debug` text), filtered by a key substring, a page at a time |
//! | `POST /cache/{name}/invalidate` (form `key=`) | removes the entries whose key's `Debug` text is `key` (write actions only) |
//! | `POST /cache/{name}/clear` | removes every entry (write actions only) |
//!
//! **JSON at the same paths**: add `?format=json`, or send `Accept: application/json`. The index
//! is `{"write_actions": bool, "caches": [{"name", "config", "stats", "hit_ratio",
//! "values_hidden"}]}`; a cache page is a [`crate::memo::MemoSnapshot`] (with its
//! `miss_ratio_curve` when that is on, also drawn on the HTML page as an SVG plot); a write
//! action answers `{"removed": n}`. An unknown cache is `404`.
//!
//! # Safety for a production process
//!
//! - Read-only unless [`Inspector::write_actions`] is enabled: the buttons are not shown and
//!   the `POST` routes answer `403`. A `POST` whose `Origin` header names another host is
//!   refused too (a page elsewhere cannot clear your caches through a browser).
//! - [`Inspector::serve`] binds loopback addresses only, unless [`Inspector::allow_remote`].
//! - Every key and value is HTML-escaped (a key containing `<script>` shows as text).
//! - [`Inspector::hide_values`] replaces a cache's values by `(hidden)` in HTML and JSON.
//! - Pages read `stats()` and iterate entries; they hold no lock a memoized call waits on.
//!
//! ```no_run
//! use syncmap_core::inspector::Inspector;
//!
//! // On a background thread, loopback only:
//! let server = Inspector::new().serve("127.0.0.1:9090")?;
//! println!("caches at http://{}/", server.local_addr());
//!
//! // Or inside an axum application:
//! let app: axum::Router = axum::Router::new()
//!     .nest("/debug/memo", Inspector::new().hide_values("my_app::session").router());
//! # Ok::<(), std::io::Error>(())
//! ```

mod html;
mod mrc_plot;

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::memo::{registry, MemoConfig, MemoHandle, MemoSnapshot, MemoStats, SnapshotPage};

/// The inspector's settings; [`router`](Self::router) and [`serve`](Self::serve) build it.
///
/// ```
/// use syncmap_core::inspector::Inspector;
///
/// let inspector = Inspector::new()
///     .write_actions(true)              // show invalidate and clear buttons
///     .hide_values("my_app::password_hash")
///     .page_size(50);
/// let _router = inspector.router();
/// ```
#[derive(Debug, Clone)]
pub struct Inspector {
    write_actions: bool,
    hidden: Vec<String>,
    page_size: usize,
    allow_remote: bool,
}

impl Default for Inspector {
    fn default() -> Self {
        Self::new()
    }
}

impl Inspector {
    /// Read-only, 100 entries a page, loopback only, every value shown.
    ///
    /// ```
    /// let _inspector = syncmap_core::inspector::Inspector::new();
    /// ```
    pub fn new() -> Self {
        Inspector {
            write_actions: false,
            hidden: Vec::new(),
            page_size: 100,
            allow_remote: false,
        }
    }

    /// Enables the invalidate-key and clear buttons and their `POST` routes (off by default:
    /// they answer `403`).
    ///
    /// ```
    /// let _inspector = syncmap_core::inspector::Inspector::new().write_actions(true);
    /// ```
    pub fn write_actions(mut self, enabled: bool) -> Self {
        self.write_actions = enabled;
        self
    }

    /// Hides the values of the cache named `cache` (the memoized function's path, as
    /// `f_cache().name()` gives it): keys are listed, values show as `(hidden)`.
    ///
    /// ```
    /// let _inspector = syncmap_core::inspector::Inspector::new().hide_values("my_app::token_for");
    /// ```
    pub fn hide_values(mut self, cache: &str) -> Self {
        self.hidden.push(cache.to_string());
        self
    }

    /// Entries per page of a cache's listing (at least 1; 100 by default).
    ///
    /// ```
    /// let _inspector = syncmap_core::inspector::Inspector::new().page_size(20);
    /// ```
    pub fn page_size(mut self, entries: usize) -> Self {
        self.page_size = entries.max(1);
        self
    }

    /// Lets [`serve`](Self::serve) bind a non-loopback address (refused by default: the pages
    /// show cache contents).
    ///
    /// ```
    /// let _inspector = syncmap_core::inspector::Inspector::new().allow_remote(true);
    /// ```
    pub fn allow_remote(mut self, allowed: bool) -> Self {
        self.allow_remote = allowed;
        self
    }

    /// The pages as an axum [`Router`], to nest anywhere in an application
    /// (`Router::new().nest("/debug/memo", inspector.router())`). Links are relative to where it
    /// is nested.
    ///
    /// ```
    /// let app: axum::Router = axum::Router::new()
    ///     .nest("/debug/memo", syncmap_core::inspector::Inspector::new().router());
    /// # let _ = app;
    /// ```
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/cache/{name}", get(cache_page))
            .route("/cache/{name}/clear", post(clear))
            .route("/cache/{name}/invalidate", post(invalidate))
            .with_state(Arc::new(self))
    }

    /// Serves the pages at `addr` on a background thread (`syncmemo-inspector`) with its own
    /// single-threaded tokio runtime; the returned [`InspectorServer`] stops it when dropped.
    /// Port `0` picks a free port ([`InspectorServer::local_addr`] tells which).
    ///
    /// # Errors
    ///
    /// If `addr` does not resolve, is not a loopback address and
    /// [`allow_remote`](Self::allow_remote) was not set (`InvalidInput`), or cannot be bound.
    ///
    /// ```no_run
    /// let server = syncmap_core::inspector::Inspector::new().serve("127.0.0.1:0")?;
    /// println!("http://{}/", server.local_addr());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn serve(self, addr: impl ToSocketAddrs) -> io::Result<InspectorServer> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolves to nothing",
            ));
        }
        if !self.allow_remote {
            if let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the inspector binds loopback addresses only, not {remote}; \
                         call Inspector::allow_remote(true) to expose cache contents"
                    ),
                ));
            }
        }
        let listener = TcpListener::bind(&addrs[..])?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = self.router();
        let thread = thread::Builder::new()
            .name("syncmemo-inspector".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(_) => return,
                    };
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                })
            })?;
        Ok(InspectorServer {
            local_addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Serves a read-only inspector at `addr` (see [`Inspector::serve`]).
///
/// # Errors
///
/// As [`Inspector::serve`]: a non-loopback address, or one that cannot be bound.
///
/// ```no_run
/// let _server = syncmap_core::inspector::serve("127.0.0.1:9090")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve(addr: impl ToSocketAddrs) -> io::Result<InspectorServer> {
    Inspector::new().serve(addr)
}

/// A running inspector (see [`Inspector::serve`]); dropping it stops the server and joins its
/// thread.
#[derive(Debug)]
pub struct InspectorServer {
    local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl InspectorServer {
    /// The address it listens on.
    ///
    /// ```no_run
    /// let server = syncmap_core::inspector::serve("127.0.0.1:0")?;
    /// assert!(server.local_addr().ip().is_loopback());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets requests in progress finish, and joins the thread.
    ///
    /// ```no_run
    /// let server = syncmap_core::inspector::serve("127.0.0.1:0")?;
    /// server.stop();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for InspectorServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type Settings = Arc<Inspector>;

/// `?format=json` or `Accept: application/json`.
fn wants_json(format: Option<&str>, headers: &HeaderMap) -> bool {
    format == Some("json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.trim_start().starts_with("application/json"))
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => (status, [(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Where the router is nested: the request's original path less the part the router saw.
fn base_path(original: &OriginalUri, uri: &axum::http::Uri) -> String {
    let full = original.0.path();
    let local = uri.path();
    let base = if local == "/" {
        full.trim_end_matches('/')
    } else {
        full.strip_suffix(local).unwrap_or("")
    };
    base.to_string()
}

fn find(name: &str) -> Option<MemoHandle> {
    registry().into_iter().find(|cache| cache.name() == name)
}

#[derive(Deserialize)]
struct IndexQuery {
    format: Option<String>,
}

/// One row of the index, in JSON.
#[derive(Serialize)]
struct Summary {
    name: &'static str,
    config: MemoConfig,
    stats: MemoStats,
    hit_ratio: Option<f64>,
    values_hidden: bool,
}

#[derive(Serialize)]
struct IndexJson {
    write_actions: bool,
    caches: Vec<Summary>,
}

async fn index(
    State(settings): State<Settings>,
    Query(query): Query<IndexQuery>,
    original: OriginalUri,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let caches: Vec<Summary> = registry()
        .into_iter()
        .map(|cache| {
            let stats = cache.stats();
            Summary {
                name: cache.name(),
                config: cache.config(),
                stats,
                hit_ratio: stats.hit_ratio(),
                values_hidden: settings.hidden.iter().any(|h| h == cache.name()),
            }
        })
        .collect();
    if wants_json(query.format.as_deref(), &headers) {
        return json_response(
            StatusCode::OK,
            &IndexJson {
                write_actions: settings.write_actions,
                caches,
            },
        );
    }
    let base = base_path(&original, &uri);
    Html(html::index(&base, &caches)).into_response()
}

#[derive(Deserialize)]
struct CacheQuery {
    format: Option<String>,
    filter: Option<String>,
    offset: Option<usize>,
}

fn not_found(name: &str, json: bool) -> Response {
    let message = format!("no cache named `{name}`");
    if json {
        json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": message }),
        )
    } else {
        (StatusCode::NOT_FOUND, Html(html::error_page(&message))).into_response()
    }
}

async fn cache_page(
    State(settings): State<Settings>,
    Path(name): Path<String>,
    Query(query): Query<CacheQuery>,
    original: OriginalUri,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(query.format.as_deref(), &headers);
    let Some(cache) = find(&name) else {
        return not_found(&name, json);
    };
    let hide_values = settings.hidden.iter().any(|h| h == cache.name());
    let page = SnapshotPage {
        offset: query.offset.unwrap_or(0),
        limit: settings.page_size,
        filter: query.filter.clone().filter(|f| !f.is_empty()),
        hide_values,
    };
    let snapshot = MemoSnapshot::of(&cache, &page);
    if json {
        return json_response(StatusCode::OK, &snapshot);
    }
    let base = base_path(&original, &uri);
    Html(html::cache_page(
        &base,
        &snapshot,
        page.filter.as_deref(),
        settings.page_size,
        settings.write_actions,
        hide_values,
    ))
    .into_response()
}

/// Refuses a write action: disabled, or a cross-site `POST`.
fn refuse_write(settings: &Inspector, headers: &HeaderMap) -> Option<Response> {
    if !settings.write_actions {
        return Some(
            (
                StatusCode::FORBIDDEN,
                "write actions are disabled (Inspector::write_actions)",
            )
                .into_response(),
        );
    }
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let (Some(origin), Some(host)) = (header(header::ORIGIN), header(header::HOST)) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != host {
            return Some((StatusCode::FORBIDDEN, "cross-origin request refused").into_response());
        }
    }
    None
}

#[derive(Deserialize)]
struct InvalidateForm {
    key: String,
}

#[derive(Serialize)]
struct Removed {
    removed: usize,
}

fn after_write(removed: usize, json: bool, original: &OriginalUri) -> Response {
    if json {
        return json_response(StatusCode::OK, &Removed { removed });
    }
    // Back to the cache's page: the action's path less its last segment.
    let path = original.0.path();
    let back = path.rsplit_once('/').map_or(path, |(page, _)| page);
    Redirect::to(back).into_response()
}

async fn clear(
    State(settings): State<Settings>,
    Path(name): Path<String>,
    Query(query): Query<IndexQuery>,
    original: OriginalUri,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refuse_write(&settings, &headers) {
        return refused;
    }
    let json = wants_json(query.format.as_deref(), &headers);
    let Some(cache) = find(&name) else {
        return not_found(&name, json);
    };
    let removed = cache.len();
    cache.clear();
    after_write(removed, json, &original)
}

async fn invalidate(
    State(settings): State<Settings>,
    Path(name): Path<String>,
    Query(query): Query<IndexQuery>,
    original: OriginalUri,
    headers: HeaderMap,
    form: Result<Form<InvalidateForm>, FormRejection>,
) -> Response {
    if let Some(refused) = refuse_write(&settings, &headers) {
        return refused;
    }
    let json = wants_json(query.format.as_deref(), &headers);
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(cache) = find(&name) else {
        return not_found(&name, json);
    };
    let removed = cache.invalidate_by_debug(&form.key);
    after_write(removed, json, &original)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(original: &str, local: &str) -> String {
        base_path(
            &OriginalUri(original.parse().unwrap()),
            &local.parse().unwrap(),
        )
    }

    #[test]
    fn links_are_relative_to_the_nesting_prefix() {
        assert_eq!(base("/", "/"), "");
        assert_eq!(base("/debug/memo", "/"), "/debug/memo");
        assert_eq!(base("/debug/memo/", "/"), "/debug/memo");
        assert_eq!(
            base("/debug/memo/cache/a%3A%3Ab", "/cache/a%3A%3Ab"),
            "/debug/memo"
        );
        assert_eq!(base("/cache/x", "/cache/x"), "");
    }

    #[test]
    fn json_is_chosen_by_query_or_accept_header() {
        let mut headers = HeaderMap::new();
        assert!(!wants_json(None, &headers));
        assert!(wants_json(Some("json"), &headers));
        headers.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(wants_json(None, &headers));
        headers.insert(
            header::ACCEPT,
            "text/html,application/json;q=0.9".parse().unwrap(),
        );
        assert!(!wants_json(None, &headers));
    }
}
