//! Bulk on-hand import from the source of truth (ERP/WMS exports): JSON
//! `[{sku, location?, on_hand, as_of?}]` or CSV with a `sku,location,on_hand,as_of` header (`location`
//! and `as_of` optional). A row with an `as_of` time (RFC 3339) older than the count its position
//! last applied is stale and refused like any bad row, as `PUT /v1/inventory/{sku}` refuses it.
//!
//! A bad row never sinks the file: every row is checked on its own, good rows are applied, bad rows
//! come back with their row number and the reason. Each row is applied with the import's reference as
//! its source reference, so re-running the same import changes nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use manifold_domain::{Sku, config::validate_location};
use serde::Deserialize;

use crate::{
    Ledger,
    model::{DEFAULT_LOCATION, LedgerError, Position, PositionKey, SetOutcome},
};

/// One valid row: set `key`'s on-hand to `on_hand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRow {
    /// 1-based data row (JSON: array index + 1; CSV: the line number in the file).
    pub row: usize,
    pub key: PositionKey,
    pub on_hand: i64,
    /// When the count was taken, if the file says.
    pub as_of: Option<DateTime<Utc>>,
}

/// A row that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based row as in [`StockRow::row`]; 0 when the whole file is unreadable.
    pub row: usize,
    pub reason: String,
}

/// A parsed file: the rows to apply and the rows refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub rows: Vec<StockRow>,
    pub errors: Vec<RowError>,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub applied: usize,
    /// Rows this import had already applied (a re-run).
    pub already_applied: usize,
    pub errors: Vec<RowError>,
    /// Positions as they are after the import, for the availability fan-out.
    pub positions: Vec<Position>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    sku: String,
    #[serde(default)]
    location: Option<String>,
    on_hand: i64,
    #[serde(default)]
    as_of: Option<DateTime<Utc>>,
}

/// Parses a JSON array of rows.
pub fn parse_json(text: &str) -> Parsed {
    let values: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Parsed {
                rows: vec![],
                errors: vec![RowError { row: 0, reason: format!("not a JSON array: {e}") }],
            };
        }
    };
    let mut parsed = Parsed::default();
    for (i, value) in values.into_iter().enumerate() {
        let row = i + 1;
        let result = serde_json::from_value::<JsonRow>(value)
            .map_err(|e| e.to_string())
            .and_then(|r| build_row(row, &r.sku, r.location.as_deref(), r.on_hand, r.as_of));
        push(&mut parsed, row, result);
    }
    finish(parsed)
}

/// Parses CSV with a header naming `sku`, `on_hand` and optionally `location` (any order).
pub fn parse_csv(text: &str) -> Parsed {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Parsed {
                rows: vec![],
                errors: vec![RowError { row: 1, reason: format!("unreadable header: {e}") }],
            };
        }
    };
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(sku_at), Some(on_hand_at)) = (column("sku"), column("on_hand")) else {
        return Parsed {
            rows: vec![],
            errors: vec![RowError { row: 1, reason: "the header must name `sku` and `on_hand` columns".into() }],
        };
    };
    let location_at = column("location");
    let as_of_at = column("as_of");
    let mut parsed = Parsed::default();
    for (i, record) in reader.records().enumerate() {
        let row = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i + 2, |p| usize::try_from(p.line()).unwrap_or(i + 2));
        let result = record.map_err(|e| e.to_string()).and_then(|r| {
            let sku = r.get(sku_at).ok_or("missing sku")?;
            let on_hand = r.get(on_hand_at).ok_or("missing on_hand")?;
            let on_hand: i64 = on_hand.parse().map_err(|_| format!("on_hand {on_hand:?} is not a whole number"))?;
            let as_of = match as_of_at.and_then(|at| r.get(at)).filter(|t| !t.is_empty()) {
                Some(t) => Some(
                    DateTime::parse_from_rfc3339(t)
                        .map_err(|_| format!("as_of {t:?} is not an RFC 3339 time"))?
                        .with_timezone(&Utc),
                ),
                None => None,
            };
            build_row(row, sku, location_at.and_then(|at| r.get(at)), on_hand, as_of)
        });
        push(&mut parsed, row, result);
    }
    finish(parsed)
}

fn build_row(
    row: usize,
    sku: &str,
    location: Option<&str>,
    on_hand: i64,
    as_of: Option<DateTime<Utc>>,
) -> Result<StockRow, String> {
    let sku = Sku::new(sku).map_err(|e| e.to_string())?;
    if on_hand < 0 {
        return Err(format!("on_hand {on_hand} is negative"));
    }
    let location = location.map(str::trim).filter(|l| !l.is_empty()).unwrap_or(DEFAULT_LOCATION);
    validate_location(location)?;
    Ok(StockRow { row, key: PositionKey::new(sku, location), on_hand, as_of })
}

fn push(parsed: &mut Parsed, row: usize, result: Result<StockRow, String>) {
    match result {
        Ok(r) => parsed.rows.push(r),
        Err(reason) => parsed.errors.push(RowError { row, reason }),
    }
}

/// Refuses a second row for the same position: the file would contradict itself.
fn finish(mut parsed: Parsed) -> Parsed {
    let mut first: BTreeMap<PositionKey, usize> = BTreeMap::new();
    let mut rows = Vec::with_capacity(parsed.rows.len());
    for r in parsed.rows {
        if let Some(at) = first.get(&r.key) {
            parsed.errors.push(RowError { row: r.row, reason: format!("{} repeats row {at}", r.key) });
        } else {
            first.insert(r.key.clone(), r.row);
            rows.push(r);
        }
    }
    parsed.rows = rows;
    parsed.errors.sort_by_key(|e| e.row);
    parsed
}

