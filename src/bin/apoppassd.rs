fn main() -> std::process::ExitCode {
    apoptools::apoppassd::main()
}
