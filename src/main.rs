//! The `eigenpub` binary: everything lives in the library (`src/lib.rs`), so its unit
//! tests and the binary share one build.

fn main() -> std::process::ExitCode {
    eigenpub::main()
}
