use super::*;
use proptest::prelude::*;

/// A raw table of `levels` levels: each table holds one nested table under
/// "n", the innermost an integer (a table alone is level 1).
fn nested(levels: usize) -> Vec<u8> {
    let mut inner = vec![1, b'v', b'b', 7];
    for _ in 1..levels {
        let mut t = vec![1, b'n', b'F'];
        t.extend_from_slice(&u32::try_from(inner.len()).unwrap().to_be_bytes());
        t.extend_from_slice(&inner);
        inner = t;
    }
    inner
}

/// Like `nested`, but every other level is an array holding the next.
fn nested_mixed(levels: usize) -> Vec<u8> {
    // Innermost: an array's contents or a table's, alternating outwards.
    let mut inner = vec![b'b', 7];
    let mut inner_is_table = false;
    for _ in 1..levels {
        let kind = if inner_is_table { b'F' } else { b'A' };
        let mut v = vec![kind];
        v.extend_from_slice(&u32::try_from(inner.len()).unwrap().to_be_bytes());
        v.extend_from_slice(&inner);
        inner_is_table = !inner_is_table;
        inner = if inner_is_table { [vec![1, b'k'], v].concat() } else { v };
    }
    inner
}

#[test]
fn depth_exactly_at_the_limit_is_accepted_one_deeper_refused() {
    for max in [1, 2, 5, 8, 9, 10, TABLE_DEPTH_MAX, TABLE_DEPTH_CEILING] {
        assert_eq!(validate(&nested(max), max), Ok(()), "{max} levels, limit {max}");
        assert_eq!(validate(&nested(max + 1), max), Err(TableError::TooDeep { max }), "{} levels", max + 1);
    }
    // Arrays count as levels too.
    let t = nested_mixed(TABLE_DEPTH_MAX);
    assert_eq!(validate(&t, TABLE_DEPTH_MAX), Ok(()));
    let deeper = nested_mixed(TABLE_DEPTH_MAX + 1);
    let r = if deeper[0] == 1 { validate(&deeper, TABLE_DEPTH_MAX) } else { validate_array(&deeper, TABLE_DEPTH_MAX) };
    assert_eq!(r, Err(TableError::TooDeep { max: TABLE_DEPTH_MAX }));
    assert_eq!(validate(&[], 0), Err(TableError::TooDeep { max: 0 }));
}

#[test]
fn a_huge_nesting_is_refused_without_recursion() {
    // 18,000 levels: the attack that overflowed a shard's stack.
    let t = nested(18_000);
    assert_eq!(validate(&t, TABLE_DEPTH_MAX), Err(TableError::TooDeep { max: TABLE_DEPTH_MAX }));
    // Even with no effective limit the walk is iterative.
    assert_eq!(validate(&t, usize::MAX), Ok(()));
    // The top level alone is fine: the nesting is one length-checked value.
    assert_eq!(validate_top(&t), Ok(()));
    // The owned parser refuses it before building anything, and builds
    // the deepest table a configuration may allow.
    use crate::protocol::field_table::Table;
    assert_eq!(Table::parse_limited(&t, usize::MAX), Err(TableError::TooDeep { max: TABLE_DEPTH_CEILING }));
    assert!(Table::parse_limited(&nested(TABLE_DEPTH_CEILING), TABLE_DEPTH_CEILING).is_ok());
}

#[test]
fn long_flat_tables_are_fine() {
    let mut t = Vec::new();
    for i in 0..20_000u32 {
        let k = format!("k{i}");
        t.push(u8::try_from(k.len()).unwrap());
        t.extend_from_slice(k.as_bytes());
        t.push(b'S');
        t.extend_from_slice(&3u32.to_be_bytes());
        t.extend_from_slice(b"abc");
    }
    assert_eq!(validate(&t, 1), Ok(()));
    assert_eq!(entries(&t).count(), 20_000);
    assert_eq!(get(&t, "k19999"), Some((b'S', &b"abc"[..])));
}

#[test]
fn bad_bytes_name_what_is_wrong() {
    // Claims 10 bytes of long string, has 2.
    assert_eq!(validate(&[1, b'a', b'S', 0, 0, 0, 10, 1, 2], 8), Err(TableError::Truncated));
    assert_eq!(validate(&[1, b'a', b'Z'], 8), Err(TableError::UnknownType(b'Z')));
    assert_eq!(validate(&[5, b'a'], 8), Err(TableError::Truncated));
    assert_eq!(validate(&[1, b'a'], 8), Err(TableError::Truncated));
    // A length near 2^32 must not wrap anything.
    assert_eq!(validate(&[1, b'a', b'F', 0xff, 0xff, 0xff, 0xff], 8), Err(TableError::Truncated));
    assert_eq!(validate_array(&[b'A', 0xff, 0xff, 0xff, 0xfe, 0], 8), Err(TableError::Truncated));
    assert!(TableError::TooDeep { max: 32 }.to_string().contains("table_depth_max = 32 levels"));
}

#[test]
fn walking_reads_one_level() {
    let t = nested(3);
    let (k, kind, v) = entries(&t).next().unwrap();
    assert_eq!((k, kind), (&b"n"[..], b'F'));
    assert_eq!(get(v, "n").map(|(t, _)| t), Some(b'F'));
    let arr = [b'b', 1, b'V', b'S', 0, 0, 0, 1, b'x'];
    assert_eq!(items(&arr).collect::<Vec<_>>(), vec![(b'b', &[1][..]), (b'V', &[][..]), (b'S', &b"x"[..])]);
    let mut b = Vec::new();
    put_shortstr(&mut b, &"é".repeat(200));
    assert_eq!(b[0], 254, "cut at a char boundary under 256");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256), depth in 0usize..40) {
        let full = validate(&buf, depth);
        let _ = validate_array(&buf, depth);
        let top = validate_top(&buf);
        // A fully valid table is valid at the top level, and every walk ends.
        if full.is_ok() {
            prop_assert!(top.is_ok());
        }
        // The owned parser accepts exactly what the walker accepts (and
        // refuses non-UTF-8 names on top).
        let owned = crate::protocol::field_table::Table::parse(&buf);
        match validate(&buf, TABLE_DEPTH_MAX) {
            Err(e) => prop_assert_eq!(owned, Err(e)),
            Ok(()) => prop_assert!(owned.is_ok() || owned == Err(TableError::KeyNotUtf8)),
        }
        let n = entries(&buf).count();
        prop_assert!(n <= buf.len());
        prop_assert!(items(&buf).count() <= buf.len());
    }

    #[test]
    fn mutated_nesting_never_panics(levels in 1usize..60, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut t = nested_mixed(levels);
        let i = at.index(t.len());
        t[i] = byte;
        // Every limit around the inline levels and the walk's spill.
        for depth in [1, 7, 8, 9, 10, TABLE_DEPTH_MAX] {
            let _ = validate(&t, depth);
        }
        let _ = validate_array(&t, TABLE_DEPTH_MAX);
        for cut in [0, t.len() / 2, t.len().saturating_sub(1)] {
            let _ = validate(&t[..cut], TABLE_DEPTH_MAX);
        }
    }
}
