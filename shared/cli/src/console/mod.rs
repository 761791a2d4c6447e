//! `manifold console`: the operations console, a web page on loopback over the same service code the
//! CLI runs.
//!
//! The ops team loses hours to sync errors nobody saw in time. The console puts what is broken and
//! the button that fixes it on one screen: channel health ([`crate::commands::health`]), dead letters
//! and quarantined payloads with redrive and replay ([`crate::commands::dlq`],
//! [`crate::commands::quarantine`]), a SKU everywhere ([`crate::commands::stock`]), one order's story
//! ([`crate::commands::trace`]) and usage and cost ([`crate::commands::usage`]). Each page calls the
//! very function the matching CLI command calls; the console renders, it implements no operation.
//!
//! # Access
//!
//! - It runs with the operator's own AWS credentials and the stack's resource names (the variables
//!   the CLI reads), so it can do what the operator's IAM identity can do, and nothing is exposed on
//!   the internet: it binds to loopback unless `--allow-remote` says otherwise.
//! - A page is answered only for a `Host` naming the address it serves (a web page elsewhere cannot
//!   reach it through a DNS name rebound to 127.0.0.1).
//! - Every action is a `POST` carrying the session's CSRF token: a random session id in a
//!   `SameSite=Strict` cookie, and in the form an HMAC of it under a key drawn when the console
//!   started. A request without both, or with a token of another session, is refused (403).
//! - Every action is confirmed on a page of its own first (no JavaScript needed), and written to the
//!   StateTable's audit log (`AUDIT#console`) with the operator's IAM identity (STS
//!   `GetCallerIdentity` at start).
//!
//! Read-only pages work without JavaScript; `console.js` only refreshes the sections marked live.

mod audit;
mod chart;
mod pages;

use std::{fmt::Write as _, net::SocketAddr, sync::Arc};

use axum::{
    Form, Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use chrono::Utc;
use hmac::{Hmac, Mac};
use manifold_app::App;
use serde::Deserialize;
use sha2::Sha256;
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{info, warn};

use crate::{CliError, aws::Aws, commands::dlq::Routes};

pub use audit::AuditEntry;

/// Where the console listens unless told otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:8470";
const SESSION_COOKIE: &str = "manifold_console_session";

#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = DEFAULT_BIND)]
    pub bind: SocketAddr,
    /// Allow an address other than loopback. The console speaks plain HTTP and has no sign-in of its
    /// own: whoever reaches it acts with the operator's AWS credentials, so put it behind a tunnel or
    /// an authenticating proxy.
    #[arg(long)]
    pub allow_remote: bool,
    /// A host name the console is reached by, besides loopback's (repeatable; its port is the
    /// console's). Needed with `--allow-remote` on an unspecified address (0.0.0.0, ::).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
}

/// What the console serves with: the same clients and names every CLI command uses.
#[derive(Debug, Clone)]
pub struct ConsoleContext {
    pub app: App,
    pub aws: Aws,
    pub routes: Routes,
    /// The IAM identity actions are logged under.
    pub operator: String,
}

/// The operator's IAM identity (`arn:aws:...`), from STS with the credentials the console runs with.
pub async fn operator(sdk: &aws_config::SdkConfig) -> Result<String, CliError> {
    let me = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| CliError::Usage(format!("cannot tell who you are (STS GetCallerIdentity): {e}")))?;
    me.arn.ok_or_else(|| CliError::Usage("STS answered no ARN for these credentials".to_owned()))
}

struct Shared {
    ctx: ConsoleContext,
    /// Signs session ids into CSRF tokens; drawn at start, never leaves the process.
    key: [u8; 32],
    /// `Host` values this console answers.
    hosts: Vec<String>,
}

type Ctx = Arc<Shared>;

/// A running console.
#[derive(Debug)]
pub struct Console {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Console {
    /// Binds `bind` (refusing an address off loopback without `allow_remote`) and serves.
    pub async fn start(ctx: ConsoleContext, bind: SocketAddr, allow_remote: bool) -> Result<Self, CliError> {
        Self::start_for(ctx, bind, allow_remote, &[]).await
    }

    /// [`Console::start`], answering also for the host names `hosts` (at its port).
    pub async fn start_for(
        ctx: ConsoleContext,
        bind: SocketAddr,
        allow_remote: bool,
        hosts: &[String],
    ) -> Result<Self, CliError> {
        if !bind.ip().is_loopback() && !allow_remote {
            return Err(CliError::Usage(format!(
                "refusing to serve the console on {bind}: it is not a loopback address (pass --allow-remote to do it anyway)"
            )));
        }
        if bind.ip().is_unspecified() && hosts.is_empty() {
            return Err(CliError::Usage(format!(
                "on {bind} the console cannot tell which host names it is reached by: name them with --host"
            )));
        }
        let listener =
            TcpListener::bind(bind).await.map_err(|e| CliError::Usage(format!("cannot listen on {bind}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| CliError::Usage(format!("no local address: {e}")))?;
        let port = addr.port();
        let extra = hosts;
        let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")];
        hosts.push(addr.to_string());
        hosts.extend(extra.iter().map(|h| format!("{h}:{port}")));
        let shared = Arc::new(Shared { ctx, key: rand::random(), hosts });
        let router = router(shared);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                warn!(error = %e, "the console stopped");
            }
        });
        Ok(Self { addr, task })
    }

