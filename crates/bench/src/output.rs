//! One figure, its JSON line and the human table.

use serde_json::json;

/// What a figure's ratio should be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Goal {
    /// `ratio <= x`.
    AtMost(f64),
}

/// One measured figure.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub(crate) name: &'static str,
    pub(crate) value: f64,
    pub(crate) baseline: f64,
    pub(crate) unit: String,
    pub(crate) goal: Goal,
}

impl Figure {
    pub(crate) fn ratio(&self) -> f64 {
        if self.baseline == 0.0 {
            f64::INFINITY
        } else {
            self.value / self.baseline
        }
    }

    pub(crate) fn met(&self) -> bool {
        match self.goal {
            Goal::AtMost(limit) => self.ratio() <= limit,
        }
    }

    fn goal_text(&self) -> String {
        match self.goal {
            Goal::AtMost(limit) => format!("<= {limit}"),
        }
    }

    pub(crate) fn json_line(&self) -> String {
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({
            "name": self.name,
            "value": round(self.value),
            "baseline": round(self.baseline),
            "ratio": round(self.ratio()),
            "unit": self.unit,
            "goal": self.goal_text(),
            "met": self.met(),
        })
        .to_string()
    }
}

/// The human table.
pub(crate) fn table(figures: &[Figure]) -> String {
    let mut out = format!(
        "{:<20} {:>12} {:>12} {:>8} {:>8} {:>5}  unit\n",
        "figure", "value", "baseline", "ratio", "goal", "met"
    );
    for f in figures {
        out.push_str(&format!(
            "{:<20} {:>12.3} {:>12.3} {:>8.3} {:>8} {:>5}  {}\n",
            f.name,
            f.value,
            f.baseline,
            f.ratio(),
            f.goal_text(),
            if f.met() { "yes" } else { "NO" },
            f.unit
        ));
    }
    out
}
