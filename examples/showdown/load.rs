//! The load generator: good clients and the scenario's hostile clients, in
//! this (the parent) process, on a tokio runtime of its own.
//!
//! Rates (2 shared cores, server and load generator on the same machine):
//! - good: 1,000 requests/s of `GET /work` on 20 keep-alive connections,
//!   open loop (each connection has a fixed schedule; latency is measured
//!   from the scheduled time, so a late answer counts its queueing: no
//!   coordinated omission), 2 s timeout per request. A request that fails
//!   (timeout, error, non-2xx answer) is counted at the timeout, 2 s;
//! - hostile, each a new connection per request, open loop, given up after
//!   1 s: `/fanout` 2,000/s (2,000,000 subtasks/s asked for), `/block` 60/s
//!   (3 s of blocking per second asked for, on 2 workers: more than they
//!   have; at 30/s tokio-naive lost no goodput, only latency), `/hang` 50/s,
//!   `/leak` 50/s, `/cpu` 300/s (3 s of CPU per second asked for, on 2
//!   cores);
//! - fanout-holdon: `/fanout` at 20/s from clients that wait for the
//!   answer (a fan-out tokio-naive still serves);
//! - hang-holdon: `/hang` at 50/s (as `hang`) from clients that never give up (they hold
//!   on until the cell ends);
//! - slowloris: 3,000 connections opened over the first second, each
//!   sending one header byte a second and never finishing its head;
//!   slowloris-fds: the same with 5,000, more than the server's 4,096 fds.
//!
//! In every scenario with hostile load the attack starts `ATTACK_LEAD`
//! before the good clients' measured window.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::stacks::tokio_hyper::TokioIo;

/// Offered rate of good requests.
pub const GOOD_RPS: f64 = 1_000.0;
/// Keep-alive connections the good requests go on.
pub const GOOD_CONNS: usize = 20;
/// A good request unanswered after this long has timed out.
pub const GOOD_TIMEOUT: Duration = Duration::from_secs(2);
/// A hostile client gives up after this long.
pub const HOSTILE_GIVE_UP: Duration = Duration::from_secs(1);
/// Hostile routes and their rates (requests/s).
pub const HOSTILE: [(&str, f64); 5] = [
    ("/fanout", 2000.0),
    ("/block", 60.0),
    ("/hang", 50.0),
    ("/leak", 50.0),
    ("/cpu", 300.0),
];
/// How long the attack runs before the good clients' measured window
/// opens (scenarios with hostile load only).
pub const ATTACK_LEAD: Duration = Duration::from_millis(500);
/// Slowloris connections.
pub const SLOWLORIS_CONNS: usize = 3_000;
/// Slowloris connections of `slowloris-fds`: more than the server's 4,096
/// fds.
pub const SLOWLORIS_FDS_CONNS: usize = 5_000;
/// `fanout-holdon`: `/fanout` clients that wait for their answer (until
/// the cell ends), at a rate tokio-naive answers them all: does a
/// fan-out still get all its subtasks, and a 200?
pub const FANOUT_HOLDON_RPS: f64 = 20.0;
/// `hang-holdon`: `/hang` clients that never give up (until the cell
/// ends), at this rate.
pub const HANG_HOLDON_RPS: f64 = 50.0;

/// What one cell's load saw.
pub struct Outcome {
    pub offered_rps: f64,
    pub ok: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub hist: Histogram<u64>,
    pub hostile_sent: u64,
    pub hostile_answered: u64,
    /// Hostile requests answered 2xx.
    pub hostile_ok: u64,
}

impl Outcome {
    /// A latency quantile of good requests, in ms.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1_000.0
    }
}

