//! The local AWS emulator behaves as DynamoDB where the product relies on it: a transaction that fails
//! its condition never undoes another request's committed write. Plain moto does (it restores a whole-table
//! copy on cancellation); `infra/local/moto_server.py` isolates item operations, and this test keeps it so.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use futures::future::join_all;

use crate::support::{aws, create_table};

fn put(table: &str, pk: &str, condition: &str) -> TransactWriteItem {
    TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .item("pk", AttributeValue::S(pk.to_owned()))
                .item("sk", AttributeValue::S("x".to_owned()))
                .condition_expression(condition)
                .build()
                .unwrap(),
        )
        .build()
}

#[tokio::test]
async fn a_cancelled_transaction_never_undoes_a_concurrent_committed_write() {
    let sdk = aws().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = create_table(&ddb, "isolation").await;
    ddb.put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("taken".into()))
        .item("sk", AttributeValue::S("x".into()))
        .send()
        .await
        .unwrap();

    // Given 40 transactions that commit new items, interleaved with 40 that are cancelled (their condition
    // fails on an existing item), all in flight at once.
    let commits = (0..40).map(|i| {
        let ddb = ddb.clone();
        let item = put(&table, &format!("order-{i}"), "attribute_not_exists(pk)");
        async move { ddb.transact_write_items().transact_items(item).send().await.is_ok() }
    });
    let cancels = (0..40).map(|i| {
        let ddb = ddb.clone();
        // Many writes before the failing condition, so the cancellation has work to undo.
        let mut items: Vec<_> =
            (0..30).map(|j| put(&table, &format!("never-{i}-{j}"), "attribute_not_exists(pk)")).collect();
        items.push(put(&table, "taken", "attribute_not_exists(pk)"));
        async move { ddb.transact_write_items().set_transact_items(Some(items)).send().await.is_err() }
    });
    let (committed, cancelled) = tokio::join!(join_all(commits), join_all(cancels));
    assert!(committed.iter().all(|ok| *ok), "every committing transaction commits");
    assert!(cancelled.iter().all(|refused| *refused), "every conflicting transaction is cancelled");

    // Then every committed item is still there, and nothing of the cancelled ones.
    let mut stored = Vec::new();
    let mut start = None;
    loop {
        let page = ddb.scan().table_name(&table).set_exclusive_start_key(start).send().await.unwrap();
        stored.extend(page.items().iter().filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()).cloned()));
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    assert_eq!(stored.iter().filter(|pk| pk.starts_with("order-")).count(), 40, "committed writes survive: {stored:?}");
    assert!(!stored.iter().any(|pk| pk.starts_with("never-")), "cancelled writes never land");
}
