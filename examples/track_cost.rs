//! What a tracked resource handle costs: `resource::track` plus its drop,
//! per pair, next to `Arc::new` plus its drop, measured in the same run in
//! alternating rounds: `cargo run --release --example track_cost`.
//!
//! Each round times 100,000 pairs of each, inside a task of a bulwark
//! runtime (so the handle is tracked: holder task, acquisition line, a place
//! in its kind), and prints the median time per pair over 31 rounds with the
//! 25th-75th percentile range, and the ratio taken within each round.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const PAIRS: u32 = 100_000;
const ROUNDS: usize = 31;

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn main() {
    let rt = bulwark::Runtime::new().expect("runtime");
    let (track, arc) = rt
        .block_on(rt.spawn(async {
            let mut track = Vec::new();
            let mut arc = Vec::new();
            for round in 0..ROUNDS + 3 {
                let time_track = || {
                    let t = Instant::now();
                    for i in 0..PAIRS {
                        drop(black_box(bulwark::resource::track("bench", i)));
                    }
                    t.elapsed().as_nanos() as f64 / PAIRS as f64
                };
                let time_arc = || {
                    let t = Instant::now();
                    for i in 0..PAIRS {
                        drop(black_box(Arc::new(i)));
                    }
                    t.elapsed().as_nanos() as f64 / PAIRS as f64
                };
                let (a, b) = if round % 2 == 0 {
                    let a = time_track();
                    (a, time_arc())
                } else {
                    let b = time_arc();
                    (time_track(), b)
                };
                if round >= 3 {
                    track.push(a);
                    arc.push(b);
                }
            }
            (track, arc)
        }))
        .expect("the bench task");
    let ratios: Vec<f64> = track.iter().zip(&arc).map(|(t, a)| t / a).collect();
    let (t25, t50, t75) = quartiles(track);
    let (a25, a50, a75) = quartiles(arc);
    let (r25, r50, r75) = quartiles(ratios);
    println!("track + drop:   {t50:.1} ns per pair ({t25:.1}-{t75:.1})");
    println!("Arc::new + drop: {a50:.1} ns per pair ({a25:.1}-{a75:.1})");
    println!("ratio within a round: {r50:.1}x ({r25:.1}-{r75:.1})");
}
