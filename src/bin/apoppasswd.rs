fn main() -> std::process::ExitCode {
    apoptools::apoppasswd::main()
}
