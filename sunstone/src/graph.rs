//! Line charts drawn on the server as inline SVG: no chart library in the browser, nothing
//! to download, and they print.

use maud::{Markup, html};

const W: f64 = 600.0;
const H: f64 = 150.0;
const LEFT: f64 = 58.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// A chart of `points` (epoch seconds, value). `ceiling` fixes the top of the scale (e.g.
/// 100 % × CPUs); otherwise the largest value, rounded up. `fmt` writes axis labels.
pub fn line(
    title: &str,
    points: &[(i64, f64)],
    ceiling: Option<f64>,
    fmt: fn(f64) -> String,
) -> Markup {
    if points.len() < 2 {
        return html! {
            figure.chart {
                figcaption { (title) }
                p.muted { "Not enough monitoring data yet." }
            }
        };
    }
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    let span = (t1 - t0).max(1) as f64;
    let top = ceiling
        .unwrap_or_else(|| nice_ceiling(points.iter().map(|p| p.1).fold(0.0, f64::max)))
        .max(f64::MIN_POSITIVE);
    let x = |t: i64| LEFT + (t - t0) as f64 / span * (W - LEFT - 4.0);
    let y = |v: f64| TOP + (1.0 - (v / top).clamp(0.0, 1.0)) * (H - TOP - BOTTOM);
    let mut line = String::with_capacity(points.len() * 14);
    for (t, v) in points {
        line.push_str(&format!("{:.1},{:.1} ", x(*t), y(*v)));
    }
    let area = format!(
        "{:.1},{:.1} {line}{:.1},{:.1}",
        x(t0),
        y(0.0),
        x(t1),
        y(0.0)
    );
    let last = points[points.len() - 1].1;
    html! {
        figure.chart {
            figcaption { (title) span.now { " now " (fmt(last)) } }
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(title) {
                @for frac in [0.0, 0.5, 1.0] {
                    line class="grid" x1=(LEFT) x2=(W - 4.0) y1=(format!("{:.1}", y(top * frac))) y2=(format!("{:.1}", y(top * frac))) {}
                    text class="axis" x=(LEFT - 4.0) y=(format!("{:.1}", y(top * frac) + 4.0)) text-anchor="end" { (fmt(top * frac)) }
                }
                polygon class="area" points=(area) {}
                polyline class="line" points=(line) {}
                text class="axis" x=(LEFT) y=(H - 4.0) { (crate::html::time(t0)) }
                text class="axis" x=(W - 4.0) y=(H - 4.0) text-anchor="end" { (crate::html::time(t1)) }
            }
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
    }

    #[test]
    fn draws_points_inside_the_box() {
        let svg = line(
            "CPU",
            &[(100, 0.0), (110, 50.0), (120, 100.0)],
            Some(100.0),
            |v| format!("{v:.0} %"),
        )
        .into_string();
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(svg.contains("100 %"));
        let few = line("CPU", &[(1, 1.0)], None, |v| v.to_string()).into_string();
        assert!(few.contains("Not enough"));
    }
}
