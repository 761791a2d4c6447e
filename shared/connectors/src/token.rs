//! Channel access tokens that stay valid for as long as a warm connector lives.
//!
//! Amazon (Login with Amazon, 1 h), eBay (2 h), Etsy (1 h), TikTok Shop and Zalando hand out access
//! tokens that expire within hours; Shopify offline tokens, BigCommerce `X-Auth-Token`s and WooCommerce
//! keys do not. Each channel's lifecycle is one value in its connector module (see [`lifecycle`]), not code per channel: the grant,
//! the documented production token endpoint, how the client authenticates and how the answer reads.
//!
//! A [`TokenProvider`] gives the dialects a token that is valid now. [`RefreshingTokens`] caches it
//! until shortly before it expires ([`EXPIRY_MARGIN`]), refreshes it once however many calls wait for it
//! (the refresh runs under the cache's lock: the waiters get its result), forgets it when the channel
//! refuses it, and writes a refresh token the channel rotated (Etsy, TikTok) back to the account's secret
//! through the narrow [`SecretWriter`] port, so the next cold start does not hold a revoked one.
//!
//! The token endpoint of an account is the documented default, or its `token_endpoint` setting (the
//! simulators, sandboxes). Endpoints on the API host (eBay, Etsy, Zalando, OTTO) are a path below the
//! account's `endpoint`; Amazon's and TikTok's live on their own hosts. A flow that sends a scope sends
//! the account's `scope` setting instead of its default when one is set (OTTO: the scopes its app was
//! granted, space separated).

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use base64::Engine;
use manifold_domain::{Channel, config::AccountConfig};
use serde_json::Value;
use tokio::{sync::Mutex, time::Instant};

use crate::{
    Credentials,
    error::{self, ConnectorError, FailureClass},
};

/// How long before its expiry a token is replaced (a token living less than twice this is replaced
/// halfway through its life instead).
pub const EXPIRY_MARGIN: Duration = Duration::from_mins(1);
/// How long a failed write-back of a rotated refresh token waits before it is tried again.
const WRITE_BACK_RETRY: Duration = Duration::from_secs(30);

/// A bearer credential. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The value, for the one header or parameter that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What the dialects ask for before each request: a token that is valid now.
#[async_trait]
pub trait TokenProvider: Send + Sync + fmt::Debug {
    async fn token(&self) -> Result<Token, ConnectorError>;
    /// The channel refused `token`: the next [`token`](Self::token) must not return it again.
    async fn invalidate(&self, token: &Token);
}

