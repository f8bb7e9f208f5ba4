//! A coarse millisecond clock: an atomic counter advanced by one background thread, so a cache
//! hit checks expiry with one relaxed load instead of a system call.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Clock {
    start: Instant,
    ms: AtomicU64,
}

fn clock() -> &'static Clock {
    static CLOCK: OnceLock<&'static Clock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let c: &'static Clock = Box::leak(Box::new(Clock {
            start: Instant::now(),
            ms: AtomicU64::new(0),
        }));
        std::thread::Builder::new()
            .name("litetrade-clock".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(1));
                    c.ms.store(c.start.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
            })
            .expect("spawn clock thread");
        c
    })
}

/// Milliseconds since the process first asked, to within about a millisecond.
pub fn now_ms() -> u64 {
    clock().ms.load(Ordering::Relaxed)
}
