//! Run parameters: checking `-p KEY=VALUE` against the runbook's `params` (type, pattern,
//! enum, required), reading secrets from their environment variable or a hidden prompt, and
//! handing the values to scripts, commands and the journal (secrets redacted there).

use indexmap::IndexMap;
use regex::Regex;
use serde_json::Value;

use crate::diagnostic::did_you_mean;
use crate::error::{Error, Result};
use crate::runbook::{ParamSpec, ParamType};

/// Where a secret comes from when its environment variable is not set.
pub trait SecretSource {
    /// Asks for the secret without echoing it; None when nobody can be asked.
    fn ask(&self, name: &str, description: Option<&str>) -> Option<String>;
}

/// The checked parameters of one run.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: IndexMap<String, Value>,
    secret_names: Vec<String>,
    /// The variable each secret was read from (`env:`), by name.
    secret_sources: Vec<(String, String)>,
}

/// A secret parameter as a command may receive it.
pub struct Secret {
    pub name: String,
    /// `OPSBOOK_PARAM_<NAME>`.
    pub env_name: String,
    pub value: String,
    /// The variable it was read from, if any (`env:`).
    pub source: Option<String>,
}

/// Splits `KEY=VALUE` from the command line.
pub fn parse_assignment(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(Error::ParamSyntax {
            given: text.to_string(),
        }),
    }
}

impl Params {
    /// Checks the given values against `specs` and fills in environment values and defaults.
    pub fn resolve(
        specs: &IndexMap<String, ParamSpec>,
        given: &[(String, String)],
        env: &dyn Fn(&str) -> Option<String>,
        secrets: &dyn SecretSource,
    ) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in given {
            match specs.get(name) {
                None => {
                    let hint = did_you_mean(name, specs.keys().map(String::as_str));
                    let known = if specs.is_empty() {
                        "; this runbook takes no parameters".to_string()
                    } else if hint.is_empty() {
                        format!(
                            "; it takes: {}",
                            specs.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    } else {
                        hint
                    };
                    return Err(Error::param(
                        name,
                        format!("the runbook has no such parameter{known}"),
                    ));
                }
                Some(spec) if spec.secret => {
                    let source = spec
                        .env
                        .as_deref()
                        .map(|v| format!("set the environment variable {v}, or"))
                        .unwrap_or_default();
                    return Err(Error::param(
                        name,
                        format!("is secret and is never taken from the command line (it would show in shell history and process lists); {source} answer the prompt on a terminal"),
                    ));
                }
                Some(_) => {}
            }
            if !seen.insert(name.clone()) {
                return Err(Error::param(name, "is given twice; give it once"));
            }
        }

        let mut params = Params::default();
        for (name, spec) in specs {
            let from_command_line = given
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone());
            let from_env = spec.env.as_deref().and_then(env);
            let raw = if spec.secret {
                params.secret_names.push(name.clone());
                if let Some(source) = &spec.env {
                    params.secret_sources.push((name.clone(), source.clone()));
                }
                from_env.or_else(|| secrets.ask(name, spec.description.as_deref()))
            } else {
                from_command_line.or(from_env)
            };
            let value = match raw {
                Some(text) => Some(typed_value(name, spec, &text)?),
                None => spec
                    .default
                    .as_ref()
                    .map(|d| default_value(name, spec, d))
                    .transpose()?,
            };
            match value {
                Some(value) => {
                    params.values.insert(name.clone(), value);
                }
                None if spec.required => {
                    let how = match (&spec.env, spec.secret) {
                        (Some(var), true) => format!("set the environment variable {var}"),
                        (None, true) => "run it on a terminal to be asked for it".to_string(),
                        (Some(var), false) => format!("pass -p {name}=VALUE or set {var}"),
                        (None, false) => format!("pass -p {name}=VALUE"),
                    };
                    let about = spec
                        .description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default();
                    return Err(Error::param(name, format!("is required{about}: {how}")));
                }
                None => {}
            }
        }
        Ok(params)
    }

    pub fn values(&self) -> &IndexMap<String, Value> {
        &self.values
    }

    pub fn is_secret(&self, name: &str) -> bool {
        self.secret_names.iter().any(|n| n == name)
    }

    /// The values of secret parameters, for redaction.
    pub fn secret_values(&self) -> Vec<String> {
        self.secret_names
            .iter()
            .filter_map(|n| self.values.get(n))
            .map(value_text)
            .collect()
    }

    /// The parameters as they are journaled and shown: secrets as `***`.
    pub fn redacted(&self) -> serde_json::Map<String, Value> {
        self.values
            .iter()
            .map(|(k, v)| {
                let shown = if self.is_secret(k) {
                    Value::String("***".into())
                } else {
                    v.clone()
                };
                (k.clone(), shown)
            })
            .collect()
    }

    /// The secrets with values, for the steps that use them.
    pub fn secrets(&self) -> Vec<Secret> {
        self.secret_names
            .iter()
            .filter_map(|name| {
                let value = self.values.get(name)?;
                Some(Secret {
                    name: name.clone(),
                    env_name: env_name(name),
                    value: value_text(value),
                    source: self
                        .secret_sources
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, s)| s.clone()),
                })
            })
            .collect()
    }

    /// `OPSBOOK_PARAM_<NAME>` for each value but the secrets, for every step's commands.
    pub fn environment(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .filter(|(k, _)| !self.is_secret(k))
            .map(|(k, v)| (env_name(k), value_text(v)))
            .collect()
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.values.get(name).map(value_text)
    }
}