/// A token used as stored (Shopify offline tokens, BigCommerce, an `access_token` minted elsewhere).
#[derive(Debug)]
pub struct StoredToken(Result<Token, &'static str>);

impl StoredToken {
    /// The credential `key`; its absence is an `Auth` failure on first use, naming the key.
    pub fn from_credentials(creds: &Credentials, key: &'static str) -> Self {
        Self(creds.get(key).filter(|v| !v.is_empty()).map(Token::new).ok_or(key))
    }
}

#[async_trait]
impl TokenProvider for StoredToken {
    async fn token(&self) -> Result<Token, ConnectorError> {
        self.0.clone().map_err(|key| ConnectorError::new(FailureClass::Auth, format!("missing credential `{key}`")))
    }

    async fn invalidate(&self, _token: &Token) {}
}

/// What a token endpoint answered.
#[derive(Clone)]
pub struct Issued {
    pub access_token: Token,
    /// `None`: the channel did not say (treated as [`DEFAULT_LIFETIME`]).
    pub expires_in: Option<Duration>,
    /// The refresh token to use next time, when the channel sent one (it may be the same one).
    pub refresh_token: Option<String>,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// The lifetime assumed when a channel does not state one (the shortest documented: one hour).
pub const DEFAULT_LIFETIME: Duration = Duration::from_hours(1);

/// One call to a token endpoint: the port [`RefreshingTokens`] refreshes through.
#[async_trait]
pub trait Exchange: Send + Sync + fmt::Debug {
    /// A new access token; `refresh_token` is the current one for refresh grants.
    async fn exchange(&self, refresh_token: Option<&str>) -> Result<Issued, ConnectorError>;
}

/// Writing a rotated credential back into the account's secret.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the rotated credentials back to secret {secret}")]
pub struct SecretWriteError {
    pub secret: String,
    pub retryable: bool,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl SecretWriteError {
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// The narrow port to the account's secret: merge `changes` (key, value) into its JSON object.
#[async_trait]
pub trait SecretWriter: Send + Sync {
    async fn write_back(&self, secret: &str, changes: &[(&str, &str)]) -> Result<(), SecretWriteError>;
}

/// Secrets in memory: the unit tests' fake of Secrets Manager.
#[derive(Debug, Default)]
pub struct MemorySecrets(
    std::sync::Mutex<std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>>,
);

impl MemorySecrets {
    /// The value of `key` in `secret`.
    pub fn get(&self, secret: &str, key: &str) -> Option<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(secret)?.get(key).cloned()
    }
}

#[async_trait]
impl SecretWriter for MemorySecrets {
    async fn write_back(&self, secret: &str, changes: &[(&str, &str)]) -> Result<(), SecretWriteError> {
        let mut all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = all.entry(secret.to_owned()).or_default();
        for (k, v) in changes {
            entry.insert((*k).to_owned(), (*v).to_owned());
        }
        Ok(())
    }
}

/// Where a rotated refresh token goes: the writer and the account's secret name.
#[derive(Clone)]
pub struct WriteBack {
    pub writer: Arc<dyn SecretWriter>,
    pub secret: String,
}

impl fmt::Debug for WriteBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBack").field("secret", &self.secret).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    current: Option<(Token, Instant)>,
    refresh_token: Option<String>,
    /// A rotated refresh token not yet in the secret, and when to try writing it again.
    unsaved: Option<Instant>,
}

/// Caches the access token an [`Exchange`] issues and refreshes it once, shortly before it expires.
pub struct RefreshingTokens {
    exchange: Box<dyn Exchange>,
    margin: Duration,
    write_back: Option<WriteBack>,
    state: Mutex<State>,
}

impl fmt::Debug for RefreshingTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshingTokens")
            .field("exchange", &self.exchange)
            .field("margin", &self.margin)
            .field("write_back", &self.write_back)
            .finish_non_exhaustive()
    }
}

impl RefreshingTokens {
    /// `refresh_token`: the stored one, for refresh grants (`None` for client credentials).
    pub fn new(
        exchange: impl Exchange + 'static,
        refresh_token: Option<String>,
        write_back: Option<WriteBack>,
    ) -> Self {
        Self {
            exchange: Box::new(exchange),
            margin: EXPIRY_MARGIN,
            write_back,
            state: Mutex::new(State { refresh_token, ..State::default() }),
        }
    }

    #[must_use]
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// When a token issued now and living `lifetime` should be replaced.
    fn replace_at(&self, now: Instant, lifetime: Duration) -> Instant {
        now + lifetime.saturating_sub(self.margin.min(lifetime / 2))
    }

    async fn save(&self, state: &mut State, now: Instant) {
        let (Some(wb), Some(refresh)) = (&self.write_back, &state.refresh_token) else {
            state.unsaved = None;
            return;
        };
        match wb.writer.write_back(&wb.secret, &[("refresh_token", refresh)]).await {
            Ok(()) => {
                tracing::info!(secret = %wb.secret, "rotated refresh token written back to the secret");
                state.unsaved = None;
            }
            Err(e) => {
                tracing::error!(secret = %wb.secret, error = %e, retryable = e.is_retryable(), "rotated refresh token not saved: retrying on a later call");
                state.unsaved = Some(now + WRITE_BACK_RETRY);
            }
        }
    }
}

#[async_trait]
impl TokenProvider for RefreshingTokens {
    async fn token(&self) -> Result<Token, ConnectorError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if state.unsaved.is_some_and(|at| at <= now) {
            self.save(&mut state, now).await;
        }
        if let Some((token, replace_at)) = &state.current
            && now < *replace_at
        {
            return Ok(token.clone());
        }
        let issued = self.exchange.exchange(state.refresh_token.as_deref()).await?;
        let now = Instant::now();
        let lifetime = issued.expires_in.unwrap_or(DEFAULT_LIFETIME);
        state.current = Some((issued.access_token.clone(), self.replace_at(now, lifetime)));
        tracing::debug!(lifetime_s = lifetime.as_secs(), "access token refreshed");
        if let Some(rotated) = issued.refresh_token
            && state.refresh_token.as_deref() != Some(rotated.as_str())
        {
            state.refresh_token = Some(rotated);
            self.save(&mut state, now).await;
        }
        Ok(issued.access_token)
    }

    async fn invalidate(&self, token: &Token) {
        let mut state = self.state.lock().await;
        if state.current.as_ref().is_some_and(|(t, _)| t == token) {
            state.current = None;
        }
    }
}

