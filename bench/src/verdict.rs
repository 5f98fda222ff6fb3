//! Pass/fail checks of the soak and fault scenarios: each check has a name, a result and the
//! figures behind it. The report carries them as `"pass"` and `"checks"`; `hub-bench` exits
//! non-zero when a report says `"pass": false`.

use serde_json::{json, Value};

/// The checks of one run.
#[derive(Default)]
pub struct Verdict {
    checks: Vec<(String, bool, String)>,
}

impl Verdict {
    /// Records a check.
    pub fn check(&mut self, name: &str, pass: bool, detail: impl Into<String>) {
        self.checks.push((name.to_string(), pass, detail.into()));
    }

    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|(_, pass, _)| *pass)
    }

    /// `{"pass": bool, "checks": [{"check", "pass", "detail"}]}` entries for the report.
    pub fn fields(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("pass".into(), json!(self.passed()));
        m.insert(
            "checks".into(),
            Value::Array(
                self.checks
                    .iter()
                    .map(|(name, pass, detail)| json!({"check": name, "pass": pass, "detail": detail}))
                    .collect(),
            ),
        );
        m
    }

    /// Prints one line per check and the verdict (stderr).
    pub fn print(&self, scenario: &str) {
        eprintln!();
        for (name, pass, detail) in &self.checks {
            eprintln!("  {} {name}: {detail}", if *pass { "PASS" } else { "FAIL" });
        }
        eprintln!(
            "{scenario}: {}\n",
            if self.passed() {
                "every check passed"
            } else {
                "FAILED"
            }
        );
    }
}
