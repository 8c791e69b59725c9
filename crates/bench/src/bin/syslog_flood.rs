//! Sends syslog datagrams (RFC 5424 and RFC 3164, alternating) to `ADDR` at `RATE` messages per
//! second for `SECONDS`, paced in 1 ms steps; prints the number sent as JSON. `ERRORS` messages
//! in a hundred (default 1) are errors that a built-in rule matches; the rest is routine traffic.
//!
//! `syslog_flood ADDR RATE SECONDS [ERRORS]`

use std::io::Write;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5514".into());
    let rate: f64 = args.next().map_or(Ok(100_000.0), |a| a.parse())?;
    let seconds: f64 = args.next().map_or(Ok(10.0), |a| a.parse())?;
    let errors: u64 = args.next().map_or(Ok(1), |a| a.parse())?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(&addr)?;
    let mut buf = Vec::with_capacity(512);
    let start = Instant::now();
    let end = Duration::from_secs_f64(seconds);
    let mut sent: u64 = 0;
    let mut failed: u64 = 0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= end {
            break;
        }
        let due = (rate * elapsed.as_secs_f64()) as u64;
        while sent + failed < due {
            buf.clear();
            let i = sent + failed;
            let host = i % 16;
            let error = (i % 100) < errors;
            match i % 100 {
                _ if error && i.is_multiple_of(2) => write!(
                    buf,
                    "<131>1 2026-11-23T10:00:00.000Z web-{host} nginx {} - - upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.{}.{}, request: \"GET /api/orders/{i} HTTP/1.1\"",
                    1000 + i % 50,
                    i % 200,
                    i % 250
                )?,
                _ if error => write!(
                    buf,
                    "<38>Nov 23 10:00:00 db-{host} sshd[{}]: Failed password for invalid user admin{} from 192.168.{}.{} port {} ssh2",
                    2000 + i % 100,
                    i % 30,
                    i % 200,
                    i % 250,
                    40000 + i % 20000
                )?,
                k if k % 2 == 0 => write!(
                    buf,
                    "<134>1 2026-11-23T10:00:00.000Z web-{host} nginx {} - - 10.0.{}.{} - - \"GET /api/orders/{i} HTTP/1.1\" 200 {} \"-\" \"curl/8.5.0\"",
                    1000 + i % 50,
                    i % 200,
                    i % 250,
                    100 + i % 5000
                )?,
                _ => write!(
                    buf,
                    "<38>Nov 23 10:00:00 db-{host} sshd[{}]: Accepted publickey for deploy from 192.168.{}.{} port {} ssh2: ED25519 SHA256:{:016x}",
                    2000 + i % 100,
                    i % 200,
                    i % 250,
                    40000 + i % 20000,
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                )?,
            }
            match socket.send(&buf) {
                Ok(_) => sent += 1,
                Err(_) => failed += 1,
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"sent": sent, "send_errors": failed, "seconds": secs, "rate": sent as f64 / secs})
    );
    Ok(())
}
