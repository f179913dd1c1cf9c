//! The memory budget for request bodies being read (DESIGN §3.7).
//!
//! Without one, every open connection may buffer a 3 MiB body for the whole
//! body-read timeout: a few hundred slow clients would exhaust the pod's
//! memory. Bytes are reserved as they arrive, from two pools: the first
//! [`SMALL_BODY_BYTES`] of every body come from the small pool, the rest
//! from the large pool. Real Flux events are a few KiB, so slow or hostile
//! clients streaming large bodies can exhaust only the large pool, and
//! ordinary events are still read and answered. A body that cannot reserve
//! its next bytes is refused with 503 and `Retry-After`, and its bytes are
//! released at once.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of each body reserved from the small pool.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;
/// Reservations are made in units of this many bytes.
const UNIT: usize = 1024;

/// Bytes of bodies that may be held at once.
#[derive(Clone, Copy, Debug)]
pub struct BudgetConfig {
    /// For the first [`SMALL_BODY_BYTES`] of every body.
    pub small_pool_bytes: usize,
    /// For everything beyond the first [`SMALL_BODY_BYTES`].
    pub large_pool_bytes: usize,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            small_pool_bytes: 16 * 1024 * 1024,
            large_pool_bytes: 48 * 1024 * 1024,
        }
    }
}

/// The shared pools; clones share them.
#[derive(Clone)]
pub struct BodyBudget {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
}

/// The pools cannot hold the next bytes of a body.
#[derive(Debug)]
pub struct OverBudget;

impl BodyBudget {
    pub fn new(config: BudgetConfig) -> Self {
        let units = |bytes: usize| (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            small: Arc::new(Semaphore::new(units(config.small_pool_bytes))),
            large: Arc::new(Semaphore::new(units(config.large_pool_bytes))),
        }
    }

    /// A reservation for one body, growing as its bytes arrive.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            reserved_bytes: 0,
            small: None,
            large: None,
        }
    }
}

/// What one body holds; released when dropped.
pub struct Reservation {
    budget: BodyBudget,
    reserved_bytes: usize,
    small: Option<OwnedSemaphorePermit>,
    large: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Makes room for a body of `total_bytes` (what has arrived so far plus
    /// the next chunk). Never waits: an exhausted pool is refused at once.
    pub fn grow_to(&mut self, total_bytes: usize) -> Result<(), OverBudget> {
        let wanted = total_bytes.div_ceil(UNIT).saturating_mul(UNIT);
        if wanted <= self.reserved_bytes {
            return Ok(());
        }
        let small_limit = SMALL_BODY_BYTES;
        let small_now = self.reserved_bytes.min(small_limit);
        let small_wanted = wanted.min(small_limit);
        let large_now = self.reserved_bytes.saturating_sub(small_limit);
        let large_wanted = wanted.saturating_sub(small_limit);
        take(
            &self.budget.small,
            &mut self.small,
            (small_wanted - small_now) / UNIT,
        )?;
        take(
            &self.budget.large,
            &mut self.large,
            (large_wanted - large_now) / UNIT,
        )?;
        self.reserved_bytes = wanted;
        Ok(())
    }
}

fn take(
    pool: &Arc<Semaphore>,
    held: &mut Option<OwnedSemaphorePermit>,
    units: usize,
) -> Result<(), OverBudget> {
    if units == 0 {
        return Ok(());
    }
    let units = u32::try_from(units).map_err(|_| OverBudget)?;
    let permit = pool
        .clone()
        .try_acquire_many_owned(units)
        .map_err(|_| OverBudget)?;
    match held {
        Some(existing) => existing.merge(permit),
        None => *held = Some(permit),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(small: usize, large: usize) -> BodyBudget {
        BodyBudget::new(BudgetConfig {
            small_pool_bytes: small,
            large_pool_bytes: large,
        })
    }

    #[test]
    fn large_bodies_exhaust_only_the_large_pool() {
        let budget = budget(256 * 1024, 1024 * 1024);
        let mut big = budget.reservation();
        big.grow_to(SMALL_BODY_BYTES + 1024 * 1024)
            .expect("fits exactly");
        let mut second = budget.reservation();
        second
            .grow_to(10_000)
            .expect("the small pool still has room");
        assert!(
            second.grow_to(SMALL_BODY_BYTES + 1).is_err(),
            "large pool exhausted"
        );
        for _ in 0..2 {
            let mut small = budget.reservation();
            small
                .grow_to(SMALL_BODY_BYTES)
                .expect("small events still fit");
        }
        drop(big);
        second
            .grow_to(SMALL_BODY_BYTES + 512 * 1024)
            .expect("released bytes are reusable");
    }

    #[test]
    fn reservations_are_released_on_drop() {
        let budget = budget(64 * 1024, 64 * 1024);
        for _ in 0..100 {
            let mut r = budget.reservation();
            r.grow_to(100 * 1024).expect("room after every drop");
        }
    }

    #[test]
    fn growing_is_monotonic_and_saturating() {
        let budget = budget(64 * 1024, 64 * 1024);
        let mut r = budget.reservation();
        r.grow_to(5000).expect("fits");
        r.grow_to(10).expect("shrinking asks nothing");
        assert!(r.grow_to(usize::MAX).is_err());
    }
}
