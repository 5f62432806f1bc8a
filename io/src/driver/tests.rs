//! Driver tests that need its insides: token generations, timer wake-ups.

use super::scheduled_io::READABLE;
use super::*;
use std::sync::atomic::AtomicUsize;
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
    let old = PollEvented::new_with_handle(udp(), mio::Interest::READABLE, handle.clone()).unwrap();
    let old_token = old.registration.token;
    drop(old);
    // The slot is reused by a new socket, with a new generation.
    let new = PollEvented::new_with_handle(udp(), mio::Interest::READABLE, handle.clone()).unwrap();
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
    handle.inner.timers.lock().wheel.remove(key);
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
    let err = PollEvented::new_with_handle(udp(), mio::Interest::READABLE, handle).unwrap_err();
    assert!(err.to_string().contains("shut down"));
}
