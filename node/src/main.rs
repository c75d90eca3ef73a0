//! `vouch-node` command line. Thin: parse, set up tracing, call the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use vouch_node::config::{Config, LogFormat, RunArgs};
use vouch_node::signer::Interchange;
use vouch_node::{keys, lock_data_dir, open_signer};
use vouch_proto::{Digest, JobSpec, OperatorKey, ReceiptJson};

#[derive(Debug, Parser)]
#[command(
    name = "vouch-node",
    version,
    about = "Vouch operator node: runs Docker workloads in a sandbox and signs verifiable receipts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node (HTTP API + job worker) until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Manage the operator key.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Export or import the signing-protection history (only while the node is stopped).
    #[command(subcommand, name = "signing-history")]
    SigningHistory(HistoryCmd),
    /// Client tools for receipts.
    #[command(subcommand)]
    Receipt(ReceiptCmd),
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Generate a new ed25519 key (PKCS#8 PEM, mode 0600). Never overwrites.
    Generate(RunArgs),
    /// Print the public key (hex).
    Show(RunArgs),
}

#[derive(Debug, Subcommand)]
enum HistoryCmd {
    /// Write the history as EIP-3076-style JSON.
    Export {
        /// Output file (`-` for stdout).
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Merge a history file into this node's history (all or nothing).
    Import {
        /// Input file.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ReceiptCmd {
    /// Verify a receipt: reads the JSON of `GET /v1/jobs/{id}` (or a bare receipt) and checks
    /// the signature, that the receipt matches the spec, and optionally the output bytes.
    Verify {
        /// JSON file (`-` for stdin).
        #[arg(long, default_value = "-")]
        file: PathBuf,
        /// Operator public key (hex) the receipt must be signed by.
        #[arg(long)]
        operator: Option<OperatorKey>,
        /// Output bytes to check against the receipt's output digest.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            let config = Config::load(&args)?;
            init_tracing(config.log_format);
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(vouch_node::run(config, vouch_node::shutdown_signal()))?;
        }
        Command::Keys(KeysCmd::Generate(args)) => {
            let config = Config::load(&args)?;
            let path = config.key_path();
            let key = keys::generate(&path)?;
            eprintln!("wrote {}", path.display());
            println!("{}", keys::operator_key(&key));
        }
        Command::Keys(KeysCmd::Show(args)) => {
            let config = Config::load(&args)?;
            println!("{}", keys::operator_key(&keys::load(&config.key_path())?));
        }
        Command::SigningHistory(HistoryCmd::Export { file, args }) => {
            let config = Config::load(&args)?;
            let _lock = lock_data_dir(&config.data_dir)?;
            let doc = open_signer(&config)?.export()?;
            let text = serde_json::to_string_pretty(&doc)? + "\n";
            if file.as_os_str() == "-" {
                print!("{text}");
            } else {
                std::fs::write(&file, text)
                    .with_context(|| format!("writing {}", file.display()))?;
                let n: usize = doc.data.iter().map(|k| k.signed_receipts.len()).sum();
                eprintln!("exported {n} signed receipts to {}", file.display());
            }
        }
        Command::SigningHistory(HistoryCmd::Import { file, args }) => {
            let config = Config::load(&args)?;
            let _lock = lock_data_dir(&config.data_dir)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let doc: Interchange = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a signing-history file", file.display()))?;
            let summary = open_signer(&config)?.import(&doc)?;
            eprintln!(
                "imported {} entries, {} already present",
                summary.imported, summary.skipped
            );
        }
        Command::Receipt(ReceiptCmd::Verify {
            file,
            operator,
            output,
        }) => {
            return verify(file, operator, output);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(
    file: PathBuf,
    operator: Option<OperatorKey>,
    output: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().take(1 << 20).read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
    }
    let value: serde_json::Value = serde_json::from_str(&text).context("not JSON")?;
    let (receipt_value, spec_value) = match value.get("receipt") {
        Some(r) => (r.clone(), value.get("spec").cloned()),
        None => (value.clone(), None),
    };
    if receipt_value.is_null() {
        bail!(
            "the job has no receipt yet (status {})",
            value.get("status").unwrap_or(&serde_json::Value::Null)
        );
    }
    let rj: ReceiptJson = serde_json::from_value(receipt_value).context("not a receipt")?;
    let signed = rj.verify().context("receipt does not verify")?;
    let r = &signed.receipt;
    println!(
        "signature: ok (operator {}, sequence {})",
        r.operator, r.sequence
    );
    if let Some(op) = operator {
        if op != r.operator {
            bail!("signed by {}, expected {op}", r.operator);
        }
        println!("operator: ok");
    }
    if let Some(spec) = spec_value {
        let spec = JobSpec::from_json(spec.to_string().as_bytes()).context("spec")?;
        let id = spec.job_id()?;
        if id != r.job_id || spec.image != r.image || spec.input_digest != r.input_digest {
            bail!("the receipt is not about this spec (job id, image or input digest differ)");
        }
        println!("job id: ok ({id} = SHA-256(\"vouch/job/v1\" || JCS(spec)))");
    }
    if let Some(path) = output {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if Digest::of(&bytes) != r.output_digest || bytes.len() as u64 != r.output_len {
            bail!(
                "{} does not match the signed output digest/length",
                path.display()
            );
        }
        println!("output: ok ({} bytes, {})", bytes.len(), r.output_digest);
    }
    println!("exit code: {}", r.exit_code);
    Ok(ExitCode::SUCCESS)
}
