//! What the delivery suites share: a scripted SMTP sink (the next hop), a tiny DNS
//! responder on loopback UDP, and a popgate set up to relay on a POP3 login.
#![allow(dead_code)]

use popgate_tests::{Client, Server, Setup, host};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const ALICE: &str = "alice@example.test";
pub const PW: &str = "alice-secret-7";
/// How long a test waits for mail to reach the sink.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// One message as the sink received it (dot-stuffing removed).
#[derive(Clone, Debug)]
pub struct Received {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
struct SinkState {
    messages: Vec<Received>,
    /// Replies to RCPT, used first to last; then 250.
    rcpt_replies: VecDeque<String>,
    /// Replies to the end of data, used first to last; then 250.
    data_replies: VecDeque<String>,
    /// Transactions that reached the end of data, accepted or not.
    transactions: usize,
    /// How the next connections misbehave, first to last; then they are good.
    bad: VecDeque<BadHop>,
    /// Connections that misbehaved as scripted.
    bad_served: usize,
}

/// A broken next hop, for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadHop {
    /// Binary garbage instead of the 220 greeting.
    Garbage,
    /// A greeting, then the EHLO reply cut off in the middle of a line and the
    /// connection closed.
    ClosesMidReply,
    /// Accepts the connection and never says anything.
    Silent,
}

/// A next hop on loopback: speaks enough ESMTP for popgate's client, follows a
/// script of replies, and records every message it got.
#[derive(Clone, Debug)]
pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<(Mutex<SinkState>, Condvar)>,
    /// Wait this long before answering each end of data (a slow next hop).
    delay: Duration,
}

impl Sink {
    pub fn start() -> Sink {
        Sink::with_delay(Duration::ZERO)
    }

    pub fn with_delay(delay: Duration) -> Sink {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the sink");
        let addr = listener.local_addr().expect("sink address");
        let sink = Sink {
            addr,
            state: Arc::default(),
            delay,
        };
        let s = sink.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = s.serve(stream);
                });
            }
        });
        sink
    }

    pub fn script_rcpt(&self, reply: &str) {
        self.lock().rcpt_replies.push_back(reply.to_owned());
    }

    pub fn script_data(&self, reply: &str) {
        self.lock().data_replies.push_back(reply.to_owned());
    }

    /// The next connection misbehaves as `how` (in the order scripted); later ones
    /// are served normally.
    pub fn script_bad(&self, how: BadHop) {
        self.lock().bad.push_back(how);
    }

    /// Connections that misbehaved as scripted so far.
    pub fn bad_served(&self) -> usize {
        self.lock().bad_served
    }

    pub fn messages(&self) -> Vec<Received> {
        self.lock().messages.clone()
    }

    pub fn transactions(&self) -> usize {
        self.lock().transactions
    }

    /// Wait until `pred` holds on the recorded messages; panics after [`DEADLINE`].
    pub fn wait(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let (lock, grew) = &*self.state;
        let start = Instant::now();
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if pred(&state.messages) {
                return state.messages.clone();
            }
            let left = DEADLINE.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "sink: {what} not within {DEADLINE:?}; got {} messages",
                state.messages.len()
            );
            state = grew
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let mut out = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let bad = {
            let mut st = self.lock();
            let bad = st.bad.pop_front();
            st.bad_served += usize::from(bad.is_some());
            bad
        };
        if let Some(how) = bad {
            return misbehave(how, &mut reader, &mut out);
        }
        out.write_all(b"220 sink.test ESMTP\r\n")?;
        let (mut from, mut rcpts) = (String::new(), Vec::new());
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            let upper = text.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                out.write_all(
                    b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 100000000\r\n",
                )?;
            } else if upper.starts_with("HELO") || upper.starts_with("NOOP") || upper == "RSET" {
                out.write_all(b"250 ok\r\n")?;
            } else if upper.starts_with("MAIL FROM:") {
                from = path(&text);
                rcpts.clear();
                out.write_all(b"250 2.1.0 ok\r\n")?;
            } else if upper.starts_with("RCPT TO:") {
                let reply = self.lock().rcpt_replies.pop_front();
                let reply = reply.unwrap_or_else(|| "250 2.1.5 ok".into());
                if reply.starts_with('2') {
                    rcpts.push(path(&text));
                }
                out.write_all(format!("{reply}\r\n").as_bytes())?;
            } else if upper == "DATA" {
                if rcpts.is_empty() {
                    out.write_all(b"554 5.5.1 no valid recipients\r\n")?;
                    continue;
                }
                out.write_all(b"354 go ahead\r\n")?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if reader.read_until(b'\n', &mut l)? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    // RFC 5321 §4.5.2: remove the transparency dot.
                    let l = if l.starts_with(b".") {
                        l[1..].to_vec()
                    } else {
                        l
                    };
                    data.extend_from_slice(&l);
                }
                if !self.delay.is_zero() {
                    std::thread::sleep(self.delay);
                }
                let reply = {
                    let mut st = self.lock();
                    st.transactions += 1;
                    let reply = st
                        .data_replies
                        .pop_front()
                        .unwrap_or_else(|| "250 2.0.0 ok: queued".into());
                    if reply.starts_with('2') {
                        st.messages.push(Received {
                            from: from.clone(),
                            rcpts: rcpts.clone(),
                            data,
                        });
                    }
                    reply
                };
                self.state.1.notify_all();
                out.write_all(format!("{reply}\r\n").as_bytes())?;
            } else if upper == "QUIT" {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            } else {
                out.write_all(b"500 5.5.2 what\r\n")?;
            }
        }
    }
}

