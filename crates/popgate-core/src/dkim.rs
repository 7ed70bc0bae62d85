//! DKIM signing (RFC 6376), everything but the private-key operation: relaxed
//! canonicalisation, the body hash, the choice of signed header fields and the hash
//! the signer signs. Pure bytes in, bytes out; the server holds the key.
//!
//! The calling contract:
//!
//! ```text
//! let unsigned = dkim::prepare(message, &params);     // bh= computed, b= empty
//! let signature = rsa_sign_sha256(unsigned.header_hash);  // the caller's key
//! let field = unsigned.finish(&signature);            // "DKIM-Signature: ...\r\n"
//! // prepend `field` to the message
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// The header fields signed when the configuration names none: RFC 6376 §5.4.1 says
/// From is required, and these are the ones a replay or an edit would change.
pub const DEFAULT_HEADERS: &[&str] = &["from", "to", "subject", "date", "message-id"];

/// The signature algorithm, the `a=` tag (RFC 6376 §3.3, RFC 8463 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl Algorithm {
    fn tag(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

/// What the signature says about who signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// `d=`: the signing domain.
    pub domain: String,
    /// `s=`: the selector; the public key is at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// `h=` candidates, lowercase names; a name the message lacks is left out.
    pub headers: Vec<String>,
    pub algorithm: Algorithm,
    /// `t=`: the signing time in seconds since the epoch, when known.
    pub timestamp: Option<u64>,
}

/// A signature waiting for its `b=` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsigned {
    /// The DKIM-Signature field as it will be sent, up to and including `b=`.
    field: String,
    /// RFC 6376 §3.7: SHA-256 over the signed header fields and this field with an
    /// empty `b=`, relaxed-canonicalised. RSASSA-PKCS1-v1_5 signs this digest
    /// (RFC 6376 §3.3.1); Ed25519 signs these 32 bytes as its message (RFC 8463 §3).
    pub header_hash: [u8; 32],
}

impl Unsigned {
    /// The whole DKIM-Signature field with `b=` filled in, CRLF-terminated, to put
    /// at the top of the message.
    pub fn finish(&self, signature: &[u8]) -> String {
        format!("{}{}\r\n", self.field, STANDARD.encode(signature))
    }
}

/// RFC 6376 §3.4.4 "relaxed" body canonicalisation. Lines end at LF (a CR before it
/// is dropped) because the SMTP client sends every line with CRLF whatever it was
/// stored with, and the signature must match what goes on the wire.
pub fn canon_body_relaxed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    // Empty lines are held back until a non-empty one follows: trailing ones are
    // dropped ("ignore all empty lines at the end of the message body").
    let mut pending_empty = 0usize;
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    if body.is_empty() {
        return out;
    }
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let canon = reduce_wsp(line);
        if canon.is_empty() {
            pending_empty += 1;
            continue;
        }
        for _ in 0..pending_empty {
            out.extend_from_slice(b"\r\n");
        }
        pending_empty = 0;
        out.extend_from_slice(&canon);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// RFC 6376 §3.4.2 "relaxed" header canonicalisation of one field given as its raw
/// text (name, colon, value, folded lines included, with or without the final CRLF):
/// lowercase name, unfolded value, runs of WSP as one SP, no WSP around the colon or
/// at the end; the result ends with CRLF.
pub fn canon_header_relaxed(field: &[u8]) -> Vec<u8> {
    let (name, value) = match field.iter().position(|&b| b == b':') {
        Some(i) => (&field[..i], &field[i + 1..]),
        None => (field, &b""[..]),
    };
    let mut out: Vec<u8> = trim_wsp(name).to_ascii_lowercase();
    out.push(b':');
    // Unfold: CR and LF go; the WSP that followed them is reduced with the rest.
    let unfolded: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let value = reduce_wsp(&unfolded);
    out.extend_from_slice(value.strip_prefix(b" ").unwrap_or(&value));
    out.extend_from_slice(b"\r\n");
    out
}

/// `bh=`: SHA-256 of the relaxed-canonicalised body (RFC 6376 §3.7), no `l=`.
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(canon_body_relaxed(body)).into()
}

