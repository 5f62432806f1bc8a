//! Driver tests that need its insides: token generations, timer wake-ups.

use super::scheduled_io::{Direction, READABLE};
use super::*;
use std::future::Future;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Wake;

struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<Count>, Waker) {
    let c = Arc::new(Count(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

fn udp() -> mio::net::UdpSocket {
    mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap()
}

#[test]
fn a_stale_event_for_a_reused_slot_does_not_wake_the_new_owner() {
    let (mut driver, handle) = Driver::new().unwrap();
    // First owner of slab slot 0.
    let old = PollEvented::new_with_handle(
        udp(),
        mio::Interest::READABLE,
        handle.clone(),
        Location::caller(),
    )
    .unwrap();
    let old_token = old.registration.token;
    drop(old);
    // The slot is reused by a new socket, with a new generation.
    let new = PollEvented::new_with_handle(
        udp(),
        mio::Interest::READABLE,
        handle.clone(),
        Location::caller(),
    )
    .unwrap();
    let new_token = new.registration.token;
    assert_eq!(
        decode(old_token).0,
        decode(new_token).0,
        "the slab reuses the slot"
    );
    assert_ne!(old_token, new_token, "the generation tells them apart");

    let (count, waker) = counting_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(new
        .registration
        .io
        .poll_ready(&mut cx, scheduled_io::Direction::Read)
        .is_pending());

    // An event for the old token, as if it had been queued before the old
    // socket went away, reaches dispatch.
    {
        let ios = handle.inner.ios.lock();
        let (index, generation) = decode(old_token);
        let mut wake = Vec::new();
        if let Some(io) = ios.slab.get(index).filter(|io| io.generation == generation) {
            io.set_readiness(READABLE, &mut wake);
        }
        assert!(wake.is_empty(), "a stale token found the new registration");
    }
    assert_eq!(new.registration.io.readiness(), 0);
    assert_eq!(count.0.load(Ordering::SeqCst), 0);

    // The new token itself does get through.
    let (index, generation) = decode(new_token);
    let ios = handle.inner.ios.lock();
    let io = ios.slab.get(index).filter(|io| io.generation == generation);
    assert!(io.is_some());
    drop(ios);
    driver.turn(Some(Duration::ZERO));
}

#[test]
fn a_turn_fires_due_timers_and_sleeps_until_the_next() {
    let (mut driver, handle) = Driver::new().unwrap();
    let (count, waker) = counting_waker();
    let start = Instant::now();
    let (key, _) = handle.insert_timer(start + Duration::from_millis(20), &waker);
    driver.turn(None);
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    handle.cancel_timer(key);
    assert_eq!(handle.timer_entries(), 0);
}

#[test]
fn an_earlier_timer_wakes_a_driver_asleep_on_a_later_one() {
    let (mut driver, handle) = Driver::new().unwrap();
    let (_, waker) = counting_waker();
    let start = Instant::now();
    let _late = handle.insert_timer(start + Duration::from_secs(30), &waker);
    let h = handle.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let (count, waker) = counting_waker();
        h.insert_timer(Instant::now() + Duration::from_millis(5), &waker);
        count
    });
    // Returns when the new timer's insert wakes it (it may take one more
    // turn to fire it).
    driver.turn(None);
    let count = t.join().unwrap();
    while count.0.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the earlier timer never fired"
        );
        driver.turn(Some(Duration::from_millis(10)));
    }
}

#[test]
fn shutdown_fails_waits_and_fires_timers() {
    let (driver, handle) = Driver::new().unwrap();
    let (count, waker) = counting_waker();
    handle.insert_timer(Instant::now() + Duration::from_secs(60), &waker);
    drop(driver);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    let err =
        PollEvented::new_with_handle(udp(), mio::Interest::READABLE, handle, Location::caller())
            .unwrap_err();
    assert!(err.to_string().contains("shut down"));
}

/// A waker that counts its wakes and then panics.
struct Boom(AtomicUsize);
impl Wake for Boom {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("a waker that panics (on purpose, in a test)");
    }
}

