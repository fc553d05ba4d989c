//! "Did you mean" suggestions: the closest valid name by edit distance.

/// Levenshtein distance between two strings (by chars).
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word` when it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Pulls the backquoted names out of a serde message such as
/// "unknown field `x`, expected one of `a`, `b`": (the offending word, the valid ones).
pub fn from_serde_message(msg: &str) -> Option<(String, Vec<String>)> {
    let mut parts = msg.split('`').skip(1).step_by(2).map(str::to_string);
    let word = parts.next()?;
    let valid: Vec<String> = parts.collect();
    if valid.is_empty() {
        None
    } else {
        Some((word, valid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_word() {
        assert_eq!(distance("epochz", "epochs"), 1);
        assert_eq!(
            closest("densenet12", ["densenet121", "densenet201", "vgg19"]),
            Some("densenet121")
        );
        assert_eq!(closest("resnet50", ["vgg19", "mobilenet_v2"]), None);
        let (w, v) =
            from_serde_message("unknown field `epochz`, expected one of `epochs`, `seed`").unwrap();
        assert_eq!(w, "epochz");
        assert_eq!(v, vec!["epochs", "seed"]);
    }
}
