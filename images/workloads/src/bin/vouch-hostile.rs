//! `vouch-hostile <mode> [args]`: hostile and diagnostic workloads for the
//! node's sandbox tests. Run the hostile modes (`forkbomb`, `memhog`, `spin`,
//! `bigout`) only inside a resource-limited container.
//!
//! No mode ever opens a TCP connection or sends a datagram.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use vouch_workloads::sandbox::{self, NetReport, Probe, RootwriteReport};

const USAGE: &str = r#"usage: vouch-hostile <mode> [args]
modes:
  forkbomb       spawn child processes and threads forever (needs a pids limit)
  memhog         allocate and touch 16 MiB chunks forever (needs a memory limit)
  spin           busy-loop forever on one thread
  bigout         write 1 GiB to stdout, then exit 0
  net            report network isolation as JSON (exit 0 isolated, 3 not)
  rootwrite      try writing /vouch-pwned and /tmp/vouch-ok (exit 1 if / is read-only)
  probe          describe the sandbox as one JSON line
  sleep <ms>     sleep, then copy stdin to stdout
  exit <code>    read stdin, write to stdout and stderr, exit with <code>
  random         print a nondeterministic 32-byte hex value
"#;

const EXIT_USAGE: u8 = 64;

fn usage(msg: &str) -> ExitCode {
    eprint!("vouch-hostile: {msg}\n{USAGE}");
    ExitCode::from(EXIT_USAGE)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        return usage("missing mode");
    };
    let rest = &args[1..];
    let no_args = |run: fn() -> ExitCode| {
        if rest.is_empty() {
            run()
        } else {
            usage(&format!("mode {mode} takes no arguments"))
        }
    };
    match mode.as_str() {
        "forkbomb" => no_args(forkbomb),
        "memhog" => no_args(memhog),
        "spin" => no_args(spin),
        "bigout" => no_args(bigout),
        "net" => no_args(net),
        "rootwrite" => no_args(rootwrite),
        "probe" => no_args(probe),
        "random" => no_args(random),
        "sleep" => match rest {
            [ms] => match ms.parse::<u64>() {
                Ok(ms) => sleep_then_echo(ms),
                Err(_) => usage(&format!("sleep: invalid milliseconds {ms:?}")),
            },
            _ => usage("sleep needs exactly one argument <ms>"),
        },
        "exit" => match rest {
            [code] => match code.parse::<u8>() {
                Ok(code) => exit_with(code),
                Err(_) => usage(&format!("exit: invalid exit code {code:?} (0-255)")),
            },
            _ => usage("exit needs exactly one argument <code>"),
        },
        other => usage(&format!("unknown mode {other:?}")),
    }
}

// ---------------------------------------------------------------- forkbomb

/// Set in the children so that only the top-level process reports errors.
const FORKBOMB_CHILD_ENV: &str = "VOUCH_FORKBOMB_CHILD";
static FORKBOMB_REPORTED: AtomicBool = AtomicBool::new(false);
static FORKBOMB_SPAWNED: AtomicU64 = AtomicU64::new(0);

fn forkbomb() -> ExitCode {
    spawner_loop()
}

fn forkbomb_report(what: &str, e: &io::Error) {
    if std::env::var_os(FORKBOMB_CHILD_ENV).is_none()
        && !FORKBOMB_REPORTED.swap(true, Ordering::Relaxed)
    {
        eprintln!(
            "vouch-hostile forkbomb: {what} failed after {} successful spawns: {e} (retrying forever)",
            FORKBOMB_SPAWNED.load(Ordering::Relaxed)
        );
    }
}

