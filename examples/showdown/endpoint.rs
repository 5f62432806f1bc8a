//! Reads the bulwark server's metrics endpoint as a monitoring system
//! would: one `GET /metrics` over a new connection at the end of a cell,
//! while the attack may still be running, and the p99 scheduling delay
//! computed from the exposition's histogram buckets the way Prometheus'
//! `histogram_quantile` does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What one read of the endpoint gave.
pub struct Scrape {
    /// The p99 of `bulwark_scheduling_delay_seconds` over the whole cell,
    /// in milliseconds; `None` if the histogram was empty.
    pub sched_delay_p99_ms: Option<f64>,
    /// How long the endpoint took to answer, connection included.
    pub answered_in: Duration,
}

/// `GET /metrics` from `addr`, given 5 s.
pub fn scrape(addr: SocketAddr) -> Result<Scrape, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| s.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: showdown\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).map_err(|e| format!("read: {e}"))?;
    let answered_in = start.elapsed();
    let text = String::from_utf8_lossy(&body);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "status line {:?}",
            text.lines().next().unwrap_or("")
        ));
    }
    Ok(Scrape {
        sched_delay_p99_ms: quantile(&text, "bulwark_scheduling_delay_seconds", 0.99)
            .map(|s| s * 1e3),
        answered_in,
    })
}

/// The `q` quantile of the histogram family `name` in a Prometheus text
/// exposition, in seconds: linear within the bucket, as
/// `histogram_quantile` does (the `+Inf` bucket reads as the last finite
/// bound).
fn quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in &buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let within = if count > prev.1 {
                (rank - prev.1) / (count - prev.1)
            } else {
                0.0
            };
            return Some(prev.0 + (le - prev.0) * within);
        }
        prev = (le, count);
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantile_interpolates_within_the_bucket() {
        let text = "\
# TYPE bulwark_scheduling_delay_seconds histogram
bulwark_scheduling_delay_seconds_bucket{le=\"0.001\"} 50
bulwark_scheduling_delay_seconds_bucket{le=\"0.004\"} 100
bulwark_scheduling_delay_seconds_bucket{le=\"+Inf\"} 100
";
        let p99 = super::quantile(text, "bulwark_scheduling_delay_seconds", 0.99).unwrap();
        assert!((p99 - 0.00394).abs() < 1e-6, "{p99}");
    }
}
