//! Subject-exclusive folds: DISFA's standard 3-fold split and seeded k-fold, plus held-out
//! validation subjects taken from the training side.

use crate::error::{DataError, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// DISFA's standard subject-exclusive parts (JAA-Net, ARL, ME-GraphAU); fold `f` tests part `4 - f`.
pub const DISFA_PARTS: [[&str; 9]; 3] = [
    [
        "SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016",
    ],
    [
        "SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024",
    ],
    [
        "SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004",
    ],
];

/// How subjects are split into folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FoldScheme {
    /// The standard DISFA 3-fold split (fold1 tests part3, fold2 part2, fold3 part1).
    #[serde(rename = "disfa-3fold")]
    Disfa3Fold,
    /// `k` balanced folds of a seeded shuffle of the subjects.
    KFold {
        /// Number of folds (≥ 2).
        k: u32,
        /// Shuffle seed.
        seed: u64,
    },
}

/// The subjects of one fold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldSplit {
    /// Training subjects.
    pub train: Vec<String>,
    /// Test subjects.
    pub test: Vec<String>,
}

impl FoldScheme {
    /// Number of folds.
    pub fn folds(&self) -> u32 {
        match self {
            FoldScheme::Disfa3Fold => 3,
            FoldScheme::KFold { k, .. } => *k,
        }
    }

    /// Splits `subjects` for 1-based `fold`; both sides keep the input order.
    pub fn split(&self, subjects: &[String], fold: u32) -> Result<FoldSplit> {
        let k = self.folds();
        if let FoldScheme::KFold { k, .. } = self {
            if *k < 2 {
                return Err(DataError::Config(format!("k-fold needs k >= 2 (got {k})")));
            }
        }
        if fold == 0 || fold > k {
            return Err(DataError::FoldOutOfRange { fold, k });
        }
        let in_test: Vec<bool> = match self {
            FoldScheme::Disfa3Fold => {
                let part = &DISFA_PARTS[(3 - fold) as usize];
                subjects
                    .iter()
                    .map(|s| {
                        if DISFA_PARTS.iter().flatten().any(|p| p == s) {
                            Ok(part.contains(&s.as_str()))
                        } else {
                            Err(DataError::UnknownSubject(s.clone()))
                        }
                    })
                    .collect::<Result<_>>()?
            }
            FoldScheme::KFold { k, seed } => {
                // Shuffle the sorted unique names, so the split does not depend on input order.
                let mut order: Vec<&String> = subjects.iter().collect();
                order.sort();
                order.dedup();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(*seed));
                let test: Vec<&String> = order
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (*i as u32) % k == fold - 1)
                    .map(|(_, s)| *s)
                    .collect();
                subjects.iter().map(|s| test.contains(&s)).collect()
            }
        };
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (s, t) in subjects.iter().zip(in_test) {
            if t { &mut test } else { &mut train }.push(s.clone());
        }
        if test.is_empty() {
            return Err(DataError::EmptyFold {
                fold,
                n_subjects: subjects.len(),
            });
        }
        Ok(FoldSplit { train, test })
    }
}

