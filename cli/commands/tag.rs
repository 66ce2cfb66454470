//! `cairn tag`: add, remove or set the tags of snapshots.

use std::io::Write;

use clap::Args;
use serde_json::json;

use cairn_core::ops::tag::{self, TagChange};
use cairn_core::Error;

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::{print_json, GlobalArgs};

pub const LONG_ABOUT: &str = "\
Add, remove or set the tags of snapshots (restic's tag):

    cairn tag --add keep-forever 1a2b3c4d
    cairn tag --host db1 --tag nightly --remove nightly --add weekly

Without SNAPSHOT, every snapshot the filters select. --set replaces the tags
(--set '' removes them all), then --add adds and --remove removes. A
snapshot's object is never changed: a copy with the new tags is written
(with a new ID, naming the old one as its original) and the old one
deleted; a snapshot whose tags stay the same is left alone. Restore drill
records keep naming the old ID.";

#[derive(Args)]
pub struct TagArgs {
    /// Snapshots to change (ID, unique prefix, or latest) [default: all
    /// that the filters select]
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,

    #[command(flatten)]
    filter: FilterArgs,

    /// Add this tag (repeatable, or comma-separated)
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    add: Vec<String>,

    /// Remove this tag (repeatable, or comma-separated)
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    remove: Vec<String>,

    /// Replace the tags with these (repeatable, or comma-separated; '' for none)
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    set: Option<Vec<String>>,
}

pub fn run(global: &GlobalArgs, args: TagArgs) -> anyhow::Result<ExitCode> {
    let change = TagChange {
        set: args
            .set
            .map(|v| v.into_iter().filter(|t| !t.is_empty()).collect()),
        add: args.add,
        remove: args.remove,
    };
    if change.is_empty() {
        anyhow::bail!(Error::invalid(
            "nothing to change: give --add, --remove or --set"
        ));
    }
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let filter = args.filter.filter();
    let chosen = loaded.select(&args.snapshots, &filter)?;
    let mut changed = Vec::new();
    for s in &chosen {
        if let Some(new) = tag::retag(&repo, s, &change)? {
            changed.push((s.id, new));
        }
    }
    if global.json {
        print_json(&json!({
            "message_type": "tag",
            "selected": chosen.len(),
            "changed": changed
                .iter()
                .map(|(old, new)| json!({"old": old.to_hex(), "new": new.to_hex()}))
                .collect::<Vec<_>>(),
        }))?;
    } else if !global.quiet {
        let mut out = std::io::stdout().lock();
        for (old, new) in &changed {
            writeln!(out, "{} -> {}", old.short(), new.short())?;
        }
        writeln!(
            out,
            "modified {} of {} snapshots",
            changed.len(),
            chosen.len()
        )?;
    }
    Ok(ExitCode::Success)
}
