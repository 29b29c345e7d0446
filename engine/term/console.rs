//! The terminal's console: asks the person at the terminal about gates, manual steps and
//! interrupted steps, on stderr (stdout stays the run's record), and answers the executor
//! through the `Console` trait.

use crate::exec::console::{
    Attendance, AttendedAnswer, AttendedDecision, AttendedKind, Console, Signer,
};
use crate::exec::resume::InterruptedChoice;
use crate::printable;
use crate::term::prompt;

/// The person at this process's terminal.
pub struct TerminalConsole;

impl Console for TerminalConsole {
    fn attend(&self, q: &Attendance) -> Option<AttendedAnswer> {
        prompt::reset_withdrawn();
        eprintln!("{}", printable::escape(&q.heading));
        let (question, choices): (&str, &[char]) = match q.kind {
            AttendedKind::ManualObserved => (
                "   [d]one, as expected / [m]ismatch / [s]kip (with a reason) / [w]ait (park) / [a]bort? ",
                &['d', 'm', 's', 'w', 'a'],
            ),
            AttendedKind::Manual => (
                "   [d]one / [s]kip (with a reason) / [w]ait (park) / [a]bort? ",
                &['d', 's', 'w', 'a'],
            ),
            AttendedKind::Gate => ("   [a]pprove / [r]eject / [d]efer (park)? ", &['a', 'r', 'd']),
        };
        let gate = q.kind == AttendedKind::Gate;
        let decision = match (gate, prompt::ask_choice(question, choices)?) {
            (false, 'd') | (true, 'a') => AttendedDecision::Approve,
            (false, 'm') | (true, 'r') => AttendedDecision::Reject,
            (false, 's') => AttendedDecision::Skip,
            (false, 'a') => AttendedDecision::Abort,
            // Defer (park).
            _ => return None,
        };
        let kept = q
            .previous_comment
            .as_deref()
            .map(|c| format!(", Enter to keep \"{}\"", printable::escape_line(c)))
            .unwrap_or_default();
        let typed_or_kept = |typed: String| match (typed.is_empty(), &q.previous_comment) {
            (true, Some(previous)) => Some(previous.clone()),
            (true, None) => None,
            (false, _) => Some(typed),
        };
        let comment = match decision {
            AttendedDecision::Skip => Some(prompt::ask_required("   reason for skipping: ")?),
            AttendedDecision::Abort => None,
            _ if q.evidence_required && q.previous_comment.is_some() => typed_or_kept(
                prompt::ask_line(&format!("   evidence (required{kept}): "))?,
            ),
            _ if q.evidence_required => Some(prompt::ask_required("   evidence (required): ")?),
            _ => typed_or_kept(prompt::ask_line(&format!("   comment (optional{kept}): "))?),
        };
        // A manual step is ticked off by the runner; on a training run the supervisor
        // counter-signs it, as they sign every gate.
        let asks_for_signer = matches!(
            decision,
            AttendedDecision::Approve | AttendedDecision::Reject
        ) && (gate || q.countersigned);
        let name = match (asks_for_signer, &q.default_signer) {
            (false, _) => q.runner.clone(),
            (true, Some(default)) => {
                let typed = prompt::ask_line(&format!(
                    "   signing as (Enter for {default}, or another operator's name): "
                ))?;
                if typed.is_empty() {
                    default.clone()
                } else {
                    typed
                }
            }
            // Four eyes: the runner may not sign, so there is no default.
            (true, None) => prompt::ask_required(&format!(
                "   signing as (four eyes: another operator than {}): ",
                q.runner
            ))?,
        };
        let signer = if name == q.runner {
            Signer::Runner
        } else {
            let passphrase =
                rpassword::prompt_password(format!("   passphrase for {name}: ")).ok()?;
            Signer::Other { name, passphrase }
        };
        Some(AttendedAnswer {
            decision,
            comment,
            signer,
        })
    }

    fn withdraw(&self) {
        prompt::withdraw();
    }

    fn interrupted(&self, step: &str, name: &str) -> Option<InterruptedChoice> {
        eprintln!(
            "{}",
            printable::escape(&format!(
                "\nstep {step} ({name}) was interrupted: it started and never finished, and it is not idempotent."
            ))
        );
        let choice = prompt::ask_choice(
            "  [r]un it again / [m]ark it done (with a comment) / [a]bort the run? ",
            &['r', 'm', 'a'],
        );
        match choice {
            Some('r') => Some(InterruptedChoice::Rerun {
                why: "chosen at the terminal".into(),
            }),
            Some('m') => prompt::ask_required("  what was checked: ")
                .map(|comment| InterruptedChoice::MarkDone { comment }),
            _ => None,
        }
    }
}