fn boom_waker() -> (Arc<Boom>, Waker) {
    let b = Arc::new(Boom(AtomicUsize::new(0)));
    (b.clone(), Waker::from(b))
}

#[test]
fn a_panicking_waker_neither_kills_the_turn_nor_drops_the_batch() {
    let (mut driver, handle) = Driver::new().unwrap();
    let (boom, boom_w) = boom_waker();
    let (count, w) = counting_waker();
    let deadline = Instant::now() + Duration::from_millis(2);
    // Same deadline, same slot: the panicking one is woken first.
    let (k1, _) = handle.insert_timer(deadline, &boom_w);
    let (k2, _) = handle.insert_timer(deadline, &w);
    let start = Instant::now();
    while count.0.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timers never fired"
        );
        driver.turn(Some(Duration::from_millis(10)));
    }
    assert_eq!(boom.0.load(Ordering::SeqCst), 1);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    handle.cancel_timer(k1);
    handle.cancel_timer(k2);
}

#[test]
fn a_panicking_waker_does_not_stop_shutdown_waking_the_rest() {
    let (driver, handle) = Driver::new().unwrap();
    let (boom, boom_w) = boom_waker();
    let (count, w) = counting_waker();
    let far = Instant::now() + Duration::from_secs(3600);
    handle.insert_timer(far, &boom_w);
    handle.insert_timer(far, &w);
    // Two IO waiters on one source, the panicking one first.
    let source =
        PollEvented::new_with_handle(udp(), mio::Interest::READABLE, handle, Location::caller())
            .unwrap();
    let io = &source.registration.io;
    let pending = |w: &Waker| {
        io.poll_ready(&mut std::task::Context::from_waker(w), Direction::Read)
            .is_pending()
    };
    assert!(pending(&boom_w));
    assert!(pending(&w));
    drop(driver);
    assert_eq!(boom.0.load(Ordering::SeqCst), 2, "timer and IO wake tried");
    assert_eq!(count.0.load(Ordering::SeqCst), 2, "timer and IO woken");
}

#[test]
fn a_source_registered_while_shutting_down_sees_shutdown_or_is_refused() {
    // Before the fix, `register` checked the shutdown flag outside the slab
    // lock: a source could pass the check, wait for the lock while shutdown
    // collected the sources to wake, then go into the slab unwoken. Here the
    // registering thread waits on the slab lock while shutdown collects.
    let (driver, handle) = Driver::new().unwrap();
    let mut ios = handle.inner.ios.lock();
    let h = handle.clone();
    let t = std::thread::spawn(move || {
        PollEvented::new_with_handle(udp(), mio::Interest::READABLE, h, Location::caller())
    });
    // Time for it to reach the lock (not needed for the outcome: a register
    // that comes later fails all the same).
    std::thread::sleep(Duration::from_millis(20));
    let collected = Handle::begin_shutdown(&mut ios).expect("first shutdown");
    drop(ios);
    handle.finish_shutdown(collected);
    match t.join().unwrap() {
        Err(e) => assert!(e.to_string().contains("shut down"), "{e}"),
        Ok(source) => {
            let ev = source.registration.io.ready_now(Direction::Read);
            assert!(
                ev.is_some_and(|ev| ev.is_shutdown()),
                "registered during shutdown, never told of it"
            );
        }
    }
    // The driver's own drop finds shutdown done and does nothing.
    drop(driver);
}

