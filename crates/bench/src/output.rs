//! One figure, its JSON line and the human table.

use serde_json::json;

/// What a figure's ratio should be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Goal {
    /// `ratio <= x`.
    AtMost(f64),
}

/// What a figure's baseline is: not every figure is a ratio to plain code doing the same
/// work, and the output says which are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Baseline {
    /// The best plain code a competent user would write for the same work, with the same
    /// settings, measured in the same run.
    SameWork,
    /// Our own engine doing the same work another way, in the same run (`push_10k`: one
    /// request per op): a speed-up, not a cost over plain code.
    OwnMode,
    /// A plain operation measured in the same run that is a unit, not the same work
    /// (`visibility_p50`: one loopback round trip).
    Unit,
    /// A constant, not a measurement (a count or a size against 1): the ratio is the value.
    Constant,
}

impl Baseline {
    fn text(self) -> &'static str {
        match self {
            Baseline::SameWork => "plain code, same work",
            Baseline::OwnMode => "our own other mode",
            Baseline::Unit => "a plain unit of work",
            Baseline::Constant => "constant",
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub(crate) name: &'static str,
    pub(crate) value: f64,
    pub(crate) baseline: f64,
    /// What `baseline` is.
    pub(crate) against: Baseline,
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
            "baseline_kind": self.against.text(),
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
        "{:<20} {:>12} {:>12} {:<22} {:>8} {:>8} {:>5}  unit\n",
        "figure", "value", "baseline", "baseline is", "ratio", "goal", "met"
    );
    for f in figures {
        out.push_str(&format!(
            "{:<20} {:>12.3} {:>12.3} {:<22} {:>8.3} {:>8} {:>5}  {}\n",
            f.name,
            f.value,
            f.baseline,
            f.against.text(),
            f.ratio(),
            f.goal_text(),
            if f.met() { "yes" } else { "NO" },
            f.unit
        ));
    }
    out
}
