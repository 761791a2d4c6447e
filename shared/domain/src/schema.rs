//! JSON Schemas of the canonical records and of the event payloads, generated from the types so they
//! cannot drift.
//! `schemas/*.json` are the committed copies; the test below fails when code and files disagree.

use schemars::{JsonSchema, Schema, schema_for};

use crate::{
    Customer, InventoryAdjustment, InventoryLevel, Order, Price, Product, ProductContent, Record, Refund, Return,
    Shipment,
    events::{DeadlineV1, EventDetail, OrderEventV1},
};

/// Every published schema, by file stem.
pub fn all() -> Vec<(&'static str, Schema)> {
    fn one<T: JsonSchema>() -> Schema {
        schema_for!(T)
    }
    vec![
        ("order.v2", one::<Order>()),
        ("inventory_level.v1", one::<InventoryLevel>()),
        ("inventory_adjustment.v1", one::<InventoryAdjustment>()),
        ("product.v2", one::<Product>()),
        ("product_content.v1", one::<ProductContent>()),
        ("price.v1", one::<Price>()),
        ("shipment.v1", one::<Shipment>()),
        ("refund.v1", one::<Refund>()),
        ("return.v1", one::<Return>()),
        ("customer.v2", one::<Customer>()),
        ("record.v1", one::<Record>()),
        // The detail of OrderAccepted, OrderUpdated, OrderCancelled and OrderOversold on the bus.
        ("order_event.v1", one::<EventDetail<OrderEventV1>>()),
        // The detail of OrderLate and TrackingUnconfirmed.
        ("deadline_event.v1", one::<EventDetail<DeadlineV1>>()),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Set `UPDATE_SCHEMAS=1` to rewrite the committed files after an intended change.
    #[test]
    fn committed_schemas_match_the_code() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
        for (name, schema) in super::all() {
            let path = dir.join(format!("{name}.json"));
            let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            if update {
                std::fs::write(&path, &generated).unwrap();
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e}; run UPDATE_SCHEMAS=1 cargo test -p manifold-domain", path.display())
            });
            assert_eq!(
                committed,
                generated,
                "{} drifted from the code; run UPDATE_SCHEMAS=1 cargo test -p manifold-domain",
                path.display()
            );
        }
    }
}
