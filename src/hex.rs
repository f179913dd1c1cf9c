//! Lowercase hex, the one encoder for every digest and id herald writes as
//! text (HMAC signatures, Flux's SHA-1 keys, trace and session ids).

/// `bytes` as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn lowercase_two_digits_a_byte() {
        assert_eq!(super::encode(&[0x00, 0xab, 0xff, 0x0f]), "00abff0f");
        assert_eq!(super::encode(&[]), "");
    }
}
