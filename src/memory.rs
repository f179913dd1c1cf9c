//! The memory allocator, and giving freed memory back to the system.
//!
//! herald allocates per event and per delivery (request bodies, headers,
//! connection buffers) and, at start-up, several times its routing table
//! (parsed documents, objects, compiler scratch). With glibc's malloc a
//! fifth of herald's instructions were in the allocator, its arenas held
//! freed pages long after a burst or a table build, and RSS grew with the
//! threads that touched it. jemalloc (the allocator of TiKV and Vector) is
//! faster here and returns freed pages by itself after a short decay: with
//! 10,000 Alerts and 10,000 destinations, start-up took a fifth less time
//! and RSS after a load fell from 89 to 74 MiB (bench/RESULTS.md).

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts (before `main`): two arenas
/// (herald's work runs on two runtime threads; more arenas only keep more
/// pages), freed pages returned after one second, and a background thread
/// that does it so that no request waits for it. `_RJEM_MALLOC_CONF` in
/// the environment overrides any of them.
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &u8 =
    &b"narenas:2,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

/// Gives the memory jemalloc holds free back to the system now, rather
/// than after its decay: called after a table build (which frees several
/// times the table) and when events stop after a busy spell.
pub fn release_free() {
    #[cfg(not(target_env = "msvc"))]
    {
        // `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena.
        let name = c"arena.4096.purge";
        // SAFETY: a purge takes and returns nothing (null pointers and a
        // zero length are what mallctl expects for that); the name is a
        // NUL-terminated string that outlives the call.
        unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            );
        }
    }
}
