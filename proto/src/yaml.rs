//! Bounds on YAML text before it is deserialized.
//!
//! The YAML parser replays an alias (`*a`) as a copy of its anchored node, so a few kilobytes of
//! nested aliases (the "billion laughs" bomb) expand to billions of nodes: a typed field that
//! takes any value (a manifest's `grid:` axes) would materialise them and exhaust memory, and
//! even ignored content is walked node by node. The parser's own guard counts alias jumps, not
//! the nodes they replay, so it does not bound the expansion. [`check_bounded`] walks every
//! document once, counting nodes as the deserializer would see them, and stops at
//! [`MAX_YAML_NODES`]. Text that does not parse is left to the real parser, which names the
//! field.

use serde::de::{self, DeserializeSeed, Visitor};
use std::cell::Cell;
use std::fmt;

/// The most nodes (scalars, sequences, mappings, keys included) a document may expand to,
/// aliases replayed. A hand-written manifest or job file has a few hundred; the largest
/// manifest accepted (256 KiB) cannot hold more than about 130,000 without aliases.
pub const MAX_YAML_NODES: usize = 1 << 20;

/// YAML refused before deserializing because aliases expand it too far.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct YamlBoundError {
    /// 1-based line where the limit was reached, where known.
    pub line: Option<usize>,
    /// The limit, nodes.
    pub limit: usize,
}

impl fmt::Display for YamlBoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        write!(
            f,
            "YAML aliases expand the document past {} nodes; refused (an alias bomb?)",
            self.limit
        )
    }
}

/// Checks that every document in `text` expands (aliases replayed) to at most
/// [`MAX_YAML_NODES`] nodes. Syntax errors are not reported here: the caller's parser reports
/// them with the field path.
pub fn check_bounded(text: &str) -> Result<(), YamlBoundError> {
    check_bounded_with(text, MAX_YAML_NODES)
}

/// [`check_bounded`] with another limit.
pub fn check_bounded_with(text: &str, limit: usize) -> Result<(), YamlBoundError> {
    let remaining = Cell::new(limit);
    let exceeded = Cell::new(false);
    for doc in serde_yaml::Deserializer::from_str(text) {
        let counter = Counter {
            remaining: &remaining,
            exceeded: &exceeded,
        };
        if let Err(e) = counter.deserialize(doc) {
            // The parser's own guards (alias jumps, nesting depth) count as too large too.
            let msg = e.to_string();
            if exceeded.get()
                || msg.starts_with("repetition limit exceeded")
                || msg.starts_with("recursion limit exceeded")
            {
                return Err(YamlBoundError {
                    // The parser positions a seed's error at the enclosing document, so
                    // point at the aliases instead.
                    line: first_alias_line(text).or_else(|| e.location().map(|l| l.line())),
                    limit,
                });
            }
            // A syntax or structure error: the real parser reports it.
            return Ok(());
        }
    }
    Ok(())
}

/// The 1-based line of the first alias (`*name` where a node may start), for errors the
/// parser gives no position.
fn first_alias_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let b = line.as_bytes();
            (0..b.len()).any(|i| {
                b[i] == b'*'
                    && (i == 0 || matches!(b[i - 1], b' ' | b'[' | b',' | b'\t' | b'{'))
                    && b.get(i + 1).is_some_and(|c| !c.is_ascii_whitespace())
            })
        })
        .map(|i| i + 1)
}

#[doc(hidden)]
/// A test input: three levels of anchors (20,000 scalars, 300 aliases, 300 aliases), about
/// 42 KB that expand to 1.8 billion nodes while staying under the parser's alias-jump guard.
/// Each line is a mapping entry `key: &anchor [...]` indented by `indent` spaces.
pub fn wide_bomb_lines(indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}w0: &w0 [{}]\n{pad}w1: &w1 [{}]\n{pad}w2: &w2 [{}]\n",
        vec!["1"; 20_000].join(","),
        vec!["*w0"; 300].join(","),
        vec!["*w1"; 300].join(",")
    )
}

/// Counts each node it is asked to deserialize; fails once the budget is spent.
#[derive(Clone, Copy)]
struct Counter<'a> {
    remaining: &'a Cell<usize>,
    exceeded: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Counter<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.remaining.get().checked_sub(1) {
            Some(r) => self.remaining.set(r),
            None => {
                self.exceeded.set(true);
                return Err(de::Error::custom("node limit exceeded"));
            }
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged node (`!kfold {k: 5}`): the tag, then its content.
        let ((), v) = data.variant_seed(TagName)?;
        de::VariantAccess::newtype_variant_seed(v, self)
    }
}

/// Reads a tag name without counting it.
struct TagName;

impl<'de> DeserializeSeed<'de> for TagName {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_ignored_any(de::IgnoredAny).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` anchors of `width` aliases each: width^levels leaves from a few hundred bytes.
    fn bomb(levels: usize, width: usize) -> String {
        let mut s = format!("a0: &a0 [{}]\n", vec!["lol"; width].join(", "));
        for l in 1..levels {
            let refs = vec![format!("*a{}", l - 1); width].join(", ");
            s.push_str(&format!("a{l}: &a{l} [{refs}]\n"));
        }
        s
    }

    fn wide_bomb() -> String {
        wide_bomb_lines(0)
    }

    #[test]
    fn plain_documents_pass() {
        check_bounded("name: x\nstages:\n  - {epochs: 2}\n").unwrap();
        check_bounded("base: &b {lr: 0.1}\nstages: [*b, *b]\n").unwrap();
        check_bounded("folds: !kfold {k: 5}\n").unwrap();
        check_bounded("a: 1\n---\nb: 2\n").unwrap();
        // Not YAML: left to the real parser.
        check_bounded("a: [1, 2\n").unwrap();
        check_bounded("").unwrap();
    }

    #[test]
    fn alias_bomb_is_refused_with_a_line() {
        let text = bomb(9, 9);
        assert!(text.len() < 1000, "{}", text.len());
        let e = check_bounded(&text).unwrap_err();
        assert_eq!(e.limit, MAX_YAML_NODES);
        assert!(e.line.is_some(), "{e:?}");
        assert!(e.to_string().contains("alias"), "{e}");
    }

    #[test]
    fn wide_bomb_within_the_parsers_jump_limit_is_refused() {
        // 1.8 billion nodes from 42 KB: a wide anchor replayed by few jumps passes the
        // parser's own guard (jumps <= 100 x events), which only catches the narrow bomb.
        let text = wide_bomb();
        assert!(text.len() < 50_000, "{}", text.len());
        let e = check_bounded(&text).unwrap_err();
        assert_eq!(e.line, Some(2));
        // The same shape, small: allowed.
        // map, a, [1, 2] (3), b, [*a, *a] (1 + 2 x 3) = 13 nodes.
        check_bounded_with("a: &a [1, 2]\nb: [*a, *a]\n", 13).unwrap();
        let e = check_bounded_with("a: &a [1, 2]\nb: [*a, *a]\n", 12).unwrap_err();
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn counts_every_node_of_every_document() {
        // {a: [1, 2]}: map, key, seq, 2 items = 5.
        check_bounded_with("a: [1, 2]\n", 5).unwrap();
        assert!(check_bounded_with("a: [1, 2]\n", 4).is_err());
        assert!(check_bounded_with("a: [1, 2]\n---\na: [1, 2]\n", 9).is_err());
    }
}
