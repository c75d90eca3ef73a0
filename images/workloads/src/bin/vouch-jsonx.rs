//! `vouch-jsonx [canonical | pick <dot.path> | keys]`: deterministic JSON
//! transforms of the document on stdin. See `vouch_workloads::jsonx`.

use std::io::{Read, Write};
use std::process::ExitCode;

use vouch_workloads::jsonx;

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let op = match jsonx::parse_args(&args) {
        Ok(op) => op,
        Err(msg) => {
            eprint!("vouch-jsonx: {msg}\n{}", jsonx::USAGE);
            return exit(jsonx::EXIT_USAGE);
        }
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
        eprintln!("vouch-jsonx: reading stdin: {e}");
        return exit(1);
    }
    match jsonx::run(&op, &input) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
            {
                eprintln!("vouch-jsonx: writing stdout: {e}");
                return exit(1);
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("{}", f.message);
            exit(f.code)
        }
    }
}