/// The OAuth grant a channel's token endpoint is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=refresh_token`: the stored `refresh_token` buys an access token.
    RefreshToken,
    /// `grant_type=client_credentials`: the app's id and secret buy an access token.
    ClientCredentials,
}

/// How the client authenticates and how the request is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Form POST with `client_id` and `client_secret` in the body (Login with Amazon).
    SecretInBody,
    /// Form POST, client authenticated with HTTP Basic `client_id:client_secret` (eBay, Zalando).
    Basic,
    /// Form POST with `client_id` only: a public OAuth 2 client (Etsy).
    PublicClient,
    /// `GET` with `app_key`, `app_secret`, `refresh_token`, `grant_type` in the query and the answer in
    /// TikTok's `{code, message, data}` envelope, `access_token_expire_in` a unix time.
    TikTok,
}

/// Where an account's client id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Credential(&'static str),
    Setting(&'static str),
}

/// One channel's token lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub grant: Grant,
    /// The documented production endpoint: an absolute URL, or a path below the account's endpoint.
    pub endpoint: &'static str,
    pub auth: ClientAuth,
    pub client_id: Source,
    /// Credential holding the client secret (unused by public clients).
    pub client_secret: &'static str,
    /// `scope` sent with the request, if the channel wants one (the account's `scope` setting, when
    /// set, replaces it).
    pub scope: Option<&'static str>,
}

/// What an account's API calls authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// No bearer token (WooCommerce: Basic consumer key and secret, read by the dialect).
    None,
    /// The stored `access_token`, which does not expire (Shopify offline tokens, BigCommerce).
    Stored,
    /// Obtained from the flow's token endpoint. A secret without the flow's inputs (`refresh_token`, or
    /// a client id and secret) falls back to its stored `access_token`.
    Flow(Flow),
}

pub(crate) const CLIENT_ID: Source = Source::Credential("client_id");

/// Each channel's token lifecycle for its Sell/Admin API calls, as the channel documents it (its
/// connector module's `tokens`).
pub const fn lifecycle(channel: Channel) -> Lifecycle {
    crate::channels::module(channel).tokens
}

/// eBay's application token (client credentials, public scope): what the Notification API's
/// `getPublicKey` takes.
pub const EBAY_APPLICATION: Flow = Flow {
    grant: Grant::ClientCredentials,
    endpoint: "/identity/v1/oauth2/token",
    auth: ClientAuth::Basic,
    client_id: CLIENT_ID,
    client_secret: "client_secret",
    scope: Some("https://api.ebay.com/oauth/api_scope"),
};

/// The token provider of an account's API calls (`None` when its requests carry no token).
pub fn provider(
    account: &AccountConfig,
    creds: &Credentials,
    http: &reqwest::Client,
    write_back: Option<WriteBack>,
) -> Option<Arc<dyn TokenProvider>> {
    match lifecycle(account.channel) {
        Lifecycle::None => None,
        Lifecycle::Stored => Some(Arc::new(StoredToken::from_credentials(creds, "access_token"))),
        Lifecycle::Flow(flow) => Some(flow_provider(account, creds, http, flow, write_back)),
    }
}

/// The provider of `flow` for an account, or its stored `access_token` when the secret lacks the
/// flow's inputs.
pub fn flow_provider(
    account: &AccountConfig,
    creds: &Credentials,
    http: &reqwest::Client,
    flow: Flow,
    write_back: Option<WriteBack>,
) -> Arc<dyn TokenProvider> {
    let present = |key: &str| creds.get(key).is_some_and(|v| !v.is_empty());
    let usable = match flow.grant {
        Grant::RefreshToken => present("refresh_token"),
        Grant::ClientCredentials => {
            present(flow.client_secret) && matches!(flow.client_id, Source::Credential(k) if present(k))
        }
    };
    if !usable {
        return Arc::new(StoredToken::from_credentials(creds, "access_token"));
    }
    let refresh_token = match flow.grant {
        Grant::RefreshToken => creds.get("refresh_token").map(str::to_owned),
        Grant::ClientCredentials => None,
    };
    let write_back = if flow.grant == Grant::RefreshToken { write_back } else { None };
    Arc::new(RefreshingTokens::new(HttpExchange::new(account, creds, http.clone(), flow), refresh_token, write_back))
}

