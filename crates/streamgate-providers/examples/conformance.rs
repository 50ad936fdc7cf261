//! Checks the adapters against recorded wire samples:
//! `cargo run -p streamgate-providers --features conformance --example conformance -- DIR`
//! (or set `STREAMGATE_FIXTURES`).

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args_os()
        .nth(1)
        .or_else(|| std::env::var_os("STREAMGATE_FIXTURES"))
    else {
        eprintln!("usage: conformance DIR (or set STREAMGATE_FIXTURES)");
        return std::process::ExitCode::from(2);
    };
    match streamgate_providers::conformance::run(std::path::Path::new(&dir)) {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("cannot read samples: {error}");
            std::process::ExitCode::from(2)
        }
    }
}
