//! Test doubles of the sales channels' APIs, served on loopback.
//!
//! **This is not the real thing.** Each simulated channel accepts the request shapes the channel
//! documents for the endpoints Manifold uses (stock, price and tracking writes; order reads, and order lists
//! filtered by last update and paged as each channel does, see `channels::orders`; the account's
//! listings, paged as each channel pages them and served from the seeded catalog; Zalando's
//! exported flag; Etsy inventory reads; eBay's notification public keys), rejects wrong shapes with the
//! channel's own error body, keeps state (stock per channel item, seeded orders) and enforces the
//! channel's documented kind of rate limit with configurable figures. It validates shapes, not
//! business rules, and it is only as right as the documentation it follows: passing against it says
//! the client follows that documentation, nothing more.
//!
//! Every channel lives under `/{channel}` (`SimHandle::base_url(channel)`). The control API:
//! - `GET /_sim/state`: stock per channel and item, request and 429 counts, idempotency keys, writes;
//! - `POST /_sim/orders/{channel}`: seed an order (the body is what the connector's `fetch_order` returns);
//! - `POST /_sim/catalog/{channel}`: seed items (`[CatalogItem]`); once seeded, unknown items are rejected;
//! - `POST /_sim/faults` `{channel, kind, probability | next_n}`, `DELETE /_sim/faults`;
//! - `PUT /_sim/ebay/public_key/{kid}` `{key}`: a PEM public key served by the notification API;
//! - `PUT /_sim/assets/{name}` (any bytes), `GET /_sim/assets/{name}`: an image host, for the
//!   connectors that fetch an image and upload it to the channel (Etsy, TikTok Shop).
//!
//! Token endpoints (LWA, eBay, Etsy, TikTok, Zalando, OTTO) issue access tokens that expire; see `tokens`.
//!
//! HubSpot's CRM contacts API lives under `/hubspot` (`SimHandle::hubspot_url`), with its own
//! control endpoints under `/_sim/hubspot/`; see `hubspot`.

// Handlers answer early with a ready `Response`; boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod channels;
pub mod hubspot;
pub mod limits;
pub mod state;
pub mod tokens;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Request, State},
    http::{HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post, put},
};
use manifold_domain::Channel;
use serde_json::{Value, json};

pub use channels::kaufland::KEYS as KAUFLAND_KEYS;
pub use hubspot::{HubspotConfig, HubspotRequest, SimContact};
pub use limits::SimLimit;
use limits::{SimLimiter, Verdict};
pub use state::{CatalogItem, FaultKind, FaultSpec, SimContent, SimImage, Snapshot, Write};
use state::{Inner, SeededOrder, SimState};
pub use tokens::TokenPolicy;

/// How the simulator behaves: rate limits per channel (absent = unlimited) and fault timing.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub limits: BTreeMap<Channel, SimLimit>,
    /// How long a `timeout` fault holds the response.
    pub timeout_delay: Duration,
    /// Address to bind; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Access token lifetimes, and whether tokens the simulator did not issue are refused.
    pub tokens: TokenPolicy,
    /// The simulated HubSpot account: its token and rate limit.
    pub hubspot: HubspotConfig,
}

impl Default for SimConfig {
    /// The documented figures, from each channel's module: Shopify 1000 points restoring 50/s (older
    /// docs; current plans restore 100-2000/s), BigCommerce 150 per 30 s, Amazon 5/s burst 10, Etsy
    /// 10/s, TikTok 50/s, Zalando 60/min, OTTO 20/s (its 2024 figure, unverified now).
    fn default() -> Self {
        let limits = Channel::ALL.into_iter().filter_map(|c| channels::module(c).limit.map(|l| (c, l))).collect();
        Self {
            limits,
            timeout_delay: Duration::from_secs(30),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: TokenPolicy::default(),
            hubspot: HubspotConfig::default(),
        }
    }
}

impl SimConfig {
    #[must_use]
    pub fn with_limit(mut self, channel: Channel, limit: SimLimit) -> Self {
        self.limits.insert(channel, limit);
        self
    }

    #[must_use]
    pub fn unlimited(mut self, channel: Channel) -> Self {
        self.limits.remove(&channel);
        self
    }

    /// Issued access tokens live `lifetime`, and only issued ones are accepted.
    #[must_use]
    pub fn strict_tokens(mut self, lifetime: Duration) -> Self {
        self.tokens = TokenPolicy { lifetime: Some(lifetime), strict: true };
        self
    }
}

