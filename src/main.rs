use clap::Parser;

fn main() {
    let cli = herald::cli::Cli::parse();
    std::process::exit(herald::cli::run(cli));
}
