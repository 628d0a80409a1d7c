// The trigger path allocates small, short-lived values on two threads; mimalloc keeps
// them thread-local, where glibc's malloc contends and consolidates.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hookd::cli::main()
}