/// The simulator.
#[derive(Debug)]
pub struct Simulator;

/// A running simulator; dropping it (or [`SimHandle::shutdown`]) stops the server.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    hubspot: Arc<hubspot::Hubspot>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Simulator {
    /// Binds and serves in the background.
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let inner = Inner {
            limiters: config.limits.iter().map(|(c, l)| (*c, SimLimiter::new(*l))).collect(),
            ..Inner::default()
        };
        let state = Arc::new(SimState {
            inner: Mutex::new(inner),
            timeout_delay: config.timeout_delay,
            base_url: Mutex::new(format!("http://{addr}")),
            tokens: config.tokens,
        });
        let hubspot = Arc::new(hubspot::Hubspot::new(&config.hubspot));
        let app = router(state.clone(), hubspot.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        Ok(SimHandle { addr, state, hubspot, shutdown: Some(tx), task: Some(task) })
    }
}

impl SimHandle {
    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL to configure as a channel account's `endpoint`.
    pub fn base_url(&self, channel: Channel) -> String {
        format!("http://{}/{channel}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure as a HubSpot CRM account's `endpoint`.
    pub fn hubspot_url(&self) -> String {
        format!("http://{}/hubspot", self.addr)
    }

    /// The simulated HubSpot account's contacts, by id.
    pub fn hubspot_contacts(&self) -> Vec<SimContact> {
        self.hubspot.contacts()
    }

    /// The HubSpot API requests that reached their endpoint, in order.
    pub fn hubspot_requests(&self) -> Vec<HubspotRequest> {
        self.hubspot.requests()
    }

    /// The channel's token endpoint (an account's `token_endpoint` setting), `None` for channels
    /// whose tokens do not expire.
    pub fn token_endpoint(&self, channel: Channel) -> Option<String> {
        tokens::path(channel).map(|p| format!("{}{p}", self.base_url(channel)))
    }

    /// A refresh token the channel's token endpoint accepts, as the seller's consent would give.
    pub fn grant_refresh_token(&self, channel: Channel) -> String {
        self.state.grant_refresh_token(channel)
    }

    /// Ends the life of every access token issued for `channel` now.
    pub fn expire_access_tokens(&self, channel: Channel) {
        self.state.expire_access_tokens(channel);
    }

    /// The inspection view, without an HTTP round trip.
    pub fn snapshot(&self) -> Snapshot {
        self.state.lock().snapshot()
    }

    /// Sets what the channel shows for one item, as its own admin would (logged as a stock change).
    pub fn set_stock(&self, channel: Channel, key: &str, quantity: i64) {
        self.state.lock().set_stock(channel, key, quantity);
    }

    /// Every stock write accepted so far, in order, with when it landed.
    pub fn stock_changes(&self) -> Vec<state::StockChange> {
        self.state.lock().stock_changes.clone()
    }

    pub fn seed_order(&self, channel: Channel, doc: Value) -> Result<String, String> {
        seed(&self.state, channel, doc)
    }

    /// Keeps a return of `order_id` as the channel's returns API serves it (`doc` in that channel's
    /// shape): what a buyer opens in the marketplace's app, outside any seller API. A return with the
    /// same `id_field` value replaces the earlier one (the return moved on).
    pub fn seed_return(&self, channel: Channel, order_id: &str, id_field: &str, doc: Value) {
        let mut s = self.state.lock();
        let list = s.returns.entry(channel).or_default().entry(order_id.to_owned()).or_default();
        list.retain(|r| r.get(id_field) != doc.get(id_field));
        list.push(doc);
    }

    /// Every order list serves at most `per_page` orders a page from now on, whatever page size was
    /// asked (a channel may answer with fewer), so a client's paging is walked with few orders.
    pub fn cap_order_pages(&self, per_page: usize) {
        self.state.lock().order_page_cap = Some(per_page.max(1));
    }

    pub fn seed_catalog(&self, channel: Channel, items: Vec<CatalogItem>) {
        let mut s = self.state.lock();
        for item in items {
            s.stock.entry(channel).or_default().insert(item.id.clone(), item.quantity);
            s.catalog.entry(channel).or_default().insert(item.id.clone(), item);
        }
    }

    /// Hosts `bytes` at `/_sim/assets/{name}` and answers its URL (an image for staged uploads).
    pub fn put_asset(&self, name: &str, bytes: Vec<u8>) -> String {
        self.state.lock().assets.insert(name.to_owned(), bytes);
        format!("{}/_sim/assets/{name}", self.url())
    }

    pub fn inject(&self, fault: FaultSpec) {
        self.state.lock().faults.insert(fault.channel, fault);
    }

    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Makes probabilistic faults repeatable: each channel draws from a generator seeded from
    /// `seed` (restarted here), so a run's pattern of faults per channel follows its seed.
    pub fn seed_faults(&self, seed: u64) {
        let mut s = self.state.lock();
        s.fault_seed = Some(seed);
        s.fault_rngs.clear();
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn router(state: Arc<SimState>, hubspot: Arc<hubspot::Hubspot>) -> Router {
    let mut app = Router::new()
        .route("/_sim/state", get(control_state))
        .route("/_sim/orders/{channel}", post(control_seed_order))
        .route("/_sim/catalog/{channel}", post(control_seed_catalog))
        .route("/_sim/faults", post(control_fault))
        .route("/_sim/faults", delete(control_clear_faults))
        .route("/_sim/ebay/public_key/{kid}", put(control_public_key))
        .route("/_sim/assets/{name}", put(control_put_asset).get(control_get_asset));
    for channel in Channel::ALL {
        let routes = (channels::module(channel).routes)()
            .layer(middleware::from_fn_with_state((state.clone(), channel), gate))
            .merge(tokens::routes(channel));
        app = app.nest(&format!("/{channel}"), routes);
    }
    app.merge(hubspot::router(hubspot)).with_state(state)
}

/// Shared state plus the channel a nested router serves.
pub(crate) type Ctx = (Arc<SimState>, Channel);

/// In front of every channel endpoint: count, inject faults, require credentials, enforce the
/// request-based limits (Shopify's cost-based one lives in its GraphQL handler), record writes.
async fn gate(State((state, channel)): State<Ctx>, req: Request, next: Next) -> Response {
    let fault = {
        let mut s = state.lock();
        *s.requests.entry(channel).or_default() += 1;
        s.take_fault(channel)
    };
    match fault {
        Some(FaultKind::ServerError) => {
            return channel_error(channel, StatusCode::INTERNAL_SERVER_ERROR, "simulated server error");
        }
        Some(FaultKind::Unauthorized) => {
            return channel_error(channel, StatusCode::UNAUTHORIZED, "simulated invalid token");
        }
        Some(FaultKind::Malformed) => {
            return (StatusCode::OK, [("content-type", "application/json")], "{\"truncated\": [").into_response();
        }
        Some(FaultKind::Timeout) => {
            tokio::time::sleep(state.timeout_delay).await;
            return channel_error(channel, StatusCode::GATEWAY_TIMEOUT, "simulated timeout");
        }
        None => {}
    }
    let access = channels::Access {
        headers: req.headers(),
        query: req.uri().query().unwrap_or_default(),
        path: req.uri().path(),
    };
    if !(channels::module(channel).authorized)(&access) {
        return channel_error(channel, StatusCode::UNAUTHORIZED, "missing or invalid credentials");
    }
    if !presigned(req.uri().path())
        && let Some(refused) = state.check_token(channel, req.headers())
    {
        return refused;
    }
    let mut status = None;
    // A cost-based limit is charged by the handler that knows the cost.
    let per_request = !matches!(channels::module(channel).limit, Some(SimLimit::Points { .. }));
    if per_request {
        let verdict = state.lock().limiters.get_mut(&channel).map(|l| l.take(1.0));
        match verdict {
            Some(Verdict::Refused { retry_after, status }) => {
                *state.lock().throttled.entry(channel).or_default() += 1;
                let mut resp = channel_error(channel, StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
                (channels::module(channel).rate_headers)(&status, resp.headers_mut());
                let secs = retry_after.as_secs_f64().ceil().max(1.0);
                resp.headers_mut().insert("retry-after", HeaderValue::from(secs_u64(secs)));
                return resp;
            }
            Some(Verdict::Allowed(s)) => status = Some(s),
            None => {}
        }
    }
    let req = if req.method() == Method::GET {
        req
    } else {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        let write = Write {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            body,
        };
        state.lock().writes.entry(channel).or_default().push(write);
        Request::from_parts(parts, Body::from(bytes))
    };
    let mut resp = next.run(req).await;
    if let Some(s) = status {
        (channels::module(channel).rate_headers)(&s, resp.headers_mut());
    }
    resp
}

/// Paths standing for pre-signed URLs (feed uploads, report downloads): they carry their own
/// authorization, never an access token.
pub(crate) fn presigned(path: &str) -> bool {
    path.starts_with("/_upload/") || path.starts_with("/_download/")
}

fn secs_u64(secs: f64) -> u64 {
    // Retry-After is whole seconds; values here are small and positive.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = secs as u64;
    s
}

/// An error in the channel's own documented shape.
pub(crate) fn channel_error(channel: Channel, status: StatusCode, message: &str) -> Response {
    let body = (channels::module(channel).error_body)(status, message);
    (status, Json(body)).into_response()
}

/// The id a seeded order is served under.
fn order_id(channel: Channel, doc: &Value) -> Option<String> {
    doc.pointer(channels::module(channel).order_id).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
}

fn seed(state: &SimState, channel: Channel, doc: Value) -> Result<String, String> {
    let id = order_id(channel, &doc).ok_or_else(|| format!("no order id in the {channel} order document"))?;
    let mut s = state.lock();
    let orders = s.orders.entry(channel).or_default();
    orders.retain(|o| o.id != id);
    // An order seeded as already taken (Zalando's `exported` attribute) is not listed as new.
    let exported = channels::module(channel)
        .exported
        .is_some_and(|flag| doc.pointer(flag).and_then(Value::as_bool).unwrap_or(false));
    orders.push(SeededOrder { id: id.clone(), doc, exported });
    Ok(id)
}

async fn control_state(State(state): State<Arc<SimState>>) -> Json<Snapshot> {
    Json(state.lock().snapshot())
}

async fn control_seed_order(State(state): State<Arc<SimState>>, Path(channel): Path<String>, body: Bytes) -> Response {
    let Ok(channel) = channel.parse::<Channel>() else {
        return (StatusCode::NOT_FOUND, "unknown channel").into_response();
    };
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body must be JSON").into_response();
    };
    match seed(&state, channel, doc) {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
    }
}

async fn control_seed_catalog(
    State(state): State<Arc<SimState>>,
    Path(channel): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(channel) = channel.parse::<Channel>() else {
        return (StatusCode::NOT_FOUND, "unknown channel").into_response();
    };
    let items: Vec<CatalogItem> = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut s = state.lock();
    for item in items {
        s.stock.entry(channel).or_default().insert(item.id.clone(), item.quantity);
        s.catalog.entry(channel).or_default().insert(item.id.clone(), item);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn control_fault(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultSpec>(&body) {
        Ok(f) => {
            state.lock().faults.insert(f.channel, f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn control_clear_faults(State(state): State<Arc<SimState>>) -> StatusCode {
    state.lock().faults.clear();
    StatusCode::NO_CONTENT
}

async fn control_public_key(State(state): State<Arc<SimState>>, Path(kid): Path<String>, body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("key").and_then(Value::as_str).map(str::to_owned))
    {
        Some(key) => {
            state.lock().public_keys.insert(kid, key);
            StatusCode::NO_CONTENT.into_response()
        }
        None => (StatusCode::BAD_REQUEST, "expected {\"key\": \"-----BEGIN PUBLIC KEY-----...\"}").into_response(),
    }
}

async fn control_put_asset(State(state): State<Arc<SimState>>, Path(name): Path<String>, body: Bytes) -> StatusCode {
    state.lock().assets.insert(name, body.to_vec());
    StatusCode::NO_CONTENT
}

async fn control_get_asset(State(state): State<Arc<SimState>>, Path(name): Path<String>) -> Response {
    match state.lock().assets.get(&name) {
        Some(bytes) => ([("content-type", "application/octet-stream")], bytes.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// An API version each simulated channel serves, as an account pins it (what the tests configure).
pub fn api_version(channel: Channel) -> &'static str {
    match channel {
        Channel::Shopify => "2026-07",
        Channel::Woocommerce | Channel::Bigcommerce | Channel::Etsy => "v3",
        Channel::Amazon => "v0",
        Channel::Tiktok => "202309",
        Channel::Zalando | Channel::Ebay => "v1",
        Channel::Kaufland => "v2",
        Channel::Otto => "v4",
    }
}
