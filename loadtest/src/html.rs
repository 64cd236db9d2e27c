//! The HTML reports of the chat and consult scenarios: each one
//! self-contained page (inline SVG, no scripts, nothing fetched) with the
//! results table, the latency distribution, throughput over time, delivery
//! latency over time and connections over time.
//!
//! Both pages are built from the same pieces: [`begin`] and [`end`] for the
//! frame, and the charts ([`latency_chart`], [`over_time_chart`],
//! [`latency_over_time_chart`], [`connections_chart`]) on top of one SVG line chart, [`chart`].

use std::fmt::Write as _;
use std::path::Path;

use crate::consult::ConsultReport;
use crate::stats::ChatReport;
use crate::thresholds::Verdict;
use crate::timeline::LatencySeries;

/// Writes a page to `path`.
pub fn write(path: &Path, page: &str) -> anyhow::Result<()> {
    std::fs::write(path, page).map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))
}

/// The chat scenario's page.
pub fn chat_page(report: &ChatReport, verdicts: &[Verdict]) -> String {
    let mut html = begin("chat", report.clean, verdicts);
    let _ = writeln!(
        html,
        "<p>{} sessions joined ({} failed) at {:.0} joins/s. {} acks; lost {}, duplicated {}, out of order {}; \
         error frames: {}; refused and sent again: {}; closed early: {}.</p>",
        report.sessions,
        report.failed_sessions,
        report.join_per_s,
        report.acked,
        report.lost,
        report.duplicated,
        report.out_of_order,
        escape(&crate::stats::counts_line(&report.errors)),
        escape(&crate::stats::counts_line(&report.resent)),
        report.closed_sessions,
    );
    html.push_str(
        "<h2>Steps</h2>\n<table><tr><th>offered/s</th><th>sent/s</th><th>delivered/s</th><th>acked/s</th>\
         <th>delivery p50</th><th>p90</th><th>p99</th><th>max</th><th>ack p99</th></tr>\n",
    );
    for step in &report.steps {
        let d = step.latency_ms.delivery;
        let _ = writeln!(
            html,
            "<tr><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.2} ms</td><td>{:.2} ms</td>\
             <td>{:.2} ms</td><td>{:.2} ms</td><td>{:.2} ms</td></tr>",
            step.offered_per_s,
            step.sent_per_s,
            step.delivered_per_s,
            step.acked_per_s,
            d.p50,
            d.p90,
            d.p99,
            d.max,
            step.latency_ms.ack.p99
        );
    }
    html.push_str("</table>\n<p>Latencies are measured from each message's scheduled send time.</p>\n");

    let dist = &report.distribution_ms;
    html.push_str(&latency_chart(
        "Latency distribution (all measured steps)",
        &[percentiles("delivery", "#0969da", &dist.delivery), percentiles("ack", "#bf3989", &dist.ack)],
    ));
    let t = &report.timeline;
    html.push_str(&over_time_chart(
        "Throughput over time",
        "frames per second",
        "per s",
        t.seconds.len(),
        &[
            per_second("sent", "#1a7f37", &t.seconds, &t.sent_per_s),
            per_second("delivered", "#0969da", &t.seconds, &t.delivered_per_s),
            per_second("acked", "#bf3989", &t.seconds, &t.acked_per_s),
        ],
    ));
    html.push_str(&latency_over_time_chart(&t.seconds, &t.delivery_ms));
    html.push_str(&connections_chart("joined sessions", "sessions", &t.seconds, &t.connections));
    end(html, &report.scenario)
}

/// The latency kinds the consult page plots, with their colours: the
/// legend has room for six, and check-in, admit and end (one of each per
/// consultation) are in the table.
const CONSULT_KINDS: [(&str, &str); 6] = [
    ("delivery", "#0969da"),
    ("ack", "#bf3989"),
    ("signal", "#1a7f37"),
    ("join", "#8250df"),
    ("rejoin", "#bc4c00"),
    ("called", "#9a6700"),
];

