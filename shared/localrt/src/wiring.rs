//! The template's wiring around the functions, emulated on loopback:
//! - the HTTP API: each route of the `AWS::ApiGatewayV2::Api` on 127.0.0.1, delivered to its function as a
//!   payload 2.0 event with the route's path parameters; IAM-authorized routes accept only a request
//!   SigV4-signed (service `execute-api`) with the local credentials, and answer 403 otherwise;
//! - the SQS event source mappings as configured: batch size, batching window, maximum concurrency,
//!   partial batch responses (successes deleted, failures left to the visibility timeout and the queue's
//!   redrive policy, which the emulator applies); a failed or timed-out invocation deletes nothing;
//! - the schedules: each scheduled rule fires its function every `rate / speedup`, with the target's input.
//!
//! EventBridge rules whose targets are queues (LedgerRule) are delivered by the emulator itself.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::{FunctionError, Runtime, RuntimeError, events, template::Route};

/// How the wiring runs.
#[derive(Debug, Clone)]
pub struct WiringOptions {
    /// The HTTP API's address (port 0 picks a free one).
    pub http_addr: SocketAddr,
    /// Schedules fire `speedup` times faster than the template says (1: real time).
    pub speedup: u32,
    /// Pause between receives of an SQS poller that found its queue empty.
    pub idle_poll: Duration,
    /// Whether the schedules fire at all (a benchmark of the order path leaves them off).
    pub schedules: bool,
}

impl Default for WiringOptions {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            speedup: 1,
            idle_poll: Duration::from_millis(250),
            schedules: true,
        }
    }
}

/// Counters of the wiring, for reports and tests.
#[derive(Debug, Default)]
pub struct WiringStats {
    pub http_requests: AtomicU64,
    pub http_rejected_unsigned: AtomicU64,
    pub batches: AtomicU64,
    pub messages_deleted: AtomicU64,
    pub messages_failed: AtomicU64,
    pub schedule_fires: AtomicU64,
    /// Receives that returned messages, and their billed 64 KB units (an event source mapping's
    /// receives, which SQS bills to the account; its idle long polls are a fixed cost per queue).
    pub receives_with_messages: AtomicU64,
    pub received_units: AtomicU64,
    /// Per message, from its `SentTimestamp` to the poll that received it, in milliseconds: the delay
    /// this emulation's polling adds at each queue hop.
    pub poll_delays_ms: std::sync::Mutex<Vec<u64>>,
    /// Messages received per queue (the mapping's queue logical id), redeliveries included.
    pub received_messages: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl WiringStats {
    /// The poll delays measured so far, shortest first.
    pub fn poll_delays(&self) -> Vec<u64> {
        let mut d = self.poll_delays_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        d.sort_unstable();
        d
    }
}

/// The running wiring; stops when dropped.
#[derive(Debug)]
pub struct Wiring {
    pub http_addr: SocketAddr,
    pub stats: Arc<WiringStats>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Wiring {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Wiring {
    /// Starts the HTTP API, one poller per concurrent batch of each SQS mapping, and the schedule timers.
    pub async fn start(runtime: Arc<Runtime>, options: WiringOptions) -> Result<Self, RuntimeError> {
        let stats = Arc::new(WiringStats::default());
        let sdk = runtime.aws.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let mut tasks = Vec::new();

        let routes = runtime.template.routes()?;
        let listener = tokio::net::TcpListener::bind(options.http_addr)
            .await
            .map_err(|e| RuntimeError::Other(format!("cannot listen on {}: {e}", options.http_addr)))?;
        let http_addr = listener.local_addr().map_err(|e| RuntimeError::Other(e.to_string()))?;
        let api = Arc::new(HttpApi { runtime: runtime.clone(), routes, stats: stats.clone() });
        let app = axum::Router::new().fallback(serve_route).with_state(api);
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));

        for mapping in runtime.template.sqs_mappings()? {
            if !mapping.enabled {
                continue;
            }
            let function = runtime
                .function(&mapping.function)
                .ok_or_else(|| {
                    RuntimeError::Other(format!("{}: no function {}", mapping.logical_id, mapping.function))
                })?
                .clone();
            let poller = Arc::new(SqsPoller {
                queue_url: runtime.stack.queue_url(&mapping.queue)?,
                queue_arn: runtime.stack.attribute(&mapping.queue, "Arn")?,
                region: runtime.stack.region.clone(),
                mapping,
                function: function.clone(),
                sqs: sqs.clone(),
                stats: stats.clone(),
                idle_poll: options.idle_poll,
            });
            // Concurrent batches: the mapping's MaximumConcurrency (the function's environment limit).
            for _ in 0..function.config.max_concurrency.max(1) {
                let poller = poller.clone();
                tasks.push(tokio::spawn(async move { poller.run().await }));
            }
        }

        let schedules = if options.schedules { runtime.template.schedules()? } else { Vec::new() };
        for schedule in schedules {
            let function = runtime
                .function(&schedule.function)
                .ok_or_else(|| RuntimeError::Other(format!("{}: no function {}", schedule.rule, schedule.function)))?
                .clone();
            let rule_arn = runtime.stack.attribute(&schedule.rule, "Arn").unwrap_or_default();
            let event = events::scheduled_event(
                schedule.input.as_ref(),
                &rule_arn,
                &runtime.stack.account,
                &runtime.stack.region,
            );
            let every = schedule.every / options.speedup.max(1);
            let stats = stats.clone();
            tasks.push(tokio::spawn(async move {
                // A rate schedule first fires one period after it is created.
                let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    stats.schedule_fires.fetch_add(1, Ordering::Relaxed);
                    // Asynchronous invocation: a failure is logged by the function; the rule moves on.
                    if let Err(e) = function.invoke(&event).await {
                        tracing::warn!(rule = %schedule.rule, error = %e, "scheduled invocation failed");
                    }
                }
            }));
        }
        Ok(Self { http_addr, stats, tasks })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }
}

