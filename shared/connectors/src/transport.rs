//! The HTTP plumbing every channel shares: wait for the rate limiter, send with the trace id, read the
//! body, feed the response's rate-limit signals back, classify failures, retry only what the channel
//! refused for quota reasons (after the wait it asked for).
//!
//! What differs per channel is small and lives in its [`Dialect`]: how to authenticate (and sign) a
//! request, which headers carry the allowance, and which 2xx bodies are really errors. The token a
//! dialect puts on the request comes from the account's [`TokenProvider`] (see [`crate::token`]), asked
//! before each request; a token the channel refuses is dropped so the next request gets a new one.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use http::{HeaderMap, Method};
use manifold_domain::{Channel, config::AccountConfig};
use serde_json::Value;

use crate::{
    client::CallContext,
    error::{self, ConnectorError, FailureClass},
    ratelimit::{RateLimiter, Signals},
    token::{Token, TokenProvider},
};

/// How many times a request refused with 429 (or an in-body throttle) is sent again after waiting.
const RATE_LIMITED_RETRIES: u32 = 3;

/// A request before it is sent: channels build these, dialects authorize them, [`Api::send`] sends.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    /// A path below the account's endpoint, or an absolute URL (pre-signed upload URLs, next links).
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    /// A body sent as is instead of `body`, with its content type (a feed document).
    pub raw: Option<(String, bytes::Bytes)>,
    /// Whether the reply is a document kept as bytes ([`Reply::raw`]) rather than JSON to parse.
    pub raw_reply: bool,
    /// Points for points-based limits (Shopify); 1 for everything else.
    pub cost: f64,
}

impl Req {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            raw: None,
            raw_reply: false,
            cost: 1.0,
        }
    }
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn post(path: impl Into<String>, body: Value) -> Self {
        Self::new(Method::POST, path).json(body)
    }
    pub fn put(path: impl Into<String>, body: Value) -> Self {
        Self::new(Method::PUT, path).json(body)
    }
    pub fn patch(path: impl Into<String>, body: Value) -> Self {
        Self::new(Method::PATCH, path).json(body)
    }
    #[must_use]
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    /// Sends `bytes` as the body, with `content_type`.
    #[must_use]
    pub fn raw(mut self, content_type: impl Into<String>, bytes: impl Into<bytes::Bytes>) -> Self {
        self.raw = Some((content_type.into(), bytes.into()));
        self
    }
    /// Keeps the reply's body as bytes ([`Reply::raw`]): a downloaded document, not a JSON answer.
    #[must_use]
    pub fn raw_reply(mut self) -> Self {
        self.raw_reply = true;
        self
    }
    #[must_use]
    pub fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_owned(), value.into()));
        self
    }
    #[must_use]
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    #[must_use]
    pub fn cost(mut self, cost: f64) -> Self {
        self.cost = cost;
        self
    }
}

/// A successful response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The JSON body (`Null` when empty, or when the request asked for [`Req::raw_reply`]).
    pub body: Value,
    /// The body as received, for [`Req::raw_reply`] requests (empty otherwise).
    pub raw: bytes::Bytes,
}

/// The per-channel parts of talking HTTP.
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// Adds credentials (headers, query parameters, a signature) to a request about to be sent.
    /// `token` is the account's current access token (`None` for channels without one).
    fn authorize(&self, req: &mut Req, token: Option<&Token>) -> Result<(), ConnectorError>;
    /// What the response says about the remaining allowance.
    fn signals(&self, headers: &HeaderMap, _body: &Value) -> Signals {
        Signals { retry_after: error::retry_after_header(headers), ..Signals::default() }
    }
    /// Errors a channel reports inside a 2xx body (Shopify GraphQL `THROTTLED`, TikTok `code != 0`).
    fn body_error(&self, _body: &Value) -> Option<ConnectorError> {
        None
    }
}

/// The plain OAuth bearer scheme (`Authorization: Bearer {access_token}`), for channels whose
/// requests need nothing else (eBay, Zalando).
#[derive(Debug)]
pub struct Bearer;

impl Dialect for Bearer {
    fn authorize(&self, req: &mut Req, token: Option<&Token>) -> Result<(), ConnectorError> {
        req.headers.push(("authorization", format!("Bearer {}", required(token)?.expose())));
        Ok(())
    }
}

/// The access token a dialect cannot do without.
pub fn required(token: Option<&Token>) -> Result<&Token, ConnectorError> {
    token.ok_or_else(|| ConnectorError::new(FailureClass::Auth, "missing credential `access_token`"))
}

/// What every connector gets from [`crate::build`]: the account's endpoint, settings and limiter.
#[derive(Debug, Clone)]
pub struct ApiParts {
    pub channel: Channel,
    pub base: String,
    pub api_version: String,
    pub account: String,
    pub settings: BTreeMap<String, String>,
    pub http: reqwest::Client,
    pub limiter: Arc<RateLimiter>,
    /// The account's access tokens (`None`: its requests carry none).
    pub tokens: Option<Arc<dyn TokenProvider>>,
}

