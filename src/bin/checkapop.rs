fn main() -> std::process::ExitCode {
    apoptools::checkapop::main()
}
