//! The deployable template holds the operational promises the code relies on: every queue dead-letters,
//! every failure mode alarms to the topic, every push consumer is bounded by its channel's rate limit.
//!
//! The file tests read `.local/template.json`, the template as SAM expands it (what CloudFormation really
//! receives), written by `infra/local/lint.sh` and `infra/local/test.sh`. The stack test reads the stack that
//! `infra/local/stack.py` created in moto from the same template, through the real SDK.

use std::{collections::BTreeSet, path::PathBuf};

use manifold_aws::health;
use manifold_domain::Channel;
use serde_json::{Value, json};

use crate::support;

fn template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local/template.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {} ({e}): run infra/local/lint.sh (or infra/local/test.sh) to write it", path.display())
    });
    serde_json::from_str(&text).expect("the transformed template is JSON")
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().expect("Resources")
}

fn of_type<'a>(t: &'a Value, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
    resources(t).iter().filter(move |(_, r)| r["Type"] == kind).map(|(id, r)| (id.as_str(), &r["Properties"]))
}

fn props<'a>(t: &'a Value, logical_id: &str) -> &'a Value {
    &resources(t).get(logical_id).unwrap_or_else(|| panic!("template has no {logical_id}"))["Properties"]
}

/// `shopify` -> `Shopify`, the spelling of logical ids.
fn title(channel: Channel) -> String {
    let name = channel.as_str();
    name[..1].to_uppercase() + &name[1..]
}

fn get_att(logical_id: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [logical_id, attribute] })
}

fn reference(logical_id: &str) -> Value {
    json!({ "Ref": logical_id })
}

/// The alarms watching `metric` in `namespace` with exactly these dimensions.
fn alarms_on<'a>(t: &'a Value, namespace: &str, metric: &str, dimensions: &Value) -> Vec<(&'a str, &'a Value)> {
    let no_dimensions = json!([]);
    of_type(t, "AWS::CloudWatch::Alarm")
        .filter(|(_, a)| {
            a["Namespace"] == namespace
                && a["MetricName"] == metric
                && a.get("Dimensions").unwrap_or(&no_dimensions) == dimensions
        })
        .collect()
}

fn the_alarm<'a>(t: &'a Value, namespace: &str, metric: &str, dimensions: &Value) -> &'a Value {
    let found = alarms_on(t, namespace, metric, dimensions);
    assert_eq!(found.len(), 1, "want one {namespace}/{metric} alarm on {dimensions}, found {found:?}");
    found[0].1
}

fn assert_alarm(alarm: &Value, statistic: &str, period: u64, threshold: f64, comparison: &str) {
    assert_eq!(alarm["Statistic"], statistic, "{alarm}");
    assert_eq!(alarm["Period"], period, "{alarm}");
    assert_eq!(alarm["Threshold"].as_f64(), Some(threshold), "{alarm}");
    assert_eq!(alarm["ComparisonOperator"], comparison, "{alarm}");
    assert_eq!(alarm["EvaluationPeriods"], 1, "{alarm}");
}

fn dlqs(t: &Value) -> Vec<&str> {
    of_type(t, "AWS::SQS::Queue").map(|(id, _)| id).filter(|id| id.ends_with("DLQ")).collect()
}

fn work_queues(t: &Value) -> Vec<&str> {
    of_type(t, "AWS::SQS::Queue").map(|(id, _)| id).filter(|id| !id.ends_with("DLQ")).collect()
}

#[test]
fn every_channel_has_a_failed_sync_alarm_on_its_own_dimension() {
    let t = template();
    for channel in Channel::ALL {
        let alarm = the_alarm(&t, "Manifold", "SyncFailed", &json!([{ "Name": "Channel", "Value": channel.as_str() }]));
        assert_alarm(alarm, "Sum", 600, 5.0, "GreaterThanOrEqualToThreshold");
        // The console turns an account red on the same count in the same window.
        assert_eq!(health::SYNC_FAILED_WINDOW_MINUTES * 60, 600);
        assert_eq!(health::SYNC_FAILED_THRESHOLD, 5);
        assert_eq!(alarm["AlarmActions"], json!([reference("AlarmTopic")]), "{channel}");
    }
}

#[test]
fn every_dead_letter_queue_alarms_on_its_first_message() {
    let t = template();
    let dlqs = dlqs(&t);
    assert_eq!(
        dlqs.len(),
        8 + Channel::ALL.len(),
        "ingest, Amazon notifications, ledger, sync, changes, deliveries, customers, CRM and one per channel"
    );
    for dlq in dlqs {
        let dimensions = json!([{ "Name": "QueueName", "Value": get_att(dlq, "QueueName") }]);
        let alarm = the_alarm(&t, "AWS/SQS", "ApproximateNumberOfMessagesVisible", &dimensions);
        assert_eq!(alarm["Threshold"].as_f64(), Some(0.0), "{dlq}");
        assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold", "{dlq}");
    }
}

