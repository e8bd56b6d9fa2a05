fn main() -> std::process::ExitCode {
    mmcurate::cli::main()
}
