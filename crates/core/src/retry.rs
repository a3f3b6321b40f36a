//! Retry timing for durable jobs.

use rand::Rng;

/// Delay before attempt `attempt + 1` after `attempt` failures (1-based): exponential from
/// `base_ms`, capped at `max_ms`, with "full jitter" between half and the whole delay so that
/// many failing jobs do not retry in lock-step.
pub fn backoff_ms(attempt: u32, base_ms: u64, max_ms: u64) -> u64 {
    let exp = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
    let capped = exp.min(max_ms).max(1);
    rand::thread_rng().gen_range(capped / 2..=capped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        for _ in 0..200 {
            let first = backoff_ms(1, 1000, 600_000);
            assert!((500..=1000).contains(&first), "{first}");
            let third = backoff_ms(3, 1000, 600_000);
            assert!((2000..=4000).contains(&third), "{third}");
            let huge = backoff_ms(40, 1000, 600_000);
            assert!((300_000..=600_000).contains(&huge), "{huge}");
        }
    }
}
