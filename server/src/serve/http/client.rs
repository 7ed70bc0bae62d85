//! A small blocking client for the HTTP API, for `popgate grant ...`: one HTTP/1.1
//! request per connection (`Connection: close`), so the answer is everything up to
//! the end of the stream. The API is on loopback or behind a token; this is not a
//! general-purpose client and needs none of one's machinery.

use crate::config::Config;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a grant list of the whole table fits many times over).
const MAX_RESPONSE: u64 = 256 << 20;

#[derive(Clone, Debug)]
pub struct ApiClient {
    addr: SocketAddr,
    token: Option<String>,
}

#[derive(Debug)]
pub enum ClientError {
    /// No running server answered at this address.
    Unreachable(SocketAddr, io::Error),
    /// The connection broke or the answer was not HTTP.
    Protocol(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable(addr, e) => write!(
                f,
                "cannot reach popgate's HTTP API at {addr} (is `popgate serve` running with this config?): {e}"
            ),
            ClientError::Protocol(e) => write!(f, "bad answer from popgate's HTTP API: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// The `error` of a JSON error body, or the body as text.
    pub fn error_message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_owned())
    }
}

impl ApiClient {
    pub fn new(addr: SocketAddr, token: Option<String>) -> ApiClient {
        ApiClient { addr, token }
    }

    /// The server `config` describes: `listen.http` (a wildcard address is reached on
    /// loopback) and `[http] admin_token`.
    pub fn from_config(config: &Config) -> Result<ApiClient, String> {
        let Some(mut addr) = config.listen.http else {
            return Err("the configuration has no HTTP listener (`listen.http`)".into());
        };
        if addr.port() == 0 {
            return Err(format!(
                "`listen.http` is {addr}: a server on port 0 cannot be found; set a port"
            ));
        }
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let token = Some(config.http.admin_token.clone()).filter(|t| !t.is_empty());
        Ok(ApiClient::new(addr, token))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Send `method path` with an optional JSON body; any status is an `Ok`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<ApiResponse, ClientError> {
        let mut stream = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT)
            .map_err(|e| ClientError::Unreachable(self.addr, e))?;
        let io = |e: io::Error| ClientError::Protocol(e.to_string());
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        let body = json.map(|j| j.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if json.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .map_err(io)?;
        parse_response(&raw).map_err(ClientError::Protocol)
    }
}

/// Status and body of a complete HTTP/1.1 response (identity or chunked).
pub fn parse_response(raw: &[u8]) -> Result<ApiResponse, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response ended inside its headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not UTF-8")?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(_) => return Err("the response body is shorter than its Content-Length".into()),
            None => rest.to_vec(),
        }
    };
    Ok(ApiResponse { status, body })
}

/// RFC 9112 §7.1: size line (hex, optional extensions), data, CRLF; size 0 ends.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line has no end")?;
        let line = std::str::from_utf8(&rest[..end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {line:?}"))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err("the response ended inside a chunk".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_identity_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}")
            .expect("identity");
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn error_message_prefers_the_json_error() {
        let r = ApiResponse {
            status: 404,
            body: br#"{"error":"no grant for 1.2.3.4/32"}"#.to_vec(),
        };
        assert_eq!(r.error_message(), "no grant for 1.2.3.4/32");
    }
}