impl ApiParts {
    pub fn new(account: &AccountConfig, http: reqwest::Client, tokens: Option<Arc<dyn TokenProvider>>) -> Self {
        Self {
            channel: account.channel,
            base: account.endpoint.trim_end_matches('/').to_owned(),
            api_version: account.api_version.clone(),
            account: account.account.to_string(),
            settings: account.settings.clone(),
            http,
            limiter: Arc::new(RateLimiter::new(&account.rate_limit)),
            tokens,
        }
    }

    /// A required `settings` entry; missing or empty is a permanent configuration error.
    pub fn setting(&self, key: &str) -> Result<&str, ConnectorError> {
        self.settings
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ConnectorError::missing(&format!("setting `{key}` for {}", self.channel)))
    }

    /// The channel's documented batch size, lowered by an optional `batch_size` setting (never raised).
    pub fn batch(&self, channel_max: usize) -> usize {
        self.settings
            .get("batch_size")
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(channel_max, |b| b.clamp(1, channel_max))
    }
}

/// One account's HTTP client: parts plus dialect.
#[derive(Debug)]
pub struct Api {
    pub parts: ApiParts,
    dialect: Box<dyn Dialect>,
}

impl Api {
    pub fn new(parts: ApiParts, dialect: impl Dialect + 'static) -> Self {
        Self { parts, dialect: Box::new(dialect) }
    }

    pub fn channel(&self) -> Channel {
        self.parts.channel
    }

    /// Sends `req` within the account's allowance; 2xx comes back as a [`Reply`], anything else as a
    /// classified error. Requests refused for quota are retried after the wait the channel asked for.
    pub async fn send(&self, req: Req, ctx: &CallContext) -> Result<Reply, ConnectorError> {
        let mut req = req;
        let token = match &self.parts.tokens {
            Some(tokens) => Some(tokens.token().await?),
            None => None,
        };
        self.dialect.authorize(&mut req, token.as_ref())?;
        let mut attempt = 0;
        loop {
            let permit = self.parts.limiter.acquire(req.cost).await;
            let outcome = self.send_once(&req, ctx).await;
            let (reply, signals) = match outcome {
                Ok((reply, signals)) => (reply, signals),
                Err(e) => {
                    self.parts.limiter.release(permit).await;
                    return Err(e);
                }
            };
            let mut signals = signals;
            let result = self.check(reply);
            if let Err(e) = &result
                && e.class == FailureClass::RateLimited
            {
                signals.retry_after = signals.retry_after.or(e.retry_after).or(Some(Duration::from_secs(1)));
            }
            self.parts.limiter.observe(permit, &signals).await;
            match result {
                Err(e) if e.class == FailureClass::RateLimited && attempt < RATE_LIMITED_RETRIES => {
                    attempt += 1;
                    tracing::warn!(channel = %self.parts.channel, attempt, error = %e, "throttled; retrying after the channel's wait");
                }
                Err(e) if e.class == FailureClass::Auth => {
                    if let (Some(tokens), Some(token)) = (&self.parts.tokens, &token) {
                        tokens.invalidate(token).await;
                    }
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    async fn send_once(&self, req: &Req, ctx: &CallContext) -> Result<(Reply, Signals), ConnectorError> {
        let url = if req.path.starts_with("http://") || req.path.starts_with("https://") {
            req.path.clone()
        } else {
            format!("{}{}", self.parts.base, req.path)
        };
        let mut builder =
            self.parts.http.request(req.method.clone(), &url).query(&req.query).header("x-request-id", &ctx.trace_id);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        if let Some((content_type, bytes)) = &req.raw {
            builder = builder.header(http::header::CONTENT_TYPE, content_type).body(bytes.clone());
        } else if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(error::classify_transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(error::classify_transport)?;
        let ok = (200..300).contains(&status);
        if req.raw_reply && ok {
            let signals = self.dialect.signals(&headers, &Value::Null);
            return Ok((Reply { status, headers, body: Value::Null, raw: bytes }, signals));
        }
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) if ok => return Err(error::malformed(status, e)),
                Err(_) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            }
        };
        let signals = self.dialect.signals(&headers, &body);
        tracing::debug!(channel = %self.parts.channel, method = %req.method, path = %req.path, status, "channel call");
        Ok((Reply { status, headers, body, raw: bytes::Bytes::new() }, signals))
    }

    fn check(&self, reply: Reply) -> Result<Reply, ConnectorError> {
        if (200..300).contains(&reply.status) {
            return match self.dialect.body_error(&reply.body) {
                Some(e) => Err(e.with_status(reply.status)),
                None => Ok(reply),
            };
        }
        let text = match &reply.body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Err(error::classify(reply.status, &reply.headers, &text))
    }
}

/// Splits `items` into the channel's batches.
pub fn batches<T>(items: &[T], size: usize) -> std::slice::Chunks<'_, T> {
    items.chunks(size.max(1))
}

/// A header as a string, if present and readable.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The credential `key`, or an `Auth` failure naming it (never its value).
pub fn credential(creds: &crate::Credentials, key: &str) -> Result<String, ConnectorError> {
    creds
        .get(key)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ConnectorError::new(FailureClass::Auth, format!("missing credential `{key}`")))
}

/// A JSON field that must be present in a channel response; its absence is a malformed body.
pub fn field<'a>(body: &'a Value, pointer: &str) -> Result<&'a Value, ConnectorError> {
    body.pointer(pointer).ok_or_else(|| ConnectorError::transient(format!("malformed response: no `{pointer}`")))
}
