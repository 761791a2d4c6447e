//! DynamoDB `BatchGetItem` over any number of keys: chunks of 100 (the call's limit), each followed
//! until DynamoDB has answered every key it left unprocessed.

use std::collections::HashMap;

use aws_sdk_dynamodb::{
    Client,
    types::{AttributeValue, KeysAndAttributes},
};

use crate::StoreError;

/// An item's key or attributes.
pub type Item = HashMap<String, AttributeValue>;

/// The items of `table` with these keys (strongly consistent), in no particular order; keys with no
/// item are absent. `projection` limits the attributes read.
pub async fn batch_get(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    projection: Option<&str>,
) -> Result<Vec<Item>, StoreError> {
    let mut found = Vec::new();
    for chunk in keys.chunks(100) {
        let request = KeysAndAttributes::builder()
            .consistent_read(true)
            .set_projection_expression(projection.map(str::to_owned))
            .set_keys(Some(chunk.to_vec()))
            .build()
            .map_err(|e| StoreError::Invalid { what: "keys", reason: e.to_string() })?;
        let mut pending = Some(request);
        while let Some(keys) = pending.take() {
            let out = client
                .batch_get_item()
                .request_items(table, keys)
                .send()
                .await
                .map_err(|e| StoreError::service("dynamodb", "BatchGetItem", e))?;
            found.extend(out.responses.and_then(|mut r| r.remove(table)).unwrap_or_default());
            pending = out.unprocessed_keys.and_then(|mut u| u.remove(table)).filter(|k| !k.keys.is_empty());
        }
    }
    Ok(found)
}

/// The key of an item in a `pk`/`sk` table.
pub fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk)), ("sk".to_owned(), AttributeValue::S(sk.to_owned()))])
}