// --------------------------------------------------------------------------------------- HTTP API

struct HttpApi {
    runtime: Arc<Runtime>,
    routes: Vec<Route>,
    stats: Arc<WiringStats>,
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, [("content-type", "application/json")], json!({ "message": text }).to_string()).into_response()
}

async fn serve_route(
    State(api): State<Arc<HttpApi>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api.stats.http_requests.fetch_add(1, Ordering::Relaxed);
    let path = uri.path();
    let Some((route, params)) = api.routes.iter().find_map(|r| r.matches(method.as_str(), path).map(|p| (r, p))) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(function) = api.runtime.function(&route.function) else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    if route.iam {
        let aws = &api.runtime.aws;
        if let Err(reason) = verify_sigv4(
            method.as_str(),
            &uri,
            &headers,
            &body,
            &aws.access_key_id,
            &aws.secret_access_key,
            SystemTime::now(),
        ) {
            api.stats.http_rejected_unsigned.fetch_add(1, Ordering::Relaxed);
            tracing::info!(route = %route.key(), reason, "IAM-authorized route refused");
            return message(StatusCode::FORBIDDEN, "Forbidden");
        }
    }
    // API Gateway joins repeated headers with commas and lower-cases the names.
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        joined
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let key = route.key();
    let account = api.runtime.stack.account.clone();
    let access_key = api.runtime.aws.access_key_id.clone();
    let event = events::http_api_event(&events::HttpRequest {
        route_key: &key,
        method: method.as_str(),
        path,
        raw_query: uri.query().unwrap_or_default(),
        headers: joined,
        path_parameters: params,
        body: &body,
        iam: route.iam.then_some((access_key.as_str(), account.as_str())),
        account: &account,
        api_id: "local",
    });
    match function.invoke(&event).await {
        Ok(answer) => {
            let r = events::http_api_response(&answer);
            let mut response = Response::builder().status(r.status);
            for (k, v) in &r.headers {
                response = response.header(k, v);
            }
            response.body(Body::from(r.body)).unwrap_or_else(|_| message(StatusCode::BAD_GATEWAY, "Bad Gateway"))
        }
        Err(FunctionError::Timeout { .. }) => message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        Err(e) => {
            tracing::warn!(route = %key, error = %e, "integration failed");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// Checks a SigV4 `Authorization` header (service `execute-api`) against the local credentials: the
/// same canonical request re-signed over the headers the caller signed must give the same signature,
/// within API Gateway's 5 minutes of clock skew.
pub fn verify_sigv4(
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    access_key_id: &str,
    secret_access_key: &str,
    now: SystemTime,
) -> Result<(), String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};

    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header (the route is IAM-authorized: sign the request with SigV4)")?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not an AWS4-HMAC-SHA256 signature")?;
    let field = |name: &str| {
        rest.split(',').map(str::trim).find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let credential = field("Credential").ok_or("no Credential")?;
    let signed_headers = field("SignedHeaders").ok_or("no SignedHeaders")?;
    let signature = field("Signature").ok_or("no Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(format!("malformed credential scope {credential}"));
    };
    if *key != access_key_id {
        return Err(format!("unknown access key {key}"));
    }
    if *service != "execute-api" {
        return Err(format!("signed for service {service}, not execute-api"));
    }
    let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or("no X-Amz-Date")?;
    let time = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|e| format!("X-Amz-Date {amz_date}: {e}"))?
        .and_utc();
    let signed_at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(time.timestamp()).unwrap_or_default());
    let skew = now.duration_since(signed_at).unwrap_or_else(|e| e.duration());
    if skew > Duration::from_mins(5) {
        return Err(format!("signed {}s away from now (5 minutes allowed)", skew.as_secs()));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    let signed: Vec<(&str, String)> = names
        .iter()
        .filter(|n| **n != "x-amz-date")
        .filter_map(|n| {
            let values: Vec<&str> = headers.get_all(*n).iter().filter_map(|v| v.to_str().ok()).collect();
            (!values.is_empty()).then(|| (*n, values.join(",")))
        })
        .collect();
    let identity = aws_credential_types::Credentials::new(access_key_id, secret_access_key, None, None, "local").into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let request =
        SignableRequest::new(method, target, signed.iter().map(|(k, v)| (*k, v.as_str())), SignableBody::Bytes(body))
            .map_err(|e| e.to_string())?;
    let expected = sign(request, &params).map_err(|e| e.to_string())?.signature().to_owned();
    if expected == signature { Ok(()) } else { Err("signature does not match".to_owned()) }
}

