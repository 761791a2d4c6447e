//! `manifold`: the operator CLI. Only wiring: parse the arguments, run, map an error to a message on
//! stderr and a non-zero exit code.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = manifold_cli::Cli::parse();
    match manifold_cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.chain());
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
