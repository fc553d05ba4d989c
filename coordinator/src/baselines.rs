//! Published DISFA baselines (`experiments/baselines.yaml`): loading and validation.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// The AUs every baseline row covers, in order.
pub const DISFA_AUS: [u32; 8] = [1, 2, 4, 6, 9, 12, 25, 26];

/// How far a published average may differ from the per-AU mean and still count as rounding.
pub const ROUNDING_TOLERANCE: f64 = 0.1;

/// The copy of `experiments/baselines.yaml` built into the binary.
pub const EMBEDDED: &str = include_str!("../../experiments/baselines.yaml");

/// One published method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Short id (snake_case) that manifests name.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Venue and year.
    pub venue: String,
    /// F1 %, one per AU of [`Baselines::aus`].
    pub f1: Vec<f64>,
    /// The average as published.
    pub average: f64,
    /// Whether the published average disagrees with the per-AU mean beyond rounding.
    pub average_disagrees: bool,
    /// Where the numbers come from.
    pub source: String,
    /// Backbone network.
    pub backbone: String,
    /// Backbone parameter count, where known.
    pub params: Option<u64>,
    /// Where the parameter count comes from.
    pub params_note: String,
    /// Caveats.
    pub notes: String,
}

impl Baseline {
    /// Mean of the per-AU F1 row.
    pub fn per_au_mean(&self) -> f64 {
        if self.f1.is_empty() {
            return 0.0;
        }
        self.f1.iter().sum::<f64>() / self.f1.len() as f64
    }
}

/// The whole baselines file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baselines {
    /// AU order of every `f1` row.
    pub aus: Vec<u32>,
    /// The methods.
    pub methods: Vec<Baseline>,
}

/// A baselines file that does not load or validate.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// File.
        file: String,
        /// Cause.
        source: std::io::Error,
    },
    /// YAML syntax or shape.
    #[error("{file}: {message}")]
    Parse {
        /// File.
        file: String,
        /// Cause (with line).
        message: String,
    },
    /// A value that cannot be right.
    #[error("{file}: method `{method}`: {message}")]
    Invalid {
        /// File.
        file: String,
        /// Method id.
        method: String,
        /// What is wrong.
        message: String,
    },
    /// A manifest names a baseline that is not in the file.
    #[error("unknown baseline `{0}` (known: {1})")]
    Unknown(String, String),
}

impl Baselines {
    /// Parses and validates baselines text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, BaselineError> {
        let b: Baselines = serde_yaml::from_str(text).map_err(|e| BaselineError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        b.validate(file)?;
        Ok(b)
    }