#[test]
fn oversell_signature_config_and_ingest_age_alarms_have_their_thresholds() {
    let t = template();
    let oversell = the_alarm(&t, "Manifold", "Oversell", &json!([]));
    assert_alarm(oversell, "Sum", 60, 1.0, "GreaterThanOrEqualToThreshold");
    let rejected_config = the_alarm(&t, "Manifold", "ConfigRejected", &json!([]));
    assert_alarm(rejected_config, "Sum", 300, 1.0, "GreaterThanOrEqualToThreshold");
    let signatures = the_alarm(&t, "Manifold", "SignatureRejected", &json!([]));
    assert_alarm(signatures, "Sum", 300, 20.0, "GreaterThanOrEqualToThreshold");
    let age = json!([{ "Name": "QueueName", "Value": get_att("IngestQueue", "QueueName") }]);
    let ingest_age = the_alarm(&t, "AWS/SQS", "ApproximateAgeOfOldestMessage", &age);
    assert_eq!(ingest_age["Threshold"].as_f64(), Some(300.0));
    assert_eq!(ingest_age["ComparisonOperator"], "GreaterThanThreshold");
    // Shipping deadlines (`late`): the first late order or unconfirmed tracking notifies.
    for metric in ["OrderLate", "TrackingUnconfirmed"] {
        assert_alarm(the_alarm(&t, "Manifold", metric, &json!([])), "Sum", 300, 1.0, "GreaterThanOrEqualToThreshold");
    }
}

#[test]
fn every_function_alarms_on_errors_and_throttles() {
    let t = template();
    let functions: Vec<&str> = of_type(&t, "AWS::Lambda::Function").map(|(id, _)| id).collect();
    assert_eq!(functions.len(), 11 + Channel::ALL.len(), "eleven functions plus one pusher per channel");
    for function in functions {
        let dimensions = json!([{ "Name": "FunctionName", "Value": reference(function) }]);
        for metric in ["Errors", "Throttles"] {
            let alarm = the_alarm(&t, "AWS/Lambda", metric, &dimensions);
            assert_alarm(alarm, "Sum", 300, 1.0, "GreaterThanOrEqualToThreshold");
        }
    }
}

#[test]
fn every_alarm_explains_itself_and_notifies_the_topic() {
    let t = template();
    for (id, alarm) in of_type(&t, "AWS::CloudWatch::Alarm") {
        let description = alarm["AlarmDescription"].as_str().unwrap_or_default();
        assert!(description.len() > 30, "{id} needs a description saying what to do");
        assert_eq!(alarm["AlarmActions"], json!([reference("AlarmTopic")]), "{id}");
        assert_eq!(alarm["TreatMissingData"], "notBreaching", "{id}: no data means nothing failed");
    }
}

#[test]
fn every_queue_dead_letters_to_its_own_queue() {
    let t = template();
    let queues = work_queues(&t);
    assert_eq!(
        queues.len(),
        8 + Channel::ALL.len(),
        "ingest, Amazon notifications, ledger, sync, changes, deliveries, customers, CRM and one per channel"
    );
    for queue in queues {
        let dlq = format!("{}DLQ", queue.trim_end_matches("Queue"));
        let redrive = &props(&t, queue)["RedrivePolicy"];
        assert_eq!(redrive["deadLetterTargetArn"], get_att(&dlq, "Arn"), "{queue}");
        assert_eq!(redrive["maxReceiveCount"], reference("MaxReceiveCount"), "{queue}");
        assert_eq!(props(&t, &dlq)["MessageRetentionPeriod"], 14 * 24 * 3600, "{dlq} keeps 14 days");
        assert!(props(&t, &dlq).get("RedrivePolicy").is_none(), "{dlq} is the end of the line");
    }
}