/// The token endpoint of an account: its `token_endpoint` setting, or the flow's documented default.
pub fn token_endpoint(account: &AccountConfig, flow: &Flow) -> String {
    if let Some(url) = account.settings.get("token_endpoint").filter(|u| !u.is_empty()) {
        return url.clone();
    }
    if flow.endpoint.starts_with("https://") {
        flow.endpoint.to_owned()
    } else {
        format!("{}{}", account.endpoint.trim_end_matches('/'), flow.endpoint)
    }
}

/// The scope an account's token requests send: its `scope` setting, else the flow's default; `None`
/// for flows that send none.
pub fn scope(account: &AccountConfig, flow: &Flow) -> Option<String> {
    let default = flow.scope?;
    let configured = account.settings.get("scope").map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "));
    Some(configured.filter(|s| !s.is_empty()).unwrap_or_else(|| default.to_owned()))
}

/// A channel's token endpoint over HTTP.
pub struct HttpExchange {
    channel: Channel,
    http: reqwest::Client,
    endpoint: String,
    flow: Flow,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

impl fmt::Debug for HttpExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpExchange")
            .field("channel", &self.channel)
            .field("endpoint", &self.endpoint)
            .field("grant", &self.flow.grant)
            .finish_non_exhaustive()
    }
}

impl HttpExchange {
    pub fn new(account: &AccountConfig, creds: &Credentials, http: reqwest::Client, flow: Flow) -> Self {
        let client_id = match flow.client_id {
            Source::Credential(k) => creds.get(k),
            Source::Setting(k) => account.settings.get(k).map(String::as_str),
        };
        Self {
            channel: account.channel,
            http,
            endpoint: token_endpoint(account, &flow),
            flow,
            client_id: client_id.filter(|v| !v.is_empty()).map(str::to_owned),
            client_secret: creds.get(flow.client_secret).filter(|v| !v.is_empty()).map(str::to_owned),
            scope: scope(account, &flow),
        }
    }

    fn client_id(&self) -> Result<&str, ConnectorError> {
        self.client_id.as_deref().ok_or_else(|| missing(self.flow.client_id_name()))
    }

    fn client_secret(&self) -> Result<&str, ConnectorError> {
        self.client_secret.as_deref().ok_or_else(|| missing(self.flow.client_secret))
    }

    fn request(&self, refresh_token: Option<&str>) -> Result<reqwest::RequestBuilder, ConnectorError> {
        let refresh = || refresh_token.ok_or_else(|| missing("refresh_token"));
        let mut form: Vec<(&str, &str)> = Vec::new();
        match self.flow.grant {
            Grant::RefreshToken => form.extend([("grant_type", "refresh_token"), ("refresh_token", refresh()?)]),
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let post = |form: &[(&str, &str)]| {
            self.http
                .post(&self.endpoint)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(form_urlencoded(form))
        };
        Ok(match self.flow.auth {
            ClientAuth::SecretInBody => {
                form.extend([("client_id", self.client_id()?), ("client_secret", self.client_secret()?)]);
                post(&form)
            }
            ClientAuth::Basic => {
                let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    self.client_id()?,
                    self.client_secret()?
                ));
                post(&form).header("authorization", format!("Basic {basic}"))
            }
            ClientAuth::PublicClient => {
                form.push(("client_id", self.client_id()?));
                post(&form)
            }
            ClientAuth::TikTok => {
                form.extend([("app_key", self.client_id()?), ("app_secret", self.client_secret()?)]);
                self.http.get(&self.endpoint).query(&form)
            }
        })
    }
}