    /// Reads a baselines file.
    pub fn load(path: &Path) -> Result<Self, BaselineError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }

    /// The built-in copy.
    pub fn embedded() -> Result<Self, BaselineError> {
        Self::parse(EMBEDDED, "experiments/baselines.yaml")
    }

    fn validate(&self, file: &str) -> Result<(), BaselineError> {
        let bad = |method: &str, message: String| BaselineError::Invalid {
            file: file.to_string(),
            method: method.to_string(),
            message,
        };
        if self.aus.is_empty() {
            return Err(bad("-", "`aus` is empty".into()));
        }
        let mut seen = HashSet::new();
        for m in &self.methods {
            let id_ok = !m.id.is_empty()
                && m.id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !id_ok {
                return Err(bad(&m.id, "id must be snake_case (a-z, 0-9, _)".into()));
            }
            if !seen.insert(m.id.as_str()) {
                return Err(bad(&m.id, "duplicate id".into()));
            }
            if m.f1.len() != self.aus.len() {
                return Err(bad(
                    &m.id,
                    format!("`f1` has {} values for {} AUs", m.f1.len(), self.aus.len()),
                ));
            }
            for (v, au) in m.f1.iter().zip(&self.aus) {
                if !(0.0..=100.0).contains(v) {
                    return Err(bad(&m.id, format!("AU{au} F1 {v} is not a percentage")));
                }
            }
            if !(0.0..=100.0).contains(&m.average) {
                return Err(bad(
                    &m.id,
                    format!("average {} is not a percentage", m.average),
                ));
            }
            let disagrees = (m.per_au_mean() - m.average).abs() > ROUNDING_TOLERANCE;
            if disagrees != m.average_disagrees {
                return Err(bad(
                    &m.id,
                    format!(
                        "per-AU mean {:.2} vs published average {}: `average_disagrees` should be {disagrees}",
                        m.per_au_mean(),
                        m.average
                    ),
                ));
            }
        }
        Ok(())
    }

    /// One method by id.
    pub fn get(&self, id: &str) -> Option<&Baseline> {
        self.methods.iter().find(|m| m.id == id)
    }

    /// The named methods, in the order given; an unknown name is an error.
    pub fn select(&self, ids: &[String]) -> Result<Vec<&Baseline>, BaselineError> {
        ids.iter()
            .map(|id| {
                self.get(id).ok_or_else(|| {
                    let known: Vec<&str> = self.methods.iter().map(|m| m.id.as_str()).collect();
                    BaselineError::Unknown(id.clone(), known.join(", "))
                })
            })
            .collect()
    }

    /// F1 of one AU for a method, if the file covers that AU.
    pub fn f1_of(&self, m: &Baseline, au: u32) -> Option<f64> {
        self.aus.iter().position(|a| *a == au).map(|i| m.f1[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_loads_with_every_method_of_the_shared_table() {
        let b = Baselines::embedded().unwrap();
        assert_eq!(b.aus, DISFA_AUS);
        let ids: Vec<&str> = b.methods.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "drml",
                "eac_net",
                "jaa_net",
                "lp_net",
                "arl",
                "srerl",
                "jaa_net_ijcv",
                "me_graphau",
                "ksrl",
                "sacl",
                "aunce"
            ]
        );
        for m in &b.methods {
            assert!(!m.source.is_empty(), "{}", m.id);
        }
    }

    #[test]
    fn per_au_means_recomputed_and_flags_checked() {
        let b = Baselines::embedded().unwrap();
        let eac = b.get("eac_net").unwrap();
        // 41.5+26.4+66.4+50.7+80.5+89.3+88.9+15.6 = 459.3; /8 = 57.4125
        assert!((eac.per_au_mean() - 57.4125).abs() < 1e-9);
        assert_eq!(eac.average, 48.5);
        assert!(eac.average_disagrees);
        let drml = b.get("drml").unwrap();
        // 17.3+17.7+37.4+29.0+10.7+37.7+38.5+20.1 = 208.4; /8 = 26.05
        assert!((drml.per_au_mean() - 26.05).abs() < 1e-9);
        assert!(drml.average_disagrees);
        let flagged: Vec<&str> = b
            .methods
            .iter()
            .filter(|m| m.average_disagrees)
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(flagged, ["drml", "eac_net"]);
        let jaa = b.get("jaa_net").unwrap();
        // 448.3 / 8 = 56.0375
        assert!((jaa.per_au_mean() - 56.0375).abs() < 1e-9);
        assert_eq!(b.f1_of(jaa, 26), Some(58.4));
        assert_eq!(b.f1_of(jaa, 5), None);
    }

    #[test]
    fn a_wrong_flag_or_row_is_refused_with_the_method_named() {
        let bad_flag = EMBEDDED.replacen(
            "average: 48.5\n    average_disagrees: true",
            "average: 48.5\n    average_disagrees: false",
            1,
        );
        let e = Baselines::parse(&bad_flag, "b.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.yaml") && e.contains("eac_net") && e.contains("57.41"),
            "{e}"
        );
        let short = EMBEDDED.replacen("[17.3, 17.7, ", "[17.3, ", 1);
        let e = Baselines::parse(&short, "b.yaml").unwrap_err().to_string();
        assert!(e.contains("drml") && e.contains("7 values"), "{e}");
        let pct = EMBEDDED.replacen("41.5, 26.4", "415, 26.4", 1);
        assert!(Baselines::parse(&pct, "b.yaml").is_err());
    }

    #[test]
    fn select_names_unknown_baselines() {
        let b = Baselines::embedded().unwrap();
        let v = b.select(&["lp_net".into(), "eac_net".into()]).unwrap();
        assert_eq!(v[0].name, "LP-Net");
        let e = b.select(&["eacnet".into()]).unwrap_err().to_string();
        assert!(e.contains("eacnet") && e.contains("eac_net"), "{e}");
    }
}
