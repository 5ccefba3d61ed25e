#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    gitgate::main()
}
