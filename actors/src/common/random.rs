//! Unguessable ids (Engine.IO session ids, session resume tokens), from the operating
//! system's CSPRNG.

/// 128 random bits from the operating system (`getrandom`).
pub fn random_bits() -> u128 {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    u128::from_ne_bytes(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_do_not_repeat() {
        let ids: std::collections::HashSet<u128> =
            (0..1000).map(|_| super::random_bits()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
