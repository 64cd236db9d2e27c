//! Pass/fail criteria on a run's figures (`--threshold`), as k6 has them,
//! so that a run can gate a deployment or a CI job on latency, throughput
//! or memory and not only on its delivery checks.
//!
//! A threshold names a figure by its path in the run's JSON report, then a
//! comparison and a number in the report's own unit (milliseconds for
//! latencies): `latency_ms.delivery.p99<50`, `delivered_per_s>=40000`,
//! `steps.1.latency_ms.ack.p99<=20`, `rss_kib_per_session<32`. A path that
//! ends at a map of counts (`errors`, `failures`) stands for their sum, so
//! `errors==0` asks for no error frame at all. A figure the report does not
//! have fails its threshold, with the reason.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// One criterion: `path op bound`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    path: String,
    op: Op,
    bound: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    /// Longest first, so `<=` is not read as `<`.
    const ALL: [(&'static str, Op); 6] =
        [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), (">", Op::Gt)];

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Lt => value < bound,
            Op::Le => value <= bound,
            Op::Gt => value > bound,
            Op::Ge => value >= bound,
            Op::Eq => value == bound,
            Op::Ne => value != bound,
        }
    }

    fn as_str(self) -> &'static str {
        Op::ALL.iter().find(|(_, op)| *op == self).map_or("?", |(text, _)| text)
    }
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "bad threshold {s:?}: want a report path, a comparison and a number, e.g. latency_ms.delivery.p99<50"
            )
        };
        let at = s.find(['<', '>', '=', '!']).ok_or_else(usage)?;
        let (path, rest) = (s[..at].trim(), &s[at..]);
        let (text, op) = Op::ALL.iter().find(|(text, _)| rest.starts_with(text)).ok_or_else(usage)?;
        let bound: f64 = rest[text.len()..].trim().parse().map_err(|_| usage())?;
        let valid =
            |segment: &str| !segment.is_empty() && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !path.split('.').all(valid) || !bound.is_finite() {
            return Err(usage());
        }
        Ok(Threshold { path: path.to_owned(), op: *op, bound })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.path, self.op.as_str(), self.bound)
    }
}

impl Serialize for Threshold {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// How one threshold fared.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub threshold: Threshold,
    /// The figure, when the report has it.
    pub value: Option<f64>,
    pub met: bool,
}

impl Threshold {
    /// Judges the figure at this threshold's path in `report`.
    fn judge(&self, report: &Value) -> Verdict {
        let value = figure(report, &self.path);
        Verdict { threshold: self.clone(), value, met: value.is_some_and(|v| self.op.holds(v, self.bound)) }
    }
}

/// The number at `path` (dot-separated keys, or indexes into arrays); a
/// map of numbers counts as their sum.
fn figure(report: &Value, path: &str) -> Option<f64> {
    let mut at = report;
    for segment in path.split('.') {
        at = match at {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match at {
        Value::Number(n) => n.as_f64(),
        Value::Object(map) => map.values().map(Value::as_f64).sum(),
        _ => None,
    }
}

/// A report judged against the run's thresholds.
pub struct Judged {
    /// The report as JSON, with the verdicts under `thresholds` when there
    /// were any.
    pub json: Value,
    pub verdicts: Vec<Verdict>,
}

impl Judged {
    /// Whether every threshold was met.
    pub fn met(&self) -> bool {
        self.verdicts.iter().all(|v| v.met)
    }
}

/// Judges `report` against `thresholds` and prints the verdicts (nothing
/// without thresholds).
pub fn judge(report: &impl Serialize, thresholds: &[Threshold]) -> anyhow::Result<Judged> {
    let mut json = serde_json::to_value(report)?;
    let verdicts: Vec<Verdict> = thresholds.iter().map(|t| t.judge(&json)).collect();
    if verdicts.is_empty() {
        return Ok(Judged { json, verdicts });
    }
    let met = verdicts.iter().filter(|v| v.met).count();
    println!();
    println!("thresholds:");
    for v in &verdicts {
        println!("  {:<40} {:>18}  {}", v.threshold.to_string(), v.value_text(), if v.met { "met" } else { "NOT MET" });
    }
    let result = if met == verdicts.len() { "PASS" } else { "FAIL" };
    println!("thresholds: {met} of {} met: {result}", verdicts.len());
    if let Value::Object(map) = &mut json {
        map.insert("thresholds".into(), serde_json::to_value(&verdicts)?);
    }
    Ok(Judged { json, verdicts })
}

impl Verdict {
    /// The figure as text, or why there is none.
    pub fn value_text(&self) -> String {
        self.value.map_or_else(|| "not in the report".to_owned(), |x| format!("{x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Threshold {
        s.parse().unwrap()
    }

    #[test]
    fn thresholds_read_a_path_a_comparison_and_a_number() {
        let t = parse("latency_ms.delivery.p99<=50");
        assert_eq!((t.path.as_str(), t.op, t.bound), ("latency_ms.delivery.p99", Op::Le, 50.0));
        assert_eq!(parse(" delivered_per_s >= 4e4 ").op, Op::Ge);
        assert_eq!(parse("errors==0").to_string(), "errors==0");
        assert_eq!(parse("lost!=1").op, Op::Ne);
        assert_eq!(parse("a<1.5").op, Op::Lt);
        for bad in ["", "p99", "p99<", "<5", "p99<fast", "p99=5", "a..b<1", "a b<1", "p99<inf", "p99=>5"] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn figures_are_found_by_key_index_or_as_the_sum_of_a_map() {
        let report = json!({
            "lost": 0,
            "latency_ms": {"delivery": {"p99": 57.5}},
            "steps": [{"sent_per_s": 10.0}, {"sent_per_s": 20.0}],
            "errors": {"unavailable": 3, "forbidden": 1},
            "resent": {},
            "scenario": {"name": "chat"},
        });
        let judge = |s: &str| parse(s).judge(&report);
        assert!(judge("lost==0").met);
        assert!(!judge("latency_ms.delivery.p99<50").met);
        assert_eq!(judge("latency_ms.delivery.p99<50").value, Some(57.5));
        assert!(judge("steps.1.sent_per_s>=20").met);
        assert_eq!(judge("errors==0").value, Some(4.0));
        assert!(judge("resent==0").met, "an empty map sums to 0");
        for absent in ["latency_ms.join.p99<1", "steps.2.sent_per_s>0", "scenario.name==1", "steps>0"] {
            let v = judge(absent);
            assert_eq!((v.value, v.met), (None, false), "{absent}");
        }
    }

    #[test]
    fn judging_adds_the_verdicts_to_the_report() {
        let report = json!({"lost": 0, "delivered_per_s": 900.0});
        let judged = judge(&report, &[parse("lost==0"), parse("delivered_per_s>=1000")]).unwrap();
        assert!(!judged.met());
        assert_eq!(
            judged.json["thresholds"],
            json!([
                {"threshold": "lost==0", "value": 0.0, "met": true},
                {"threshold": "delivered_per_s>=1000", "value": 900.0, "met": false},
            ])
        );
        let judged = judge(&report, &[]).unwrap();
        assert!(judged.met() && judged.json.get("thresholds").is_none());
    }
}
