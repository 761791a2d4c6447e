//! Bar charts as inline SVG: one group of bars per day, one bar per channel. No script, no library:
//! the usage page's charts render wherever the page does, printed or without JavaScript.

use maud::{Markup, html};

/// Colours of the series, in order (distinguishable, and readable on white).
const PALETTE: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// One named series of values, one per category.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// A grouped bar chart of `series` over `categories`, values formatted by `format`.
pub fn bars(title: &str, categories: &[String], series: &[Series], format: impl Fn(f64) -> String) -> Markup {
    let max = series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { (HEIGHT - TOP - BOTTOM) / max } else { 0.0 };
    #[allow(clippy::cast_precision_loss)] // a handful of days and channels
    let group = (WIDTH - LEFT) / categories.len().max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let bar = (group * 0.8 / series.len().max(1) as f64).max(1.0);
    let baseline = HEIGHT - BOTTOM;
    html! {
        figure.chart {
            figcaption { (title) }
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(title) {
                line x1=(LEFT) y1=(baseline) x2=(WIDTH) y2=(baseline) stroke="#999" {}
                @if max > 0.0 {
                    text x=(LEFT - 6.0) y=(TOP + 4.0) text-anchor="end" font-size="11" { (format(max)) }
                } @else {
                    text x=(LEFT.midpoint(WIDTH)) y=(HEIGHT / 2.0) text-anchor="middle" font-size="12" fill="#5f6368" { "nothing counted" }
                }
                text x=(LEFT - 6.0) y=(baseline) text-anchor="end" font-size="11" { "0" }
                @for (i, category) in categories.iter().enumerate() {
                    @let x0 = LEFT + group * as_f64(i) + group * 0.1;
                    text x=(x0 + group * 0.4) y=(HEIGHT - 8.0) text-anchor="middle" font-size="11" { (category) }
                    @for (j, s) in series.iter().enumerate() {
                        @let v = s.values.get(i).copied().unwrap_or(0.0);
                        @let h = v * scale;
                        rect x=(x0 + bar * as_f64(j)) y=(baseline - h) width=(bar) height=(h) fill=(PALETTE[j % PALETTE.len()]) {
                            title { (s.name) " " (category) ": " (format(v)) }
                        }
                    }
                }
            }
            ul.legend {
                @for (j, s) in series.iter().enumerate() {
                    li {
                        svg.swatch width="10" height="10" viewBox="0 0 10 10" { rect width="10" height="10" fill=(PALETTE[j % PALETTE.len()]) {} }
                        " " (s.name)
                    }
                }
            }
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn as_f64(i: usize) -> f64 {
    i as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tallest_bar_fills_the_plot_and_labels_are_escaped() {
        let svg = bars(
            "calls <per day>",
            &["2026-12-01".to_owned()],
            &[Series { name: "shopify".into(), values: vec![10.0] }, Series { name: "etsy".into(), values: vec![5.0] }],
            |v| format!("{v:.0}"),
        )
        .into_string();
        assert!(svg.contains("calls &lt;per day&gt;"), "{svg}");
        assert!(svg.contains(&format!("height=\"{}\"", HEIGHT - TOP - BOTTOM)), "{svg}");
        assert!(svg.contains("shopify 2026-12-01: 10") && svg.contains("etsy 2026-12-01: 5"), "{svg}");
    }
}
