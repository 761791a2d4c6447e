//! The execution environment's lifecycle, on stand-in "binaries" (shell scripts speaking the Runtime
//! API with curl): a response, a handled error, an init error, a crash and a timeout, each ending as
//! it ends in Lambda (a crashed or timed-out environment is replaced by a new cold start).

use std::{collections::BTreeMap, path::PathBuf, sync::atomic::Ordering, time::Duration};

use manifold_localrt::{Function, FunctionConfig, FunctionError, LogSink};
use serde_json::json;

/// A script that serves invocations with `body` (a shell snippet; `$ID` is the request id, `$EVENT` the payload file).
fn script(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("manifold-localrt-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let text = format!(
        "#!/bin/sh\nAPI=\"http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime\"\n\
         while true; do\n  EVENT=$(mktemp)\n  ID=$(/usr/bin/curl -sS -D - -o \"$EVENT\" \"$API/invocation/next\" | tr -d '\\r' | sed -n 's/^lambda-runtime-aws-request-id: //Ip')\n{body}\ndone\n"
    );
    std::fs::write(&path, text).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

fn function(binary: PathBuf, timeout: Duration) -> Function {
    Function::new(FunctionConfig {
        logical_id: "TestFunction".into(),
        name: "test-function".into(),
        arn: "arn:aws:lambda:us-east-1:123456789012:function:test-function".into(),
        binary,
        timeout,
        memory_mb: 128,
        handler: "bootstrap".into(),
        env: BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]),
        max_concurrency: 1,
        logs: LogSink::Discard,
    })
}

#[tokio::test]
async fn a_response_comes_back_and_the_environment_stays_warm() {
    let echo = script(
        "echo",
        "  /usr/bin/curl -sS -X POST --data-binary @\"$EVENT\" \"$API/invocation/$ID/response\" >/dev/null",
    );
    let f = function(echo, Duration::from_secs(5));
    assert_eq!(f.invoke(&json!({"n": 1})).await.unwrap(), json!({"n": 1}));
    assert_eq!(f.invoke(&json!({"n": 2})).await.unwrap(), json!({"n": 2}));
    assert_eq!(f.stats.cold_starts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_handled_error_is_reported_and_keeps_the_environment() {
    let failing = script(
        "failing",
        "  /usr/bin/curl -sS -X POST -d '{\"errorType\":\"Boom\",\"errorMessage\":\"no\"}' \"$API/invocation/$ID/error\" >/dev/null",
    );
    let f = function(failing, Duration::from_secs(5));
    let err = f.invoke(&json!({})).await.unwrap_err();
    assert!(matches!(&err, FunctionError::Handled { error_type, .. } if error_type == "Boom"), "{err}");
    assert!(f.invoke(&json!({})).await.is_err());
    assert_eq!(f.stats.cold_starts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_timed_out_invocation_kills_the_process_and_the_next_one_starts_cold() {
    let slow = script("slow", "  sleep 30");
    let f = function(slow, Duration::from_millis(500));
    let err = f.invoke(&json!({})).await.unwrap_err();
    assert!(matches!(err, FunctionError::Timeout { .. }), "{err}");
    assert_eq!(f.warm(), 0, "the timed-out environment is gone");
    let err = f.invoke(&json!({})).await.unwrap_err();
    assert!(matches!(err, FunctionError::Timeout { .. }), "{err}");
    assert_eq!(f.stats.cold_starts.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_crash_during_an_invocation_is_reported_with_its_output() {
    let crash = script("crash", "  echo 'panicked at the handler' >&2; exit 3");
    let f = function(crash, Duration::from_secs(5));
    let err = f.invoke(&json!({})).await.unwrap_err();
    assert!(matches!(&err, FunctionError::Crashed { log_tail, .. } if log_tail.contains("panicked")), "{err}");
    assert_eq!(f.warm(), 0);
}

#[tokio::test]
async fn an_init_failure_is_an_init_error() {
    let exits = std::env::temp_dir().join(format!("manifold-localrt-exit-{}", std::process::id()));
    std::fs::write(&exits, "#!/bin/sh\necho 'Error: Config(missing)' >&2\nexit 1\n").unwrap();
    let mut perms = std::fs::metadata(&exits).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&exits, perms).unwrap();
    let err = function(exits, Duration::from_secs(5)).start().await.unwrap_err();
    assert!(
        matches!(&err, FunctionError::Init { kind, log_tail, .. } if kind == "Runtime.ExitError" && log_tail.contains("Config(missing)")),
        "{err}"
    );
    let reported = script("init-error", "  :");
    let reported_text = std::fs::read_to_string(&reported).unwrap().replacen(
        "while true",
        "/usr/bin/curl -sS -X POST -d '{\"errorType\":\"Runtime.InitError\",\"errorMessage\":\"bad config\"}' \"$API/init/error\" >/dev/null; exit 1\nwhile true",
        1,
    );
    std::fs::write(&reported, reported_text).unwrap();
    let err = function(reported, Duration::from_secs(5)).start().await.unwrap_err();
    assert!(matches!(&err, FunctionError::Init { message, .. } if message.contains("bad config")), "{err}");
    let missing = function(PathBuf::from("/nonexistent/bootstrap"), Duration::from_secs(1)).start().await.unwrap_err();
    assert!(missing.to_string().contains("cargo build"), "{missing}");
}
