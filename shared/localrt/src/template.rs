//! The transformed template (`.local/template.json`, what CloudFormation receives after the SAM
//! transform) read as the local runtime needs it: the functions with their binaries, limits and
//! environment, the SQS event source mappings, the schedules and the HTTP API routes.
//!
//! Values stay unresolved here (`Ref`, `Fn::GetAtt`, `Fn::Sub`); [`crate::stack::Stack::resolve`]
//! turns them into the local stack's physical names.

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde_json::Value;

/// The template is missing something the runtime needs, or says it in a form the runtime does not read.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source} (run `.venv/bin/python infra/local/stack.py transform`)")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("{0}")]
    Invalid(String),
}

/// One `AWS::Lambda::Function` of the template.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The cargo binary built for it (SAM `Metadata.BuildProperties.Binary`).
    pub binary: String,
    pub timeout: Duration,
    pub memory_mb: u32,
    pub handler: String,
    /// `Environment.Variables`, Globals already merged by the SAM transform; values unresolved.
    pub variables: BTreeMap<String, Value>,
}

/// One `AWS::Lambda::EventSourceMapping` from an SQS queue.
#[derive(Debug, Clone)]
pub struct SqsMapping {
    pub logical_id: String,
    pub function: String,
    /// The queue's logical id (from `EventSourceArn: !GetAtt Queue.Arn`).
    pub queue: String,
    pub batch_size: usize,
    pub batching_window: Duration,
    /// `ScalingConfig.MaximumConcurrency`: concurrent batches (None: Lambda's own scaling).
    pub maximum_concurrency: Option<usize>,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    pub enabled: bool,
}

/// One scheduled `AWS::Events::Rule` target that is a function of the template.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub rule: String,
    pub function: String,
    pub expression: String,
    pub every: Duration,
    /// The target's constant `Input` (sent instead of the scheduled event), if any.
    pub input: Option<Value>,
}

/// One HTTP API route with a Lambda proxy integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Upper case: `POST`, `PUT`...
    pub method: String,
    /// As declared: `/v1/webhooks/{channel}/{account}`.
    pub path: String,
    pub function: String,
    /// `security: [AWS_IAM]`: the caller must sign with SigV4.
    pub iam: bool,
    pub payload_format: String,
}

impl Route {
    /// `POST /v1/webhooks/{channel}/{account}`, the route key API Gateway puts in the event.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The path parameters when `path` matches this route's template (`{name}` is one segment,
    /// `{name+}` the rest).
    pub fn matches(&self, method: &str, path: &str) -> Option<BTreeMap<String, String>> {
        if !self.method.eq_ignore_ascii_case(method) && self.method != "ANY" {
            return None;
        }
        let pattern: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let actual: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut params = BTreeMap::new();
        for (i, part) in pattern.iter().enumerate() {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix("+}")) {
                let rest = actual.get(i..).filter(|r| !r.is_empty())?.join("/");
                params.insert(name.to_owned(), rest);
                return Some(params);
            }
            let segment = actual.get(i)?;
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if segment.is_empty() {
                    return None;
                }
                params.insert(name.to_owned(), percent_decode(segment));
            } else if part != segment {
                return None;
            }
        }
        (pattern.len() == actual.len()).then_some(params)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The transformed template.
#[derive(Debug, Clone)]
pub struct Template {
    pub raw: Value,
}