#[async_trait]
impl Exchange for HttpExchange {
    async fn exchange(&self, refresh_token: Option<&str>) -> Result<Issued, ConnectorError> {
        let response = self.request(refresh_token)?.send().await.map_err(error::classify_transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(error::classify_transport)?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            return Err(refused(self.channel, status, &headers, &body));
        }
        let issued = match self.flow.auth {
            ClientAuth::TikTok => tiktok_issued(&body),
            _ => oauth_issued(&body),
        };
        issued.ok_or_else(|| refused(self.channel, status, &headers, &body))
    }
}

/// A refused token request. 400/401/403 mean the grant or the client is not valid (RFC 6749
/// `invalid_grant`, `invalid_client`): an `Auth` failure; 429 and 5xx keep their usual classes. The
/// message carries the channel's error code, never the request.
fn refused(channel: Channel, status: u16, headers: &http::HeaderMap, body: &Value) -> ConnectorError {
    let code = body
        .get("error")
        .or_else(|| body.get("code"))
        .map_or_else(|| "no error code".to_owned(), |c| c.as_str().map_or_else(|| c.to_string(), str::to_owned));
    let described = body
        .get("error_description")
        .or_else(|| body.get("message"))
        .and_then(Value::as_str)
        .map(|d| d.chars().take(200).collect::<String>());
    let message = format!(
        "{channel} token endpoint refused the {}: {code}{}",
        if status == 200 { "grant in its body" } else { "grant" },
        described.map(|d| format!(" ({d})")).unwrap_or_default()
    );
    let class = match status {
        200..=299 | 400 | 401 | 403 => FailureClass::Auth,
        other => error::class_of_status(other),
    };
    let retry_after = if class == FailureClass::RateLimited { error::retry_after(headers) } else { None };
    ConnectorError::new(class, message).with_status(status).with_retry_after(retry_after)
}

/// RFC 6749 section 5.1: `{access_token, token_type, expires_in, refresh_token?}`.
fn oauth_issued(body: &Value) -> Option<Issued> {
    let access_token = body.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty())?;
    Some(Issued {
        access_token: Token::new(access_token),
        expires_in: body.get("expires_in").and_then(Value::as_u64).map(Duration::from_secs),
        refresh_token: body.get("refresh_token").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned),
    })
}

/// TikTok: `{code: 0, data: {access_token, access_token_expire_in (unix seconds), refresh_token, ...}}`.
fn tiktok_issued(body: &Value) -> Option<Issued> {
    if body.get("code").and_then(Value::as_i64) != Some(0) {
        return None;
    }
    let data = body.get("data")?;
    let access_token = data.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty())?;
    let expires_at = data.get("access_token_expire_in").and_then(Value::as_i64);
    let now = chrono::Utc::now().timestamp();
    Some(Issued {
        access_token: Token::new(access_token),
        expires_in: expires_at.map(|at| Duration::from_secs(u64::try_from(at - now).unwrap_or(0))),
        refresh_token: data.get("refresh_token").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned),
    })
}

impl Flow {
    fn client_id_name(&self) -> &'static str {
        match self.client_id {
            Source::Credential(k) | Source::Setting(k) => k,
        }
    }
}

fn missing(key: &str) -> ConnectorError {
    ConnectorError::new(FailureClass::Auth, format!("missing credential `{key}` for the token endpoint"))
}

