//! Work spread over the machine's cores: loading ten thousand objects is
//! mostly YAML parsing and regex compilation, and both are independent per
//! item.

/// Most threads used: start-up work is short and the machine's other
/// cores serve events meanwhile.
const MAX_THREADS: usize = 4;

/// `f` applied to every item, in order, on up to [`MAX_THREADS`] threads.
/// Fewer than `serial_below` items are done on the calling thread, where a
/// thread would cost more than it saves. A panicking item's share is
/// replaced by `on_panic` for each of its items, so one bad input costs
/// only its share, never the caller.
pub fn map<T, R>(
    items: &[T],
    serial_below: usize,
    f: impl Fn(&T) -> R + Sync,
    on_panic: impl Fn() -> R,
) -> Vec<R>
where
    T: Sync,
    R: Send,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS);
    if threads < 2 || items.len() < serial_below.max(2) {
        return items.iter().map(&f).collect();
    }
    let share = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let running: Vec<_> = items
            .chunks(share)
            .map(|part| {
                let handle = scope.spawn(move || part.iter().map(f).collect::<Vec<R>>());
                (part.len(), handle)
            })
            .collect();
        running
            .into_iter()
            .flat_map(|(count, handle)| {
                handle
                    .join()
                    .unwrap_or_else(|_| (0..count).map(|_| on_panic()).collect())
            })
            .collect()
    })
}

/// Runs CPU-heavy `work` (a routing table build, CEL over a large body)
/// without holding an async worker: on a multi-threaded runtime the worker
/// hands its other tasks over first ([`tokio::task::block_in_place`]);
/// elsewhere (a current-thread runtime, no runtime) it runs in place.
pub fn off_runtime<R>(work: impl FnOnce() -> R) -> R {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order_on_any_number_of_threads() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = map(&items, 10, |i| i * 2, || 0);
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(map(&items[..3], 10, |i| i + 1, || 0), vec![1, 2, 3]);
    }

    #[test]
    fn a_panic_costs_only_its_share() {
        let items: Vec<u32> = (0..1000).collect();
        let out = map(
            &items,
            10,
            |i| {
                assert!(*i != 999, "boom");
                Some(*i)
            },
            || None,
        );
        assert_eq!(out.len(), 1000);
        assert_eq!(out[0], Some(0));
        assert_eq!(out[999], None);
    }
}
