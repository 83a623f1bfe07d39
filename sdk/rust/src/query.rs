//! Splitting and percent-decoding `application/x-www-form-urlencoded` query strings.

/// The `name=value` pairs of `query` in order; a pair without `=` has an empty value.
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = (String, String)> {
    query.split('&').filter(|pair| !pair.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(name), decode(value))
    })
}

/// Decodes `+` as space and `%XX` escapes; malformed escapes stay as written, and byte sequences
/// that are not UTF-8 become U+FFFD.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if let Some(byte) = bytes.get(i + 1..i + 3).and_then(hex_byte) => {
                out.push(byte);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte two hex digits spell, if they are two hex digits.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let digit = |d: u8| char::from(d).to_digit(16);
    match digits {
        [high, low] => Some((digit(*high)? * 16 + digit(*low)?) as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_plus_and_keeps_malformed_escapes() {
        let decoded: Vec<_> = pairs("a=%C3%A9t%C3%A9&b=x+y&flag&&c=100%&d=%zz&e=%+1").collect();
        let expected = [("a", "été"), ("b", "x y"), ("flag", ""), ("c", "100%"), ("d", "%zz"), ("e", "% 1")];
        let expected: Vec<_> = expected.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(decoded, expected);
    }
}
