//! The routes of `routes:` in opsbook.yaml: which channels a notification goes to. The first
//! rule whose every `match` key matches the notification's field wins; a rule without `match`
//! catches all; with no routes at all, every notification goes to every channel.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{MatchValues, Settings};
use crate::diagnostic::did_you_mean;
use crate::error::{Error, Result};
use crate::notify::channel::Channels;
use crate::notify::outbox::Notification;
use crate::printable::escape_line;

/// The routing rules, in the order of the config file.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// Field name → the values any of which matches, as strings.
    matches: BTreeMap<String, Vec<String>>,
    /// Deduplicated, in the order written.
    channels: Vec<String>,
}

impl Rule {
    fn matches(&self, notification: &Notification) -> bool {
        self.matches.iter().all(|(field, values)| {
            notification
                .fields
                .get(field)
                .is_some_and(|value| values.iter().any(|v| v == value))
        })
    }
}

impl Routes {
    /// Checks every rule: its values are scalars and its channels are configured (a route
    /// naming an unknown channel is an error at `routes[2].channels`).
    pub fn from_settings(settings: &Settings, channels: &Channels) -> Result<Routes> {
        let mut rules = Vec::new();
        for (i, spec) in settings.operations.routes.iter().enumerate() {
            let bad = |key: String, message: String| Error::ConfigValue {
                path: PathBuf::from(settings.config_name()),
                key,
                message,
            };
            let mut matches = BTreeMap::new();
            for (field, values) in &spec.matches {
                let key = format!("routes[{i}].match.{field}");
                let values = match_values(values).map_err(|message| bad(key.clone(), message))?;
                if values.is_empty() {
                    return Err(bad(key, "list at least one value".into()));
                }
                matches.insert(field.clone(), values);
            }
            let key = format!("routes[{i}].channels");
            if spec.channels.is_empty() {
                return Err(bad(key, "a route sends to at least one channel".into()));
            }
            let mut names: Vec<String> = Vec::new();
            for name in &spec.channels {
                if channels.get(name).is_none() {
                    let message = if channels.is_empty() {
                        format!(
                            "no channel named `{}`: no channels are configured",
                            escape_line(name)
                        )
                    } else {
                        format!(
                            "no channel named `{}`: the channels are {}{}",
                            escape_line(name),
                            channels.names().join(", "),
                            did_you_mean(name, channels.names())
                        )
                    };
                    return Err(bad(key, message));
                }
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
            rules.push(Rule {
                matches,
                channels: names,
            });
        }
        Ok(Routes { rules })
    }

    /// The channels a notification goes to: the first rule whose every `match` key matches
    /// the notification's field (a field matches one of the listed values; compared as
    /// strings, so priority 1 matches "1"); a rule without `match` catches all; with no
    /// routes configured, every channel. Deduplicated, in rule order. Empty when rules exist
    /// and none matches.
    pub fn channels_for(&self, notification: &Notification, channels: &Channels) -> Vec<String> {
        if self.rules.is_empty() {
            return channels.names().into_iter().map(str::to_string).collect();
        }
        self.rules
            .iter()
            .find(|rule| rule.matches(notification))
            .map(|rule| rule.channels.clone())
            .unwrap_or_default()
    }
}

/// The values of one `match` key as strings: a scalar or a list of scalars.
fn match_values(values: &MatchValues) -> std::result::Result<Vec<String>, String> {
    // The untagged enum reads a YAML list as `One(Sequence)`; both shapes mean a list.
    let list: Vec<&serde_yaml::Value> = match values {
        MatchValues::One(serde_yaml::Value::Sequence(items)) => items.iter().collect(),
        MatchValues::One(value) => vec![value],
        MatchValues::Any(items) => items.iter().collect(),
    };
    list.into_iter()
        .map(|value| match value {
            serde_yaml::Value::String(s) => Ok(s.clone()),
            serde_yaml::Value::Number(n) => Ok(n.to_string()),
            serde_yaml::Value::Bool(b) => Ok(b.to_string()),
            _ => Err("match a string, a number or a boolean, or a list of them".to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::settings;
    use std::path::Path;

    const CHANNELS: &str = "
channels:
  pager: { webhook: 'https://events.example/enqueue' }
  ops-log: { file: /var/log/opsbook/events.jsonl }
  chat: { command: [/usr/local/bin/chat-notify] }
";

    fn routes(yaml: &str) -> Result<(Routes, Channels)> {
        let settings = settings(&format!("{CHANNELS}{yaml}"), Path::new("/srv"));
        let channels = Channels::from_settings(&settings)?;
        Ok((Routes::from_settings(&settings, &channels)?, channels))
    }

    fn notification(fields: &[(&str, &str)]) -> Notification {
        Notification {
            topic: "run-parked".into(),
            summary: "run parked".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_first_matching_rule_wins_and_a_rule_without_match_catches_all() {
        let (routes, channels) = routes(
            "
routes:
  - { match: { priority: [1, 2], service: db }, channels: [pager, ops-log, pager] }
  - { match: { topic_kind: parked, urgent: true }, channels: [chat] }
  - { match: { priority: 1 }, channels: [chat] }
  - { channels: [ops-log] }
",
        )
        .unwrap();
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let table: &[Case] = &[
            (
                &[("priority", "1"), ("service", "db")],
                &["pager", "ops-log"],
            ),
            (
                &[("priority", "2"), ("service", "db")],
                &["pager", "ops-log"],
            ),
            // The first rule needs both keys; the third matches priority alone.
            (&[("priority", "1"), ("service", "web")], &["chat"]),
            (&[("topic_kind", "parked"), ("urgent", "true")], &["chat"]),
            (&[("priority", "3"), ("service", "db")], &["ops-log"]),
            (&[], &["ops-log"]),
        ];
        for (fields, expected) in table {
            assert_eq!(
                routes.channels_for(&notification(fields), &channels),
                *expected,
                "{fields:?}"
            );
        }
    }

    #[test]
    fn without_a_catch_all_a_notification_may_match_nothing() {
        let (routes, channels) =
            routes("routes:\n  - { match: { priority: 1 }, channels: [pager] }\n").unwrap();
        assert!(routes
            .channels_for(&notification(&[("priority", "2")]), &channels)
            .is_empty());
    }

    #[test]
    fn with_no_routes_every_channel_gets_everything() {
        let (routes, channels) = routes("").unwrap();
        assert_eq!(
            routes.channels_for(&notification(&[]), &channels),
            ["chat", "ops-log", "pager"]
        );
    }

    #[test]
    fn bad_routes_name_their_key() {
        let cases = [
            (
                "- { channels: [ops-log] }\n  - { channels: [ops-log] }\n  - { match: { priority: 1 }, channels: [pagr] }",
                "routes[2].channels: no channel named `pagr`: the channels are chat, ops-log, pager; did you mean `pager`?",
            ),
            (
                "- { channels: [] }",
                "routes[0].channels: a route sends to at least one channel",
            ),
            (
                "- { match: { service: { name: db } }, channels: [pager] }",
                "routes[0].match.service: match a string, a number or a boolean, or a list of them",
            ),
            (
                "- { match: { service: [] }, channels: [pager] }",
                "routes[0].match.service: list at least one value",
            ),
        ];
        for (yaml, expected) in cases {
            let e = routes(&format!("routes:\n  {yaml}\n"))
                .unwrap_err()
                .to_string();
            assert_eq!(e, format!("/srv/opsbook.yaml: {expected}"), "{yaml}");
        }
        let settings = settings("routes:\n  - { channels: [pager] }\n", Path::new("/srv"));
        let none = Channels::from_settings(&settings).unwrap();
        assert_eq!(
            Routes::from_settings(&settings, &none).unwrap_err().to_string(),
            "/srv/opsbook.yaml: routes[0].channels: no channel named `pager`: no channels are configured"
        );
    }
}
