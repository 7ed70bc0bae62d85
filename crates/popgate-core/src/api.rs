//! Paths of popgate's HTTP API that clients build: shared by the server's command-line
//! client and the web app, so a grant key is encoded the same way everywhere.

/// `DELETE` one grant: the key (`192.0.2.0/24`) as one path segment.
pub fn grant_path(key: &str) -> String {
    format!("/api/grants/{}", path_segment(key))
}

/// The raw text of one message.
pub fn message_path(id: &str) -> String {
    format!("/api/messages/{}", path_segment(id))
}

/// Percent-encode one URL path segment (RFC 3986 §3.3): only unreserved characters stay,
/// so a grant key's `/` and an IPv6 address's `:` cannot split or confuse the path.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    #[test]
    fn keys_stay_one_segment() {
        assert_eq!(grant_path("192.0.2.0/24"), "/api/grants/192.0.2.0%2F24");
        assert_eq!(path_segment("2001:db8::/64"), "2001%3Adb8%3A%3A%2F64");
        assert_eq!(
            message_path("19CCB4B2D38.7.1"),
            "/api/messages/19CCB4B2D38.7.1"
        );
    }
}