    /// The console's address as a URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Serves until the process is interrupted.
    pub async fn wait(mut self) -> Result<(), CliError> {
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(|e| CliError::Usage(format!("signal: {e}"))),
            _ = &mut self.task => Ok(()),
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(shared: Ctx) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/channels") }))
        .route("/channels", get(pages::channels))
        .route("/failures", get(pages::failures))
        .route("/failures/redrive", get(pages::confirm_redrive).post(redrive))
        .route("/failures/replay", get(pages::confirm_replay).post(replay))
        .route("/stock", get(pages::stock))
        .route("/orders", get(pages::orders))
        .route("/usage", get(pages::usage))
        .route("/assets/console.css", get(|| async { asset("text/css", include_str!("assets/console.css")) }))
        .route("/assets/console.js", get(|| async { asset("text/javascript", include_str!("assets/console.js")) }))
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Host check, session cookie, and the headers every answer carries.
async fn guard(State(shared): State<Ctx>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if !shared.hosts.iter().any(|h| h == host) {
        return (StatusCode::FORBIDDEN, format!("this console answers for {} only", shared.hosts[0])).into_response();
    }
    // A page elsewhere must not make the console read (receive dead letters, call channels): browsers
    // say where a request comes from; only the console's own pages and typed addresses are answered.
    // Clients that send no such header (curl, scripts) are not browsers a page can drive.
    if let Some(site) = request.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return (StatusCode::FORBIDDEN, "refused: a request from another site").into_response();
    }
    let existing = session_of(request.headers());
    let mut request = request;
    let session = existing.clone().unwrap_or_else(|| hex::encode(rand::random::<[u8; 32]>()));
    request.extensions_mut().insert(Session {
        token: token(&shared.key, &session),
        key: shared.key,
        id: session.clone(),
    });
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if existing.is_none()
        && let Ok(v) = HeaderValue::from_str(&format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"))
    {
        headers.append(header::SET_COOKIE, v);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The request's session: its CSRF token (what the pages put in their forms), and what signs the
/// outcome an action shows, so a link from elsewhere cannot show a made-up one.
#[derive(Clone)]
pub(crate) struct Session {
    pub token: String,
    key: [u8; 32],
    id: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    fn notice_mac(&self, notice: &str) -> Hmac<Sha256> {
        mac(&self.key, &format!("notice\n{}\n{notice}", self.id))
    }

    /// The signature of an action's outcome, for this session.
    pub(crate) fn sign_notice(&self, notice: &str) -> String {
        hex::encode(self.notice_mac(notice).finalize().into_bytes())
    }

    /// Whether `sig` is this session's signature of `notice` (constant time).
    pub(crate) fn notice_ok(&self, notice: &str, sig: &str) -> bool {
        hex::decode(sig).is_ok_and(|given| self.notice_mac(notice).verify_slice(&given).is_ok())
    }
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == SESSION_COOKIE && v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then(|| v.to_owned())
    })
}

fn mac(key: &[u8; 32], session: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(session.as_bytes());
    mac
}

fn token(key: &[u8; 32], session: &str) -> String {
    hex::encode(mac(key, session).finalize().into_bytes())
}

/// Whether `form_token` is this request's session's token (compared in constant time).
fn csrf_ok(key: &[u8; 32], headers: &HeaderMap, form_token: &str) -> bool {
    let Some(session) = session_of(headers) else { return false };
    let Ok(given) = hex::decode(form_token) else { return false };
    mac(key, &session).verify_slice(&given).is_ok()
}

fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "refused: this action needs the console's session token. Reload the page and try again from the console.",
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct RedriveForm {
    csrf: String,
    queue: String,
    message: String,
}

/// `POST /failures/redrive`: moves one dead letter back to its source queue.
async fn redrive(
    State(shared): State<Ctx>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<RedriveForm>,
) -> Response {
    if !csrf_ok(&shared.key, &headers, &form.csrf) {
        return refused();
    }
    let ctx = &shared.ctx;
    let notice = match ctx.routes.get(&form.queue) {
        Err(e) => format!("not redriven: {e}"),
        Ok(route) => {
            let redriver =
                crate::commands::dlq::Redriver::new(&ctx.aws.sqs, &ctx.aws.ddb, &ctx.aws.env.state_table, route);
            match redriver.run_one(&form.message).await {
                Ok(r) => {
                    let mut notice = if r.moved == 1 {
                        format!("redriven: {} is back on {}", form.message, r.source)
                    } else if let Some(f) = r.failed.first() {
                        format!("not redriven, still in {}: {}", form.queue, f.error)
                    } else {
                        format!(
                            "{} holds no dead letter {} among the {} it showed now (moved already?)",
                            form.queue, form.message, r.examined
                        )
                    };
                    if let Some(e) = r.not_released {
                        let _ = write!(
                            notice,
                            "; other dead letters looked at stay hidden until their visibility timeout ends ({e})"
                        );
                    }
                    notice
                }
                Err(e) => format!("not redriven: {}", e.chain()),
            }
        }
    };
    let entry = AuditEntry::new(&ctx.operator, "redrive", &format!("{} {}", form.queue, form.message), &notice);
    let notice = audited(ctx, &entry, notice).await;
    info!(operator = %ctx.operator, queue = %form.queue, message_id = %form.message, outcome = %notice, "console: redrive");
    back_to_failures(&session, &notice)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReplayForm {
    csrf: String,
    id: String,
}

/// `POST /failures/replay`: replays one quarantined payload through ingest.
async fn replay(
    State(shared): State<Ctx>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<ReplayForm>,
) -> Response {
    if !csrf_ok(&shared.key, &headers, &form.csrf) {
        return refused();
    }
    let ctx = &shared.ctx;
    let notice = match crate::commands::quarantine::replay(&ctx.app, Some(&form.id), Utc::now()).await {
        Ok(report) => match report.items.first().map(|i| &i.replay) {
            Some(crate::commands::quarantine::Replay::Succeeded { detail }) => {
                format!("replayed {}: {detail}", form.id)
            }
            Some(crate::commands::quarantine::Replay::FailedAgain { reason, .. }) => {
                format!("replayed {}, and it failed again: {reason}", form.id)
            }
            Some(crate::commands::quarantine::Replay::Error { error }) => {
                format!("could not replay {}: {error}", form.id)
            }
            None => format!("nothing to replay for {}", form.id),
        },
        Err(e) => format!("could not replay {}: {}", form.id, e.chain()),
    };
    let entry = AuditEntry::new(&ctx.operator, "replay", &form.id, &notice);
    let notice = audited(ctx, &entry, notice).await;
    info!(operator = %ctx.operator, quarantine_id = %form.id, outcome = %notice, "console: replay");
    back_to_failures(&session, &notice)
}

/// Writes the action to the audit log; the operator is told when that failed (the action stands).
async fn audited(ctx: &ConsoleContext, entry: &AuditEntry, notice: String) -> String {
    match audit::record(ctx, entry).await {
        Ok(()) => notice,
        Err(e) => format!("{notice} (NOT written to the audit log: {e})"),
    }
}

/// Back to the Failures page, showing `notice` signed for this session.
fn back_to_failures(session: &Session, notice: &str) -> Response {
    let sig = session.sign_notice(notice);
    Redirect::to(&format!("/failures?{}", url_encode(&[("notice", notice), ("sig", &sig)]))).into_response()
}

/// One value, `application/x-www-form-urlencoded`.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn url_encode(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

impl ConsoleContext {
    /// The deployment named by the environment (the stack's resource names, the operator's credentials),
    /// as every CLI command sees it.
    pub async fn from_env() -> Result<Self, CliError> {
        let sdk = manifold_aws::sdk_config().await;
        Ok(Self {
            app: App::from_env().await?,
            aws: Aws::from_env().await?,
            routes: Routes::from_env(),
            operator: operator(&sdk).await?,
        })
    }
}

/// Runs `manifold console`: the deployment named by the environment, until Ctrl-C.
pub async fn run(args: &ConsoleArgs) -> Result<(), CliError> {
    let ctx = ConsoleContext::from_env().await?;
    let operator = ctx.operator.clone();
    let console = Console::start_for(ctx, args.bind, args.allow_remote, &args.hosts).await?;
    eprintln!("Operations console: {} (as {operator}; Ctrl-C stops)", console.url());
    console.wait().await
}

/// Query strings of the pages.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub days: Option<u32>,
    #[serde(default)]
    pub notice: Option<String>,
    /// The session's signature of `notice` (shown only when it matches).
    #[serde(default)]
    pub sig: Option<String>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_bound_to_its_session() {
        let key = [7u8; 32];
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let shared = |headers: &HeaderMap, t: &str| csrf_ok(&key, headers, t);
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("x=1; {SESSION_COOKIE}={a}")).unwrap());
        assert!(shared(&headers, &token(&key, &a)));
        assert!(!shared(&headers, &token(&key, &b)), "another session's token");
        assert!(!shared(&headers, "zz"), "not hex");
        assert!(!shared(&HeaderMap::new(), &token(&key, &a)), "no cookie");
    }

    #[test]
    fn notices_are_form_encoded() {
        assert_eq!(url_encode(&[("notice", "a b/é&")]), "notice=a+b%2F%C3%A9%26");
    }
}
