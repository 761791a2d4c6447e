//! `manifold template`: writes `template.yaml` from `infra/template.src.yaml`, once per channel of
//! [`Channel::ALL`] where the source says so, so a new channel's queues, push function, alarms,
//! dashboard lines and outputs come from one definition instead of copies. `--check` fails when the
//! committed template differs from what the source and the channel registry make (a unit test checks
//! the same).
//!
//! The source is plain text, not YAML: the lines between `#{each channel}` and `#{end}` are written
//! once per channel with `{{name}}`, `{{Name}}`, `{{NAME}}`, `{{Title}}` and the channel's facts
//! (`{{push_concurrency}}`) filled in, and `{{,}}` a comma after every copy but the last (JSON lists
//! inside the dashboard body). `{{titles}}` anywhere lists every channel's title; lines starting
//! with `#%` are notes on the source, left out.

use std::path::PathBuf;

use manifold_domain::Channel;
use serde::Serialize;

use crate::{CliError, output::Human};

const BEGIN: &str = "#{each channel}";
/// Source-only comments start with this.
const NOTE: &str = "#%";
const HEADER: &str =
    "# Generated from infra/template.src.yaml by `manifold template`: edit the source, not this file.\n";
const END: &str = "#{end}";

#[derive(Debug, clap::Args)]
pub struct TemplateArgs {
    /// Fail (exit 1) when template.yaml is not what the source makes, instead of writing it.
    #[arg(long)]
    pub check: bool,
    /// The repository root.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
}

/// What `manifold template` did.
#[derive(Debug, Serialize)]
pub struct TemplateReport {
    pub path: String,
    pub channels: usize,
    pub lines: usize,
    /// `--check`: whether the committed template was current; otherwise whether it changed.
    pub changed: bool,
}

impl Human for TemplateReport {
    fn human(&self) -> String {
        let state = if self.changed { "written" } else { "unchanged" };
        format!("{}: {} lines for {} channels, {state}\n", self.path, self.lines, self.channels)
    }
}

/// The template the source makes for [`Channel::ALL`].
pub fn expand(source: &str) -> Result<String, CliError> {
    let titles = Channel::ALL.iter().map(|c| c.title()).collect::<Vec<_>>().join(", ");
    let mut out = String::with_capacity(source.len() * 3);
    out.push_str(HEADER);
    let mut block: Option<Vec<&str>> = None;
    for (n, line) in source.lines().enumerate() {
        let marker = line.trim();
        if marker.starts_with(NOTE) {
            continue;
        }
        match (&mut block, marker) {
            (None, BEGIN) => block = Some(Vec::new()),
            (None, END) => return Err(CliError::Usage(format!("line {}: {END} without {BEGIN}", n + 1))),
            (None, _) => {
                out.push_str(&line.replace("{{titles}}", &titles));
                out.push('\n');
            }
            (Some(_), BEGIN) => return Err(CliError::Usage(format!("line {}: {BEGIN} inside another", n + 1))),
            (Some(lines), END) => {
                for (i, channel) in Channel::ALL.iter().enumerate() {
                    let comma = if i + 1 < Channel::ALL.len() { "," } else { "" };
                    for l in lines.iter() {
                        out.push_str(&fill(l, *channel, comma));
                        out.push('\n');
                    }
                }
                block = None;
            }
            (Some(lines), _) => lines.push(line),
        }
    }
    if block.is_some() {
        return Err(CliError::Usage(format!("{BEGIN} is never closed by {END}")));
    }
    Ok(out)
}

fn fill(line: &str, channel: Channel, comma: &str) -> String {
    let spec = channel.spec();
    line.replace("{{name}}", channel.as_str())
        .replace("{{Name}}", &channel.pascal())
        .replace("{{NAME}}", &channel.as_str().to_ascii_uppercase())
        .replace("{{Title}}", spec.title)
        .replace("{{push_concurrency}}", &spec.push_concurrency.to_string())
        .replace("{{,}}", comma)
}

pub fn run(args: &TemplateArgs) -> Result<TemplateReport, CliError> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|source| CliError::Read { path: p.display().to_string(), source })
    };
    let source = read(args.root.join("infra/template.src.yaml"))?;
    let target = args.root.join("template.yaml");
    let made = expand(&source)?;
    let current = read(target.clone()).unwrap_or_default();
    let changed = current != made;
    let path = target.display().to_string();
    if args.check {
        if changed {
            return Err(CliError::Usage(format!(
                "{path} is not what infra/template.src.yaml makes for the channels of Channel::ALL; \
                 edit the source and run `cargo run -p manifold-cli -- template`"
            )));
        }
    } else if changed {
        std::fs::write(&target, &made).map_err(|source| CliError::Read { path: path.clone(), source })?;
    }
    Ok(TemplateReport { path, channels: Channel::ALL.len(), lines: made.lines().count(), changed })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = include_str!("../../../../infra/template.src.yaml");
    const TEMPLATE: &str = include_str!("../../../../template.yaml");

    #[test]
    fn the_committed_template_is_what_the_source_makes_for_every_channel() {
        assert!(
            expand(SOURCE).unwrap() == TEMPLATE,
            "template.yaml drifted from infra/template.src.yaml and Channel::ALL: \
             run `cargo run -p manifold-cli -- template` and commit both"
        );
    }

    #[test]
    fn a_block_is_written_once_per_channel_with_a_comma_after_all_but_the_last() {
        let made =
            expand("a:\n  #{each channel}\n  - [\"{{name}}\", \"Push{{Name}}Queue\"]{{,}}\n  #{end}\nb\n").unwrap();
        let lines: Vec<&str> = made.lines().collect();
        assert_eq!(lines.len(), Channel::ALL.len() + 3, "the header, a, the copies, b");
        assert_eq!(lines[2], "  - [\"shopify\", \"PushShopifyQueue\"],");
        assert!(!lines[Channel::ALL.len() + 1].ends_with(','), "the last copy has no comma");
        assert_eq!(lines.last(), Some(&"b"));
    }

    #[test]
    fn unbalanced_markers_are_refused() {
        assert!(expand("#{each channel}\nx\n").is_err());
        assert!(expand("#{end}\n").is_err());
    }
}
