//! A recording (and fault-injecting) proxy in front of the AWS emulator.
//!
//! moto answers every call whatever the caller's role allows, so a test cannot see from moto alone which
//! AWS calls a function makes. This proxy sits between the SDK and moto on loopback and records each call
//! as AWS authorizes it: the function that made it, the IAM action (`dynamodb:PutItem`) and the resource ARN
//! (`arn:aws:dynamodb:…:table/…`). Each function identity gets its own listener port, so a handler built with
//! an SDK configuration whose endpoint is that port is attributed to that function and to no other.
//!
//! The same hook can fail or delay calls by `service:action` ([`Faults`]), so resilience tests can make a
//! dependency fail on its Nth call or at a rate without touching the code under test.
//!
//! Calls are parsed from what the SDK sends: `X-Amz-Target` (the JSON protocols of DynamoDB, SQS,
//! EventBridge, Secrets Manager, CloudWatch), the SigV4 credential scope of `Authorization` (the service),
//! an `Action=` form body (query protocols), and the REST shape for S3 (method and path). Actions are the
//! ones IAM authorizes, which are not always the API names: a DynamoDB transaction is authorized as each of
//! its items (`PutItem`, `UpdateItem`, `ConditionCheckItem`...) on the item's table, and SQS batch calls as
//! their single-message action.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    response::Response,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde_json::Value;

/// One AWS call as IAM sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Call {
    /// The function identity whose listener received the call (a template logical id).
    pub function: String,
    /// The IAM service prefix (`dynamodb`, `sqs`, `events`, `secretsmanager`, `s3`, `cloudwatch`).
    pub service: String,
    /// The IAM action, prefixed (`dynamodb:PutItem`).
    pub action: String,
    /// The resource ARN the action is authorized on (`*` for actions without resource-level permissions).
    pub resource: String,
}

/// What to do to a matching call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this HTTP status and AWS error code instead of forwarding.
    Fail { status: u16, code: String },
    /// Forward after this delay.
    Delay(Duration),
}

/// When a fault applies to the calls matching its `service:action`.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Only the Nth matching call (1-based).
    Nth(u64),
    /// A fraction of the matching calls, spread evenly and deterministically (0.3: calls 4, 7, 10...).
    Rate(f64),
    /// Every matching call.
    Always,
}

#[derive(Debug, Clone)]
struct FaultRule {
    /// `dynamodb:PutItem`, or `dynamodb:*` for every action of a service.
    action: String,
    function: Option<String>,
    trigger: Trigger,
    kind: FaultKind,
    seen: u64,
}

/// Faults to inject, by IAM action. Shared by every listener of a proxy.
#[derive(Debug, Default, Clone)]
pub struct Faults(Arc<Mutex<Vec<FaultRule>>>);

impl Faults {
    /// Adds a fault for calls to `action` (`service:Action` or `service:*`), from `function` or any.
    pub fn add(&self, action: &str, function: Option<&str>, trigger: Trigger, kind: FaultKind) {
        self.0.lock().unwrap().push(FaultRule {
            action: action.to_owned(),
            function: function.map(str::to_owned),
            trigger,
            kind,
            seen: 0,
        });
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// The fault for this call, if one applies (counting the call against every matching rule).
    fn decide(&self, function: &str, action: &str) -> Option<FaultKind> {
        let mut rules = self.0.lock().unwrap();
        let mut chosen = None;
        for rule in rules.iter_mut() {
            let (service, _) = action.split_once(':').unwrap_or((action, ""));
            let matches = rule.action == action || rule.action == format!("{service}:*");
            if !matches || rule.function.as_deref().is_some_and(|f| f != function) {
                continue;
            }
            rule.seen += 1;
            let fire = match rule.trigger {
                Trigger::Nth(n) => rule.seen == n,
                Trigger::Always => true,
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Trigger::Rate(rate) => {
                    // Fires whenever floor(seen * rate) steps up: exactly `rate` of the calls, evenly spread.
                    let before = ((rule.seen - 1) as f64 * rate).floor() as u64;
                    let now = (rule.seen as f64 * rate).floor() as u64;
                    now > before
                }
            };
            if fire && chosen.is_none() {
                chosen = Some(rule.kind.clone());
            }
        }
        chosen
    }
}

/// The proxy: one recorder and one set of faults, any number of per-function listeners.
#[derive(Debug)]
pub struct AwsProxy {
    upstream: String,
    account: String,
    client: reqwest::Client,
    calls: Mutex<Vec<Call>>,
    pub faults: Faults,
}

#[derive(Clone)]
struct Listener {
    proxy: Arc<AwsProxy>,
    function: Arc<str>,
}

impl AwsProxy {
    /// A proxy forwarding to `upstream` (moto); `account` is the account id in the ARNs it records.
    pub fn new(upstream: &str, account: &str) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("proxy HTTP client");
        Arc::new(Self {
            upstream: upstream.trim_end_matches('/').to_owned(),
            account: account.to_owned(),
            client,
            calls: Mutex::new(Vec::new()),
            faults: Faults::default(),
        })
    }