/// The headers that sign a request to an IAM-authorized route (`Authorization`, `X-Amz-Date`), as an
/// AWS SDK or `curl --aws-sigv4` would send them. `url` is absolute (its host is signed).
pub fn sign_sigv4(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    aws: &crate::LocalAws,
    now: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};

    let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri.authority().map(ToString::to_string).ok_or_else(|| format!("{url} has no host"))?;
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("host", host.as_str()));
    let identity =
        aws_credential_types::Credentials::new(&aws.access_key_id, &aws.secret_access_key, None, None, "local").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&aws.region)
        .name("execute-api")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request =
        SignableRequest::new(method, url, all.into_iter(), SignableBody::Bytes(body)).map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params).map_err(|e| e.to_string())?.into_parts();
    Ok(instructions.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

// -------------------------------------------------------------------------------- SQS pollers

/// One concurrent batch loop of an SQS event source mapping.
#[derive(Debug)]
pub struct SqsPoller {
    mapping: crate::template::SqsMapping,
    function: Arc<crate::Function>,
    queue_url: String,
    queue_arn: String,
    region: String,
    sqs: aws_sdk_sqs::Client,
    stats: Arc<WiringStats>,
    idle_poll: Duration,
}

impl SqsPoller {
    /// A poller of `queue_url` (whose ARN is `queue_arn`) for `function`, configured by `mapping`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mapping: crate::template::SqsMapping,
        function: Arc<crate::Function>,
        queue_url: String,
        queue_arn: String,
        region: String,
        sqs: aws_sdk_sqs::Client,
        stats: Arc<WiringStats>,
        idle_poll: Duration,
    ) -> Self {
        Self { mapping, function, queue_url, queue_arn, region, sqs, stats, idle_poll }
    }

    /// Polls forever (the mapping's loop).
    pub async fn run(&self) {
        loop {
            match self.batch().await {
                Ok(0) => tokio::time::sleep(self.idle_poll).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(mapping = %self.mapping.logical_id, error = %e, "event source mapping poll failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn count_received(&self, received: &[aws_sdk_sqs::types::Message]) {
        let bytes: usize = received.iter().map(|m| m.body().map_or(0, str::len)).sum();
        self.stats.receives_with_messages.fetch_add(1, Ordering::Relaxed);
        self.stats.received_units.fetch_add(bytes.div_ceil(64 * 1024).max(1) as u64, Ordering::Relaxed);
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default();
        let delays = received.iter().filter_map(|m| {
            let sent = m.attributes()?.get(&MessageSystemAttributeName::SentTimestamp)?.parse::<u64>().ok()?;
            Some(now.saturating_sub(sent))
        });
        self.stats.poll_delays_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(delays);
        *self
            .stats
            .received_messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(self.mapping.queue.clone())
            .or_default() += received.len() as u64;
    }

    /// Receives one batch (up to BatchSize, waiting up to the batching window to fill it), invokes the
    /// function, deletes what succeeded. Returns how many messages the batch had.
    pub async fn batch(&self) -> Result<usize, String> {
        let mut messages = Vec::new();
        let window_ends = tokio::time::Instant::now() + self.mapping.batching_window;
        loop {
            let want = self.mapping.batch_size.saturating_sub(messages.len()).clamp(1, 10);
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(i32::try_from(want).unwrap_or(10))
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .map_err(|e| e.into_service_error().to_string())?;
            let received = got.messages.unwrap_or_default();
            let empty = received.is_empty();
            if !empty {
                self.count_received(&received);
            }
            for m in received {
                // A message seen again within the window (its visibility timeout ran out): keep the
                // latest receipt handle, once.
                messages.retain(|held: &aws_sdk_sqs::types::Message| held.message_id != m.message_id);
                messages.push(m);
            }
            if messages.len() >= self.mapping.batch_size || tokio::time::Instant::now() >= window_ends {
                break;
            }
            if empty {
                if messages.is_empty() {
                    break;
                }
                tokio::time::sleep(self.idle_poll.min(window_ends - tokio::time::Instant::now())).await;
            }
        }
        if messages.is_empty() {
            return Ok(0);
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let records: Vec<Value> =
            messages.iter().map(|m| events::sqs_record(m, &self.queue_arn, &self.region)).collect();
        let failed: std::collections::BTreeSet<String> = match self.function.invoke(&events::sqs_event(&records)).await
        {
            Ok(answer) if self.mapping.report_batch_item_failures => match answer.get("batchItemFailures") {
                // An empty or null response means every message succeeded.
                None | Some(Value::Null) => std::collections::BTreeSet::new(),
                Some(Value::Array(items)) => {
                    let ids: Option<std::collections::BTreeSet<String>> = items
                        .iter()
                        .map(|i| i["itemIdentifier"].as_str().filter(|s| !s.is_empty()).map(str::to_owned))
                        .collect();
                    // An unreadable identifier fails the whole batch, as Lambda does.
                    ids.unwrap_or_else(|| messages.iter().filter_map(|m| m.message_id.clone()).collect())
                }
                Some(_) => messages.iter().filter_map(|m| m.message_id.clone()).collect(),
            },
            Ok(_) => std::collections::BTreeSet::new(),
            Err(e) => {
                tracing::warn!(mapping = %self.mapping.logical_id, error = %e, "batch failed: its messages return after the visibility timeout");
                messages.iter().filter_map(|m| m.message_id.clone()).collect()
            }
        };
        for m in &messages {
            if failed.contains(m.message_id().unwrap_or_default()) {
                self.stats.messages_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| e.into_service_error().to_string())?;
            self.stats.messages_deleted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(messages.len())
    }
}

/// Visible plus in-flight messages of a queue.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<u64, String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| e.into_service_error().to_string())?;
    let attrs = out.attributes.unwrap_or_default();
    let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(n(QueueAttributeName::ApproximateNumberOfMessages)
        + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_signed_with_the_local_credentials_verifies_and_a_changed_one_does_not() {
        let aws = crate::LocalAws {
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
        };
        let now = SystemTime::now();
        let url = "http://127.0.0.1:9000/v1/inventory/SKU-1?x=1";
        let body = br#"{"on_hand": 3}"#;
        let signed = sign_sigv4("PUT", url, &[("content-type", "application/json")], body, &aws, now).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:9000".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        for (k, v) in &signed {
            headers.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let uri: Uri = "/v1/inventory/SKU-1?x=1".parse().unwrap();
        assert_eq!(verify_sigv4("PUT", &uri, &headers, body, "testing", "testing", now), Ok(()));
        assert!(verify_sigv4("PUT", &uri, &headers, b"{\"on_hand\": 300}", "testing", "testing", now).is_err());
        assert!(verify_sigv4("PUT", &uri, &headers, body, "testing", "other-secret", now).is_err());
        assert!(
            verify_sigv4("PUT", &uri, &headers, body, "testing", "testing", now + Duration::from_mins(10)).is_err()
        );
        let mut unsigned = headers.clone();
        unsigned.remove("authorization");
        assert!(verify_sigv4("PUT", &uri, &unsigned, body, "testing", "testing", now).is_err());
    }
}
