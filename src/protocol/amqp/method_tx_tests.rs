//! The tx class's methods (tx.select, commit, rollback) in the AMQP
//! codec: no fields, so exactly their four id bytes.

use super::method::{id, parse, Method};

/// tx.select, commit and rollback have no fields: exactly the four
/// id bytes, as amq-protocol writes them; their -ok replies and other
/// class 90 ids are not client methods.
#[test]
fn tx_methods_have_no_fields() {
    assert!(matches!(parse(&[0, 90, 0, 10]), Ok((id::TX_SELECT, Method::TxSelect))));
    assert!(matches!(parse(&[0, 90, 0, 20]), Ok((id::TX_COMMIT, Method::TxCommit))));
    assert!(matches!(parse(&[0, 90, 0, 30]), Ok((id::TX_ROLLBACK, Method::TxRollback))));
    assert!(parse(&[0, 90, 0, 20, 0]).is_err(), "commit with a byte too many");
    assert!(matches!(parse(&[0, 90, 0, 21]), Ok((_, Method::Other(id::TX_COMMIT_OK)))));
}

proptest::proptest! {
    /// Any bytes after a tx method's id are refused (never a panic),
    /// and any method of class 90 parses to a tx method only when it
    /// is one of the three with nothing after it.
    #[test]
    fn tx_methods_parse_only_whole(method in proptest::prelude::any::<u16>(), rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16)) {
        let mut p = vec![0, 90];
        p.extend_from_slice(&method.to_be_bytes());
        p.extend_from_slice(&rest);
        let tx = matches!(method, 10 | 20 | 30);
        match parse(&p) {
            Ok((_, Method::TxSelect | Method::TxCommit | Method::TxRollback)) => proptest::prop_assert!(tx && rest.is_empty()),
            Ok((_, Method::Other(_))) => proptest::prop_assert!(!tx),
            Ok((_, m)) => proptest::prop_assert!(false, "class 90 parsed as {m:?}"),
            Err(_) => proptest::prop_assert!(tx && !rest.is_empty()),
        }
    }
}
