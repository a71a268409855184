fn main() -> std::process::ExitCode {
    apoptools::ipop3d::main()
}
