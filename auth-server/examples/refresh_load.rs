//! Load generator for `POST /v1/sessions/refresh`. A refresh token is single-use, so a fixed
//! request body (what oha/wrk send) would trip reuse detection after the first request: here
//! each connection follows its own rotation chain, as real clients do.
//!
//! ```text
//! cargo run --release -p auth-server --example refresh_load -- 127.0.0.1:8080 tokens.txt 10
//! ```
//! `tokens.txt`: one refresh token per line (one keep-alive connection and thread each); the
//! last argument is the duration in seconds. Prints requests/s and latency percentiles; exits
//! non-zero if any refresh failed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: refresh_load <host:port> <tokens-file> <seconds>");
        std::process::exit(2);
    }
    let host = args[1].trim_start_matches("http://").trim_end_matches('/').to_string();
    let tokens: Vec<String> =
        std::fs::read_to_string(&args[2]).expect("tokens file").lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    let deadline = Instant::now() + Duration::from_secs(args[3].parse().expect("seconds"));
    let started = Instant::now();
    let threads: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let host = host.clone();
            std::thread::spawn(move || chain(&host, token, deadline))
        })
        .collect();
    let (mut lat, mut failures) = (Vec::new(), 0usize);
    for t in threads {
        let (l, f) = t.join().expect("thread");
        lat.extend(l);
        failures += f;
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
    };
    println!(
        "refreshes: {} ok, {} failed in {:.1}s = {:.0}/s; latency ms p50 {:.2} p90 {:.2} p99 {:.2}",
        lat.len(),
        failures,
        secs,
        lat.len() as f64 / secs,
        pct(0.5),
        pct(0.9),
        pct(0.99)
    );
    if failures > 0 {
        std::process::exit(1);
    }
}

fn chain(host: &str, mut token: String, deadline: Instant) -> (Vec<Duration>, usize) {
    let mut lat = Vec::new();
    let stream = TcpStream::connect(host).expect("connect");
    stream.set_nodelay(true).ok();
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    while Instant::now() < deadline {
        let body = format!("{{\"refresh_token\":\"{token}\"}}");
        let req = format!(
            "POST /v1/sessions/refresh HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let t0 = Instant::now();
        writer.write_all(req.as_bytes()).expect("write");
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status");
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("content-length");
            }
        }
        let mut buf = vec![0u8; len];
        reader.read_exact(&mut buf).expect("body");
        if !status_line.starts_with("HTTP/1.1 200") {
            eprintln!("refresh failed: {} {}", status_line.trim(), String::from_utf8_lossy(&buf));
            return (lat, 1);
        }
        lat.push(t0.elapsed());
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("json");
        token = v["refresh_token"].as_str().expect("refresh_token").to_string();
    }
    (lat, 0)
}
