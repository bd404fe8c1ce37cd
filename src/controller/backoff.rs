//! Capped exponential backoff with jitter, reset on success.

use std::time::Duration;

/// An iterator-like source of retry delays: `base × 2^n`, capped, ±20 % jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays start at `base` and never exceed `cap` (before jitter).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        let delay = self.undithered(self.attempt).mul_f64(jitter);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Number of delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn undithered(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let expected = [100u64, 200, 400, 800, 1000, 1000];
        for want in expected {
            let got = b.next_delay().as_millis() as u64;
            assert!(
                got >= want * 8 / 10 && got <= want * 12 / 10,
                "got {got} want ~{want}"
            );
        }
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(36));
        }
    }
}
