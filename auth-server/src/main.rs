//! The `auth-server` binary: the process's allocator tuned, then the command line run.

fn main() -> std::process::ExitCode {
    limit_retained_memory();
    auth_server::main()
}

/// argon2id allocates `argon2_memory_kib` (19 MiB by default) per hash on the blocking pool.
/// glibc's dynamic mmap threshold would soon serve such blocks from per-thread arenas and keep
/// them after they are freed (hundreds of MB after a burst of logins). A fixed threshold makes
/// every large block a fresh mapping that goes back to the OS when freed.
fn limit_retained_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called once, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
