//! The process's allocator: jemalloc in place of glibc's malloc, for libtorch's tensors as well
//! (its symbols are unprefixed, so every library of the process allocates through it), in the
//! control-plane build too.
//!
//! Why, for the coordinator: under load a fifth of its CPU went to glibc's malloc and free
//! (`_int_malloc`, `_int_free`, `unlink_chunk`, `malloc_consolidate`: records, sled's nodes and
//! RPC buffers allocated on one thread and freed on another); docs/stress.md has the figures.
//!
//! Why, for a trainer: a stage-2 trainer (MobileNet-v2, batch 32, 112 px) peaked at 1,499 MiB
//! with glibc, whose free lists keep autograd's freed activations fragmented; with jemalloc and
//! freed pages kept for reuse it peaks at 1,134 MiB and trains faster (63.8 against 47.6
//! images/s), the same F1 to the last digit.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Keeps a trainer's freed pages for reuse instead of handing them back to the kernel after
/// jemalloc's default 10 s: each step frees and reallocates the same activations, and returned
/// pages come back as page faults (half the images/s). Call once a process knows it trains.
#[cfg(feature = "train")]
pub fn keep_freed_pages() -> Result<(), String> {
    let set =
        |name: &str| write(name, -1).map_err(|rc| format!("jemalloc setting {name}: error {rc}"));
    // Arenas made from now on, then those that exist (an index not yet in use is EFAULT).
    set("arenas.dirty_decay_ms")?;
    set("arenas.muzzy_decay_ms")?;
    for i in 0..read::<u32>("arenas.narenas")? {
        for setting in ["dirty_decay_ms", "muzzy_decay_ms"] {
            match write(&format!("arena.{i}.{setting}"), -1) {
                Ok(()) | Err(libc::EFAULT) => {}
                Err(rc) => return Err(format!("jemalloc setting arena.{i}.{setting}: error {rc}")),
            }
        }
    }
    Ok(())
}

/// Reads a setting of type `T` (`u32` for `arenas.narenas`, `isize` for the decays).
#[cfg(feature = "train")]
fn read<T: Copy + Default>(name: &str) -> Result<T, String> {
    let key = std::ffi::CString::new(name).map_err(|e| format!("{name}: {e}"))?;
    let mut v = T::default();
    let mut len = std::mem::size_of::<T>();
    // SAFETY: `key` is NUL-terminated; `v` and `len` describe a writable value of the
    // setting's type.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            key.as_ptr(),
            (&mut v as *mut T).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc == 0 {
        Ok(v)
    } else {
        Err(format!("jemalloc setting {name}: error {rc}"))
    }
}

/// Writes an `ssize_t` setting; jemalloc's error code when it refuses.
#[cfg(feature = "train")]
fn write(name: &str, mut value: isize) -> Result<(), libc::c_int> {
    let key = std::ffi::CString::new(name).map_err(|_| libc::EINVAL)?;
    // SAFETY: `key` is NUL-terminated; `value` is a readable ssize_t of the given size.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            key.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&mut value as *mut isize).cast(),
            std::mem::size_of::<isize>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(rc)
    }
}

#[cfg(all(test, feature = "train"))]
mod tests {
    use super::*;

    #[test]
    fn libtorch_allocates_through_jemalloc() {
        // The `malloc` every shared library resolves is jemalloc's, not glibc's.
        // SAFETY: dlsym with a NUL-terminated name; the handle is the global scope.
        let resolved = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) } as usize;
        assert_eq!(
            resolved,
            tikv_jemalloc_sys::malloc as *const () as usize,
            "the process's malloc is not jemalloc's"
        );
        // A tensor's storage comes from it: jemalloc knows the pointer's usable size.
        let t = tch::Tensor::zeros([1 << 20], (tch::Kind::Float, tch::Device::Cpu));
        let p = t.data_ptr();
        // SAFETY: `p` is a live allocation of the tensor above.
        let usable = unsafe { tikv_jemalloc_sys::malloc_usable_size(p) };
        assert!(usable >= 4 << 20, "usable size {usable} for a 4 MiB tensor");
    }

    #[test]
    fn a_trainer_keeps_its_freed_pages() {
        keep_freed_pages().unwrap();
        assert_eq!(read::<isize>("arenas.dirty_decay_ms"), Ok(-1));
        assert_eq!(read::<isize>("arenas.muzzy_decay_ms"), Ok(-1));
        assert_eq!(read::<isize>("arena.0.dirty_decay_ms"), Ok(-1));
    }
}
