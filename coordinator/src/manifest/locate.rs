//! Finds the line of a dotted field path (`stages[1].epochs`) in block-style YAML text.
//!
//! Heuristic but good for the hand-written manifests this reads: walk the path one key at a
//! time, each key searched below its parent at a deeper indentation; flow-style values
//! (`{kind: x}`) resolve to the line holding them.

/// One step of a field path.
#[derive(Debug, PartialEq)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    // Grid axes are dotted job-field paths used as one key.
    if let Some(axis) = path.strip_prefix("grid.") {
        return vec![Seg::Key("grid"), Seg::Key(axis)];
    }
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Seg::Index(i));
            }
        }
    }
    out
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

/// The 1-based line where `path` is written, or the closest ancestor found.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // (line index, the indentation of children must exceed this)
    let mut at: Option<usize> = None;
    let mut parent_indent: isize = -1;
    for seg in segments(path) {
        let start = at.map_or(0, |i| i + 1);
        let found = match seg {
            Seg::Key(k) => find_key(&lines, start, parent_indent, k, at),
            Seg::Index(n) => find_item(&lines, start, parent_indent, n),
        };
        match found {
            Some((i, ind)) => {
                at = Some(i);
                parent_indent = ind as isize;
            }
            None => break,
        }
    }
    at.map(|i| i + 1)
}

fn find_key(
    lines: &[&str],
    start: usize,
    parent_indent: isize,
    key: &str,
    parent_line: Option<usize>,
) -> Option<(usize, usize)> {
    // A flow mapping on the parent's own line: `source: {kind: disfa}`.
    if let Some(p) = parent_line {
        let rest = lines[p].split_once(':').map_or("", |(_, r)| r);
        if rest.contains(&format!("{key}:")) {
            return Some((p, indent(lines[p])));
        }
        // A list item whose first key is on the dash line: `- freeze: none`.
        let t = lines[p].trim_start();
        if let Some(item) = t.strip_prefix("- ") {
            if item.trim_start().starts_with(&format!("{key}:")) {
                return Some((p, indent(lines[p]) + 2));
            }
        }
    }
    for (i, line) in lines.iter().enumerate().skip(start) {
        if !is_content(line) {
            continue;
        }
        let ind = indent(line) as isize;
        let t = line.trim_start();
        // A list item `- key: v` opens its mapping at the dash's indentation + 2.
        let (t, ind) = match t.strip_prefix("- ") {
            Some(rest) => (
                rest.trim_start(),
                ind + (t.len() - rest.trim_start().len()) as isize,
            ),
            None => (t, ind),
        };
        if ind <= parent_indent && i > start.saturating_sub(1) && parent_line.is_some() {
            return None;
        }
        let name = t
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        if name == key && t.contains(':') {
            return Some((i, ind as usize));
        }
    }
    None
}

fn find_item(
    lines: &[&str],
    start: usize,
    parent_indent: isize,
    n: usize,
) -> Option<(usize, usize)> {
    // Flow sequence on the parent line: `backbones: [a, b]`.
    if start > 0 && lines[start - 1].contains('[') {
        return Some((start - 1, indent(lines[start - 1])));
    }
    let mut seen = 0;
    let mut item_indent = None;
    for (i, line) in lines.iter().enumerate().skip(start) {
        if !is_content(line) {
            continue;
        }
        let ind = indent(line);
        if (ind as isize) < parent_indent
            || (ind as isize == parent_indent && !line.trim_start().starts_with('-'))
        {
            return None;
        }
        if line.trim_start().starts_with('-') {
            let want = *item_indent.get_or_insert(ind);
            if ind == want {
                if seen == n {
                    return Some((i, ind));
                }
                seen += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\n# comment\ndataset:\n  source: {kind: synthetic, subjects: 4}\n  input_size: 64\nstages:\n  - freeze: backbone\n    epochs: 2\n  - freeze: none\n    epochs: 3\nbackbones: [a, b]\n";

    #[test]
    fn finds_nested_keys_items_and_flow_values() {
        assert_eq!(line_of(DOC, "name"), Some(1));
        assert_eq!(line_of(DOC, "dataset.input_size"), Some(5));
        assert_eq!(line_of(DOC, "dataset.source.subjects"), Some(4));
        assert_eq!(line_of(DOC, "stages[0].epochs"), Some(8));
        assert_eq!(line_of(DOC, "stages[1].epochs"), Some(10));
        assert_eq!(line_of(DOC, "stages[1]"), Some(9));
        assert_eq!(line_of(DOC, "backbones[1]"), Some(11));
        assert_eq!(line_of(DOC, "dataset.missing"), Some(3));
        assert_eq!(line_of(DOC, "stages[1].freeze"), Some(9));
        assert_eq!(
            line_of("a: 1\ngrid:\n  train.lr: [1]\n", "grid.train.lr"),
            Some(3)
        );
    }
}