/// The consult scenario's page.
pub fn consult_page(report: &ConsultReport, verdicts: &[Verdict]) -> String {
    let mut html = begin("consult", report.clean, verdicts);
    let _ = writeln!(
        html,
        "<p>{} of {} consultations completed, {} failed ({}), in {:.1} s. {} messages; lost {}, duplicated {}, \
         out of order {}; typing seen {} (missing {}), read receipts seen {} (missing {}). Reconnects: {} rejoined, {} messages replayed, \
         {} late for the storm. Displays: {} watched (failures: {}), {} queue states, {} entries with names; \
         called {}, missing {}, duplicated {}, unexpected {}. Error frames: {}.</p>",
        report.completed,
        report.consultations,
        report.failed,
        escape(&crate::stats::counts_line(&report.failures)),
        report.elapsed_s,
        report.messages,
        report.lost,
        report.duplicated,
        report.out_of_order,
        report.typing_seen,
        report.typing_missing,
        report.reads_seen,
        report.reads_missing,
        report.reconnects,
        report.replayed,
        report.storm_late,
        report.displays,
        escape(&crate::stats::counts_line(&report.display_failures)),
        report.queue_states,
        report.leaked_entries,
        report.called,
        report.called_missing,
        report.called_duplicated,
        report.called_unexpected,
        escape(&crate::stats::counts_line(&report.errors)),
    );
    html.push_str(
        "<h2>Latency</h2>\n<table><tr><th>kind</th><th>count</th><th>p50</th><th>p90</th><th>p99</th>\
         <th>max</th></tr>\n",
    );
    for (kind, s) in &report.latency_ms {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.2} ms</td><td>{:.2} ms</td><td>{:.2} ms</td><td>{:.2} ms</td></tr>",
            escape(kind),
            s.count,
            s.p50,
            s.p90,
            s.p99,
            s.max
        );
    }
    html.push_str(
        "</table>\n<p>Check-in and admit to the patient's reply, signal from send to the peer, end to both \
         sides, rejoin from reconnecting to joined, called from the admit to each display.</p>\n",
    );

    let plotted: Vec<Series<'_>> = CONSULT_KINDS
        .iter()
        .filter_map(|&(kind, color)| {
            let points = report.distribution_ms.get(kind).filter(|points| !points.is_empty())?;
            Some(percentiles(kind, color, points))
        })
        .collect();
    html.push_str(&latency_chart("Latency distribution", &plotted));
    let t = &report.timeline;
    html.push_str(&over_time_chart(
        "Throughput over time",
        "messages and signals per second",
        "per s",
        t.seconds.len(),
        &[
            per_second("delivered", "#0969da", &t.seconds, &t.delivered_per_s),
            per_second("signals", "#1a7f37", &t.seconds, &t.signals_per_s),
        ],
    ));
    html.push_str(&over_time_chart(
        "Consultations over time",
        "consultations per second",
        "per s",
        t.seconds.len(),
        &[
            per_second("started", "#57606a", &t.seconds, &t.started_per_s),
            per_second("completed", "#1a7f37", &t.seconds, &t.completed_per_s),
            per_second("failed", "#cf222e", &t.seconds, &t.failed_per_s),
            per_second("reconnects", "#bc4c00", &t.seconds, &t.reconnects_per_s),
        ],
    ));
    html.push_str(&latency_over_time_chart(&t.seconds, &t.delivery_ms));
    html.push_str(&connections_chart("open connections", "connections", &t.seconds, &t.connections));
    end(html, &report.scenario)
}