    /// Opens a listener on loopback whose calls are attributed to `function`; returns its endpoint URL.
    pub async fn listen(self: &Arc<Self>, function: &str) -> String {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Listener { proxy: self.clone(), function: Arc::from(function) };
        let app = axum::Router::new().fallback(forward).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    /// Every call recorded so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls of one function.
    pub fn calls_of(&self, function: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.function == function).collect()
    }
}

/// Receives one request, records it, applies a fault or forwards it to moto and relays the answer.
async fn forward(State(listener): State<Listener>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 256 * 1024 * 1024).await.unwrap_or_default();
    let proxy = &listener.proxy;
    let mut calls = describe(&parts.method, &parts.uri, &parts.headers, &body, &proxy.account);
    let action = calls.first().map(|(_, a, _)| a.clone()).unwrap_or_default();
    match proxy.faults.decide(&listener.function, &action) {
        Some(FaultKind::Fail { status, code }) => {
            record(proxy, &listener.function, calls);
            return error_response(status, &code);
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let url = format!("{}{}", proxy.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut upstream = proxy.client.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "transfer-encoding" | "connection") {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.send().await {
        Ok(a) => a,
        Err(e) => return error_response(502, &format!("ProxyUpstreamError: {e}")),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    // Secrets Manager names a secret by name or ARN; the answer carries the full ARN (with the random
    // suffix AWS and moto add), which is what IAM authorizes.
    if let Some(arn) = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v["ARN"].as_str().map(str::to_owned)) {
        for call in calls.iter_mut().filter(|(s, _, _)| s == "secretsmanager") {
            call.2.clone_from(&arn);
        }
    }
    record(proxy, &listener.function, calls);
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

fn record(proxy: &AwsProxy, function: &str, calls: Vec<(String, String, String)>) {
    let mut recorded = proxy.calls.lock().unwrap();
    for (service, action, resource) in calls {
        recorded.push(Call { function: function.to_owned(), service, action, resource });
    }
}

/// An AWS JSON-protocol error (what the SDKs parse for every service but S3).
fn error_response(status: u16, code: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": format!("injected by the test proxy: {code}") });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
    if let Ok(v) = HeaderValue::from_str(code) {
        headers.insert("x-amzn-errortype", v);
    }
    response
}

/// The SigV4 credential scope's region and service: `Credential=AKID/20260101/us-east-1/dynamodb/aws4_request`.
fn scope(headers: &HeaderMap) -> Option<(String, String)> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?.split(',').next()?;
    let parts: Vec<&str> = credential.split('/').collect();
    (parts.len() >= 5).then(|| (parts[2].to_owned(), parts[3].to_owned()))
}

/// The IAM service prefix of a target prefix or signing name.
fn iam_service(name: &str) -> String {
    match name {
        n if n.starts_with("DynamoDB_") => "dynamodb",
        "AmazonSQS" => "sqs",
        "AWSEvents" => "events",
        "monitoring" | "GraniteServiceVersion20100801" => "cloudwatch",
        other => return other.to_ascii_lowercase(),
    }
    .to_owned()
}

/// The (service, action, resource) triples one request is authorized as.
fn describe(
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
    account: &str,
) -> Vec<(String, String, String)> {
    let (region, signing) = scope(headers).unwrap_or_else(|| ("us-east-1".into(), String::new()));
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let arns = Arns { region: &region, account };
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (prefix, operation) = target.rsplit_once('.').unwrap_or((target, ""));
        let service = iam_service(prefix);
        return json_calls(&service, operation, &json, &arns);
    }
    if signing == "s3" {
        return vec![s3_call(method, uri, headers)];
    }
    // Query protocol: `Action=PutMetricData&...` in a form body.
    let form = String::from_utf8_lossy(body);
    let action = form.split('&').find_map(|kv| kv.strip_prefix("Action=")).unwrap_or("Unknown").to_owned();
    let service = iam_service(&signing);
    let resource = if service == "cloudwatch" { "*".to_owned() } else { format!("unparsed:{}", uri.path()) };
    vec![(service.clone(), format!("{service}:{action}"), resource)]
}

struct Arns<'a> {
    region: &'a str,
    account: &'a str,
}

