use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = sunstone::config::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cfg.log))
        .with_writer(std::io::stderr)
        .init();
    sunstone::serve(cfg).await
}
