fn main() {
    let cli = herald::cli::parse();
    std::process::exit(herald::cli::run(cli));
}
