//! What the notification tests share: settings from a config snippet, and a loopback HTTP
//! server that answers from a script and records what it was sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{ConfigFile, Operations, Settings};

/// Settings whose config file is `base/opsbook.yaml` holding `yaml`.
pub fn settings(yaml: &str, base: &Path) -> Settings {
    let file: ConfigFile = serde_yaml::from_str(yaml).unwrap();
    Settings {
        db: base.join("opsbook.db"),
        runbooks: base.join("runbooks"),
        scripts: None,
        reports_dir: None,
        config_file: Some(base.join("opsbook.yaml")),
        config_base: base.to_path_buf(),
        operations: Operations::from(file),
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub line: String,
    /// Names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Server {
    addr: SocketAddr,
    handle: JoinHandle<Vec<Request>>,
}

impl Server {
    /// Answers one request per connection with each `(status, body)` in turn, then stops.
    pub fn start(replies: Vec<(u16, &'static str)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in replies {
                let (mut stream, _) = listener.accept().unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                seen.push(read_request(&mut stream));
                let reply = format!(
                    "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).unwrap();
            }
            seen
        });
        Server { addr, handle }
    }

    /// Accepts a connection and never answers it.
    pub fn silent() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_secs(5));
            drop(stream);
            Vec::new()
        });
        Server { addr, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests received, once every scripted reply is sent.
    pub fn finish(self) -> Vec<Request> {
        self.handle.join().unwrap()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Request {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Request {
        line: line.trim_end().to_string(),
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}
