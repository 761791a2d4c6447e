//! The CSV drop for legacy ERPs (configuration: `manifold_domain::export`).
//!
//! Each export reads the order changes of the change index (`crate::changes`) after its own cursor:
//! the orders created or changed since its last run, each once, in change order. It writes them as one
//! CSV file, one line per order line, then a manifest beside it, to the export bucket, and only then
//! moves its cursor. Nothing new: nothing written.
//!
//! - State: `EXPORT#{id}` in the StateTable, `{"cursor": last change number exported, "last_run"}`.
//! - Files: `{prefix}{from}-{to}.csv` and `{prefix}{from}-{to}.manifest.json`, `from` and `to` being
//!   the first and last change numbers (20 digits, so names sort in run order). The range names the
//!   file, so a run retried after a crash (files written, cursor not moved) writes the same names;
//!   files are written with `If-None-Match: *`, so what an importer may already be reading is never
//!   rewritten. The manifest is written last: an importer that waits for manifests never sees half a run.
//! - A run takes at most [`MAX_CHANGES_PER_RUN`] changes; the rest goes in the next file.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use manifold_aws::{changes::ChangeKind, files::FileDrop};
use manifold_domain::export::ExportConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;
use tracing::{info, warn};

use crate::{App, outcome::Failure};

/// Change numbers read per index page, and per run at most.
const PAGE: usize = 500;
pub const MAX_CHANGES_PER_RUN: usize = 10_000;

/// What an export's state marker holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ExportState {
    cursor: u64,
    #[serde(default)]
    last_run: Option<DateTime<Utc>>,
}

/// What one export did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportRun {
    pub id: String,
    /// Why nothing was read (`not due`), when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
    pub orders: usize,
    pub rows: usize,
    /// The file written (or found written by an earlier try of the same run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

fn marker(id: &str) -> String {
    format!("EXPORT#{id}")
}

/// A field of a record as CSV text: strings as they are, numbers and booleans printed, absent empty,
/// anything structured as its JSON.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
    }
}

/// `order.totals.total` of `order`, `line.sku` of `line`.
fn field<'a>(path: &str, order: &'a Value, line: &'a Value) -> Option<&'a Value> {
    let (root, rest) = path.split_once('.')?;
    let start = if root == "order" { order } else { line };
    rest.split('.').try_fold(start, |v, step| v.get(step))
}

/// The CSV of `orders`, one line per order line (an order without lines still gets one line).
pub fn csv_rows(export: &ExportConfig, orders: &[Value]) -> Result<(Vec<u8>, usize), Failure> {
    let columns = export.columns();
    let mut out = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| Failure::permanent("export", format!("cannot write CSV: {e}"));
    out.write_record(columns.iter().map(|c| c.header.as_str())).map_err(fail)?;
    let mut rows = 0;
    let no_line = Value::Null;
    for order in orders {
        let lines: Vec<&Value> =
            order.get("lines").and_then(Value::as_array).map(|l| l.iter().collect()).unwrap_or_default();
        let lines = if lines.is_empty() { vec![&no_line] } else { lines };
        for line in lines {
            out.write_record(columns.iter().map(|c| cell(field(&c.field, order, line)))).map_err(fail)?;
            rows += 1;
        }
    }
    let bytes = out.into_inner().map_err(|e| Failure::permanent("export", format!("cannot write CSV: {e}")))?;
    Ok((bytes, rows))
}

impl App {
    /// Runs every configured export that is due (or all, `force`). One export's failure is logged
    /// and reported; it holds back none of the others.
    pub async fn run_exports(&self, now: DateTime<Utc>, force: bool) -> Result<Vec<ExportRun>, Failure> {
        let config = self.config().await;
        if config.exports.is_empty() {
            return Ok(Vec::new());
        }
        let Some(files) = self.files.get().clone() else {
            return Err(Failure::permanent("export", "exports are configured but EXPORT_BUCKET is not set"));
        };
        let mut runs = Vec::new();
        for export in &config.exports {
            match self.run_export(export, &files, now, force).await {
                Ok(run) => runs.push(run),
                Err(e) => warn!(export = %export.id, error = %e, "export failed: the next run retries it"),
            }
        }
        Ok(runs)
    }

