//! A blocking HTTP/1.1 client that allocates nothing per request: one
//! connection, one prebuilt request, one reused read buffer.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub fn request(path: &str, key: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {key}\r\n\r\n").into_bytes()
}

pub struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    /// Connects and retries the request until it answers 200 (the edge's
    /// catalog and key caches warm up), for up to 10 s.
    pub fn connect_when_served(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut client = Self {
                stream: TcpStream::connect(addr)?,
                buffer: vec![0; 64 * 1024],
            };
            client.stream.set_nodelay(true)?;
            match client.send(request) {
                Ok(200) => return Ok(client),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(status) => bail!("the edge answered {status}, not 200"),
                Err(error) => return Err(error),
            }
        }
    }

    pub fn send_many(&mut self, request: &[u8], count: usize) -> anyhow::Result<()> {
        for _ in 0..count {
            let status = self.send(request)?;
            if status != 200 {
                bail!("the edge answered {status}, not 200");
            }
        }
        Ok(())
    }

    /// Sends one request, reads its whole answer; returns the status.
    fn send(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(request)?;
        let mut filled = 0;
        loop {
            let read = self.stream.read(&mut self.buffer[filled..])?;
            if read == 0 {
                bail!("the edge closed the connection");
            }
            filled += read;
            if let Some((status, total)) = complete(&self.buffer[..filled])? {
                if total < filled {
                    bail!("more bytes than one answer: pipelining is not expected");
                }
                return Ok(status);
            }
            if filled == self.buffer.len() {
                bail!("an answer larger than {} bytes", self.buffer.len());
            }
        }
    }
}

/// `(status, total length)` once `bytes` hold a whole answer with a
/// Content-Length body.
fn complete(bytes: &[u8]) -> anyhow::Result<Option<(u16, usize)>> {
    let Some(head_end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&bytes[..head_end]).context("answer head")?;
    let status = head
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .context("status line")?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .context("the answer has no Content-Length")?;
    let total = head_end + 4 + length;
    Ok((bytes.len() >= total).then_some((status, total)))
}
