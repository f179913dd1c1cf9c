//! Giving freed memory back to the system.

/// Gives memory the allocator holds free back to the system. Reading a
/// snapshot and building a table allocate several times the table's own
/// size (YAML or JSON values, objects, compiler scratch), and a burst of
/// events fills queues and connection buffers; glibc keeps those pages once
/// freed, which with 10,000 Alerts was tens of MiB of RSS for nothing.
/// (musl returns freed memory by itself.) Costs a walk over the heap:
/// called after a table build and when events stop after a busy spell,
/// not per event.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused pages of the allocator's own
    // heap to the kernel; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas at two. glibc gives busy threads arenas of
/// their own (up to eight per core), and memory freed in one arena is not
/// reused by another: in controller mode, with the watch, status and
/// delivery tasks moving between threads, RSS grew by a third within
/// seconds of loading 10,000 Alerts (bench/controller_scale.py: 140 → 180
/// MiB; with two arenas 140 → 144). Called once, before any thread starts.
/// An operator's own `MALLOC_ARENA_MAX` is left as set.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes
    // any positive count, and no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