    async fn run_export(
        &self,
        export: &ExportConfig,
        files: &Arc<dyn FileDrop>,
        now: DateTime<Utc>,
        force: bool,
    ) -> Result<ExportRun, Failure> {
        let state_store = self.state.get();
        let key = marker(&export.id);
        let state: ExportState = match state_store.get_marker(&key).await? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| Failure::permanent("export", format!("{key} holds no export state: {e}")))?,
            None => ExportState::default(),
        };
        let mut run = ExportRun { id: export.id.clone(), skipped: None, orders: 0, rows: 0, file: None };
        let due =
            state.last_run.is_none_or(|last| now - last >= chrono::Duration::minutes(export.every_minutes.into()));
        if !force && !due {
            run.skipped = Some("not due");
            return Ok(run);
        }
        let index = self.changes.get();
        let mut entries = Vec::new();
        let mut after = state.cursor;
        while entries.len() < MAX_CHANGES_PER_RUN {
            let page = index.read(ChangeKind::Order, after, PAGE).await.map_err(|e| Failure::Transient(Box::new(e)))?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            entries.extend(page);
        }
        let save = |cursor: u64| {
            let text = serde_json::to_string(&ExportState { cursor, last_run: Some(now) }).unwrap_or_default();
            let (store, key) = (state_store.clone(), key.clone());
            async move { store.set_marker(&key, &text).await }
        };
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            save(state.cursor).await?;
            return Ok(run);
        };
        let (from, to) = (first.seq, last.seq);
        let mut ids: Vec<String> = Vec::new();
        for e in &entries {
            ids.retain(|id| *id != e.record_id);
            ids.push(e.record_id.clone());
        }
        let mut found = self
            .records
            .get()
            .get_records(ChangeKind::Order.as_str(), &ids)
            .await
            .map_err(|e| Failure::Transient(Box::new(e)))?;
        let orders: Vec<Value> = ids.iter().filter_map(|id| found.remove(id)).collect();
        let (csv, rows) = csv_rows(export, &orders)?;
        let name = format!("{}{from:020}-{to:020}", export.prefix());
        let file = format!("{name}.csv");
        let manifest = json!({
            "export": export.id,
            "file": file,
            "orders": orders.len(),
            "rows": rows,
            "columns": export.columns().iter().map(|c| c.header.clone()).collect::<Vec<_>>(),
            "changes": { "from": from, "to": to },
            "sha256": hex::encode(sha2::Sha256::digest(&csv)),
            "written_at": now,
        });
        let store = |e: manifold_aws::StoreError| Failure::Transient(Box::new(e));
        let fresh = files.put_once(&file, csv, "text/csv").await.map_err(store)?;
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        files.put_once(&format!("{name}.manifest.json"), manifest_bytes, "application/json").await.map_err(store)?;
        save(to).await?;
        info!(export = %export.id, orders = orders.len(), rows, file = %file, fresh, "orders exported");
        run.orders = orders.len();
        run.rows = rows;
        run.file = Some(file);
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_order_line_is_a_row_with_the_configured_fields() {
        let export: ExportConfig = toml::from_str(
            r#"id = "erp"
               columns = [{ header = "Order", field = "order.channel_order_id" }, { header = "SKU", field = "line.sku" },
                          { header = "Qty", field = "line.quantity" }, { header = "Total", field = "order.totals.total" }]"#,
        )
        .unwrap();
        let orders = [
            json!({ "channel_order_id": "1001", "totals": { "total": "30.00" },
                    "lines": [{ "sku": "A", "quantity": 1 }, { "sku": "B, \"big\"", "quantity": 2 }] }),
            json!({ "channel_order_id": "1002", "totals": { "total": "0.00" }, "lines": [] }),
        ];
        let (bytes, rows) = csv_rows(&export, &orders).unwrap();
        assert_eq!(rows, 3);
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text, "Order,SKU,Qty,Total\n1001,A,1,30.00\n1001,\"B, \"\"big\"\"\",2,30.00\n1002,,,0.00\n");
    }
}
