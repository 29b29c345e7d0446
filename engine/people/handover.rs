//! Handing a run over: the owner (or a supervisor) passes an unfinished run to another
//! operator with a note of what they must know; the new owner takes it on by resuming it.

use crate::error::{Error, Result};
use crate::journal::event::Event;
use crate::journal::view::{self, RunView};
use crate::journal::Journal;
use crate::people::directory::{Directory, Operator};
use crate::people::Role;

/// Who a run passed from and to.
pub struct HandedOver {
    pub run: String,
    pub from: String,
    pub to: String,
}

/// Passes run `run` (an id or a unique prefix) to `to`, as `by`.
pub fn hand_over(
    journal: &mut Journal,
    run: &str,
    to: &str,
    note: &str,
    by: &Operator,
) -> Result<HandedOver> {
    if note.trim().is_empty() {
        return Err(Error::HandoverWithoutNote);
    }
    let mut directory = Directory::new(journal);
    let registered = directory.count()? > 0;
    if registered {
        match directory.get(to)? {
            Some(o) if !o.disabled => {}
            Some(_) => return Err(Error::OperatorDisabled { name: to.into() }),
            None => return Err(Error::NoSuchOperator { name: to.into() }),
        }
    }
    let view = view::load_run(journal, run)?;
    let current = Directory::new(journal).person_of(&view.owner)?;
    let is_supervisor = by.role == Some(Role::Supervisor);
    if registered && by.person != current && !is_supervisor {
        return Err(Error::NotOwner {
            run: view.id.clone(),
            owner: view.owner.clone(),
            what: "the owner or a supervisor hands it over".into(),
        });
    }
    let run_id = view.id.clone();
    let from = journal.append_checked(&run_id, |events| {
        let view = RunView::from_events(events)?;
        if view.finished_at.is_some() {
            return Err(Error::RunFinished {
                run: view.id.clone(),
                status: view.status.name().to_string(),
                what: "there is nothing to hand over",
            });
        }
        if view.owner == to {
            return Err(Error::AlreadyOwner {
                run: view.id.clone(),
                owner: to.to_string(),
            });
        }
        let event = Event::HandedOver {
            from: view.owner.clone(),
            to: to.into(),
            note: note.into(),
            by: by.name.clone(),
        };
        Ok((vec![event], view.owner.clone()))
    })?;
    Ok(HandedOver {
        run: run_id,
        from,
        to: to.to_string(),
    })
}
