//! `vouch-infer [serve | step]`: the `vouch-tiny-1` inference workload. See
//! `vouch_inference::cli` and `images/README.md` for the modes and their I/O.

use std::process::ExitCode;

use vouch_inference::cli;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match cli::parse_args(&args) {
        Ok(mode) => cli::run(mode),
        Err(msg) => {
            eprint!("vouch-infer: {msg}\n{}", cli::USAGE);
            cli::EXIT_USAGE
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
