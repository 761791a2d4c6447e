//! Canonical records round-trip through JSON and through DynamoDB (serde_dynamo, moto) unchanged.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use manifold_domain::{Record, config::ChannelConfig};
use manifold_normalize::{Context, DocKind};

use crate::support::{aws, create_table};

const EXAMPLE: &str = include_str!("../../infra/channels.example.toml");

/// One record of every kind, normalized from real fixtures.
fn records() -> Vec<Record> {
    let config = ChannelConfig::parse("channels.example.toml", EXAMPLE).unwrap();
    let shopify = config.accounts.iter().find(|a| a.channel == manifold_domain::Channel::Shopify).unwrap();
    let ctx = Context { account: shopify, received_at: Utc::now() };
    let doc = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let mut out = vec![];
    for (kind, text) in [
        (DocKind::Order, include_str!("../../shared/normalize/fixtures/shopify/order-450789469-rest-2026-07-get.json")),
        (
            DocKind::Order,
            include_str!(
                "../../shared/normalize/fixtures/shopify/order-1073459976-rest-2026-07-create-eur-custom-item.json"
            ),
        ),
        (
            DocKind::Refund,
            include_str!("../../shared/normalize/fixtures/shopify/refund-929361472-rest-2026-07-create.json"),
        ),
        (
            DocKind::Shipment,
            include_str!("../../shared/normalize/fixtures/shopify/fulfillment-1069019877-rest-2026-07-create.json"),
        ),
        (
            DocKind::InventoryLevel,
            include_str!("../../shared/normalize/fixtures/shopify/inventory-level-rest-2026-07-set.json"),
        ),
        (
            DocKind::Product,
            include_str!("../../shared/normalize/fixtures/shopify/product-632910392-rest-2026-07-get.json"),
        ),
    ] {
        out.push(manifold_normalize::normalize(manifold_domain::Channel::Shopify, kind, &doc(text), &ctx).unwrap());
    }
    out
}

#[test]
fn every_record_kind_round_trips_through_json() {
    for record in records() {
        let json = serde_json::to_string(&record).unwrap();
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record, "{json}");
        // Money stays a string, never a float.
        assert!(!json.contains("\"total\":1") && !json.contains("\"unit_price\":1"), "{json}");
    }
}

#[tokio::test]
async fn every_record_kind_round_trips_through_dynamodb() {
    let sdk = aws().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = create_table(&ddb, "records-rt").await;
    for (i, record) in records().into_iter().enumerate() {
        let mut item: std::collections::HashMap<String, AttributeValue> = serde_dynamo::to_item(&record).unwrap();
        item.insert("pk".into(), AttributeValue::S(format!("R#{i}")));
        item.insert("sk".into(), AttributeValue::S("v1".into()));
        ddb.put_item().table_name(&table).set_item(Some(item)).send().await.unwrap();
        let got = ddb
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(format!("R#{i}")))
            .key("sk", AttributeValue::S("v1".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        let back: Record = serde_dynamo::from_item(got).unwrap();
        assert_eq!(back, record);
    }
}