/// The environment variable a parameter reaches commands in: `OPSBOOK_PARAM_<NAME>`.
pub fn env_name(param: &str) -> String {
    crate::runbook::template::env_name_of(&crate::runbook::template::Placeholder::Param(
        param.to_string(),
    ))
}

/// A value as text: strings as they are, everything else as JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn typed_value(name: &str, spec: &ParamSpec, text: &str) -> Result<Value> {
    // A secret's value never appears in a message, even a wrong one.
    let shown = if spec.secret { "the value given" } else { text };
    let value =
        match spec.kind {
            ParamType::String => Value::String(text.to_string()),
            ParamType::Int => text.trim().parse::<i64>().map(Value::from).map_err(|_| {
                Error::param(name, format!("must be a whole number, not `{shown}`"))
            })?,
            ParamType::Float => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::from)
                .ok_or_else(|| Error::param(name, format!("must be a number, not `{shown}`")))?,
            ParamType::Bool => match text.trim() {
                "true" | "yes" | "1" => Value::Bool(true),
                "false" | "no" | "0" => Value::Bool(false),
                _ => {
                    return Err(Error::param(
                        name,
                        format!("must be true or false, not `{text}`"),
                    ))
                }
            },
        };
    if let Some(pattern) = &spec.pattern {
        // The analyzer compiled every pattern before the run; an invalid one never gets here.
        let re = Regex::new(pattern).map_err(|e| Error::param(name, e.to_string()))?;
        if !re.is_match(text) {
            return Err(Error::param(
                name,
                format!("`{shown}` does not match the pattern `{pattern}`"),
            ));
        }
    }
    if let Some(choices) = &spec.choices {
        let allowed: Vec<String> = choices.iter().map(yaml_text).collect();
        if !allowed.iter().any(|c| c == text) {
            let hint = if spec.secret {
                String::new()
            } else {
                did_you_mean(text, allowed.iter().map(String::as_str))
            };
            return Err(Error::param(
                name,
                format!("`{shown}` is not one of: {}{hint}", allowed.join(", ")),
            ));
        }
    }
    Ok(value)
}

fn default_value(name: &str, spec: &ParamSpec, default: &serde_yaml::Value) -> Result<Value> {
    typed_value(name, spec, &yaml_text(default))
}

fn yaml_text(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoPrompt;
    impl SecretSource for NoPrompt {
        fn ask(&self, _: &str, _: Option<&str>) -> Option<String> {
            None
        }
    }

    fn specs() -> IndexMap<String, ParamSpec> {
        serde_yaml::from_str(
            r#"
host: { type: string, required: true, pattern: '^[a-z0-9.-]+$' }
min_free: { type: int, default: 20 }
ratio: { type: float, default: 1.5 }
mode: { type: string, enum: [fast, safe], default: safe }
password: { type: string, secret: true, env: PGPASSWORD }
"#,
        )
        .unwrap()
    }

    fn resolve(given: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Params> {
        let given: Vec<_> = given
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Params::resolve(
            &specs(),
            &given,
            &|var| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()),
            &NoPrompt,
        )
    }

    #[test]
    fn typed_values_defaults_and_secrets() {
        let p = resolve(
            &[("host", "db1"), ("min_free", "30")],
            &[("PGPASSWORD", "s3cret")],
        )
        .unwrap();
        assert_eq!(p.values()["min_free"], Value::from(30));
        assert_eq!(p.values()["ratio"], Value::from(1.5));
        assert_eq!(p.values()["mode"], Value::from("safe"));
        assert_eq!(p.secret_values(), ["s3cret"]);
        assert_eq!(p.redacted()["password"], Value::from("***"));
        assert!(p
            .environment()
            .contains(&("OPSBOOK_PARAM_HOST".into(), "db1".into())));
    }

    #[test]
    fn every_bad_value_names_the_parameter() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "parameter `host`: is required"),
            (&[("host", "DB 1")], "does not match the pattern"),
            (
                &[("host", "db1"), ("min_free", "lots")],
                "must be a whole number",
            ),
            (&[("host", "db1"), ("mode", "fsat")], "did you mean `fast`"),
            (
                &[("host", "db1"), ("hots", "x")],
                "parameter `hots`: the runbook has no such parameter",
            ),
            (
                &[("host", "db1"), ("password", "x")],
                "never taken from the command line",
            ),
        ];
        for (given, expected) in cases {
            let err = resolve(given, &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "{given:?}: {err}");
        }
    }

    #[test]
    fn assignment_needs_an_equals_sign() {
        assert_eq!(
            parse_assignment("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(parse_assignment("novalue").is_err());
    }
}
