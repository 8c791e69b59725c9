//! SVG plot of one scored series (`opsloop detect --plot`): the values on top with the flagged
//! stretches shaded, the anomaly score below with the threshold (plotters, SVG backend only,
//! rendered to a string).

use plotters::prelude::*;

/// One plotted row: where it sits on the x axis, its value and its score (`None`: unscored).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlotRow {
    /// Position on the x axis (hours since the first row, or the row number).
    pub x: f64,
    /// The value, when it was a finite number.
    pub value: Option<f64>,
    /// The score, when the row was scored.
    pub score: Option<f64>,
}

/// Why no plot was drawn.
#[derive(Debug, thiserror::Error)]
#[error("plot of {series}: {message}")]
pub struct PlotError {
    series: String,
    message: String,
}

/// What the plot shows besides the rows.
#[derive(Clone, Copy, Debug)]
pub struct PlotLabels<'a> {
    /// The title (the input's name).
    pub title: &'a str,
    /// What the x axis counts (`hours since …`, `row`).
    pub x_desc: &'a str,
    /// The threshold rows are flagged at.
    pub threshold: f64,
}

/// Draws `rows` with the flagged `stretches` (x from, x to) as an SVG document.
pub fn svg(
    rows: &[PlotRow],
    stretches: &[(f64, f64)],
    labels: PlotLabels<'_>,
) -> Result<String, PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError {
        series: labels.title.to_string(),
        message: e.to_string(),
    };
    let values: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.value.map(|v| (r.x, v)))
        .filter(|(x, v)| x.is_finite() && v.is_finite())
        .collect();
    let scores: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.score.map(|s| (r.x, s)))
        .filter(|(x, s)| x.is_finite() && s.is_finite())
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(fail(&"no finite value to plot"));
    }
    // Axes over a span an f64 cannot hold have no ticks to draw (plotters would not end).
    if !(hi - lo).is_finite() || !((hi - lo) * 1.5).is_finite() {
        return Err(fail(&"the values span more than a plot can show"));
    }
    let (x_start, x_end) = rows
        .iter()
        .map(|r| r.x)
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    let pad = ((hi - lo) * 0.1).max(1e-9);
    let (y_lo, y_hi) = (lo - pad, hi + pad);
    let x_end = x_end.max(x_start + 1e-9);
    let red = RGBColor(214, 39, 40);
    let blue = RGBColor(31, 119, 180);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let (top, bottom) = root.split_vertically(360);
        let mut chart = ChartBuilder::on(&top)
            .caption(labels.title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(25)
            .y_label_area_size(70)
            .build_cartesian_2d(x_start..x_end, y_lo..y_hi)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .y_desc("value")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(stretches.iter().map(|&(from, to)| {
                // A one-row stretch still gets a visible band.
                let width = ((x_end - x_start) / 500.0).max(1e-9);
                Rectangle::new(
                    [(from - width / 2.0, y_lo), (to + width / 2.0, y_hi)],
                    red.mix(0.25).filled(),
                )
            }))
            .map_err(|e| fail(&e))?
            .label("flagged stretch")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], red.mix(0.25)));
        chart
            .draw_series(LineSeries::new(values, BLACK.stroke_width(1)))
            .map_err(|e| fail(&e))?
            .label("value")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLACK));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(&e))?;

        let mut chart = ChartBuilder::on(&bottom)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(x_start..x_end, 0.0..1.05)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc(labels.x_desc)
            .y_desc("anomaly score")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(LineSeries::new(scores, blue.stroke_width(1)))
            .map_err(|e| fail(&e))?
            .label("score")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], blue));
        chart
            .draw_series(LineSeries::new(
                [(x_start, labels.threshold), (x_end, labels.threshold)],
                red.stroke_width(1),
            ))
            .map_err(|e| fail(&e))?
            .label("threshold")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], red));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<PlotRow> {
        (0..n)
            .map(|i| PlotRow {
                x: i as f64,
                value: Some((i as f64 / 10.0).sin()),
                score: (i > 5).then_some(if i == 50 { 0.9 } else { 0.1 }),
            })
            .collect()
    }

    #[test]
    fn draws_values_scores_threshold_and_stretches() {
        let labels = PlotLabels {
            title: "cpu & <load>",
            x_desc: "row",
            threshold: 0.35,
        };
        let doc = svg(&rows(100), &[(50.0, 52.0)], labels).unwrap();
        assert!(doc.starts_with("<svg"), "{}", &doc[..50]);
        assert!(doc.trim_end().ends_with("</svg>"));
        assert!(doc.contains("<rect"), "the stretch is shaded");
        assert!(doc.contains("threshold") && doc.contains("flagged stretch"));
        assert!(doc.contains("&lt;load&gt;"), "the title is escaped");
    }

    #[test]
    fn nothing_finite_is_an_error_and_extremes_do_not_panic() {
        let labels = PlotLabels {
            title: "x",
            x_desc: "row",
            threshold: 0.5,
        };
        let empty = [PlotRow {
            x: 0.0,
            value: None,
            score: None,
        }];
        assert!(svg(&empty, &[], labels).is_err());
        assert!(svg(&[], &[], labels).is_err());
        let wild = [
            PlotRow {
                x: 0.0,
                value: Some(f64::MAX),
                score: Some(1.0),
            },
            PlotRow {
                x: 1.0,
                value: Some(-f64::MAX),
                score: Some(0.0),
            },
        ];
        assert!(svg(&wild, &[(0.0, 1.0)], labels).is_err());
        let large = [
            PlotRow {
                x: 0.0,
                value: Some(1e300),
                score: Some(1.0),
            },
            PlotRow {
                x: 1.0,
                value: Some(-1e300),
                score: Some(0.0),
            },
        ];
        assert!(svg(&large, &[(0.0, 1.0)], labels).is_ok());
    }
}
