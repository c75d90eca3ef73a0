//! `vouch-wc`: read all of stdin, print
//! `{"bytes":N,"lines":N,"words":N,"sha256":"<hex>"}` and a newline.

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
        eprintln!("vouch-wc: reading stdin: {e}");
        return ExitCode::from(1);
    }
    let line = vouch_workloads::wc::count(&input).to_json_line();
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("vouch-wc: writing stdout: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
