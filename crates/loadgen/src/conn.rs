//! A line client over any byte stream, with the SMTP and POP3 exchanges of the
//! workloads. Every read has a deadline ([`IO_TIMEOUT`]) so a stuck server ends a run
//! with an error instead of hanging it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A TCP connection from `source` (any loopback address: 127.0.0.0/8 is all local on
/// Linux), or from the kernel's choice when `None`.
pub async fn connect(source: Option<IpAddr>, to: SocketAddr) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(to))
        .await
        .with_context(|| format!("connect to {to} timed out"))?
        .with_context(|| format!("connect to {to}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A buffered line conversation.
#[derive(Debug)]
pub struct Conn<S> {
    io: BufReader<S>,
    line: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            io: BufReader::new(stream),
            line: String::new(),
        }
    }

    pub fn into_inner(self) -> S {
        self.io.into_inner()
    }

    /// The next line without its line ending.
    pub async fn line(&mut self) -> Result<&str> {
        self.line.clear();
        let n = tokio::time::timeout(IO_TIMEOUT, self.io.read_line(&mut self.line))
            .await
            .context("read timed out")??;
        if n == 0 {
            bail!("connection closed by the server");
        }
        Ok(self.line.trim_end_matches(['\r', '\n']))
    }

    pub async fn send(&mut self, data: &[u8]) -> Result<()> {
        let stream = self.io.get_mut();
        stream.write_all(data).await?;
        stream.flush().await?;
        Ok(())
    }

    /// RFC 5321 §4.2.1: a reply is lines `CODE-text` ended by one `CODE text`.
    pub async fn smtp_reply(&mut self) -> Result<u16> {
        loop {
            let line = self.line().await?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .with_context(|| format!("not an SMTP reply: {line:?}"))?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
    }

    /// Sends `command` and expects a reply of class `class` (2 for 2yz, 3 for 3yz).
    pub async fn smtp(&mut self, command: &str, class: u16) -> Result<u16> {
        self.send(command.as_bytes()).await?;
        let code = self.smtp_reply().await?;
        if code / 100 != class {
            bail!("{:?} answered {code}", command.trim_end());
        }
        Ok(code)
    }

    /// RFC 1939 §3: a status line starts with `+OK` or `-ERR`.
    pub async fn pop_ok(&mut self) -> Result<()> {
        let line = self.line().await?;
        if !line.starts_with("+OK") {
            bail!("POP3 answered {line:?}");
        }
        Ok(())
    }

    pub async fn pop(&mut self, command: &str) -> Result<()> {
        self.send(command.as_bytes()).await?;
        self.pop_ok().await
    }

    /// A multi-line POP3 answer (RFC 1939 §3): `+OK`, lines, then `.` alone. Returns
    /// the bytes received after the status line.
    pub async fn pop_multiline(&mut self, command: &str) -> Result<usize> {
        self.pop(command).await?;
        let mut bytes = 0;
        loop {
            let line = self.line().await?;
            if line == "." {
                return Ok(bytes);
            }
            bytes += line.len() + 2;
        }
    }
}

/// A 4 KB message (headers and body, CRLF line endings, dot-stuffing not needed: no
/// line starts with a dot) ending with the `CRLF.CRLF` terminator of DATA.
pub fn message_4k(from: &str, to: &str) -> Vec<u8> {
    let mut text = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: benchmark message\r\nMessage-ID: <bench@example.test>\r\n\r\n"
    );
    let line = "The quick brown fox jumps over the lazy dog, again and again 0123456789\r\n";
    while text.len() + line.len() <= 4096 {
        text.push_str(line);
    }
    while text.len() < 4094 {
        text.push('x');
    }
    text.push_str("\r\n");
    text.push_str(".\r\n");
    text.into_bytes()
}

/// One SMTP session that delivers `count` messages (`smtp-source -s N` semantics: by
/// default one message per connection; `smtp-source -d` keeps the connection for the
/// next one, which is `count > 1` here), then QUIT.
pub async fn smtp_deliver<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    from: &str,
    to: &str,
    body: &[u8],
    count: usize,
) -> Result<()> {
    conn.smtp_reply().await?;
    conn.smtp("EHLO loadgen.example.test\r\n", 2).await?;
    for _ in 0..count {
        conn.smtp(&format!("MAIL FROM:<{from}>\r\n"), 2).await?;
        conn.smtp(&format!("RCPT TO:<{to}>\r\n"), 2).await?;
        conn.smtp("DATA\r\n", 3).await?;
        conn.send(body).await?;
        let code = conn.smtp_reply().await?;
        if code != 250 {
            bail!("end of data answered {code}");
        }
    }
    conn.smtp("QUIT\r\n", 2).await?;
    Ok(())
}

/// USER/PASS (RFC 1939 §7) after the greeting.
pub async fn pop_login<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    user: &str,
    password: &str,
) -> Result<()> {
    conn.pop_ok().await.context("greeting")?;
    conn.pop(&format!("USER {user}\r\n")).await?;
    conn.pop(&format!("PASS {password}\r\n")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_4_kib_plus_the_terminator() {
        let m = message_4k("a@example.test", "b@example.test");
        assert_eq!(m.len(), 4096 + 3);
        assert!(m.ends_with(b"\r\n.\r\n"));
        assert!(!m.windows(3).any(|w| w == b"\n.."));
    }
}