/// Applies the good rows of `parsed` with `import_ref` as their source reference. A row that fails
/// in the ledger is reported like a parse error; a retryable ledger failure stops the import (the
/// caller retries it; applied rows are then recognised and skipped).
pub async fn import<L: Ledger>(ledger: &L, parsed: Parsed, import_ref: &str) -> Result<ImportReport, LedgerError> {
    let mut report = ImportReport { errors: parsed.errors, ..ImportReport::default() };
    for row in parsed.rows {
        match ledger.set_on_hand_as_of(&row.key, row.on_hand, import_ref, row.as_of).await {
            Ok(change) => {
                match change.outcome {
                    SetOutcome::Applied => report.applied += 1,
                    SetOutcome::AlreadyApplied => report.already_applied += 1,
                }
                report.positions.extend(change.positions);
            }
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => report.errors.push(RowError { row: row.row, reason: e.to_string() }),
        }
    }
    report.errors.sort_by_key(|e| e.row);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rows_are_checked_one_by_one() {
        let parsed = parse_json(
            r#"[{"sku":"A","on_hand":5},{"sku":"B","location":"wh2","on_hand":-1},{"sku":"","on_hand":1},
                {"sku":"C","on_hand":"x"},{"sku":"D","location":"wh2","on_hand":7},{"sku":"A","on_hand":6}]"#,
        );
        let rows: Vec<(usize, String, i64)> =
            parsed.rows.iter().map(|r| (r.row, r.key.to_string(), r.on_hand)).collect();
        assert_eq!(rows, vec![(1, "A@default".into(), 5), (5, "D@wh2".into(), 7)]);
        let bad: Vec<usize> = parsed.errors.iter().map(|e| e.row).collect();
        assert_eq!(bad, vec![2, 3, 4, 6]);
        assert!(parsed.errors[0].reason.contains("negative"), "{:?}", parsed.errors[0]);
        assert!(parsed.errors[3].reason.contains("repeats row 1"), "{:?}", parsed.errors[3]);
    }

    #[test]
    fn csv_rows_carry_their_line_numbers() {
        let parsed = parse_csv("sku,location,on_hand\nA,,5\nB,wh2,seven\nC,wh2,3\n");
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!((parsed.rows[0].row, parsed.rows[0].key.to_string()), (2, "A@default".to_owned()));
        assert_eq!((parsed.rows[1].row, parsed.rows[1].key.to_string()), (4, "C@wh2".to_owned()));
        assert_eq!(parsed.errors, vec![RowError { row: 3, reason: "on_hand \"seven\" is not a whole number".into() }]);
    }

    #[test]
    fn a_csv_without_the_needed_columns_is_refused_whole() {
        let parsed = parse_csv("item,qty\nA,5\n");
        assert!(parsed.rows.is_empty());
        assert_eq!(parsed.errors.len(), 1);
        assert!(parsed.errors[0].reason.contains("sku"));
    }

    #[test]
    fn rows_may_carry_an_as_of_time() {
        let parsed = parse_json(
            r#"[{"sku":"A","on_hand":5,"as_of":"2026-11-30T10:00:00Z"},{"sku":"B","on_hand":1,"as_of":"yesterday"}]"#,
        );
        assert_eq!(parsed.rows[0].as_of.map(|t| t.to_rfc3339()), Some("2026-11-30T10:00:00+00:00".to_owned()));
        assert_eq!(parsed.errors.len(), 1);
        let parsed = parse_csv("sku,on_hand,as_of\nA,5,2026-11-30T10:00:00Z\nB,2,\nC,1,noon\n");
        assert_eq!(parsed.rows.len(), 2);
        assert!(parsed.rows[0].as_of.is_some() && parsed.rows[1].as_of.is_none());
        assert_eq!(parsed.errors[0].row, 4);
        assert!(parsed.errors[0].reason.contains("RFC 3339"), "{:?}", parsed.errors);
    }

    #[tokio::test]
    async fn a_stale_row_is_refused_and_a_rerun_changes_nothing() {
        let ledger = crate::MemoryLedger::new(crate::MemoryStore::default());
        let first = parse_json(r#"[{"sku":"A","on_hand":9,"as_of":"2026-11-30T12:00:00Z"}]"#);
        assert_eq!(import(&ledger, first.clone(), "count-noon").await.unwrap().applied, 1);
        let older = parse_json(
            r#"[{"sku":"A","on_hand":4,"as_of":"2026-11-30T11:00:00Z"},{"sku":"B","on_hand":4,"as_of":"2026-11-30T11:00:00Z"}]"#,
        );
        let report = import(&ledger, older, "count-eleven").await.unwrap();
        assert_eq!(report.applied, 1, "B has no count yet");
        assert_eq!(report.errors.len(), 1);
        assert!(report.errors[0].row == 1 && report.errors[0].reason.contains("stale"), "{:?}", report.errors);
        let again = import(&ledger, first, "count-noon").await.unwrap();
        assert_eq!((again.applied, again.already_applied), (0, 1));
        let a = ledger.position(&PositionKey::new(Sku::new("A").unwrap(), DEFAULT_LOCATION)).await.unwrap();
        assert_eq!(a.on_hand, 9);
    }

    #[test]
    fn a_file_that_is_not_an_array_is_one_error() {
        let parsed = parse_json(r#"{"sku":"A"}"#);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].row, 0);
    }
}