impl Arns<'_> {
    fn table(&self, name: &str) -> String {
        format!("arn:aws:dynamodb:{}:{}:table/{name}", self.region, self.account)
    }

    /// `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME` -> `arn:aws:sqs:REGION:ACCOUNT:NAME`.
    fn queue(&self, url: &str) -> String {
        let mut segments = url.trim_end_matches('/').rsplit('/');
        let name = segments.next().unwrap_or_default();
        let owner = segments.next().filter(|s| s.chars().all(|c| c.is_ascii_digit())).unwrap_or(self.account);
        format!("arn:aws:sqs:{}:{owner}:{name}", self.region)
    }

    fn bus(&self, name_or_arn: Option<&str>) -> String {
        match name_or_arn {
            Some(arn) if arn.starts_with("arn:") => arn.to_owned(),
            name => format!("arn:aws:events:{}:{}:event-bus/{}", self.region, self.account, name.unwrap_or("default")),
        }
    }

    /// A secret by name, until the answer gives its full ARN (AWS appends `-` and six random characters).
    fn secret(&self, id: &str) -> String {
        if id.starts_with("arn:") {
            id.to_owned()
        } else {
            format!("arn:aws:secretsmanager:{}:{}:secret:{id}-??????", self.region, self.account)
        }
    }
}

