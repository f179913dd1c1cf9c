fn main() {
    herald::memory::limit_arenas();
    let cli = herald::cli::parse();
    std::process::exit(herald::cli::run(cli));
}