/// The start of a page: its head and its heading with the verdict.
fn begin(scenario: &str, clean: bool, thresholds: &[Verdict]) -> String {
    let mut html = String::with_capacity(32 * 1024);
    let passed = clean && thresholds.iter().all(|v| v.met);
    let verdict = if passed { "PASS" } else { "FAIL" };
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Telehub load test: {scenario}, {verdict}</title>\
         <style>body{{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1b1f24}}\
         table{{border-collapse:collapse;font-variant-numeric:tabular-nums}}td,th{{padding:.25rem .6rem;border-bottom:1px solid #d0d7de;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}.pass{{color:#116329}}.fail{{color:#a40e26}}\
         svg{{max-width:100%;height:auto}}pre{{background:#f6f8fa;padding:1rem;overflow:auto}}</style></head><body>\n\
         <h1>Telehub load test: {scenario} <span class=\"{}\">{verdict}</span></h1>\n",
        verdict.to_lowercase()
    );
    if !thresholds.is_empty() {
        html.push_str("<h2>Thresholds</h2>\n<table><tr><th>threshold</th><th>figure</th><th></th></tr>\n");
        for v in thresholds {
            let (class, met) = if v.met { ("pass", "met") } else { ("fail", "not met") };
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{met}</td></tr>",
                escape(&v.threshold.to_string()),
                escape(&v.value_text())
            );
        }
        html.push_str("</table>\n");
    }
    html
}

/// The end of a page: the flags of the run, and the closing tags.
fn end(mut html: String, scenario: &serde_json::Value) -> String {
    let scenario = serde_json::to_string_pretty(scenario).unwrap_or_default();
    let _ = write!(html, "<h2>Scenario</h2>\n<pre>{}</pre>\n</body></html>\n", escape(&scenario));
    html
}

/// A latency distribution as a line: `points` are `[percentile, ms]`,
/// plotted HDR style, the x axis counting nines.
fn percentiles<'a>(name: &'a str, color: &'a str, points: &[(f64, f64)]) -> Series<'a> {
    Series { name, color, points: points.iter().map(|&(p, ms)| (nines(p), ms)).collect() }
}

/// Nines of a percentile: 90% is 1, 99% is 2, capped at 99.999%.
fn nines(p: f64) -> f64 {
    -(1.0 - (p / 100.0).min(0.99999)).log10()
}

/// A count per second as a line.
fn per_second<'a>(name: &'a str, color: &'a str, seconds: &[u64], values: &[u64]) -> Series<'a> {
    Series { name, color, points: seconds.iter().zip(values).map(|(&s, &v)| (s as f64, v as f64)).collect() }
}

/// A heading and the latency-by-percentile chart of [`percentiles`] lines.
fn latency_chart(heading: &str, series: &[Series<'_>]) -> String {
    let ticks = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999].iter().map(|&p| (nines(p), format!("{p}%"))).collect();
    format!("<h2>{}</h2>\n{}", escape(heading), chart("latency by percentile", "percentile", "ms", series, ticks))
}

/// A heading and a chart over the `seconds` of a run.
fn over_time_chart(heading: &str, title: &str, y_label: &str, seconds: usize, series: &[Series<'_>]) -> String {
    let svg = chart(title, "seconds since the start", y_label, series, time_ticks(seconds));
    format!("<h2>{}</h2>\n{svg}", escape(heading))
}

/// The delivery latency of each second: its median, 99th percentile and
/// maximum; seconds without deliveries leave no point.
fn latency_over_time_chart(seconds: &[u64], delivery: &LatencySeries) -> String {
    let line = |name, color, values: &[Option<f64>]| Series {
        name,
        color,
        points: seconds.iter().zip(values).filter_map(|(&s, v)| Some((s as f64, (*v)?))).collect(),
    };
    let series = [
        line("p50", "#1a7f37", &delivery.p50),
        line("p99", "#0969da", &delivery.p99),
        line("max", "#cf222e", &delivery.max),
    ];
    over_time_chart("Delivery latency over time", "delivery latency in each second", "ms", seconds.len(), &series)
}

/// The connections open at the end of each second.
fn connections_chart(title: &str, y_label: &str, seconds: &[u64], connections: &[i64]) -> String {
    let open = seconds.iter().zip(connections).map(|(&s, &c)| (s as f64, c as f64)).collect();
    let series = [Series { name: "connections", color: "#8250df", points: open }];
    over_time_chart("Connections over time", title, y_label, seconds.len(), &series)
}

/// One line of a chart.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;

/// A line chart as inline SVG: `x_ticks` label the x axis, the y axis
/// starts at 0 and gets five ticks.
fn chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>], x_ticks: Vec<(f64, String)>) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter().copied());
    let x_max = all().map(|(x, _)| x).chain(x_ticks.iter().map(|(x, _)| *x)).fold(0.0f64, f64::max).max(1e-9);
    let x_min = all().map(|(x, _)| x).chain(x_ticks.iter().map(|(x, _)| *x)).fold(x_max, f64::min);
    let y_max = nice_ceiling(all().map(|(_, y)| y).fold(0.0, f64::max));
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let span = (x_max - x_min).max(1e-9);
    let sx = |x: f64| LEFT + (x - x_min) / span * w;
    let sy = |y: f64| TOP + h - y / y_max * h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" \
         aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"12\" font-family=\"system-ui,sans-serif\">",
        escape(title)
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y1:.1}\" y2=\"{y1:.1}\" stroke=\"#d0d7de\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + w,
            LEFT - 6.0,
            sy(y) + 4.0,
            number(y),
            y1 = sy(y)
        );
    }
    for (x, label) in &x_ticks {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            sx(*x),
            TOP + h + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        LEFT + w / 2.0,
        HEIGHT - 8.0,
        escape(x_label),
        TOP + h / 2.0,
        TOP + h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>\
             <rect x=\"{:.1}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"17\">{}</text>",
            s.color,
            points.join(" "),
            escape(s.name),
            LEFT + 110.0 * i as f64,
            s.color,
            LEFT + 14.0 + 110.0 * i as f64,
            escape(s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Up to about eight evenly spaced second marks.
fn time_ticks(seconds: usize) -> Vec<(f64, String)> {
    let step = (seconds / 8).max(1);
    (0..seconds).step_by(step).map(|s| (s as f64, format!("{s}"))).collect()
}

/// The next round number at or above `v` (1, 2 or 5 times a power of ten).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&c| c >= v).unwrap_or(10.0 * magnitude)
}

fn number(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() { format!("{v:.0}") } else { format!("{v:.1}") }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(50_000.0), 50_000.0);
        assert_eq!(nice_ceiling(51_700.0), 100_000.0);
        assert_eq!(nice_ceiling(0.07), 0.1);
    }

    #[test]
    fn a_chart_has_a_line_per_series_inside_its_frame() {
        let svg = chart(
            "t",
            "x",
            "y",
            &[
                Series { name: "a", color: "#000", points: vec![(0.0, 0.0), (1.0, 10.0)] },
                Series { name: "b<", color: "#111", points: vec![(0.0, 5.0), (1.0, 5.0)] },
            ],
            vec![(0.0, "0".into()), (1.0, "1".into())],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("b&lt;"), "names are escaped");
        // The highest point sits on the top of the plot, the lowest on its floor.
        assert!(svg.contains(&format!("{:.1},{:.1}", LEFT + WIDTH - LEFT - RIGHT, TOP)), "{svg}");
        assert!(svg.contains(&format!("{LEFT:.1},{:.1}", HEIGHT - BOTTOM)), "{svg}");
    }

    #[test]
    fn latency_over_time_skips_seconds_without_deliveries() {
        let delivery = LatencySeries {
            p50: vec![Some(1.0), None, Some(2.0)],
            p99: vec![Some(4.0), None, Some(8.0)],
            max: vec![Some(9.0), None, Some(50.0)],
        };
        let html = latency_over_time_chart(&[0, 1, 2], &delivery);
        assert!(html.starts_with("<h2>Delivery latency over time</h2>"), "{html}");
        let lines: Vec<&str> = html.split("<polyline").skip(1).collect();
        assert_eq!(lines.len(), 3, "p50, p99 and max");
        for line in lines {
            let points = line.split("points=\"").nth(1).and_then(|p| p.split('"').next()).unwrap_or_default();
            assert_eq!(points.split_whitespace().count(), 2, "two seconds had deliveries: {points}");
        }
        // The highest maximum (50 ms, a round ceiling, in the last second) is the
        // top right corner.
        assert!(html.contains(&format!("{:.1},{:.1}", WIDTH - RIGHT, TOP)), "{html}");
    }
}
