fn main() -> std::process::ExitCode {
    mobiflux::cli::main()
}
