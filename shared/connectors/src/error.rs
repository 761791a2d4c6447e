//! Failure classification for outbound calls.
//!
//! Every failure of a channel call ends up in one of four classes, decided in one place ([`classify`]),
//! so retries, the circuit breaker and the queue consumers all agree on what is worth trying again:
//! a 429 waits for the channel's allowance, a 5xx or a dropped connection is transient, a rejected token
//! needs a human (or a refresh) and a validation error will fail the same way every time.

use std::{fmt, time::Duration};

use http::HeaderMap;

/// Why a call failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The channel refused for quota reasons (429, Shopify `THROTTLED`): retry after `retry_after`.
    RateLimited,
    /// 5xx, timeouts, connection errors, unreadable bodies: retry with backoff.
    Transient,
    /// Validation errors, unknown SKUs, other 4xx: the same request will fail again.
    Permanent,
    /// 401/403: the credentials are missing, expired or lack a scope.
    Auth,
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Transient => "transient",
            FailureClass::Permanent => "permanent",
            FailureClass::Auth => "auth",
        })
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed channel call (or a failed item inside one), with what the caller needs to decide what next.
#[derive(Debug, thiserror::Error)]
#[error("{class} failure{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
pub struct ConnectorError {
    pub class: FailureClass,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub message: String,
    /// Set by [`ConnectorError::unsupported`]: the channel has no API for the operation, so nothing
    /// was asked (callers that try an operation on every channel skip these quietly).
    pub unsupported: bool,
    #[source]
    source: Option<Source>,
}

impl ConnectorError {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self { class, status: None, retry_after: None, message: message.into(), unsupported: false, source: None }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Permanent, message)
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Transient, message)
    }

    /// A required credential or setting is absent: nothing a retry can fix.
    pub fn missing(what: &str) -> Self {
        Self::permanent(format!("missing {what}"))
    }

    /// The channel offers no API for this operation.
    pub fn unsupported(channel: manifold_domain::Channel, what: &str) -> Self {
        Self { unsupported: true, ..Self::permanent(format!("{channel} has no API to {what}")) }
    }

    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Whether trying the same request again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.class, FailureClass::RateLimited | FailureClass::Transient)
    }

    /// Whether the failure says something about the channel's health (the circuit breaker counts these);
    /// a permanent failure is about the request, not the channel.
    pub fn counts_against_channel(&self) -> bool {
        !matches!(self.class, FailureClass::Permanent)
    }

    /// A copy for per-item outcomes; the source chain stays with the original.
    #[must_use]
    pub fn summary(&self) -> Self {
        Self {
            class: self.class,
            status: self.status,
            retry_after: self.retry_after,
            message: self.message.clone(),
            unsupported: self.unsupported,
            source: None,
        }
    }
}

/// The class of an HTTP status that is not a success.
pub fn class_of_status(status: u16) -> FailureClass {
    match status {
        429 => FailureClass::RateLimited,
        401 | 403 => FailureClass::Auth,
        408 | 500..=599 => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

/// Builds the error for a non-success response: class from the status, `retry_after` from
/// `Retry-After` (seconds) or the channel's reset headers, message from the body (truncated).
pub fn classify(status: u16, headers: &HeaderMap, body: &str) -> ConnectorError {
    let class = class_of_status(status);
    let retry_after = if class == FailureClass::RateLimited { retry_after(headers) } else { None };
    let mut message: String = body.chars().take(500).collect();
    if message.trim().is_empty() {
        message = format!("HTTP {status} with an empty body");
    }
    ConnectorError::new(class, message).with_status(status).with_retry_after(retry_after)
}

/// Transport failures: timeouts, refused connections and unreadable bodies are all transient.
pub fn classify_transport(err: reqwest::Error) -> ConnectorError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_decode() || err.is_body() {
        "unreadable response body"
    } else {
        "request failed"
    };
    let status = err.status().map(|s| s.as_u16());
    let mut e = ConnectorError::transient(what).with_source(err);
    e.status = status;
    e
}

/// A body that should be JSON and is not: the channel (or a proxy) answered with something else.
pub fn malformed(status: u16, err: serde_json::Error) -> ConnectorError {
    ConnectorError::transient("malformed response body").with_status(status).with_source(err)
}

/// How long a refused (429) request should wait: `Retry-After` in seconds, or the window reset some
/// channels send instead. Only meaningful on a refusal: BigCommerce sends its reset time on every
/// response.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_header(headers).or_else(|| {
        let ms = headers.get("x-rate-limit-time-reset-ms")?.to_str().ok()?.trim().parse::<u64>().ok()?;
        Some(Duration::from_millis(ms))
    })
}

/// The `Retry-After` header alone (seconds), whatever the status.
pub fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let secs = headers.get("retry-after")?.to_str().ok()?.trim().parse::<f64>().ok()?;
    Duration::try_from_secs_f64(secs.max(0.0)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(class_of_status(429), FailureClass::RateLimited);
        assert_eq!(class_of_status(503), FailureClass::Transient);
        assert_eq!(class_of_status(500), FailureClass::Transient);
        assert_eq!(class_of_status(401), FailureClass::Auth);
        assert_eq!(class_of_status(403), FailureClass::Auth);
        assert_eq!(class_of_status(400), FailureClass::Permanent);
        assert_eq!(class_of_status(404), FailureClass::Permanent);
        assert_eq!(class_of_status(422), FailureClass::Permanent);
    }

    #[test]
    fn retry_after_comes_from_retry_after_or_reset_headers() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        let e = classify(429, &h, "slow down");
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        assert!(e.is_retryable());

        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-time-reset-ms", "1500".parse().unwrap());
        assert_eq!(classify(429, &h, "").retry_after, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn permanent_failures_are_not_retryable_and_do_not_count_against_the_channel() {
        let e = classify(422, &HeaderMap::new(), r#"{"errors":["unknown sku"]}"#);
        assert_eq!(e.class, FailureClass::Permanent);
        assert!(!e.is_retryable());
        assert!(!e.counts_against_channel());
        assert!(classify(401, &HeaderMap::new(), "").counts_against_channel());
    }

    #[test]
    fn malformed_bodies_are_transient() {
        let err = serde_json::from_str::<serde_json::Value>("{nope").unwrap_err();
        assert_eq!(malformed(200, err).class, FailureClass::Transient);
    }
}