/// A message split into its raw header fields (each with its folded lines and CRLF)
/// and its body (after the empty line; empty when there is none).
pub fn split(message: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    let mut start = 0;
    while i < message.len() {
        let end = message[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |p| i + p + 1);
        let line = &message[i..end];
        if line == b"\r\n" || line == b"\n" {
            if start < i {
                fields.push(&message[start..i]);
            }
            return (fields, &message[end..]);
        }
        // RFC 5322 §2.2.3: a line starting with WSP continues the field above.
        let continues = matches!(line.first(), Some(b' ') | Some(b'\t'));
        if !continues && start < i {
            fields.push(&message[start..i]);
            start = i;
        }
        i = end;
    }
    if start < message.len() {
        fields.push(&message[start..]);
    }
    (fields, &message[message.len()..])
}

/// The domain of the first address in the From: field, lowercased.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let (fields, _) = split(message);
    let field = fields
        .iter()
        .find(|f| field_name(f).eq_ignore_ascii_case("from"))?;
    let value = String::from_utf8_lossy(&field[field.iter().position(|&b| b == b':')? + 1..])
        .replace(['\r', '\n'], "");
    // "Name <a@b>" or a bare "a@b".
    let addr = match (value.find('<'), value.rfind('>')) {
        (Some(s), Some(e)) if s < e => value[s + 1..e].to_string(),
        _ => value
            .split([',', ' ', '\t'])
            .find(|w| w.contains('@'))?
            .to_string(),
    };
    let (_, domain) = addr.trim().rsplit_once('@')?;
    Some(domain.trim_end_matches('.').to_ascii_lowercase())
}

/// Build the signature for `message` (RFC 6376 §5): the body hash, the signed
/// fields (RFC 6376 §5.4.2: a name listed once per instance, instances taken from
/// the bottom up) and the hash to sign.
pub fn prepare(message: &[u8], params: &Params) -> Unsigned {
    let (fields, body) = split(message);
    let mut used = vec![false; fields.len()];
    let mut signed: Vec<&[u8]> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for name in &params.headers {
        // Every instance of the name, bottom first.
        while let Some(i) = (0..fields.len())
            .rev()
            .find(|&i| !used[i] && field_name(fields[i]).eq_ignore_ascii_case(name))
        {
            used[i] = true;
            signed.push(fields[i]);
            names.push(name);
        }
    }
    let bh = STANDARD.encode(body_hash(body));
    let t = params
        .timestamp
        .map(|t| format!(" t={t};"))
        .unwrap_or_default();
    // Folded for readability; relaxed canonicalisation unfolds it again.
    let field = format!(
        "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d={}; s={};{t}\r\n\th={};\r\n\tbh={bh};\r\n\tb=",
        params.algorithm.tag(),
        params.domain,
        params.selector,
        names.join(":"),
    );
    let mut hasher = Sha256::new();
    for f in &signed {
        hasher.update(canon_header_relaxed(f));
    }
    // RFC 6376 §3.7: the signature field itself, b= empty, without its final CRLF.
    let own = canon_header_relaxed(field.as_bytes());
    hasher.update(&own[..own.len() - 2]);
    Unsigned {
        field,
        header_hash: hasher.finalize().into(),
    }
}