/// `application/x-www-form-urlencoded`, unreserved characters kept, everything else percent-encoded.
pub fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Issues `t1`, `t2`, ... living `lifetime`; rotates the refresh token when `rotate`.
    #[derive(Debug)]
    struct FakeEndpoint {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
        rotate: bool,
        seen: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    }

    impl FakeEndpoint {
        fn new(lifetime: Duration, rotate: bool) -> Self {
            Self { calls: Arc::default(), lifetime, rotate, seen: Arc::default() }
        }
    }

    #[async_trait]
    impl Exchange for FakeEndpoint {
        async fn exchange(&self, refresh_token: Option<&str>) -> Result<Issued, ConnectorError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.seen.lock().unwrap().push(refresh_token.map(str::to_owned));
            // A refresh takes a while: concurrent callers pile up behind it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if refresh_token == Some("revoked") {
                return Err(ConnectorError::new(FailureClass::Auth, "invalid_grant"));
            }
            Ok(Issued {
                access_token: Token::new(format!("t{n}")),
                expires_in: Some(self.lifetime),
                refresh_token: self.rotate.then(|| format!("r{n}")),
            })
        }
    }

    fn account(channel: &str, endpoint: &str) -> AccountConfig {
        serde_json::from_value(serde_json::json!({
            "channel": channel, "account": "a-1", "api_version": "v1", "secret": "s", "endpoint": endpoint,
            "rate_limit": { "kind": "unlimited" },
        }))
        .unwrap()
    }

    fn tokens(endpoint: FakeEndpoint, writer: Option<Arc<MemorySecrets>>) -> RefreshingTokens {
        let write_back = writer.map(|w| WriteBack { writer: w, secret: "manifold/etsy/shop".into() });
        RefreshingTokens::new(endpoint, Some("r0".into()), write_back)
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_reused_until_the_margin_before_its_expiry() {
        let endpoint = FakeEndpoint::new(Duration::from_hours(1), false);
        let calls = endpoint.calls.clone();
        let provider = tokens(endpoint, None);

        assert_eq!(provider.token().await.unwrap().expose(), "t1");
        tokio::time::advance(Duration::from_mins(58)).await;
        assert_eq!(provider.token().await.unwrap().expose(), "t1", "still more than 60 s to live");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(provider.token().await.unwrap().expose(), "t2", "within the margin: refreshed");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_lived_token_is_refreshed_halfway_through_its_life() {
        let endpoint = FakeEndpoint::new(Duration::from_secs(4), false);
        let provider = tokens(endpoint, None);
        assert_eq!(provider.token().await.unwrap().expose(), "t1");
        tokio::time::advance(Duration::from_millis(1900)).await;
        assert_eq!(provider.token().await.unwrap().expose(), "t1");
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(provider.token().await.unwrap().expose(), "t2");
    }

    #[tokio::test]
    async fn fifty_concurrent_callers_cause_one_refresh() {
        let endpoint = FakeEndpoint::new(Duration::from_hours(1), false);
        let calls = endpoint.calls.clone();
        let provider = Arc::new(tokens(endpoint, None));
        let all = futures::future::join_all((0..50).map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.token().await.unwrap() })
        }))
        .await;
        assert!(all.into_iter().all(|t| t.unwrap().expose() == "t1"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_rotated_refresh_token_is_used_next_and_written_back() {
        let endpoint = FakeEndpoint::new(Duration::from_hours(1), true);
        let seen = endpoint.seen.clone();
        let secrets = Arc::new(MemorySecrets::default());
        let provider = tokens(endpoint, Some(secrets.clone()));

        let first = provider.token().await.unwrap();
        assert_eq!(secrets.get("manifold/etsy/shop", "refresh_token").as_deref(), Some("r1"));
        provider.invalidate(&first).await;
        assert_eq!(provider.token().await.unwrap().expose(), "t2");
        assert_eq!(secrets.get("manifold/etsy/shop", "refresh_token").as_deref(), Some("r2"));
        assert_eq!(*seen.lock().unwrap(), vec![Some("r0".to_owned()), Some("r1".to_owned())]);
    }

    #[tokio::test]
    async fn an_unchanged_refresh_token_is_not_written() {
        #[derive(Debug)]
        struct SameRefresh;
        #[async_trait]
        impl Exchange for SameRefresh {
            async fn exchange(&self, r: Option<&str>) -> Result<Issued, ConnectorError> {
                Ok(Issued { access_token: Token::new("t"), expires_in: None, refresh_token: r.map(str::to_owned) })
            }
        }
        let secrets = Arc::new(MemorySecrets::default());
        let wb = WriteBack { writer: secrets.clone(), secret: "s".into() };
        let provider = RefreshingTokens::new(SameRefresh, Some("r0".into()), Some(wb));
        provider.token().await.unwrap();
        assert_eq!(secrets.get("s", "refresh_token"), None);
    }

    #[tokio::test]
    async fn an_invalidated_token_is_replaced_and_an_other_one_is_kept() {
        let endpoint = FakeEndpoint::new(Duration::from_hours(1), false);
        let provider = tokens(endpoint, None);
        let t1 = provider.token().await.unwrap();
        provider.invalidate(&Token::new("not-the-current-one")).await;
        assert_eq!(provider.token().await.unwrap(), t1);
        provider.invalidate(&t1).await;
        assert_eq!(provider.token().await.unwrap().expose(), "t2");
    }

    #[tokio::test]
    async fn a_refused_refresh_token_is_an_auth_failure() {
        let endpoint = FakeEndpoint::new(Duration::from_hours(1), false);
        let provider = RefreshingTokens::new(endpoint, Some("revoked".into()), None);
        assert_eq!(provider.token().await.unwrap_err().class, FailureClass::Auth);
    }

    #[test]
    fn token_endpoints_are_the_documented_defaults_unless_overridden() {
        let mut account = account("etsy", "https://api.etsy.com/");
        let Lifecycle::Flow(etsy) = lifecycle(Channel::Etsy) else { panic!("etsy refreshes") };
        assert_eq!(token_endpoint(&account, &etsy), "https://api.etsy.com/v3/public/oauth/token");
        let Lifecycle::Flow(amazon) = lifecycle(Channel::Amazon) else { panic!("amazon refreshes") };
        assert_eq!(token_endpoint(&account, &amazon), "https://api.amazon.com/auth/o2/token");
        account.settings.insert("token_endpoint".into(), "http://127.0.0.1:9/amazon/auth/o2/token".into());
        assert_eq!(token_endpoint(&account, &amazon), "http://127.0.0.1:9/amazon/auth/o2/token");
    }

    #[test]
    fn otto_sends_its_client_credentials_and_the_configured_scope_in_the_form() {
        let Lifecycle::Flow(otto) = lifecycle(Channel::Otto) else { panic!("otto mints tokens") };
        let mut account = account("otto", "https://api.otto.market");
        assert_eq!(token_endpoint(&account, &otto), "https://api.otto.market/v1/token");
        let creds: Credentials = [("client_id", "app-1"), ("client_secret", "s3cret")].into_iter().collect();
        let form = |account: &AccountConfig| {
            let exchange = HttpExchange::new(account, &creds, reqwest::Client::new(), otto);
            let request = exchange.request(None).unwrap().build().unwrap();
            String::from_utf8(request.body().and_then(reqwest::Body::as_bytes).unwrap().to_vec()).unwrap()
        };
        assert_eq!(
            form(&account),
            "grant_type=client_credentials&scope=orders%20shipments%20availability%20products&client_id=app-1&client_secret=s3cret"
        );
        account.settings.insert("scope".into(), "  orders   quantities ".into());
        assert!(form(&account).contains("&scope=orders%20quantities&"), "the setting wins, spaces tidied");
        // A flow without a scope never sends one, whatever the account says.
        let Lifecycle::Flow(amazon) = lifecycle(Channel::Amazon) else { panic!("amazon refreshes") };
        assert_eq!(scope(&account, &amazon), None);
    }

    #[test]
    fn a_secret_without_refresh_material_keeps_its_stored_token() {
        let account = account("amazon", "https://sellingpartnerapi-eu.amazon.com");
        let http = reqwest::Client::new();
        let stored: Credentials = [("access_token", "Atza|x")].into_iter().collect();
        assert!(format!("{:?}", provider(&account, &stored, &http, None).unwrap()).starts_with("StoredToken"));
        let refresh: Credentials =
            [("refresh_token", "Atzr|x"), ("client_id", "id"), ("client_secret", "cs")].into_iter().collect();
        let shown = format!("{:?}", provider(&account, &refresh, &http, None).unwrap());
        assert!(shown.starts_with("RefreshingTokens") && !shown.contains("Atzr"), "{shown}");
    }

    #[test]
    fn form_bodies_are_percent_encoded() {
        assert_eq!(form_urlencoded(&[("a", "x y"), ("r", "Atzr|IwE=")]), "a=x%20y&r=Atzr%7CIwE%3D");
    }

    #[test]
    fn tiktok_expiry_is_a_unix_time() {
        let at = chrono::Utc::now().timestamp() + 600;
        let body = serde_json::json!({ "code": 0, "data": { "access_token": "a", "access_token_expire_in": at, "refresh_token": "r" } });
        let issued = tiktok_issued(&body).unwrap();
        assert!(issued.expires_in.unwrap() > Duration::from_secs(590));
        assert_eq!(issued.refresh_token.as_deref(), Some("r"));
        assert!(
            tiktok_issued(&serde_json::json!({ "code": 36_004_004, "message": "invalid refresh token" })).is_none()
        );
    }
}