fn json_calls(service: &str, operation: &str, body: &Value, arns: &Arns) -> Vec<(String, String, String)> {
    let one = |action: &str, resource: String| vec![(service.to_owned(), format!("{service}:{action}"), resource)];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match service {
        "dynamodb" => {
            let table = s(&body["TableName"]);
            match operation {
                "TransactWriteItems" | "TransactGetItems" => body["TransactItems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|item| item.as_object().into_iter().flatten())
                    .map(|(kind, op)| {
                        let action = match kind.as_str() {
                            "Put" => "PutItem",
                            "Update" => "UpdateItem",
                            "Delete" => "DeleteItem",
                            "ConditionCheck" => "ConditionCheckItem",
                            "Get" => "GetItem",
                            other => other,
                        };
                        ("dynamodb".to_owned(), format!("dynamodb:{action}"), arns.table(&s(&op["TableName"])))
                    })
                    .collect(),
                "BatchWriteItem" | "BatchGetItem" => body["RequestItems"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.keys())
                    .map(|t| ("dynamodb".to_owned(), format!("dynamodb:{operation}"), arns.table(t)))
                    .collect(),
                _ => {
                    let mut resource = arns.table(&table);
                    if let Some(index) = body["IndexName"].as_str() {
                        resource = format!("{resource}/index/{index}");
                    }
                    one(operation, resource)
                }
            }
        }
        "sqs" => {
            // Batch calls are authorized as their single-message action.
            let action = operation.strip_suffix("Batch").unwrap_or(operation);
            let resource = match body["QueueUrl"].as_str() {
                Some(url) => arns.queue(url),
                None => match body["QueueName"].as_str() {
                    Some(name) => format!("arn:aws:sqs:{}:{}:{name}", arns.region, arns.account),
                    None => "*".to_owned(),
                },
            };
            one(action, resource)
        }
        "events" if operation == "PutEvents" => {
            let mut buses: Vec<String> = body["Entries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| arns.bus(e["EventBusName"].as_str()))
                .collect();
            buses.sort();
            buses.dedup();
            buses.into_iter().flat_map(|b| one(operation, b)).collect()
        }
        "events" => one(operation, arns.bus(body["EventBusName"].as_str().or(body["Name"].as_str()))),
        "secretsmanager" => one(operation, arns.secret(body["SecretId"].as_str().unwrap_or_default())),
        // CloudWatch's PutMetricData has no resource-level permissions; nor has anything unparsed here.
        _ => one(operation, "*".to_owned()),
    }
}

/// S3's REST shape: the bucket and key from the path (path-style, as the SDK uses for an IP endpoint) or
/// the host (virtual-hosted style), the action from the method and query.
fn s3_call(method: &Method, uri: &http::Uri, headers: &HeaderMap) -> (String, String, String) {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let path = uri.path().trim_start_matches('/');
    let host_bucket = host.split_once(".s3").map(|(b, _)| b.to_owned()).filter(|b| !b.is_empty());
    let (bucket, key) = if let Some(b) = host_bucket {
        (b, path.to_owned())
    } else {
        let (b, k) = path.split_once('/').unwrap_or((path, ""));
        (b.to_owned(), k.to_owned())
    };
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let versioned = query.contains_key("versionId");
    let action = match (method.as_str(), key.is_empty()) {
        ("GET" | "HEAD", false) if versioned => "GetObjectVersion",
        ("GET" | "HEAD", false) => "GetObject",
        ("PUT", false) => "PutObject",
        ("DELETE", false) if versioned => "DeleteObjectVersion",
        ("DELETE", false) => "DeleteObject",
        ("GET", true) if query.contains_key("versions") => "ListBucketVersions",
        ("GET" | "HEAD", true) => "ListBucket",
        (m, _) => return ("s3".into(), format!("s3:Unknown{m}"), format!("arn:aws:s3:::{bucket}")),
    };
    let resource =
        if key.is_empty() { format!("arn:aws:s3:::{bucket}") } else { format!("arn:aws:s3:::{bucket}/{key}") };
    ("s3".into(), format!("s3:{action}"), resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(target: Option<&str>, service: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = target {
            h.insert("x-amz-target", HeaderValue::from_str(t).unwrap());
        }
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20261129/eu-west-1/{service}/aws4_request, SignedHeaders=host, Signature=x"
        );
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        h
    }

    fn calls(
        target: Option<&str>,
        service: &str,
        method: &Method,
        uri: &str,
        body: &Value,
    ) -> Vec<(String, String, String)> {
        let body = Bytes::from(body.to_string());
        describe(method, &uri.parse().unwrap(), &headers(target, service), &body, "111122223333")
    }

    #[test]
    fn a_transaction_is_authorized_as_each_of_its_items_on_its_table() {
        let body = serde_json::json!({"TransactItems": [
            {"Put": {"TableName": "records"}}, {"ConditionCheck": {"TableName": "idem"}}, {"Update": {"TableName": "records"}}
        ]});
        let got = calls(Some("DynamoDB_20120810.TransactWriteItems"), "dynamodb", &Method::POST, "/", &body);
        let actions: Vec<(&str, &str)> = got.iter().map(|(_, a, r)| (a.as_str(), r.as_str())).collect();
        assert_eq!(
            actions,
            [
                ("dynamodb:PutItem", "arn:aws:dynamodb:eu-west-1:111122223333:table/records"),
                ("dynamodb:ConditionCheckItem", "arn:aws:dynamodb:eu-west-1:111122223333:table/idem"),
                ("dynamodb:UpdateItem", "arn:aws:dynamodb:eu-west-1:111122223333:table/records"),
            ]
        );
        let query = serde_json::json!({"TableName": "records", "IndexName": "by_trace"});
        let got = calls(Some("DynamoDB_20120810.Query"), "dynamodb", &Method::POST, "/", &query);
        assert_eq!(got[0].2, "arn:aws:dynamodb:eu-west-1:111122223333:table/records/index/by_trace");
    }

    #[test]
    fn sqs_events_and_secrets_name_their_resources() {
        let url = "https://sqs.eu-west-1.amazonaws.com/444455556666/push-ebay";
        let got = calls(
            Some("AmazonSQS.ChangeMessageVisibilityBatch"),
            "sqs",
            &Method::POST,
            "/",
            &serde_json::json!({ "QueueUrl": url }),
        );
        assert_eq!(
            got,
            [(
                "sqs".into(),
                "sqs:ChangeMessageVisibility".into(),
                "arn:aws:sqs:eu-west-1:444455556666:push-ebay".into()
            )]
        );
        let entries = serde_json::json!({"Entries": [{"EventBusName": "bus"}, {"EventBusName": "bus"}, {}]});
        let got = calls(Some("AWSEvents.PutEvents"), "events", &Method::POST, "/", &entries);
        let buses: Vec<&str> = got.iter().map(|c| c.2.as_str()).collect();
        assert_eq!(
            buses,
            [
                "arn:aws:events:eu-west-1:111122223333:event-bus/bus",
                "arn:aws:events:eu-west-1:111122223333:event-bus/default"
            ]
        );
        let got = calls(
            Some("secretsmanager.GetSecretValue"),
            "secretsmanager",
            &Method::POST,
            "/",
            &serde_json::json!({"SecretId": "manifold/shopify/a"}),
        );
        assert_eq!(got[0].1, "secretsmanager:GetSecretValue");
        assert_eq!(got[0].2, "arn:aws:secretsmanager:eu-west-1:111122223333:secret:manifold/shopify/a-??????");
    }

    #[test]
    fn s3_calls_are_read_from_the_rest_shape() {
        let got = calls(None, "s3", &Method::GET, "/config-bucket/channels.toml?x-id=GetObject", &Value::Null);
        assert_eq!(got, [("s3".into(), "s3:GetObject".into(), "arn:aws:s3:::config-bucket/channels.toml".into())]);
        let got = calls(None, "s3", &Method::GET, "/config-bucket?versions&prefix=channels.toml", &Value::Null);
        assert_eq!(got[0].1, "s3:ListBucketVersions");
        let got = calls(None, "s3", &Method::PUT, "/config-bucket/channels.toml", &Value::Null);
        assert_eq!(got[0].1, "s3:PutObject");
    }

    #[test]
    fn faults_fire_on_the_nth_call_or_evenly_at_a_rate() {
        let faults = Faults::default();
        let fail = FaultKind::Fail { status: 500, code: "InternalServerError".into() };
        faults.add("sqs:SendMessage", None, Trigger::Nth(2), fail.clone());
        let fired: Vec<bool> = (0..4).map(|_| faults.decide("f", "sqs:SendMessage").is_some()).collect();
        assert_eq!(fired, [false, true, false, false]);
        faults.clear();
        faults.add("dynamodb:*", Some("f"), Trigger::Rate(0.25), fail);
        let fired = (0..8).filter(|_| faults.decide("f", "dynamodb:PutItem").is_some()).count();
        assert_eq!(fired, 2);
        assert!(faults.decide("g", "dynamodb:PutItem").is_none(), "another function is not affected");
    }
}
