fn main() -> std::process::ExitCode {
    apoptools::deapop::main()
}
