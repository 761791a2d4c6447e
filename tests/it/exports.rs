//! The CSV drop for legacy ERPs, against moto: orders stored and indexed as in `changes.rs`, an export
//! configured, `App::run_exports` (the scheduler's tick) writing to a real S3 bucket.

use chrono::{Duration, Utc};
use manifold_domain::export::ExportConfig;

use crate::{
    changes::{changes_queue, store_and_index},
    inbound::Harness,
    support::unique,
};

/// A harness whose configuration has one hourly export, writing to a fresh bucket.
async fn harness() -> (Harness, String) {
    let sdk = crate::support::aws().await;
    let s3 = s3_client(&sdk);
    let bucket = unique("exports");
    s3.create_bucket().bucket(&bucket).send().await.expect("create the export bucket");
    let export = ExportConfig { id: "legacy-erp".into(), prefix: None, every_minutes: 60, columns: Vec::new() };
    let b = bucket.clone();
    let h = Harness::with_settings(move |c| c.exports = vec![export], move |s| s.export_bucket = Some(b)).await;
    (h, bucket)
}

fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build())
}

/// Every object in the bucket: key -> (body, ETag).
async fn objects(h: &Harness, bucket: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let s3 = s3_client(&h.stack.sdk);
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut out = std::collections::BTreeMap::new();
    for o in listed.contents() {
        let key = o.key().unwrap().to_owned();
        let got = s3.get_object().bucket(bucket).key(&key).send().await.unwrap();
        let etag = got.e_tag().unwrap_or_default().to_owned();
        let body = String::from_utf8(got.body.collect().await.unwrap().into_bytes().to_vec()).unwrap();
        out.insert(key, (body, etag));
    }
    out
}

#[tokio::test]
async fn an_export_run_writes_the_new_orders_lines_once_with_a_manifest_and_nothing_when_nothing_is_new() {
    let (h, bucket) = harness().await;
    let queue = changes_queue(&h).await;
    let now = Utc::now();
    // Nothing happened yet: the first run writes nothing.
    let runs = h.app.run_exports(now, false).await.unwrap();
    assert_eq!((runs.len(), runs[0].file.as_deref()), (1, None));
    assert!(objects(&h, &bucket).await.is_empty());

    // Three new orders (order 2 has two lines): one file of four lines, and its manifest.
    store_and_index(&h, &queue, 1..=3, 1).await;
    let runs = h.app.run_exports(now + Duration::minutes(61), false).await.unwrap();
    assert_eq!((runs[0].orders, runs[0].rows), (3, 4), "{runs:?}");
    let files = objects(&h, &bucket).await;
    assert_eq!(files.len(), 2, "{:?}", files.keys());
    let csv_key = runs[0].file.clone().unwrap();
    let extension = std::path::Path::new(&csv_key).extension().and_then(|e| e.to_str());
    assert!(csv_key.starts_with("exports/legacy-erp/") && extension == Some("csv"), "{csv_key}");
    let mut reader = csv::Reader::from_reader(files[&csv_key].0.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "order_id");
    // In change order; the three orders were published concurrently, so compare them sorted.
    let mut rows: Vec<(String, String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[3].to_owned(), r[10].to_owned(), r[11].to_owned())
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [("1", "TEE-1", "1"), ("2", "MUG-1", "2"), ("2", "TEE-2", "1"), ("3", "TEE-3", "1")].map(|(o, s, q)| (
            o.to_owned(),
            s.to_owned(),
            q.to_owned()
        ))
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&files[&csv_key.replace(".csv", ".manifest.json")].0).unwrap();
    assert_eq!((manifest["orders"].as_u64(), manifest["rows"].as_u64()), (Some(3), Some(4)));
    assert_eq!(manifest["file"], csv_key.as_str());

    // The next run, with nothing new, writes nothing.
    let runs = h.app.run_exports(now + Duration::minutes(122), false).await.unwrap();
    assert_eq!(runs[0].file, None);
    assert_eq!(objects(&h, &bucket).await.len(), 2);

    // A new order and a changed one: not before the cadence says so; then a second file with the two.
    store_and_index(&h, &queue, [4], 1).await;
    store_and_index(&h, &queue, [1], 2).await;
    let early = h.app.run_exports(now + Duration::minutes(150), false).await.unwrap();
    assert_eq!(early[0].skipped, Some("not due"));
    let runs = h.app.run_exports(now + Duration::minutes(183), false).await.unwrap();
    assert_eq!((runs[0].orders, runs[0].rows), (2, 3), "order 4 has two lines: {runs:?}");
    let after = objects(&h, &bucket).await;
    assert_eq!(after.len(), 4);
    assert_eq!(after[&csv_key], files[&csv_key], "the first file is never rewritten");
}

#[tokio::test]
async fn a_run_retried_after_a_crash_finds_its_files_written_and_rewrites_none() {
    let (h, bucket) = harness().await;
    let queue = changes_queue(&h).await;
    store_and_index(&h, &queue, 1..=2, 1).await;
    let first = h.app.run_exports(Utc::now(), true).await.unwrap();
    let written = objects(&h, &bucket).await;
    // The crash: the files were written, the cursor never moved.
    h.app.state.get().set_marker("EXPORT#legacy-erp", r#"{"cursor":0}"#).await.unwrap();
    let retried = h.app.run_exports(Utc::now(), true).await.unwrap();
    assert_eq!(retried[0].file, first[0].file, "the same change range names the same file");
    assert_eq!(objects(&h, &bucket).await, written, "what an importer may be reading stays as it was");
    // And the cursor moved on: nothing is exported twice.
    let again = h.app.run_exports(Utc::now(), true).await.unwrap();
    assert_eq!(again[0].file, None);
}
