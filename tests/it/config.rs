//! The channel configuration as deployed: one versioned S3 object that functions load and re-check by
//! ETag, and the `manifold config` commands that change it. Against the emulator's S3, in a private,
//! versioned bucket per test.

use std::{path::PathBuf, sync::Arc, time::Duration};

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use manifold_app::config::{ConfigSource, LiveConfig};
use manifold_aws::config_store::{ConfigStore, Fetched, S3ConfigStore};
use manifold_cli::commands::config as cli;
use manifold_domain::config::ChannelConfig;

use crate::support::{aws, unique};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/channels.example.toml");

async fn versioned_bucket() -> S3ConfigStore {
    let sdk = aws().await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let bucket = unique("config").to_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .expect("enable versioning");
    S3ConfigStore::new(s3, bucket, "channels.toml")
}

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("manifold-config-it"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn example() -> ChannelConfig {
    ChannelConfig::parse("example", &std::fs::read_to_string(EXAMPLE).unwrap()).unwrap()
}

#[tokio::test]
async fn s3_answers_not_modified_while_the_object_is_unchanged_and_keeps_every_version() {
    let store = versioned_bucket().await;
    let v1 = store.put("version = 1\n").await.unwrap();
    let Fetched::Object(first) = store.fetch(None).await.unwrap() else { panic!("the object") };
    assert_eq!(first.version_id, v1);
    assert_eq!(store.fetch(Some(&first.etag)).await.unwrap(), Fetched::NotModified);

    let v2 = store.put("version = 1\n# edited\n").await.unwrap();
    assert_ne!(v1, v2);
    let Fetched::Object(second) = store.fetch(Some(&first.etag)).await.unwrap() else { panic!("a new version") };
    assert_eq!(second.text, "version = 1\n# edited\n");
    let versions = store.versions().await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version_id.clone()).collect::<Vec<_>>(), [v2, v1.clone()]);
    assert!(versions[0].is_latest && !versions[1].is_latest);
    assert_eq!(store.version(&v1).await.unwrap(), "version = 1\n");
}

#[tokio::test]
async fn an_invalid_push_is_refused_with_its_path_and_reason_and_a_valid_one_reaches_a_running_function() {
    let store = versioned_bucket().await;
    cli::push(&store, &PathBuf::from(EXAMPLE)).await.expect("the example configuration is valid");
    // A function holding the live configuration, re-checking on every call (the template says 60 s).
    let live = LiveConfig::load(ConfigSource::Store { store: Arc::new(store.clone()), refresh: Duration::ZERO })
        .await
        .unwrap();
    let before = live.current().await.accounts.len();

    // Given a file with a percentage above 100, push refuses it and writes nothing.
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let bad = file("channels.toml", &text.replacen("percent = 100", "percent = 150", 1));
    let err = cli::push(&store, &bad).await.unwrap_err().to_string();
    assert!(err.contains("channels.toml: at `accounts[") && err.contains("stock.percent`: 150"), "{err}");
    assert_eq!(store.versions().await.unwrap().len(), 1, "nothing was written");

    // Even written around the CLI, an invalid object never replaces what the function holds.
    store.put(&text.replacen("percent = 100", "percent = 150", 1)).await.unwrap();
    assert_eq!(live.current().await.accounts.len(), before);

    // A valid push (one account fewer) is what the function holds at its next check.
    let mut smaller = example();
    let dropped = smaller.accounts.pop().unwrap();
    let edited = file("channels.toml", &toml::to_string(&smaller).unwrap());
    let diff = cli::diff(&store, &PathBuf::from(EXAMPLE)).await.unwrap();
    let reason = diff.live_invalid.expect("diff says the live object is invalid");
    assert!(reason.contains("stock.percent`: 150"), "{reason}");
    let pushed = cli::push(&store, &edited).await.unwrap();
    assert!(pushed.previous_invalid.is_some());
    assert!(!pushed.changes.iter().any(|c| c.account == format!("{}:{}", dropped.channel, dropped.account)));
    let now = live.current().await;
    assert_eq!(now.accounts.len(), before - 1);
    assert!(now.account(dropped.channel, dropped.account.as_str()).is_none());

    // Roll back to the first version: live again, as a new version.
    let first = store.versions().await.unwrap().last().unwrap().version_id.clone();
    cli::rollback(&store, &first).await.unwrap();
    assert_eq!(live.current().await.accounts.len(), before);
    assert_eq!(cli::history(&store).await.unwrap().versions.len(), 4);
}