/// Holds out `n_val` of the training subjects (seeded choice) for validation; returns
/// `(train, val)`, both in input order. At least one training subject is always kept.
pub fn validation_split(train: &[String], n_val: usize, seed: u64) -> (Vec<String>, Vec<String>) {
    let n_val = n_val.min(train.len().saturating_sub(1));
    let mut order: Vec<&String> = train.iter().collect();
    order.sort();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let val_set = &order[..n_val];
    let (mut t, mut v) = (Vec::new(), Vec::new());
    for s in train {
        if val_set.contains(&s) { &mut v } else { &mut t }.push(s.clone());
    }
    (t, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::subject_names;
    use proptest::prelude::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn disfa_standard_folds() {
        let all = subject_names(27);
        let f1 = FoldScheme::Disfa3Fold.split(&all, 1).unwrap();
        let mut t = f1.test.clone();
        t.sort();
        let mut p3 = names(&DISFA_PARTS[2]);
        p3.sort();
        assert_eq!(t, p3);
        assert_eq!(f1.train.len(), 18);
        assert!(FoldScheme::Disfa3Fold
            .split(&all, 3)
            .unwrap()
            .test
            .contains(&"SN002".to_string()));
        assert!(FoldScheme::Disfa3Fold
            .split(&all, 2)
            .unwrap()
            .test
            .contains(&"SN013".to_string()));
    }

    #[test]
    fn disfa_folds_with_some_subjects_and_errors() {
        let some = names(&["SN001", "SN003", "SN006"]);
        for (fold, test) in [(1, "SN003"), (2, "SN006"), (3, "SN001")] {
            let s = FoldScheme::Disfa3Fold.split(&some, fold).unwrap();
            assert_eq!(s.test, [test]);
            assert_eq!(s.train.len(), 2);
        }
        let few = names(&["SN001", "SN003"]);
        assert!(matches!(
            FoldScheme::Disfa3Fold.split(&few, 2),
            Err(DataError::EmptyFold { fold: 2, .. })
        ));
        let odd = names(&["SN001", "SN014"]);
        assert!(matches!(
            FoldScheme::Disfa3Fold.split(&odd, 1),
            Err(DataError::UnknownSubject(s)) if s == "SN014"
        ));
        for fold in [0, 4] {
            assert!(matches!(
                FoldScheme::Disfa3Fold.split(&some, fold),
                Err(DataError::FoldOutOfRange { k: 3, .. })
            ));
        }
    }

    #[test]
    fn kfold_is_balanced_seeded_and_order_free() {
        let all = subject_names(10);
        let scheme = FoldScheme::KFold { k: 3, seed: 4 };
        let sizes: Vec<usize> = (1..=3)
            .map(|f| scheme.split(&all, f).unwrap().test.len())
            .collect();
        assert_eq!(sizes.iter().sum::<usize>(), 10);
        assert!(sizes.iter().all(|&n| n == 3 || n == 4), "{sizes:?}");
        let mut rev = all.clone();
        rev.reverse();
        let mut a = scheme.split(&all, 2).unwrap().test;
        let mut b = scheme.split(&rev, 2).unwrap().test;
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let other: Vec<Vec<String>> = (1..=3)
            .map(|f| {
                FoldScheme::KFold { k: 3, seed: 5 }
                    .split(&all, f)
                    .unwrap()
                    .test
            })
            .collect();
        let this: Vec<Vec<String>> = (1..=3)
            .map(|f| scheme.split(&all, f).unwrap().test)
            .collect();
        assert_ne!(this, other, "seed changes the split");
        assert!(matches!(
            FoldScheme::KFold { k: 5, seed: 0 }.split(&all[..3], 5),
            Err(DataError::EmptyFold { .. })
        ));
        assert!(FoldScheme::KFold { k: 1, seed: 0 }.split(&all, 1).is_err());
    }

    #[test]
    fn validation_takes_training_subjects() {
        let train = subject_names(6);
        let (t, v) = validation_split(&train, 2, 9);
        assert_eq!((t.len(), v.len()), (4, 2));
        assert!(v.iter().all(|s| train.contains(s) && !t.contains(s)));
        assert_eq!(validation_split(&train, 2, 9), (t, v));
        let (t, v) = validation_split(&train, 99, 9);
        assert_eq!((t.len(), v.len()), (1, 5));
        assert_eq!(validation_split(&[], 2, 0), (vec![], vec![]));
        let (t, v) = validation_split(&train, 0, 0);
        assert_eq!((t, v.len()), (train, 0));
    }

    fn scheme_strategy() -> impl Strategy<Value = FoldScheme> {
        prop_oneof![
            Just(FoldScheme::Disfa3Fold),
            (2u32..8, any::<u64>()).prop_map(|(k, seed)| FoldScheme::KFold { k, seed }),
        ]
    }

    proptest! {
        #[test]
        fn folds_are_subject_exclusive_and_complete(
            scheme in scheme_strategy(),
            picks in proptest::sample::subsequence(crate::synth::DISFA_SUBJECT_IDS.to_vec(), 1..=27),
            fold in 0u32..9,
            n_val in 0usize..5,
            seed in any::<u64>(),
        ) {
            let subjects: Vec<String> = picks.iter().map(|s| s.to_string()).collect();
            match scheme.split(&subjects, fold) {
                Ok(s) => {
                    prop_assert!(s.train.iter().all(|t| !s.test.contains(t)));
                    let mut all: Vec<String> = s.train.iter().chain(&s.test).cloned().collect();
                    all.sort();
                    let mut want = subjects.clone();
                    want.sort();
                    prop_assert_eq!(all, want);
                    prop_assert!(!s.test.is_empty());
                    let (t, v) = validation_split(&s.train, n_val, seed);
                    prop_assert!(v.iter().all(|x| !t.contains(x) && !s.test.contains(x)));
                    prop_assert_eq!(t.len() + v.len(), s.train.len());
                }
                Err(DataError::FoldOutOfRange { .. }) => prop_assert!(fold == 0 || fold > scheme.folds()),
                Err(DataError::EmptyFold { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected error {}", e),
            }
        }
    }
}
