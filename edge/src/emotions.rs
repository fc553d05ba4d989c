//! Emotions from AUs (Ekman & Friesen, the paper's Fig. 1c). A rule is decided only when the
//! model knows every AU it names; otherwise the emotion is reported undecidable with the AUs it
//! lacks, never guessed.

use serde::Serialize;

/// One emotion's rule: every group must be present; a group is satisfied by any of its AUs.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Emotion name.
    pub name: &'static str,
    /// The rule as written (e.g. `1+2+5B+26/27`).
    pub text: &'static str,
    /// AU groups (alternatives within a group).
    pub groups: &'static [&'static [u32]],
}

/// The six rules of design.md §1 (5B: AU5 at intensity B or more, i.e. present in DISFA's ≥ 2 sense).
pub const RULES: [Rule; 6] = [
    Rule {
        name: "happiness",
        text: "6+12",
        groups: &[&[6], &[12]],
    },
    Rule {
        name: "sadness",
        text: "1+4+15",
        groups: &[&[1], &[4], &[15]],
    },
    Rule {
        name: "surprise",
        text: "1+2+5B+26/27",
        groups: &[&[1], &[2], &[5], &[26, 27]],
    },
    Rule {
        name: "disgust",
        text: "9+15+16",
        groups: &[&[9], &[15], &[16]],
    },
    Rule {
        name: "anger",
        text: "4+5+7+23",
        groups: &[&[4], &[5], &[7], &[23]],
    },
    Rule {
        name: "fear",
        text: "1+2+4+5+20+26",
        groups: &[&[1], &[2], &[4], &[5], &[20], &[26]],
    },
];

/// An emotion as the known AUs decide it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmotionCall {
    /// Emotion name.
    pub name: &'static str,
    /// The AU rule.
    pub rule: &'static str,
    /// Whether the model knows every AU of the rule.
    pub decidable: bool,
    /// Present or not; `None` when undecidable.
    pub present: Option<bool>,
    /// AUs of the rule the model does not know.
    pub missing: Vec<u32>,
}

/// Every emotion for a face whose known AUs are `aus` with decisions `present`.
pub fn emotions(aus: &[u32], present: &[bool]) -> Vec<EmotionCall> {
    let on = |au: u32| {
        aus.iter()
            .position(|&a| a == au)
            .map(|i| present.get(i) == Some(&true))
    };
    RULES
        .iter()
        .map(|r| {
            let missing: Vec<u32> = r
                .groups
                .iter()
                .flat_map(|g| g.iter().copied())
                .filter(|&a| !aus.contains(&a))
                .collect();
            let decidable = missing.is_empty();
            let present = decidable.then(|| {
                r.groups
                    .iter()
                    .all(|g| g.iter().any(|&a| on(a) == Some(true)))
            });
            EmotionCall {
                name: r.name,
                rule: r.text,
                decidable,
                present,
                missing,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISFA: [u32; 8] = [1, 2, 4, 6, 9, 12, 25, 26];

    #[test]
    fn with_disfas_aus_only_happiness_is_decidable() {
        let calls = emotions(&DISFA, &[false; 8]);
        let decidable: Vec<&str> = calls
            .iter()
            .filter(|c| c.decidable)
            .map(|c| c.name)
            .collect();
        assert_eq!(decidable, ["happiness"]);
        let sad = calls.iter().find(|c| c.name == "sadness").unwrap();
        assert_eq!((sad.present, sad.missing.clone()), (None, vec![15]));
        let surprise = calls.iter().find(|c| c.name == "surprise").unwrap();
        assert_eq!(surprise.missing, vec![5, 27]);
    }

    #[test]
    fn happiness_needs_both_6_and_12() {
        let mut p = [false; 8];
        p[5] = true; // AU12 alone
        assert_eq!(emotions(&DISFA, &p)[0].present, Some(false));
        p[3] = true; // and AU6
        assert_eq!(emotions(&DISFA, &p)[0].present, Some(true));
    }

    #[test]
    fn an_alternative_group_is_met_by_either_au() {
        let aus = [1, 2, 5, 26, 27];
        let surprise = |p: [bool; 5]| emotions(&aus, &p)[2].present;
        assert_eq!(surprise([true, true, true, false, true]), Some(true));
        assert_eq!(surprise([true, true, true, true, false]), Some(true));
        assert_eq!(surprise([true, true, true, false, false]), Some(false));
    }
}
