//! `autoscaler completions SHELL` and `autoscaler man`: generated from the clap definitions.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Exit;

/// `completions --help` examples.
pub const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  autoscaler completions bash > /etc/bash_completion.d/autoscaler
  autoscaler completions zsh > \"${fpath[1]}/_autoscaler\"
  autoscaler completions fish > ~/.config/fish/completions/autoscaler.fish";

/// `man --help` examples.
pub const MAN_EXAMPLES: &str = "\
Examples:
  autoscaler man | man -l -
  autoscaler man --dir /usr/local/share/man/man1   # autoscaler.1, autoscaler-run.1, ...";

/// Arguments of `autoscaler completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `autoscaler man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `autoscaler.1` and one page per subcommand into this directory instead of
    /// printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script.
pub fn run(args: Args) -> ExitCode {
    let mut cmd = super::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "autoscaler", &mut buf);
    super::output::write_stdout(&String::from_utf8_lossy(&buf));
    Exit::Ok.into()
}

/// Prints the man page, or writes every page into `--dir`.
pub fn man(args: ManArgs) -> ExitCode {
    let cmd = super::command();
    let result = match &args.dir {
        Some(dir) => clap_mangen::generate_to(cmd, dir)
            .map(|()| eprintln!("man pages written to {}", dir.display())),
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map(|()| super::output::write_stdout(&String::from_utf8_lossy(&buf)))
        }
    };
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            let target = args
                .dir
                .as_ref()
                .map_or("stdout".into(), |d| d.display().to_string());
            eprintln!("autoscaler man: cannot write to {target}: {e}");
            Exit::Invalid.into()
        }
    }
}
