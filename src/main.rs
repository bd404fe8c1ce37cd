//! The `autoscaler` command line: parse arguments, set up logging, call the library.

fn main() -> std::process::ExitCode {
    autoscaler::cli::main()
}
