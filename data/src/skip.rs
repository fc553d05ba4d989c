//! What a lenient reader skipped, and why: never a silent drop.

use std::collections::BTreeMap;
use std::fmt;

/// How many examples of each reason a report keeps.
pub const MAX_EXAMPLES: usize = 5;

/// Why a frame was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// A label line that does not parse.
    BadLabelLine,
    /// An intensity outside 0–5 (or a list label not 0/1).
    LabelOutOfRange,
    /// A frame that some AU's label file lacks (short label file).
    MissingLabel,
    /// A frame whose image file is absent.
    MissingImage,
    /// A frame whose image does not decode.
    BadImage,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::BadLabelLine => "unparseable label line",
            SkipReason::LabelOutOfRange => "label out of range",
            SkipReason::MissingLabel => "frame missing from a label file",
            SkipReason::MissingImage => "missing image",
            SkipReason::BadImage => "undecodable image",
        })
    }
}

/// Frames skipped by a lenient read: counts per reason with the first few examples of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipReport {
    /// Number of skipped frames (or label lines) per reason.
    pub counts: BTreeMap<SkipReason, usize>,
    /// The first [`MAX_EXAMPLES`] examples per reason (file, line, message).
    pub examples: BTreeMap<SkipReason, Vec<String>>,
}

impl SkipReport {
    /// Records one skipped item.
    pub fn add(&mut self, reason: SkipReason, example: impl Into<String>) {
        *self.counts.entry(reason).or_default() += 1;
        let ex = self.examples.entry(reason).or_default();
        if ex.len() < MAX_EXAMPLES {
            ex.push(example.into());
        }
    }

    /// Whether nothing was skipped.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Total number of skipped items.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// Number skipped for `reason`.
    pub fn count(&self, reason: SkipReason) -> usize {
        self.counts.get(&reason).copied().unwrap_or(0)
    }
}

impl fmt::Display for SkipReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing skipped");
        }
        write!(f, "skipped {}:", self.total())?;
        for (reason, n) in &self.counts {
            write!(f, " {n} {reason}")?;
            if let Some(ex) = self.examples.get(reason) {
                write!(f, " (e.g. {})", ex.join("; "))?;
            }
            f.write_str(";")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_caps_examples() {
        let mut r = SkipReport::default();
        assert!(r.is_empty());
        for i in 0..8 {
            r.add(SkipReason::MissingImage, format!("f{i}"));
        }
        r.add(SkipReason::BadImage, "x.png");
        assert_eq!(r.total(), 9);
        assert_eq!(r.count(SkipReason::MissingImage), 8);
        assert_eq!(r.examples[&SkipReason::MissingImage].len(), MAX_EXAMPLES);
        let s = r.to_string();
        assert!(s.contains("8 missing image") && s.contains("x.png"), "{s}");
    }
}