/// The deployed path end to end: the real webhook binary, started from the template's environment,
/// picks up a pushed configuration at its next check, within the template's CONFIG_REFRESH_SECONDS (60).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_push_reaches_the_running_webhook_binary_within_its_refresh_interval() {
    use std::collections::BTreeMap;

    use manifold_cli::seed;
    use manifold_localrt::{LocalAws, Logs, Options, Runtime, events};

    let stack_name = std::env::var("MANIFOLD_STACK").expect("MANIFOLD_STACK: run through infra/local/test.sh");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = manifold_localrt::binary_dir(&root);
    assert!(bin_dir.join("webhook").is_file(), "run `cargo build --workspace --bins` first (test.sh does)");
    let sdk = aws().await;
    let sim = manifold_simulator::Simulator::start(manifold_simulator::SimConfig::default()).await.unwrap();
    let (text, config) = seed::config_for_simulators(&std::fs::read_to_string(EXAMPLE).unwrap(), &sim).unwrap();
    seed::put_secrets(&sdk, &config).await.unwrap();
    let store = versioned_bucket().await;
    store.put(&text).await.unwrap();

    // The template's environment, except the bucket: a private one, so no other test's push reaches it.
    let bucket = store.location().trim_start_matches("s3://").split('/').next().unwrap().to_owned();
    let options = Options {
        logs: Logs::Discard,
        overrides: BTreeMap::from([("CONFIG_BUCKET".to_owned(), bucket)]),
        ..Options::new(bin_dir)
    };
    let runtime =
        Runtime::load(&root.join(".local/template.json"), &stack_name, LocalAws::from_env(), options).await.unwrap();
    let webhook = runtime.function("WebhookFunction").expect("the webhook function").clone();
    webhook.start().await.expect("cold start with the stored configuration");
    let challenge = || {
        let webhook = webhook.clone();
        let account = runtime.stack.account.clone();
        async move {
            let event = events::http_api_event(&events::HttpRequest {
                route_key: "GET /v1/webhooks/ebay/{account}",
                method: "GET",
                path: "/v1/webhooks/ebay/ebay-de",
                raw_query: "challenge_code=reload",
                headers: BTreeMap::from([("host".to_owned(), "127.0.0.1".to_owned())]),
                path_parameters: BTreeMap::from([("account".to_owned(), "ebay-de".to_owned())]),
                body: b"",
                iam: None,
                account: &account,
                api_id: "local",
            });
            events::http_api_response(&webhook.invoke(&event).await.expect("invocation")).status
        }
    };
    assert_eq!(challenge().await, 200, "ebay-de is configured");

    // When the operator pushes a configuration without the eBay account...
    let mut without = config.clone();
    without.accounts.retain(|a| a.account.as_str() != "ebay-de");
    let file = file("channels.toml", &toml::to_string(&without).unwrap());
    cli::push(&store, &file).await.unwrap();
    let pushed_at = std::time::Instant::now();

    // ...the running function answers 404 for it at its next check: within 60 s, plus this machine's slack.
    let deadline = Duration::from_secs(90);
    loop {
        if challenge().await == 404 {
            break;
        }
        assert!(pushed_at.elapsed() < deadline, "the push did not reach the running function in {deadline:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("configuration live in the running function after {:?}", pushed_at.elapsed());
    assert_eq!(webhook.warm(), 1, "picked up without a new cold start");
    runtime.shutdown();
}

#[tokio::test]
async fn a_pushed_rule_with_a_bad_expression_is_refused_and_the_running_rules_stay() {
    let store = versioned_bucket().await;
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let rule = "\n[[rules.shipping]]\nid = \"alpine-express\"\ncarrier = \"DHL\"\nwhen = 'order.shipping_address.country_code in [\"AT\", \"CH\"]'\n";
    cli::push(&store, &file("channels.toml", &format!("{text}{rule}"))).await.expect("a valid rule");
    let live = LiveConfig::load(ConfigSource::Store { store: Arc::new(store.clone()), refresh: Duration::ZERO })
        .await
        .unwrap();
    assert_eq!(live.current().await.rules.shipping[0].id, "alpine-express");

    // A typo in the expression: refused with the file, the rule's path and CEL's reason; nothing written.
    let typo = rule.replace("order.shipping_address", "order.shiping_address").replace("alpine-express", "typo");
    let err = cli::push(&store, &file("channels.toml", &format!("{text}{typo}"))).await.unwrap_err().to_string();
    assert!(err.contains("channels.toml: at `rules.shipping[0].when`") && err.contains("shiping_address"), "{err}");
    let broken = rule.replace("country_code in", "country_code in in").replace("alpine-express", "broken");
    let err = cli::push(&store, &file("channels.toml", &format!("{text}{broken}"))).await.unwrap_err().to_string();
    assert!(err.contains("rules.shipping[0].when") && err.contains("not a CEL expression"), "{err}");
    assert_eq!(store.versions().await.unwrap().len(), 1, "nothing was written");

    // Written around the CLI, the running function keeps the rules it holds.
    store.put(&format!("{text}{broken}")).await.unwrap();
    assert_eq!(live.current().await.rules.shipping[0].id, "alpine-express");
}
