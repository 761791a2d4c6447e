//! CSV drops for legacy ERPs: what the configuration's `[[exports]]` say, checked when it is loaded.
//!
//! A legacy ERP imports files from a folder; it cannot call an API. Each export writes the orders
//! created or changed since its last run as one CSV file (one line per order line, the columns from
//! its mapping) and a manifest beside it, every `every_minutes`, under its own prefix of the export
//! bucket. The run itself lives in `manifold_app::export`.
//!
//! ```toml
//! [[exports]]
//! id = "legacy-erp"
//! every_minutes = 60                      # 5 to 1440, default 60
//! prefix = "exports/legacy-erp/"          # default exports/{id}/
//! columns = [                             # default DEFAULT_COLUMNS
//!   { header = "Order", field = "order.channel_order_id" },
//!   { header = "SKU", field = "line.sku" },
//!   { header = "Qty", field = "line.quantity" },
//! ]
//! ```
//!
//! A field is a dotted path into the canonical order (`order.…`) or the order line (`line.…`), as the
//! published JSON Schema names them; the first step of each path is checked against that schema.

use serde::{Deserialize, Serialize};

/// One CSV drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// `[a-z0-9-]`, 1 to 40 characters: the state key and the default prefix.
    pub id: String,
    /// Key prefix in the export bucket, ending in `/` (default `exports/{id}/`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Minutes between runs (5 to 1440).
    #[serde(default = "default_every_minutes")]
    pub every_minutes: u32,
    /// The file's columns, in order (default [`DEFAULT_COLUMNS`]).
    #[serde(default)]
    pub columns: Vec<ExportColumn>,
}

/// One column: its header and the canonical field it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportColumn {
    pub header: String,
    /// `order.<path>` or `line.<path>`.
    pub field: String,
}

/// The columns of an export that names none: what an order line import needs, and no personal data.
pub const DEFAULT_COLUMNS: [(&str, &str); 14] = [
    ("order_id", "order.id"),
    ("channel", "order.channel"),
    ("account", "order.account"),
    ("channel_order_id", "order.channel_order_id"),
    ("order_number", "order.order_number"),
    ("status", "order.status"),
    ("created_at", "order.created_at"),
    ("updated_at", "order.updated_at"),
    ("currency", "order.currency"),
    ("line_id", "line.line_id"),
    ("sku", "line.sku"),
    ("quantity", "line.quantity"),
    ("unit_price", "line.unit_price"),
    ("order_total", "order.totals.total"),
];

fn default_every_minutes() -> u32 {
    60
}

impl ExportConfig {
    /// Where its files go in the export bucket.
    pub fn prefix(&self) -> String {
        self.prefix.clone().unwrap_or_else(|| format!("exports/{}/", self.id))
    }

    /// Its columns: the configured ones, or [`DEFAULT_COLUMNS`].
    pub fn columns(&self) -> Vec<ExportColumn> {
        if self.columns.is_empty() {
            DEFAULT_COLUMNS.iter().map(|(h, f)| ExportColumn { header: (*h).into(), field: (*f).into() }).collect()
        } else {
            self.columns.clone()
        }
    }
}

/// The top-level property names of a record's published schema.
fn properties<T: schemars::JsonSchema>() -> Vec<String> {
    let schema = schemars::schema_for!(T);
    schema
        .get("properties")
        .and_then(serde_json::Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Checks every export: `(path, reason)` of the first problem.
pub(crate) fn validate(exports: &[ExportConfig]) -> Result<(), (String, String)> {
    let (order_fields, line_fields) = (properties::<crate::Order>(), properties::<crate::OrderLine>());
    let mut ids = std::collections::BTreeSet::new();
    for (i, e) in exports.iter().enumerate() {
        let at = |field: &str| format!("exports[{i}].{field}");
        crate::config::validate_name(&e.id).map_err(|m| (at("id"), m))?;
        if !ids.insert(e.id.as_str()) {
            return Err((at("id"), format!("duplicate export {}", e.id)));
        }
        if !(5..=1440).contains(&e.every_minutes) {
            return Err((at("every_minutes"), format!("{}: between 5 and 1440", e.every_minutes)));
        }
        if let Some(p) = &e.prefix
            && (p.is_empty() || p.starts_with('/') || !p.ends_with('/') || p.contains(".."))
        {
            return Err((at("prefix"), format!("{p:?}: a key prefix ending in / (not starting with /)")));
        }
        let mut headers = std::collections::BTreeSet::new();
        for (j, c) in e.columns.iter().enumerate() {
            let at = |field: &str| format!("exports[{i}].columns[{j}].{field}");
            if c.header.trim().is_empty() || !headers.insert(c.header.as_str()) {
                return Err((at("header"), format!("{:?}: a header, once per file", c.header)));
            }
            let (root, fields) = match c.field.split_once('.') {
                Some(("order", rest)) => (rest, &order_fields),
                Some(("line", rest)) => (rest, &line_fields),
                _ => return Err((at("field"), format!("{:?}: must start with order. or line.", c.field))),
            };
            let first = root.split('.').next().unwrap_or_default();
            if !fields.iter().any(|f| f == first) {
                return Err((at("field"), format!("{:?}: the canonical record has no field {first:?}", c.field)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(toml_text: &str) -> Result<(), (String, String)> {
        let e: ExportConfig = toml::from_str(toml_text).unwrap();
        validate(&[e])
    }

    #[test]
    fn the_default_columns_name_fields_the_records_have() {
        let e = ExportConfig { id: "x".into(), prefix: None, every_minutes: 60, columns: Vec::new() };
        let explicit = ExportConfig { columns: e.columns(), ..e.clone() };
        assert_eq!(validate(&[explicit]), Ok(()));
        assert_eq!(e.prefix(), "exports/x/");
    }

    #[test]
    fn bad_exports_are_refused_with_their_path_and_reason() {
        let (path, reason) = export(r#"id = "Legacy ERP""#).unwrap_err();
        assert_eq!(path, "exports[0].id", "{reason}");
        let (path, _) = export("id = \"a\"\nevery_minutes = 1").unwrap_err();
        assert_eq!(path, "exports[0].every_minutes");
        let (path, _) = export("id = \"a\"\nprefix = \"/abs\"").unwrap_err();
        assert_eq!(path, "exports[0].prefix");
        let (path, reason) =
            export("id = \"a\"\ncolumns = [{ header = \"x\", field = \"order.colour\" }]").unwrap_err();
        assert_eq!((path.as_str(), reason.contains("colour")), ("exports[0].columns[0].field", true));
        let (path, _) = export("id = \"a\"\ncolumns = [{ header = \"x\", field = \"sku\" }]").unwrap_err();
        assert_eq!(path, "exports[0].columns[0].field");
        let twice = "id = \"a\"\ncolumns = [{ header = \"x\", field = \"line.sku\" }, { header = \"x\", field = \"line.title\" }]";
        assert_eq!(export(twice).unwrap_err().0, "exports[0].columns[1].header");
        let one = ExportConfig { id: "a".into(), prefix: None, every_minutes: 60, columns: vec![] };
        let two = [one.clone(), one];
        assert_eq!(validate(&two).unwrap_err().0, "exports[1].id");
    }
}
