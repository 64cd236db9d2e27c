//! Perfect-negotiation roles.
//!
//! In perfect negotiation each pair of peers needs exactly one polite peer,
//! the one that rolls back its own offer when offers collide. Both ends must
//! pick the same one without talking, so the rule is fixed by the protocol:
//! the session id that sorts lower, byte by byte, is polite.

/// Whether `me` is the polite peer towards `other`.
pub fn is_polite(me: &str, other: &str) -> bool {
    me.as_bytes() < other.as_bytes()
}

/// The polite one of two session ids.
pub fn polite_of<'a>(a: &'a str, b: &'a str) -> &'a str {
    if is_polite(a, b) { a } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_peer_of_a_pair_is_polite() {
        let pairs = [("s_a", "s_b"), ("s_B", "s_a"), ("s_10", "s_9"), ("s_x", "s_xy")];
        for (a, b) in pairs {
            assert_ne!(is_polite(a, b), is_polite(b, a), "{a} vs {b}");
            assert_eq!(polite_of(a, b), polite_of(b, a));
        }
    }

    #[test]
    fn byte_order_decides_not_numeric_or_case_insensitive_order() {
        assert!(is_polite("s_10", "s_9"));
        assert!(is_polite("s_B", "s_a"));
        assert_eq!(polite_of("s_xy", "s_x"), "s_x");
    }
}