/// One scripted bad connection; returns when the client gives up and closes (the
/// silent one reads until then, so it never answers but never hangs the sink).
fn misbehave(
    how: BadHop,
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
) -> std::io::Result<()> {
    match how {
        BadHop::Garbage => {
            out.write_all(b"\x00\xff\xfeHTTP/1.1 400 nonsense\r\n\x1b[0m\r\n")?;
        }
        BadHop::ClosesMidReply => {
            out.write_all(b"220 sink.test ESMTP\r\n")?;
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line)?;
            out.write_all(b"250-sink.test\r\n250-PIPELI")?;
            return out.shutdown(std::net::Shutdown::Both);
        }
        BadHop::Silent => {}
    }
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(reader, &mut sink);
    Ok(())
}

/// `MAIL FROM:<a@b> SIZE=1` -> `a@b`.
fn path(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}

/// DNS records the responder knows: (lowercased name without trailing dot, qtype).
#[derive(Debug, Default)]
pub struct Zone {
    records: HashMap<(String, u16), Vec<Vec<u8>>>,
}

const TYPE_A: u16 = 1;
const TYPE_MX: u16 = 15;

impl Zone {
    pub fn mx(mut self, domain: &str, preference: u16, exchange: &str) -> Zone {
        let mut rdata = preference.to_be_bytes().to_vec();
        rdata.extend(encode_name(exchange));
        self.records
            .entry((domain.to_owned(), TYPE_MX))
            .or_default()
            .push(rdata);
        self
    }

    pub fn a(mut self, name: &str, ip: Ipv4Addr) -> Zone {
        self.records
            .entry((name.to_owned(), TYPE_A))
            .or_default()
            .push(ip.octets().to_vec());
        self
    }

    fn knows(&self, name: &str) -> bool {
        self.records.keys().any(|(n, _)| n == name)
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Serve `zone` over UDP on loopback (RFC 1035 §4: just enough to answer one
/// question per query); returns the address for `[relay] resolver`.
pub fn dns_server(zone: Zone) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the DNS responder");
    let addr = socket.local_addr().expect("DNS address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if let Some(reply) = answer(&zone, &buf[..n]) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    addr
}

fn answer(zone: &Zone, query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels, then qtype and qclass.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = &query[12..i + 4];
    let name = labels.join(".");
    let answers = zone
        .records
        .get(&(name.clone(), qtype))
        .cloned()
        .unwrap_or_default();
    // QR, opcode 0, AA, RD copied, RA; NXDOMAIN for names the zone does not have.
    let rcode: u8 = if zone.knows(&name) { 0 } else { 3 };
    let mut out = vec![query[0], query[1], 0x84 | (query[2] & 0x01), 0x80 | rcode];
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for rdata in answers {
        out.extend_from_slice(&[0xC0, 12]); // the name, by pointer to the question
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&60u32.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

/// `[relay]` keys for a delivering popgate with a fast retry schedule; `extra` adds
/// more keys (they land in `[relay]`, which the harness opens last).
pub fn setup(relay_keys: &str) -> Setup {
    Setup::default().user(ALICE, PW).relay_settings(&format!(
        "mode = \"deliver\"\nretry = [\"100ms\", \"200ms\"]\ntimeout = \"5s\"\n{relay_keys}"
    ))
}

/// A POP3 login from 127.0.0.2 (the grant), then an SMTP session from there.
pub fn relay_session(server: &Server) -> (Client, Client) {
    let pop = Client::pop3_login(server.pop3(), host(2), ALICE, PW);
    let smtp = Client::smtp_from(server.smtp(), host(2));
    (pop, smtp)
}

/// One relayed message on an open session; returns the queue id from the 250.
pub fn relay(smtp: &mut Client, from: &str, rcpts: &[&str], message: &[u8]) -> String {
    let r = smtp.smtp(&format!("MAIL FROM:<{from}>"));
    assert!(r.starts_with("250 "), "MAIL: {r}");
    for rcpt in rcpts {
        let r = smtp.smtp(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("250 "), "RCPT {rcpt}: {r}");
    }
    let r = smtp.smtp_data(message);
    let id = r
        .strip_prefix(popgate_tests::reply::QUEUED)
        .unwrap_or_else(|| panic!("end of data: {r}"));
    id.trim().to_string()
}

/// The message without the one `Received:` field popgate added at its top.
pub fn without_first_received(data: &[u8]) -> &[u8] {
    assert!(
        data.starts_with(b"Received: "),
        "{}",
        String::from_utf8_lossy(data)
    );
    let mut i = 0;
    loop {
        let end = data[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |p| i + p + 1);
        i = end;
        // A folded continuation line starts with white space (RFC 5322 §2.2.3).
        if !matches!(data.get(i), Some(b' ') | Some(b'\t')) {
            return &data[i..];
        }
    }
}

/// `GET path` on popgate's HTTP listener; the response body.
pub fn http_get(server: &Server, path: &str) -> String {
    use std::io::Read;
    let mut s = TcpStream::connect(server.addr("http")).expect("connect to http");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read the response");
    assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}
