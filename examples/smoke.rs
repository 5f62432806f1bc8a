fn main() {
    let rt = bulwark::Runtime::builder().worker_threads(4).build().unwrap();
    let t = std::time::Instant::now();
    for _ in 0..20 {
        let sum: u64 = rt.block_on(async {
            let hs: Vec<_> = (0..10_000u64).map(|i| bulwark::spawn(async move { i })).collect();
            let mut s = 0;
            for h in hs { s += h.await.unwrap(); }
            s
        });
        assert_eq!(sum, 10_000 * 9_999 / 2);
    }
    println!("spawn ok {:?} {:?}", t.elapsed(), rt.metrics());
    // chained + yield
    let n = rt.block_on(async {
        let hs: Vec<_> = (0..200).map(|_| bulwark::spawn(async { for _ in 0..1000 { bulwark::task::yield_now().await } 1 })).collect();
        let mut s = 0; for h in hs { s += h.await.unwrap(); } s
    });
    println!("yield ok {n}");
    let r = rt.block_on(async { bulwark::spawn(async { panic!("boom") }).await });
    println!("panic: {}", r.unwrap_err());
    let h = rt.spawn(std::future::pending::<()>());
    h.abort();
    println!("abort: {:?}", rt.block_on(h));
    let b = rt.block_on(async { bulwark::task::spawn_blocking(|| 5).await.unwrap() });
    println!("blocking {b} {:?}", rt.metrics());
    let pend: Vec<_> = (0..1000).map(|_| rt.spawn(std::future::pending::<()>())).collect();
    drop(rt);
    let c = pend.into_iter().filter(|h| h.is_finished()).count();
    println!("finished after drop: {c}");
}