fn field_name(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    String::from_utf8_lossy(trim_wsp(&field[..end])).into_owned()
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_wsp(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_wsp(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_wsp(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// RFC 6376 §3.4.2 and §3.4.4: runs of WSP become one SP, and WSP at the end goes.
/// A leading run stays as one SP (it matters in a body line; a header value drops it
/// itself, being the WSP after the colon).
fn reduce_wsp(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut in_wsp = false;
    for &b in s {
        if is_wsp(b) {
            in_wsp = true;
        } else {
            if in_wsp {
                out.push(b' ');
            }
            in_wsp = false;
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    fn params(headers: &[&str]) -> Params {
        Params {
            domain: "example.test".into(),
            selector: "popgate".into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            algorithm: Algorithm::RsaSha256,
            timestamp: None,
        }
    }

    /// RFC 6376 §3.4.5, the example's two header fields and its body.
    #[test]
    fn rfc_6376_example_relaxed() {
        let message = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";
        let (fields, body) = split(message);
        assert_eq!(fields, [&b"A: X\r\n"[..], &b"B : Y\t\r\n\tZ  \r\n"[..]]);
        let headers: Vec<u8> = fields
            .iter()
            .flat_map(|f| canon_header_relaxed(f))
            .collect();
        assert_eq!(headers, b"a:X\r\nb:Y Z\r\n");
        assert_eq!(canon_body_relaxed(body), b" C\r\nD E\r\n");
    }

    #[test]
    fn body_table() {
        for (body, want) in [
            // RFC 6376 §3.4.4: an empty body stays empty (erratum 1384).
            (&b""[..], &b""[..]),
            (b"\r\n\r\n", b""),
            // A missing final CRLF is added; bare LF is a line end like CRLF.
            (b"x", b"x\r\n"),
            (b"a  b \nc\n", b"a b\r\nc\r\n"),
            // Empty lines inside the body stay; only trailing ones go.
            (b"a\r\n\r\n \t\r\nb\r\n \r\n", b"a\r\n\r\n\r\nb\r\n"),
        ] {
            assert_eq!(
                canon_body_relaxed(body),
                want,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        // RFC 6376 §3.4.4 example of an empty body's hash is that of the empty string.
        assert_eq!(
            STANDARD.encode(body_hash(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn header_table() {
        for (field, want) in [
            (
                &b"Subject: Hello  World \r\n"[..],
                &b"subject:Hello World\r\n"[..],
            ),
            (b"FROM:a@b", b"from:a@b\r\n"),
            (b"To:\r\n  x@y,\r\n\tz@w\r\n", b"to:x@y, z@w\r\n"),
        ] {
            assert_eq!(canon_header_relaxed(field), want);
        }
    }

    #[test]
    fn split_without_body_and_from_domain() {
        let (fields, body) = split(b"From: a@b\r\nTo: c@d\r\n");
        assert_eq!(fields.len(), 2);
        assert!(body.is_empty());
        for (m, want) in [
            (
                &b"From: Alice <alice@Example.TEST>\r\n\r\nx"[..],
                Some("example.test"),
            ),
            (
                b"Subject: s\r\nfrom: bob@remote.test\r\n\r\n",
                Some("remote.test"),
            ),
            (b"From: \"x@y\" <a@Z.test.>\r\n\r\n", Some("z.test")),
            (b"Subject: none\r\n\r\n", None),
        ] {
            assert_eq!(from_domain(m).as_deref(), want);
        }
    }

    #[test]
    fn prepare_signs_present_fields_bottom_up_and_hashes_the_empty_b() {
        let message = b"Received: x\r\nFrom: alice@example.test\r\nTo: a@b\r\n\
                        To: c@d\r\nSubject: hi\r\n\r\nbody\r\n";
        let u = prepare(message, &params(&["from", "to", "subject", "date"]));
        let field = u.finish(b"sig");
        assert!(field.starts_with("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test; s=popgate;\r\n"), "{field}");
        assert!(field.contains("\th=from:to:to:subject;\r\n"), "{field}");
        let bh = STANDARD.encode(body_hash(b"body\r\n"));
        assert!(field.contains(&format!("bh={bh};")), "{field}");
        assert!(field.ends_with("b=c2ln\r\n"), "{field}");
        // The hash by hand: the fields in h= order (To: bottom first), then the
        // signature field canonicalised without its CRLF.
        let mut want = Sha256::new();
        for f in [
            &b"from:alice@example.test\r\n"[..],
            b"to:c@d\r\n",
            b"to:a@b\r\n",
            b"subject:hi\r\n",
        ] {
            want.update(f);
        }
        want.update(format!("dkim-signature:v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test; s=popgate; h=from:to:to:subject; bh={bh}; b="));
        let want: [u8; 32] = want.finalize().into();
        assert_eq!(u.header_hash, want);
    }
}