fn spawner_loop() -> ! {
    loop {
        let mut failed = false;
        // Children are never waited for: they stay as processes (or zombies)
        // and keep counting against the pids limit.
        match Command::new("/proc/self/exe")
            .arg("forkbomb")
            .env(FORKBOMB_CHILD_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
        {
            Ok(child) => {
                FORKBOMB_SPAWNED.fetch_add(1, Ordering::Relaxed);
                drop(child);
            }
            Err(e) => {
                forkbomb_report("process spawn", &e);
                failed = true;
            }
        }
        match thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| spawner_loop())
        {
            Ok(_) => {
                FORKBOMB_SPAWNED.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                forkbomb_report("thread spawn", &e);
                failed = true;
            }
        }
        if failed {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

// ------------------------------------------------------------------ memhog

fn memhog() -> ExitCode {
    const CHUNK: usize = 16 << 20;
    const PAGE: usize = 4096;
    let mut held: Vec<Vec<u8>> = Vec::new();
    const REPORT_EVERY: usize = 64 << 20;
    let mut total: usize = 0;
    let mut next_report = REPORT_EVERY;
    let mut reported_failure = false;
    loop {
        let mut chunk: Vec<u8> = Vec::new();
        if let Err(e) = chunk.try_reserve_exact(CHUNK) {
            if !reported_failure {
                eprintln!(
                    "vouch-hostile memhog: allocation failed at {} MiB: {e} (retrying forever)",
                    total >> 20
                );
                reported_failure = true;
            }
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        chunk.resize(CHUNK, 0);
        for (i, page) in chunk.chunks_mut(PAGE).enumerate() {
            page[0] = (i as u8) | 1;
        }
        held.push(std::hint::black_box(chunk));
        total += CHUNK;
        if total >= next_report {
            next_report += REPORT_EVERY;
            eprintln!(
                "vouch-hostile memhog: {} MiB allocated and touched",
                total >> 20
            );
        }
        std::hint::black_box(&mut held);
    }
}

// -------------------------------------------------------------------- spin

fn spin() -> ExitCode {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

// ------------------------------------------------------------------ bigout

fn bigout() -> ExitCode {
    const TOTAL: usize = 1 << 30;
    const WRITE: usize = 64 << 10;
    // 64-byte line; 64 KiB is a whole number of lines, so every write ends in
    // '\n' and the line-buffered stdout passes it straight through.
    const LINE: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+\n";
    let buf: Vec<u8> = LINE.iter().copied().cycle().take(WRITE).collect();
    let mut out = io::stdout().lock();
    for _ in 0..TOTAL / WRITE {
        if out.write_all(&buf).is_err() {
            // stdout closed (EPIPE) or failing: stop quietly.
            return ExitCode::SUCCESS;
        }
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

// --------------------------------------------------------------------- net

fn interface_names() -> Vec<String> {
    match fs::read_dir("/sys/class/net") {
        Ok(dir) => {
            let mut names: Vec<String> = dir
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
        Err(e) => {
            eprintln!("vouch-hostile: cannot list /sys/class/net: {e}");
            Vec::new()
        }
    }
}

fn route_count() -> u64 {
    match fs::read_to_string("/proc/net/route") {
        Ok(text) => sandbox::count_routes(&text),
        Err(e) => {
            eprintln!("vouch-hostile: cannot read /proc/net/route: {e}");
            0
        }
    }
}

/// Bind a UDP socket and `connect` it to TEST-NET-1 (192.0.2.1, discard
/// port). A UDP connect only selects a route: no packet is sent.
fn udp_connect_probe() -> String {
    let socket = match UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))) {
        Ok(s) => s,
        Err(e) => return format!("bind: {e}"),
    };
    match socket.connect(SocketAddr::from(([192, 0, 2, 1], 9))) {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    }
}

fn net() -> ExitCode {
    let report = NetReport {
        interfaces: interface_names(),
        routes: route_count(),
        udp_connect: udp_connect_probe(),
    };
    print!("{}", sandbox::json_line(&report));
    let _ = io::stdout().flush();
    if report.is_isolated() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

// --------------------------------------------------------------- rootwrite

fn write_file(path: &str, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(data)?;
    f.flush()
}

fn write_and_read_back(path: &str, data: &[u8]) -> io::Result<()> {
    write_file(path, data)?;
    let back = fs::read(path)?;
    if back != data {
        return Err(io::Error::other("read back different contents"));
    }
    Ok(())
}

fn result_text(r: &io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    }
}

fn rootwrite() -> ExitCode {
    let root = write_file("/vouch-pwned", b"pwned\n");
    if root.is_ok() {
        // Do not leave litter behind if this ever runs unsandboxed.
        let _ = fs::remove_file("/vouch-pwned");
    }
    let tmp = write_and_read_back("/tmp/vouch-ok", b"vouch-ok\n");
    let _ = fs::remove_file("/tmp/vouch-ok");
    let report = RootwriteReport {
        root_write: result_text(&root),
        tmp_write: result_text(&tmp),
    };
    print!("{}", sandbox::json_line(&report));
    let _ = io::stdout().flush();
    match root {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vouch-hostile rootwrite: writing /vouch-pwned failed: {e}");
            ExitCode::from(1)
        }
    }
}

// ------------------------------------------------------------------- probe

fn can_create_in(dir: &str) -> bool {
    let path = format!(
        "{}/.vouch-probe-{}",
        dir.trim_end_matches('/'),
        std::process::id()
    );
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"probe\n"));
    let _ = fs::remove_file(&path);
    created.is_ok()
}

fn first_limit(paths: &[&str]) -> Option<String> {
    paths.iter().find_map(|p| {
        fs::read_to_string(p)
            .ok()
            .and_then(|t| sandbox::trim_limit(&t))
    })
}

fn probe() -> ExitCode {
    let status = fs::read_to_string("/proc/self/status")
        .map(|t| sandbox::parse_status(&t))
        .unwrap_or_else(|e| {
            eprintln!("vouch-hostile probe: cannot read /proc/self/status: {e}");
            sandbox::StatusInfo::default()
        });
    let report = Probe {
        uid: status.uid,
        gid: status.gid,
        cap_eff: status.cap_eff,
        no_new_privs: status.no_new_privs,
        interfaces: interface_names(),
        root_writable: can_create_in("/"),
        tmp_writable: can_create_in("/tmp"),
        docker_sock: ["/var/run/docker.sock", "/run/docker.sock"]
            .iter()
            .any(|p| fs::symlink_metadata(p).is_ok()),
        pids_max: first_limit(&["/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"]),
        memory_max: first_limit(&[
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ]),
    };
    print!("{}", sandbox::json_line(&report));
    let _ = io::stdout().flush();
    ExitCode::SUCCESS
}

// ------------------------------------------------------------ sleep / exit

fn sleep_then_echo(ms: u64) -> ExitCode {
    thread::sleep(Duration::from_millis(ms));
    let mut stdout = io::stdout().lock();
    match io::copy(&mut io::stdin().lock(), &mut stdout).and_then(|_| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vouch-hostile sleep: copying stdin to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

fn exit_with(code: u8) -> ExitCode {
    let mut sink = Vec::new();
    let _ = io::stdin().lock().read_to_end(&mut sink);
    let mut stdout = io::stdout().lock();
    let _ = stdout
        .write_all(b"partial output\n")
        .and_then(|()| stdout.flush());
    eprintln!("failing on purpose");
    ExitCode::from(code)
}

// ------------------------------------------------------------------ random

fn random() -> ExitCode {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    println!("{}", vouch_workloads::to_hex(&h.finalize()));
    ExitCode::SUCCESS
}
