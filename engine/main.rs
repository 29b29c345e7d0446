//! The `opsbook` binary: everything happens in `opsbook::cli`.

fn main() {
    std::process::exit(opsbook::cli::main());
}
