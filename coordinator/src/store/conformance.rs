//! One behaviour suite every `Store` implementation must pass.

use super::{load_all, Batch, Store, Tree};

/// Runs the whole suite on an empty store.
pub fn run(s: &dyn Store) {
    empty(s);
    put_get_overwrite_delete(s);
    trees_are_separate_and_ordered(s);
    batch_applies_in_order(s);
    odd_keys_round_trip(s);
}

fn empty(s: &dyn Store) {
    for t in Tree::ALL {
        assert!(s.scan(t).unwrap().is_empty(), "{t:?} starts empty");
    }
    assert_eq!(s.get(Tree::Jobs, "nope").unwrap(), None);
    s.commit(&Batch::new()).unwrap();
}

fn put_get_overwrite_delete(s: &dyn Store) {
    let mut b = Batch::new();
    b.put(Tree::Sweeps, "a", &1u32).unwrap();
    s.commit(&b).unwrap();
    assert_eq!(
        s.get(Tree::Sweeps, "a").unwrap(),
        Some(super::codec::encode(Tree::Sweeps, "a", &1u32).unwrap())
    );
    let mut b = Batch::new();
    b.put(Tree::Sweeps, "a", &2u32).unwrap();
    s.commit(&b).unwrap();
    assert_eq!(
        s.get(Tree::Sweeps, "a").unwrap(),
        Some(super::codec::encode(Tree::Sweeps, "a", &2u32).unwrap())
    );
    let mut b = Batch::new();
    b.delete(Tree::Sweeps, "a");
    b.delete(Tree::Sweeps, "never-there");
    s.commit(&b).unwrap();
    assert_eq!(s.get(Tree::Sweeps, "a").unwrap(), None);
}

fn trees_are_separate_and_ordered(s: &dyn Store) {
    let mut b = Batch::new();
    for t in Tree::ALL {
        for k in ["k2", "k1", "k3"] {
            b.put(t, k, &format!("{t:?}-{k}")).unwrap();
        }
    }
    s.commit(&b).unwrap();
    for t in Tree::ALL {
        let keys: Vec<String> = s.scan(t).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["k1", "k2", "k3"], "{t:?}");
        let vals: Vec<String> = load_all(s, t).unwrap();
        assert_eq!(vals[0], format!("{t:?}-k1"));
    }
    let mut b = Batch::new();
    for t in Tree::ALL {
        for k in ["k1", "k2", "k3"] {
            b.delete(t, k);
        }
    }
    s.commit(&b).unwrap();
    for t in Tree::ALL {
        assert!(s.scan(t).unwrap().is_empty());
    }
}

fn batch_applies_in_order(s: &dyn Store) {
    let mut b = Batch::new();
    b.put(Tree::Jobs, "x", &"first").unwrap();
    b.delete(Tree::Jobs, "x");
    b.put(Tree::Jobs, "y", &"first").unwrap();
    b.put(Tree::Jobs, "y", &"second").unwrap();
    s.commit(&b).unwrap();
    assert_eq!(s.get(Tree::Jobs, "x").unwrap(), None);
    assert_eq!(
        s.get(Tree::Jobs, "y").unwrap(),
        Some(super::codec::encode(Tree::Jobs, "y", &"second").unwrap())
    );
    let mut b = Batch::new();
    b.delete(Tree::Jobs, "y");
    s.commit(&b).unwrap();
}

fn odd_keys_round_trip(s: &dyn Store) {
    let keys = [
        "",
        "a/b",
        "ünï",
        "sweep.mobilenet_v2.f1.s2.g0#3",
        "\u{10ffff}",
    ];
    let mut b = Batch::new();
    for k in keys {
        b.put(Tree::Attempts, k, &k).unwrap();
    }
    s.commit(&b).unwrap();
    for k in keys {
        let v: String = super::decode(
            Tree::Attempts,
            k,
            &s.get(Tree::Attempts, k).unwrap().unwrap(),
        )
        .unwrap();
        assert_eq!(v, k);
    }
    assert_eq!(s.scan(Tree::Attempts).unwrap().len(), keys.len());
    assert!(s.scan(Tree::Checkpoints).unwrap().is_empty());
}
