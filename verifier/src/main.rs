//! `vouch-verifier` binary: receipt checks for challengers (the ledger is in the library).
//!
//! For now it offers the one check every challenger starts with: does a receipt verify,
//! and is it about the job spec it came with.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vouch-verifier",
    version,
    about = "Vouch verifier (early): receipt checks for challengers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a job JSON (`GET /v1/jobs/{id}`) from stdin: signature, and that the receipt
    /// binds the spec's job id, image and input digest.
    Check,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check => {
            let mut text = String::new();
            std::io::stdin().take(1 << 20).read_to_string(&mut text)?;
            let job: serde_json::Value = serde_json::from_str(&text).context("not JSON")?;
            let receipt: vouch_proto::ReceiptJson = serde_json::from_value(job["receipt"].clone())
                .context("no receipt in the job JSON")?;
            let signed = receipt.verify()?;
            let spec = vouch_proto::JobSpec::from_json(job["spec"].to_string().as_bytes())?;
            anyhow::ensure!(
                spec.job_id()? == signed.receipt.job_id
                    && spec.image == signed.receipt.image
                    && spec.input_digest == signed.receipt.input_digest,
                "the receipt is not about this job spec"
            );
            println!(
                "ok: job {} signed by {} (sequence {})",
                signed.receipt.job_id, signed.receipt.operator, signed.receipt.sequence
            );
            Ok(())
        }
    }
}
