//! Printing reports: aligned text for people, pretty JSON for scripts (`--json`).

use serde::Serialize;
use std::fmt::Write as _;

use crate::CliError;

/// A report that can print itself for a person.
pub trait Human {
    fn human(&self) -> String;
}

/// Prints `report` as JSON or as text.
pub fn print<T: Serialize + Human>(report: &T, json: bool) -> Result<(), CliError> {
    if json {
        let text = serde_json::to_string_pretty(report)
            .map_err(|source| CliError::Json { path: "report".to_owned(), source })?;
        println!("{text}");
    } else {
        let text = report.human();
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
    Ok(())
}

/// A text table whose columns are as wide as their widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns aligned right (numbers).
    right: Vec<bool>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            right: vec![false; header.len()],
        }
    }

    /// Aligns the named columns to the right.
    #[must_use]
    pub fn numeric(mut self, columns: &[usize]) -> Self {
        for c in columns {
            if let Some(r) = self.right.get_mut(*c) {
                *r = true;
            }
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                if i > 0 {
                    out.push_str("  ");
                }
                if self.right.get(i).copied().unwrap_or(false) {
                    let _ = write!(out, "{cell:>w$}");
                } else {
                    let _ = write!(out, "{cell:<w$}");
                }
            }
            out.trim_end().to_owned() + "\n"
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// The first `max` characters of `text` on one line, with an ellipsis when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        flat
    } else {
        flat.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut t = Table::new(&["queue", "depth"]).numeric(&[1]);
        t.row(vec!["ingest".into(), "3".into()]);
        t.row(vec!["push-shopify".into(), "120".into()]);
        assert_eq!(t.render(), "queue         depth\ningest            3\npush-shopify    120\n");
    }

    #[test]
    fn excerpts_are_cut_on_characters_and_flattened() {
        assert_eq!(excerpt("a\nbc", 10), "a bc");
        assert_eq!(excerpt("ééééé", 3), "éé…");
    }
}
