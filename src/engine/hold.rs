//! Holding off commands while writes keep failing.
//!
//! After a failed batch the sequencer's memory is ahead of the database, so it reloads the
//! whole state before its next command. While a failure lasts (a disk that stays full, a file
//! another process keeps locked), every command would fail again and cost another reload: a
//! large venue's commands then crawl at the pace of reloads, and the queue (ticks included:
//! each tick writes the last price) grows without bound. So from the third failure in a row
//! with no commit in between, the sequencer answers commands `unavailable` at once for a hold
//! that starts at [`FIRST_HOLD`] and doubles up to [`MAX_HOLD`]; the first command after the
//! hold tries again. A commit ends the hold early. One or two failures in a row (a lock held
//! past the busy timeout once or twice) never hold anything: the next command simply tries.

use std::time::{Duration, Instant};

/// Failures in a row (with no commit between them) from which commands are held off.
pub const HOLD_FROM: u32 = 3;
/// The hold after [`HOLD_FROM`] failures in a row; each further one doubles it.
pub const FIRST_HOLD: Duration = Duration::from_millis(100);
/// The longest hold: how long a command may be refused after space returns.
pub const MAX_HOLD: Duration = Duration::from_secs(2);

/// The sequencer's record of failed writes, and the hold they impose.
#[derive(Debug, Default)]
pub struct WriteHold {
    /// Failures seen with no commit between them.
    in_a_row: u32,
    /// The writer's committed-batch count when the last failure was seen.
    batches_then: u64,
    /// Until when commands are refused (while no batch commits).
    until: Option<Instant>,
}

impl WriteHold {
    /// A failed batch was seen at `now`, when the writer had committed `batches` batches in
    /// all. Returns the hold it starts, if any.
    pub fn failed(&mut self, batches: u64, now: Instant) -> Option<Duration> {
        self.in_a_row = if self.in_a_row > 0 && batches == self.batches_then {
            self.in_a_row + 1
        } else {
            1
        };
        self.batches_then = batches;
        let hold = (self.in_a_row >= HOLD_FROM).then(|| {
            let doublings = (self.in_a_row - HOLD_FROM).min(8);
            FIRST_HOLD.saturating_mul(1 << doublings).min(MAX_HOLD)
        });
        self.until = hold.map(|h| now + h);
        hold
    }

    /// How much longer commands are refused at `now`, with `batches` committed in all: none
    /// once the hold has passed or a batch has committed since the failure.
    pub fn remaining(&mut self, batches: u64, now: Instant) -> Option<Duration> {
        let until = self.until?;
        if now < until && batches == self.batches_then {
            Some(until - now)
        } else {
            self.until = None;
            None
        }
    }

    /// Whether a hold was started and has not been seen to end (cheap: no clock read).
    pub fn is_on(&self) -> bool {
        self.until.is_some()
    }

    /// Failures seen in a row.
    pub fn in_a_row(&self) -> u32 {
        self.in_a_row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_failures_in_a_row_hold_nothing_the_third_holds_and_holds_double() {
        let t = Instant::now();
        let mut h = WriteHold::default();
        assert_eq!(h.failed(5, t), None);
        assert_eq!(h.failed(5, t), None);
        assert_eq!(h.remaining(5, t), None);
        assert_eq!(h.failed(5, t), Some(FIRST_HOLD));
        assert_eq!(h.failed(5, t), Some(FIRST_HOLD * 2));
        assert_eq!(h.failed(5, t), Some(FIRST_HOLD * 4));
        for _ in 0..40 {
            h.failed(5, t);
        }
        assert_eq!(h.failed(5, t), Some(MAX_HOLD), "capped");
        assert_eq!(h.in_a_row(), 46);
    }

    #[test]
    fn a_hold_ends_when_its_time_passes_or_a_batch_commits() {
        let t = Instant::now();
        let mut h = WriteHold::default();
        for _ in 0..3 {
            h.failed(9, t);
        }
        let ms = Duration::from_millis;
        assert_eq!(h.remaining(9, t + ms(40)), Some(ms(60)));
        assert_eq!(h.remaining(9, t + FIRST_HOLD), None, "the time passed");
        assert_eq!(
            h.remaining(9, t + ms(1)),
            None,
            "a passed hold stays passed"
        );

        assert_eq!(h.failed(9, t), Some(FIRST_HOLD * 2));
        assert_eq!(h.remaining(10, t + ms(1)), None, "a batch committed");
        // and a commit between two failures starts the count again
        assert_eq!(h.failed(10, t), None);
        assert_eq!(h.in_a_row(), 1);
        assert_eq!(h.failed(10, t), None);
        assert_eq!(h.failed(10, t), Some(FIRST_HOLD));
    }
}