#[test]
fn every_sqs_consumer_reports_partial_failures_and_outlives_its_function() {
    let t = template();
    let mappings: Vec<&Value> = of_type(&t, "AWS::Lambda::EventSourceMapping").map(|(_, m)| m).collect();
    let consumed: BTreeSet<&str> =
        mappings.iter().map(|m| m["EventSourceArn"]["Fn::GetAtt"][0].as_str().unwrap_or_default()).collect();
    assert_eq!(consumed, work_queues(&t).into_iter().collect(), "every work queue has exactly one consumer");
    for mapping in mappings {
        let queue = mapping["EventSourceArn"]["Fn::GetAtt"][0].as_str().unwrap_or_default();
        assert_eq!(mapping["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]), "{queue}");
        let function = mapping["FunctionName"]["Ref"].as_str().expect("FunctionName is a Ref");
        let timeout = props(&t, function)["Timeout"].as_u64().expect("function timeout");
        let visibility = props(&t, queue)["VisibilityTimeout"].as_u64().expect("queue visibility timeout");
        assert!(visibility >= 6 * timeout, "{queue}: visibility {visibility} s < 6 x {function}'s {timeout} s");
    }
}

#[test]
fn each_channel_pusher_consumes_its_queue_within_a_bounded_concurrency() {
    let t = template();
    for channel in Channel::ALL {
        let function = format!("Push{}Function", title(channel));
        let mapping = of_type(&t, "AWS::Lambda::EventSourceMapping")
            .map(|(_, m)| m)
            .find(|m| m["FunctionName"] == reference(&function))
            .unwrap_or_else(|| panic!("{function} has no event source mapping"));
        assert_eq!(mapping["EventSourceArn"], get_att(&format!("Push{}Queue", title(channel)), "Arn"));
        let concurrency = mapping["ScalingConfig"]["MaximumConcurrency"].as_u64().unwrap_or_default();
        assert!(concurrency >= 2, "{function}: MaximumConcurrency {concurrency} (SQS needs at least 2)");
        assert_eq!(mapping["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]));
        assert_eq!(props(&t, &function)["Environment"]["Variables"]["CHANNEL"], channel.as_str());
    }
}

#[test]
fn functions_run_on_graviton_with_the_shared_environment() {
    let t = template();
    let common = [
        "RECORDS_TABLE",
        "IDEMPOTENCY_TABLE",
        "LEDGER_TABLE",
        "STATE_TABLE",
        "QUARANTINE_TABLE",
        "EVENT_BUS_NAME",
        "INGEST_QUEUE_URL",
        "CONFIG_BUCKET",
        "CONFIG_KEY",
        "CONFIG_REFRESH_SECONDS",
        "QUARANTINE_RETENTION_DAYS",
        "RUST_LOG",
        "METRICS_NAMESPACE",
    ];
    for (id, function) in of_type(&t, "AWS::Lambda::Function") {
        assert_eq!(function["Runtime"], "provided.al2023", "{id}");
        assert_eq!(function["Architectures"], json!(["arm64"]), "{id}");
        assert_eq!(function["Handler"], "bootstrap", "{id}");
        assert_eq!(function["TracingConfig"]["Mode"], "Active", "{id}");
        let variables = &function["Environment"]["Variables"];
        for var in common {
            assert!(variables.get(var).is_some(), "{id} lacks {var}");
        }
        assert_eq!(variables["CONFIG_BUCKET"], reference("ConfigBucket"), "{id}");
        assert!(
            variables.get("MANIFOLD_CONFIG_FILE").is_none(),
            "{id}: a deployed function reads its configuration from S3"
        );
        for channel in Channel::ALL {
            let var = format!("PUSH_QUEUE_{}", channel.as_str().to_uppercase());
            assert_eq!(variables[&var], reference(&format!("Push{}Queue", title(channel))), "{id}: {var}");
        }
    }
}

#[test]
fn tables_expire_items_and_keep_point_in_time_recovery() {
    let t = template();
    let tables: Vec<_> = of_type(&t, "AWS::DynamoDB::Table").collect();
    assert_eq!(tables.len(), 5);
    for (id, table) in tables {
        assert_eq!(table["TimeToLiveSpecification"], json!({ "AttributeName": "expires_at", "Enabled": true }), "{id}");
        assert_eq!(table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true, "{id}");
        assert_eq!(table["SSESpecification"]["SSEEnabled"], true, "{id}");
        assert_eq!(table["BillingMode"], "PAY_PER_REQUEST", "{id}");
        assert_eq!(
            table["KeySchema"],
            json!([{ "AttributeName": "pk", "KeyType": "HASH" }, { "AttributeName": "sk", "KeyType": "RANGE" }]),
            "{id}"
        );
    }
    let records = props(&t, "RecordsTable");
    assert_eq!(records["GlobalSecondaryIndexes"][0]["IndexName"], "by_trace");
    assert_eq!(records["StreamSpecification"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
}

#[tokio::test]
async fn the_stack_in_moto_was_created_from_the_template_with_working_redrive() {
    let stack = std::env::var("MANIFOLD_STACK")
        .expect("MANIFOLD_STACK is unset: run through infra/local/test.sh, which creates the stack with stack.py");
    let config = support::aws().await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);

    let described = cfn.describe_stacks().stack_name(&stack).send().await.expect("describe the stack in moto");
    let status = described.stacks().first().and_then(|s| s.stack_status()).map(|s| s.as_str().to_owned());
    assert_eq!(status.as_deref(), Some("CREATE_COMPLETE"), "{stack}");

    let created = cfn.describe_stack_resources().stack_name(&stack).send().await.expect("stack resources");
    let physical = |logical: &str| {
        created
            .stack_resources()
            .iter()
            .find(|r| r.logical_resource_id() == Some(logical))
            .and_then(|r| r.physical_resource_id())
            .unwrap_or_else(|| panic!("{stack} has no {logical}"))
            .to_owned()
    };

    let t = template();
    for (id, _) in of_type(&t, "AWS::DynamoDB::Table").chain(of_type(&t, "AWS::Lambda::Function")) {
        physical(id);
    }
    for queue in work_queues(&t) {
        let dlq = format!("{}DLQ", queue.trim_end_matches("Queue"));
        let attributes = |url: String| {
            let sqs = sqs.clone();
            async move {
                sqs.get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                    .send()
                    .await
                    .expect("queue attributes")
                    .attributes
                    .unwrap_or_default()
            }
        };
        let queue_attributes = attributes(physical(queue)).await;
        let dlq_attributes = attributes(physical(&dlq)).await;
        let redrive: Value = serde_json::from_str(
            queue_attributes.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy).expect("RedrivePolicy"),
        )
        .expect("RedrivePolicy is JSON");
        let dlq_arn = dlq_attributes.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).expect("DLQ arn");
        assert_eq!(redrive["deadLetterTargetArn"], dlq_arn.as_str(), "{queue}");
        assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "5", "{queue}: the template's default");
    }
}

/// Every inline statement of every function role: (function, statement).
fn role_statements(t: &Value) -> Vec<(&str, &Value)> {
    let mut out = Vec::new();
    for (function, properties) in of_type(t, "AWS::Lambda::Function") {
        let role =
            properties["Role"]["Fn::GetAtt"][0].as_str().unwrap_or_else(|| panic!("{function} has its own role"));
        for policy in props(t, role)["Policies"].as_array().into_iter().flatten() {
            for statement in policy["PolicyDocument"]["Statement"].as_array().into_iter().flatten() {
                out.push((function, statement));
            }
        }
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect(),
        other => vec![other.as_str().map_or_else(|| other.to_string(), str::to_owned)],
    }
}

#[test]
fn roles_name_their_actions_and_resources_and_read_only_the_configuration_object() {
    // tests/it/iam.rs proves against the recorded calls that each role is exactly what its function calls;
    // this holds the shape without the emulator: explicit actions, no `*`, the configuration object only.
    let t = template();
    let object = json!({ "Fn::Sub": "arn:${AWS::Partition}:s3:::${ConfigBucket}/channels.toml" });
    let mut reads_config = BTreeSet::new();
    for (function, statement) in role_statements(&t) {
        assert_eq!(statement["Effect"], "Allow", "{function}: {statement}");
        for action in strings(&statement["Action"]) {
            assert!(!action.contains('*'), "{function}: wildcard action {action}");
            if action == "s3:PutObject" {
                // The CSV drops: the scheduler writes into the export bucket, and nowhere else.
                assert_eq!(function, "SchedulerFunction", "{function}: only the scheduler writes files");
                assert_eq!(statement["Resource"], json!({ "Fn::Sub": "${ExportBucket.Arn}/*" }), "{function}");
            } else if action.starts_with("s3:") {
                assert_eq!(action, "s3:GetObject", "{function}: the bucket holds nothing else to read or write");
                assert_eq!(statement["Resource"], object, "{function}: only channels.toml");
                reads_config.insert(function);
            }
            assert!(action != "cloudwatch:PutMetricData", "{function}: metrics are EMF on stdout, not PutMetricData");
        }
        assert!(!strings(&statement["Resource"]).iter().any(|r| r == "*"), "{function}: `*` resource in {statement}");
    }
    let functions: BTreeSet<&str> = of_type(&t, "AWS::Lambda::Function").map(|(id, _)| id).collect();
    assert_eq!(reads_config, functions, "every function reads its configuration object");
}

/// The pull API's cursor never skips a change only if one consumer numbers changes one batch at a
/// time: the changes queue is FIFO, fed by its rule in one message group, dead-lettering to a FIFO DLQ.
#[test]
fn the_change_index_is_fed_through_one_fifo_message_group() {
    let t = template();
    assert_eq!(props(&t, "ChangesQueue")["FifoQueue"], true);
    assert_eq!(props(&t, "ChangesQueue")["ContentBasedDeduplication"], true, "EventBridge needs it for FIFO");
    assert_eq!(props(&t, "ChangesDLQ")["FifoQueue"], true, "a FIFO queue dead-letters to a FIFO queue");
    let target = &props(&t, "ChangesRule")["Targets"][0];
    assert_eq!(target["Arn"], get_att("ChangesQueue", "Arn"));
    assert_eq!(target["SqsParameters"]["MessageGroupId"], "changes");
}
