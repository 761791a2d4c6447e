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
