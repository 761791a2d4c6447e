//! Serves the channel simulators (test doubles, not the real channels) for the local pipeline:
//! `manifold-simulator --port 8787`, then point each account's `endpoint` at
//! `http://127.0.0.1:8787/{channel}`.

use std::net::SocketAddr;

use clap::Parser;
use manifold_simulator::{SimConfig, Simulator};

#[derive(Debug, Parser)]
#[command(about = "Channel API simulators on loopback (test doubles that follow the channels' documentation)")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "MANIFOLD_SIMULATOR_PORT", default_value_t = 8787)]
    port: u16,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    let config = SimConfig { addr: SocketAddr::from(([127, 0, 0, 1], args.port)), ..SimConfig::default() };
    let sim = Simulator::start(config).await?;
    println!("manifold-simulator listening on {} (channels under /{{channel}}, control under /_sim)", sim.url());
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