struct GoodStats {
    ok: u64,
    errors: u64,
    timeouts: u64,
    hist: Histogram<u64>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// Runs the scenario's load against `addr` for `dur`.
pub fn run(addr: SocketAddr, scenario: &str, dur: Duration) -> Outcome {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("load runtime");
    let scenario = scenario.to_string();
    rt.block_on(async move {
        // Good connections first, so they exist before the attack starts.
        // The attack then runs for `ATTACK_LEAD` before the good clients'
        // measured window opens: they arrive at a service already under
        // attack, not in an attack's first seconds.
        let attack = Instant::now() + Duration::from_millis(200);
        let hostile_load = scenario != "benign";
        let start = if hostile_load {
            attack + ATTACK_LEAD
        } else {
            attack
        };
        let end = start + dur;
        let interval = Duration::from_secs_f64(GOOD_CONNS as f64 / GOOD_RPS);
        let mut good = Vec::new();
        for i in 0..GOOD_CONNS {
            let first = start + interval.mul_f64(i as f64 / GOOD_CONNS as f64);
            good.push(tokio::spawn(good_conn(addr, interval, first, end)));
        }
        let mut hostile = Vec::new();
        for (route, rate) in HOSTILE {
            if scenario == route[1..] || scenario == "all" {
                let give_up = Some(HOSTILE_GIVE_UP);
                hostile.push(tokio::spawn(hostile_route(
                    addr, route, rate, give_up, attack, end,
                )));
            }
        }
        if scenario == "fanout-holdon" {
            hostile.push(tokio::spawn(hostile_route(
                addr,
                "/fanout",
                FANOUT_HOLDON_RPS,
                None,
                attack,
                end,
            )));
        }
        if scenario == "hang-holdon" {
            hostile.push(tokio::spawn(hostile_route(
                addr,
                "/hang",
                HANG_HOLDON_RPS,
                None,
                attack,
                end,
            )));
        }
        let mut slow = Vec::new();
        let slow_conns = match scenario.as_str() {
            "slowloris" | "all" => SLOWLORIS_CONNS,
            "slowloris-fds" => SLOWLORIS_FDS_CONNS,
            _ => 0,
        };
        if slow_conns > 0 {
            for i in 0..slow_conns {
                let at = attack + Duration::from_secs_f64(i as f64 / slow_conns as f64);
                slow.push(tokio::spawn(slowloris(addr, at, end)));
            }
        }
        let mut out = Outcome {
            offered_rps: GOOD_RPS,
            ok: 0,
            errors: 0,
            timeouts: 0,
            hist: new_hist(),
            hostile_sent: 0,
            hostile_answered: 0,
            hostile_ok: 0,
        };
        for g in good {
            if let Ok(s) = g.await {
                out.ok += s.ok;
                out.errors += s.errors;
                out.timeouts += s.timeouts;
                let _ = out.hist.add(&s.hist);
            }
        }
        for h in hostile {
            if let Ok((sent, answered, ok)) = h.await {
                out.hostile_sent += sent;
                out.hostile_answered += answered;
                out.hostile_ok += ok;
            }
        }
        for s in slow {
            let _ = s.await;
        }
        out
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

fn get(path: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::new())
        .expect("request")
}

/// One good keep-alive connection: a request every `interval` from
/// `first` until `end`, each timed from its scheduled send time.
async fn good_conn(
    addr: SocketAddr,
    interval: Duration,
    first: Instant,
    end: Instant,
) -> GoodStats {
    let mut s = GoodStats {
        ok: 0,
        errors: 0,
        timeouts: 0,
        hist: new_hist(),
    };
    let fail_us = GOOD_TIMEOUT.as_micros() as u64;
    // Connected before the attack starts, as a service's regular clients are.
    let mut sender: Option<Sender> = connect(addr).await;
    let mut next = first;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let intended = next;
        next += interval;
        if intended.elapsed() >= GOOD_TIMEOUT {
            // Behind by a whole timeout already: this one has timed out.
            s.timeouts += 1;
            let _ = s.hist.record(fail_us);
            continue;
        }
        let deadline = Instant::now() + GOOD_TIMEOUT;
        let attempt = tokio::time::timeout_at(deadline.into(), async {
            // An idle connection the server closed is replaced before
            // sending (as a pooling client does); a failure after sending
            // is an error.
            // A GET that failed on a reused connection before any answer
            // came (the server closed it meanwhile) is retried once on a new
            // one, as pooling clients (hyper-util's, reqwest) do.
            for _ in 0..2 {
                let mut reused = true;
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    sender = connect(addr).await;
                    reused = false;
                }
                let Some(tx) = sender.as_mut() else {
                    return Err(());
                };
                if tx.ready().await.is_err() {
                    sender = None;
                    continue;
                }
                return match tx.send_request(get("/work")).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.into_body().collect().await;
                        Ok(status)
                    }
                    Err(_) if reused => {
                        sender = None;
                        continue;
                    }
                    Err(_) => {
                        sender = None;
                        Err(())
                    }
                };
            }
            Err(())
        })
        .await;
        match attempt {
            Ok(Ok(status)) if status.is_success() => {
                s.ok += 1;
                let _ = s.hist.record(intended.elapsed().as_micros().max(1) as u64);
            }
            Ok(_) => {
                s.errors += 1;
                let _ = s.hist.record(fail_us);
            }
            Err(_) => {
                s.timeouts += 1;
                sender = None;
                let _ = s.hist.record(fail_us);
            }
        }
    }
    s
}

/// Hostile clients of one route: a new connection per request at `rate`,
/// each given up after `give_up` (`None`: held until the cell ends).
/// Returns (sent, answered, answered 2xx).
async fn hostile_route(
    addr: SocketAddr,
    route: &'static str,
    rate: f64,
    give_up: Option<Duration>,
    start: Instant,
    end: Instant,
) -> (u64, u64, u64) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut next = start;
    let mut tasks = Vec::new();
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let give_up = give_up.unwrap_or_else(|| end.saturating_duration_since(Instant::now()));
        tasks.push(tokio::spawn(async move {
            tokio::time::timeout(give_up, async move {
                let mut tx = connect(addr).await?;
                tx.ready().await.ok()?;
                let resp = tx.send_request(get(route)).await.ok()?;
                Some(resp.status())
            })
            .await
            .ok()
            .flatten()
        }));
    }
    let sent = tasks.len() as u64;
    let (mut answered, mut ok) = (0, 0);
    for t in tasks {
        if let Ok(Some(status)) = t.await {
            answered += 1;
            if status.is_success() {
                ok += 1;
            }
        }
    }
    (sent, answered, ok)
}

/// One slowloris connection: one header byte a second, never the end of
/// the head; reconnects (at most once a second) when the server closes it.
async fn slowloris(addr: SocketAddr, at: Instant, end: Instant) {
    const HEAD: &[u8] = b"GET /work HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    tokio::time::sleep_until(at.into()).await;
    let mut stream: Option<TcpStream> = None;
    let mut sent = 0usize;
    while Instant::now() < end {
        if stream.is_none() {
            stream = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
                .await
                .ok()
                .and_then(|r| r.ok());
            sent = 0;
        }
        if let Some(s) = stream.as_mut() {
            let byte = if sent < HEAD.len() { HEAD[sent] } else { b'a' };
            if s.write_all(&[byte]).await.is_err() {
                stream = None;
            } else {
                sent += 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
