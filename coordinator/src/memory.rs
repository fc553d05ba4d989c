//! Handing freed heap memory back to the system after the coordinator's large transient
//! allocations (a big submit's plan and records, the store's decoding at start), which glibc's
//! allocator would otherwise keep as free lists for the life of the process.

/// Jobs in one submit from which its transient memory is worth returning.
pub(crate) const LARGE_SUBMIT_JOBS: u32 = 1000;

/// Returns the free memory at the top of each malloc arena to the system (glibc `malloc_trim`);
/// a no-op with other allocators. Takes milliseconds for a heap of hundreds of MiB.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own structures, under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
