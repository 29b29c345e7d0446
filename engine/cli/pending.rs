//! `opsbook pending`: what waits for a person.

use super::{load_plan, to_json};
use crate::config::Settings;
use crate::error::{exit, Result};
use crate::journal::Journal;
use crate::people::pending;

pub fn pending(settings: &Settings, json: bool) -> Result<i32> {
    let mut journal = Journal::open_read_only(&settings.db)?;
    let load = |path: &std::path::Path| load_plan(settings, path).map(|(plan, _)| plan);
    let waiting = pending::pending(&mut journal, &load)?;
    if json {
        outln!("{}", to_json(&waiting)?);
        return Ok(exit::SUCCESS);
    }
    if waiting.is_empty() {
        outln!("nothing waits for a person");
    }
    for p in &waiting {
        outln!(
            "{}  {} / {} ({}) since {}, owner {}",
            p.run,
            p.runbook,
            p.step,
            p.kind,
            crate::report::text::short_time(&p.since),
            p.owner
        );
        if !p.prompt.is_empty() {
            outln!("    asks: {}", p.prompt.replace('\n', "\n          "));
        }
        outln!("    who:  {}", p.who_may_sign);
        if !p.binding.is_empty() {
            outln!(
                "    sign: opsbook signoff {} --step {} --approve --binding {} --as NAME",
                p.run,
                p.step,
                &p.binding[..16]
            );
        }
    }
    Ok(exit::SUCCESS)
}
