//! The events Lambda's integrations deliver, built as the services build them: API Gateway HTTP API
//! (payload format 2.0), an SQS event source mapping's batch, an EventBridge scheduled event.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// An HTTP request as the HTTP API hands it to a Lambda proxy integration (payload format 2.0).
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    pub route_key: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub raw_query: &'a str,
    /// Lower-case names; repeated headers joined with commas, as API Gateway does.
    pub headers: BTreeMap<String, String>,
    pub path_parameters: BTreeMap<String, String>,
    pub body: &'a [u8],
    /// `Some((access key, account))` for an IAM-authorized route: the caller's identity.
    pub iam: Option<(&'a str, &'a str)>,
    pub account: &'a str,
    pub api_id: &'a str,
}

/// The payload 2.0 event of `request`.
pub fn http_api_event(request: &HttpRequest<'_>) -> Value {
    let now = chrono::Utc::now();
    let (body, base64) = match std::str::from_utf8(request.body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64_encode(request.body), true),
    };
    let query: BTreeMap<String, String> = request
        .raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or((p.to_owned(), String::new()), |(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let host = request.headers.get("host").cloned().unwrap_or_else(|| "127.0.0.1".to_owned());
    let mut context = json!({
        "accountId": request.account,
        "apiId": request.api_id,
        "domainName": host,
        "domainPrefix": host.split('.').next().unwrap_or_default(),
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": request.headers.get("user-agent").cloned().unwrap_or_default(),
        },
        "requestId": uuid::Uuid::new_v4().to_string(),
        "routeKey": request.route_key,
        "stage": "$default",
        "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        "timeEpoch": now.timestamp_millis(),
    });
    if let Some((access_key, account)) = request.iam {
        context["authorizer"] = json!({"iam": {
            "accessKey": access_key,
            "accountId": account,
            "callerId": access_key,
            "principalOrgId": null,
            "userArn": format!("arn:aws:iam::{account}:user/local"),
            "userId": access_key,
        }});
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": request.route_key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
        "headers": request.headers,
        "requestContext": context,
        "isBase64Encoded": base64,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !request.path_parameters.is_empty() {
        event["pathParameters"] = json!(request.path_parameters);
    }
    if !request.body.is_empty() {
        event["body"] = Value::String(body);
    }
    event
}

/// The HTTP response a payload 2.0 integration answered: status, headers, body bytes.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reads a payload 2.0 response the way API Gateway does (a bare JSON value is a 200 with that body).
pub fn http_api_response(value: &Value) -> HttpResponse {
    let Some(status) = value.get("statusCode").and_then(Value::as_u64) else {
        return HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        };
    };
    let mut headers: Vec<(String, String)> = value["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    for cookie in value["cookies"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        headers.push(("set-cookie".into(), cookie.to_owned()));
    }
    let text = value["body"].as_str().unwrap_or_default();
    let body = if value["isBase64Encoded"].as_bool().unwrap_or(false) {
        base64_decode(text).unwrap_or_default()
    } else {
        text.as_bytes().to_vec()
    };
    HttpResponse { status: u16::try_from(status).unwrap_or(502), headers, body }
}

/// One received message as an SQS event source mapping puts it in the batch.
pub fn sqs_record(message: &aws_sdk_sqs::types::Message, queue_arn: &str, region: &str) -> Value {
    let attributes: BTreeMap<String, String> =
        message.attributes().into_iter().flatten().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect();
    let message_attributes: BTreeMap<String, Value> = message
        .message_attributes()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                json!({
                    "stringValue": v.string_value(),
                    "binaryValue": v.binary_value().map(|b| base64_encode(b.as_ref())),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": v.data_type(),
                }),
            )
        })
        .collect();
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body().unwrap_or_default(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    })
}

/// A batch of SQS records (what the mapping invokes the function with).
pub fn sqs_event(records: &[Value]) -> Value {
    json!({ "Records": records })
}

/// A record for a message that was never on a queue (tests): body and attributes as given.
pub fn sqs_record_of(
    body: &str,
    message_attributes: &BTreeMap<String, String>,
    queue_arn: &str,
    region: &str,
) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    let attributes: BTreeMap<String, Value> = message_attributes
        .iter()
        .map(|(k, v)| {
            (k.clone(), json!({"stringValue": v, "stringListValues": [], "binaryListValues": [], "dataType": "String"}))
        })
        .collect();
    json!({
        "messageId": id,
        "receiptHandle": format!("local-{id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": chrono::Utc::now().timestamp_millis().to_string(),
            "SenderId": "LOCAL",
            "ApproximateFirstReceiveTimestamp": chrono::Utc::now().timestamp_millis().to_string(),
        },
        "messageAttributes": attributes,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    })
}

/// What a scheduled rule sends its target: the target's constant `Input` when it has one, else the
/// "Scheduled Event".
pub fn scheduled_event(input: Option<&Value>, rule_arn: &str, account: &str, region: &str) -> Value {
    if let Some(input) = input {
        return input.clone();
    }
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            assert_eq!(base64_decode(&base64_encode(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn http_responses_read_like_api_gateway() {
        let r = http_api_response(&json!({"statusCode": 401, "headers": {"x": "1"}, "body": "no"}));
        assert_eq!((r.status, r.body.as_slice()), (401, b"no".as_slice()));
        let bare = http_api_response(&json!({"ok": true}));
        assert_eq!(bare.status, 200);
    }
}
