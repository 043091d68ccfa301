fn main() -> std::process::ExitCode {
    limit_heap_retention();
    mobiflux::cli::main()
}

/// glibc raises its mmap threshold each time a large block is freed, after which big
/// buffers (a chunk's columns) come from the heap and stay there when freed: memory grows
/// with the file. A fixed threshold sends blocks over 1 MiB back to the kernel on free,
/// which keeps the streaming load flat.
fn limit_heap_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