#[test]
fn timers_go_to_the_threads_shard_and_keys_find_them() {
    let (mut driver, handle) =
        Driver::with_books_and_shards(Arc::new(Books::default()), 4).unwrap();
    let far = Instant::now() + Duration::from_secs(3600);
    let keys: Vec<_> = (0..4)
        .map(|i| {
            let h = handle.clone();
            std::thread::spawn(move || {
                set_thread_timer_shard(Some(i));
                let (_, w) = counting_waker();
                h.set_timer(far, &w)
            })
            .join()
            .unwrap()
        })
        .collect();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(key.shard, i);
    }
    assert_eq!(handle.timer_entries(), 4);
    assert_eq!(handle.stats().timers_pending, 4);
    let (count, w) = counting_waker();
    assert!(!handle.poll_timer(keys[2], &w));
    for key in &keys {
        handle.cancel_timer(*key);
    }
    assert_eq!(handle.timer_entries(), 0);
    assert!(
        handle.poll_timer(keys[2], &w),
        "a removed timer reads as fired"
    );
    // Due timers in every shard fire in one turn.
    let soon = Instant::now() + Duration::from_millis(1);
    let keys: Vec<_> = (0..4)
        .map(|i| {
            set_thread_timer_shard(Some(i));
            handle.set_timer(soon, &w)
        })
        .collect();
    set_thread_timer_shard(None);
    let start = Instant::now();
    while count.0.load(Ordering::SeqCst) < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timers never fired"
        );
        driver.turn(Some(Duration::from_millis(10)));
    }
    keys.into_iter().for_each(|k| handle.cancel_timer(k));
    assert_eq!(handle.timer_entries(), 0);
}

#[test]
fn an_earlier_timer_in_another_shard_wakes_a_driver_asleep() {
    let (mut driver, handle) =
        Driver::with_books_and_shards(Arc::new(Books::default()), 4).unwrap();
    let (_, waker) = counting_waker();
    let start = Instant::now();
    set_thread_timer_shard(Some(0));
    let _late = handle.set_timer(start + Duration::from_secs(30), &waker);
    let h = handle.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        set_thread_timer_shard(Some(3));
        let (count, waker) = counting_waker();
        h.set_timer(Instant::now() + Duration::from_millis(5), &waker);
        count
    });
    // With no unpark this turn would sleep 30 s.
    driver.turn(None);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the insert did not unpark the driver"
    );
    let count = t.join().unwrap();
    while count.0.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the earlier timer never fired"
        );
        driver.turn(Some(Duration::from_millis(10)));
    }
}

#[test]
fn set_timer_owned_keeps_the_waker_without_a_clone() {
    let (mut driver, handle) = Driver::new().unwrap();
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let past = Instant::now();
    let key = handle.set_timer_owned(
        Instant::now() + Duration::from_secs(3600),
        Waker::from(count.clone()),
    );
    assert_eq!(Arc::strong_count(&count), 2, "one waker, held by the wheel");
    handle.cancel_timer(key);
    assert_eq!(Arc::strong_count(&count), 1);
    // Already due (the wheel has passed it): woken at once, nothing kept.
    std::thread::sleep(Duration::from_millis(3));
    driver.turn(Some(Duration::ZERO));
    let key = handle.set_timer_owned(past, Waker::from(count.clone()));
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert_eq!(Arc::strong_count(&count), 1);
    handle.cancel_timer(key);
    assert_eq!(handle.timer_entries(), 0);
}

#[test]
fn a_dropped_io_future_releases_its_waker_without_an_event() {
    let (_driver, handle) = Driver::new().unwrap();
    let source =
        PollEvented::new_with_handle(udp(), mio::Interest::READABLE, handle, Location::caller())
            .unwrap();
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut buf = [0u8; 16];
    let mut recv = source
        .registration
        .async_io(Direction::Read, || source.recv(&mut buf));
    assert!(std::pin::Pin::new(&mut recv).poll(&mut cx).is_pending());
    let mut ready = source.registration.readiness(Direction::Read);
    assert!(std::pin::Pin::new(&mut ready).poll(&mut cx).is_pending());
    // `count`, `waker`, and one clone stored per waiting future.
    assert_eq!(Arc::strong_count(&count), 4);
    drop(recv);
    assert_eq!(
        Arc::strong_count(&count),
        3,
        "the dropped future's waker is gone"
    );
    // The other future still waits, and is woken by an event.
    let mut wake = Vec::new();
    source.registration.io.set_readiness(READABLE, &mut wake);
    assert_eq!(wake.len(), 1);
    wake_all(&mut wake);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert!(std::pin::Pin::new(&mut ready).poll(&mut cx).is_ready());
    drop(ready);
    drop(waker);
    assert_eq!(Arc::strong_count(&count), 1, "nothing pins the task");
}
