//! Thin entry point: everything lives in the library.

fn main() {
    if let Err(e) = hull::cli::run(std::env::args_os()) {
        // One line: the chain of contexts, outermost first.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