impl Template {
    /// Reads `.local/template.json` (or any transformed template).
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TemplateError::Read { path: path.display().to_string(), source })?;
        let raw = serde_json::from_str(&text)
            .map_err(|source| TemplateError::Json { path: path.display().to_string(), source })?;
        Ok(Self { raw })
    }

    pub fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.raw["Resources"].as_object().into_iter().flatten().map(|(k, v)| (k.as_str(), v))
    }

    pub fn resource(&self, logical_id: &str) -> Option<&Value> {
        self.raw["Resources"].get(logical_id)
    }

    pub fn resource_type(&self, logical_id: &str) -> Option<&str> {
        self.resource(logical_id).and_then(|r| r["Type"].as_str())
    }

    /// A parameter's `Default`, as a string.
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        self.raw["Parameters"][name].get("Default").map(scalar)
    }

    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.resources().filter(move |(_, r)| r["Type"] == kind).map(|(id, r)| (id, &r["Properties"]))
    }

    /// Every `AWS::Lambda::Function`, sorted by logical id.
    pub fn functions(&self) -> Result<Vec<FunctionSpec>, TemplateError> {
        let mut out = Vec::new();
        for (id, resource) in self.resources().filter(|(_, r)| r["Type"] == "AWS::Lambda::Function") {
            let props = &resource["Properties"];
            let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str().ok_or_else(|| {
                TemplateError::Invalid(format!("{id}: no Metadata.BuildProperties.Binary (which cargo binary is it?)"))
            })?;
            let variables = props["Environment"]["Variables"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            out.push(FunctionSpec {
                logical_id: id.to_owned(),
                binary: binary.to_owned(),
                // CloudFormation's defaults when the template says nothing: 3 s, 128 MB.
                timeout: Duration::from_secs(props["Timeout"].as_u64().unwrap_or(3)),
                memory_mb: props["MemorySize"].as_u64().and_then(|m| u32::try_from(m).ok()).unwrap_or(128),
                handler: props["Handler"].as_str().unwrap_or("bootstrap").to_owned(),
                variables,
            });
        }
        out.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
        Ok(out)
    }

    /// Every SQS event source mapping, sorted by logical id.
    pub fn sqs_mappings(&self) -> Result<Vec<SqsMapping>, TemplateError> {
        let mut out = Vec::new();
        for (id, p) in self.of_type("AWS::Lambda::EventSourceMapping") {
            let function = ref_target(&p["FunctionName"])
                .ok_or_else(|| TemplateError::Invalid(format!("{id}: FunctionName is not a Ref to a function")))?;
            let Some(queue) = ref_target(&p["EventSourceArn"]) else {
                return Err(TemplateError::Invalid(format!("{id}: EventSourceArn is not a GetAtt of a resource")));
            };
            if self.resource_type(&queue) != Some("AWS::SQS::Queue") {
                continue; // streams, Kafka...: not emulated (the template has none)
            }
            out.push(SqsMapping {
                logical_id: id.to_owned(),
                function,
                queue,
                batch_size: p["BatchSize"].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(10),
                batching_window: Duration::from_secs(p["MaximumBatchingWindowInSeconds"].as_u64().unwrap_or(0)),
                maximum_concurrency: p["ScalingConfig"]["MaximumConcurrency"]
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok()),
                report_batch_item_failures: p["FunctionResponseTypes"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "ReportBatchItemFailures")),
                enabled: p["Enabled"].as_bool().unwrap_or(true),
            });
        }
        out.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
        Ok(out)
    }

    /// Every scheduled rule target that is a function of this template.
    pub fn schedules(&self) -> Result<Vec<Schedule>, TemplateError> {
        let mut out = Vec::new();
        for (id, p) in self.of_type("AWS::Events::Rule") {
            let Some(expression) = p["ScheduleExpression"].as_str() else { continue };
            if p["State"].as_str().is_some_and(|s| s != "ENABLED") {
                continue;
            }
            let every = parse_rate(expression)
                .ok_or_else(|| TemplateError::Invalid(format!("{id}: cannot emulate {expression:?} (rate() only)")))?;
            for target in p["Targets"].as_array().into_iter().flatten() {
                let Some(function) = ref_target(&target["Arn"]) else { continue };
                if self.resource_type(&function) != Some("AWS::Lambda::Function") {
                    continue;
                }
                let input = match target.get("Input").and_then(Value::as_str) {
                    Some(text) => Some(
                        serde_json::from_str(text)
                            .map_err(|e| TemplateError::Invalid(format!("{id}: target Input is not JSON: {e}")))?,
                    ),
                    None => None,
                };
                out.push(Schedule { rule: id.to_owned(), function, expression: expression.to_owned(), every, input });
            }
        }
        out.sort_by(|a, b| a.rule.cmp(&b.rule));
        Ok(out)
    }

    /// The routes of every `AWS::ApiGatewayV2::Api` with an OpenAPI body (what SAM writes for an HttpApi).
    pub fn routes(&self) -> Result<Vec<Route>, TemplateError> {
        let mut out = Vec::new();
        for (id, p) in self.of_type("AWS::ApiGatewayV2::Api") {
            for (path, methods) in p["Body"]["paths"].as_object().into_iter().flatten() {
                for (method, op) in methods.as_object().into_iter().flatten() {
                    let integration = &op["x-amazon-apigateway-integration"];
                    let uri = integration["uri"]["Fn::Sub"].as_str().unwrap_or_default();
                    let function = uri
                        .split("${")
                        .filter_map(|s| s.split_once('}').map(|(var, _)| var))
                        .find_map(|var| var.strip_suffix(".Arn"))
                        .ok_or_else(|| {
                            TemplateError::Invalid(format!("{id}: {method} {path}: integration is not a function"))
                        })?;
                    let method = if method == "x-amazon-apigateway-any-method" { "ANY" } else { method };
                    out.push(Route {
                        method: method.to_uppercase(),
                        path: path.clone(),
                        function: function.to_owned(),
                        iam: op["security"].as_array().is_some_and(|s| s.iter().any(|s| s.get("AWS_IAM").is_some())),
                        payload_format: integration["payloadFormatVersion"].as_str().unwrap_or("2.0").to_owned(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path).then(a.method.cmp(&b.method)));
        Ok(out)
    }
}

/// The logical id a `Ref` or `Fn::GetAtt` points at.
pub fn ref_target(value: &Value) -> Option<String> {
    if let Some(r) = value.get("Ref").and_then(Value::as_str) {
        return Some(r.to_owned());
    }
    match value.get("Fn::GetAtt")? {
        Value::Array(parts) => parts.first()?.as_str().map(str::to_owned),
        Value::String(s) => s.split('.').next().map(str::to_owned),
        _ => None,
    }
}

/// A JSON scalar as CloudFormation turns it into a string.
pub fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `rate(5 minutes)` -> 5 min. Cron expressions are not emulated.
pub fn parse_rate(expression: &str) -> Option<Duration> {
    let inner = expression.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let seconds = match unit.trim().trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Route {
        Route {
            method: "POST".into(),
            path: path.into(),
            function: "F".into(),
            iam: false,
            payload_format: "2.0".into(),
        }
    }

    #[test]
    fn routes_match_segments_and_decode_parameters() {
        let r = route("/v1/webhooks/{channel}/{account}");
        let p = r.matches("POST", "/v1/webhooks/shopify/shop%2Deu").unwrap();
        assert_eq!(p["channel"], "shopify");
        assert_eq!(p["account"], "shop-eu");
        assert!(r.matches("PUT", "/v1/webhooks/shopify/x").is_none());
        assert!(r.matches("POST", "/v1/webhooks/shopify").is_none());
        assert!(r.matches("POST", "/v1/webhooks/shopify/x/y").is_none());
        assert!(route("/v1/shipments").matches("post", "/v1/shipments").unwrap().is_empty());
        assert_eq!(route("/files/{key+}").matches("POST", "/files/a/b").unwrap()["key"], "a/b");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("rate(5 minutes)"), Some(Duration::from_mins(5)));
        assert_eq!(parse_rate("rate(1 hour)"), Some(Duration::from_hours(1)));
        assert_eq!(parse_rate("rate(1 day)"), Some(Duration::from_hours(24)));
        assert_eq!(parse_rate("cron(0 12 * * ? *)"), None);
    }
}
