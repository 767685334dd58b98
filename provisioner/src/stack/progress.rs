//! Progress rows of `provision` and `destroy`: one line per resource when its
//! action ends (with the time it took), and a line every 15 s while a slow
//! resource (RDS, NAT gateway, load balancer) is still on its way. Colour only
//! on a terminal, and never with NO_COLOR.

use std::io::IsTerminal;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    colour: bool,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Progress { colour, quiet }
    }

    /// Paints `text` with an ANSI colour for `symbol` (+ green, ~ yellow, - red).
    pub fn paint(&self, symbol: &str, text: &str) -> String {
        let code = match symbol {
            "+" => "32",
            "~" => "33",
            "-" | "-/+" | "!" => "31",
            _ => return text.to_owned(),
        };
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn done(&self, symbol: &str, component: &str, kind: &str, detail: &str, took: Duration) {
        if !self.quiet {
            let row = format!(
                "{symbol:>3} {component:<28} {kind:<20} {detail:<40} {:>6.1} s",
                took.as_secs_f64()
            );
            println!("{}", self.paint(symbol, &row));
        }
    }

    pub fn waiting(&self, component: &str, status: &str, elapsed: Duration) {
        if !self.quiet {
            println!("  … {component:<28} {status} ({} s)", elapsed.as_secs());
        }
    }
}
