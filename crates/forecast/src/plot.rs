//! SVG plot of one forecast: recent history, the forecast, its 95 % and 80 % bands, the kept
//! changepoints and the capacity threshold (plotters, SVG backend only, rendered to a string).

use plotters::prelude::*;

use crate::capacity::Threshold;
use crate::pipeline::SeriesForecast;
use crate::prepare::Prepared;

/// Why no plot was drawn.
#[derive(Debug, thiserror::Error)]
#[error("plot of {series}: {message}")]
pub struct PlotError {
    series: String,
    message: String,
}

/// Draws `forecast` over the last `history_points` of `prepared` as an SVG document.
pub fn svg(
    prepared: &Prepared,
    forecast: &SeriesForecast,
    threshold: Option<Threshold>,
    history_points: usize,
) -> Result<String, PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError {
        series: forecast.series.clone(),
        message: e.to_string(),
    };
    let n = prepared.len();
    let from = n.saturating_sub(history_points.max(1));
    let hours = |ms: i64| (ms - prepared.last_ms()) as f64 / 3_600_000.0;
    let history: Vec<(f64, f64)> = (from..n)
        .filter_map(|i| {
            let v = prepared.values.get(i).copied().filter(|v| v.is_finite())?;
            Some((hours(prepared.time_of(i)), v))
        })
        .collect();
    let points = &forecast.forecast;
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for &(_, v) in &history {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    for p in points {
        lo = lo.min(p.lower_95);
        hi = hi.max(p.upper_95);
    }
    if let Some(t) = threshold {
        lo = lo.min(t.value);
        hi = hi.max(t.value);
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(fail(&"nothing finite to plot"));
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let x_start = history.first().map(|p| p.0).unwrap_or(0.0);
    let x_end = points.last().map(|p| hours(p.time_ms)).unwrap_or(1.0);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let title = format!("{} — {}", forecast.series, forecast.model.name());
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(x_start..x_end.max(x_start + 1e-9), (lo - pad)..(hi + pad))
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("hours from the last observation")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| fail(&e))?;
        let band = |upper: fn(&crate::ForecastPoint) -> f64,
                    lower: fn(&crate::ForecastPoint) -> f64| {
            let mut polygon: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (hours(p.time_ms), upper(p)))
                .collect();
            polygon.extend(points.iter().rev().map(|p| (hours(p.time_ms), lower(p))));
            polygon
        };
        let blue = RGBColor(31, 119, 180);
        chart
            .draw_series(std::iter::once(Polygon::new(
                band(|p| p.upper_95, |p| p.lower_95),
                blue.mix(0.15).filled(),
            )))
            .map_err(|e| fail(&e))?
            .label("95 %");
        chart
            .draw_series(std::iter::once(Polygon::new(
                band(|p| p.upper_80, |p| p.lower_80),
                blue.mix(0.3).filled(),
            )))
            .map_err(|e| fail(&e))?
            .label("80 %");
        chart
            .draw_series(LineSeries::new(
                history.iter().copied(),
                BLACK.stroke_width(1),
            ))
            .map_err(|e| fail(&e))?
            .label("history");
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (hours(p.time_ms), p.value)),
                blue.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label("forecast");
        let grey = RGBColor(150, 150, 150);
        for &c in &forecast.changepoints {
            let x = hours(c);
            if x >= x_start {
                chart
                    .draw_series(LineSeries::new(
                        [(x, lo - pad), (x, hi + pad)],
                        grey.stroke_width(1),
                    ))
                    .map_err(|e| fail(&e))?;
            }
        }
        if let Some(t) = threshold {
            chart
                .draw_series(LineSeries::new(
                    [(x_start, t.value), (x_end, t.value)],
                    RED.stroke_width(2),
                ))
                .map_err(|e| fail(&e))?
                .label("threshold");
        }
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
    use crate::capacity::Direction;
    use crate::{ForecastOptions, Series, forecast_series};

    #[test]
    fn draws_history_bands_and_threshold() {
        let series = Series {
            name: "cpu".into(),
            points: (0..600)
                .map(|i| (i * 60_000, 0.5 + 0.2 * (i as f64 / 30.0).sin()))
                .collect(),
            ..Series::default()
        };
        let outcome = forecast_series(&series, &ForecastOptions::default()).unwrap();
        let threshold = Threshold {
            value: 0.9,
            direction: Direction::Above,
        };
        let svg = svg(&outcome.prepared, &outcome.forecast, Some(threshold), 200).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
        assert!(svg.contains("<polygon") || svg.contains("<path"));
        assert!(svg.contains("threshold"));
    }
}
