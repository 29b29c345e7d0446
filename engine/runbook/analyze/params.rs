//! The `params:` section: types, defaults checked against their own type, pattern and enum.

use super::*;

impl Linter<'_> {
    // ----- params --------------------------------------------------------------------------

    pub(super) fn lint_params(&mut self, node: &Node) {
        let Some(map) = node.as_mapping() else {
            self.error(node.span(), "`params` must be a mapping of parameter names");
            return;
        };
        let name_pattern = Regex::new("^[a-z_][a-z0-9_]*$").expect("valid regex literal");
        for (name, spec) in map.iter() {
            self.params.push(name.as_str().to_string());
            if !name_pattern.is_match(name.as_str()) {
                self.error(
                    name.span(),
                    format!(
                        "parameter name `{}` must be lower-case letters, digits and `_`",
                        name.as_str()
                    ),
                );
            }
            self.lint_param(name.as_str(), spec);
        }
    }

    pub(super) fn lint_param(&mut self, name: &str, node: &Node) {
        let Some(map) = node.as_mapping() else {
            self.error(node.span(), format!("parameter `{name}` must be a mapping like `{{ type: string, required: true }}`"));
            return;
        };
        let what = format!("parameter `{name}`");
        self.check_keys(map, field_names::<ParamSpec>(), &what);
        self.enum_value(map, "type", &["string", "int", "float", "bool"]);
        self.bool_value(map, "required");
        self.bool_value(map, "secret");
        self.string_value(map, "description");
        let kind = match map.get_scalar("type").map(|t| t.as_str()) {
            Some("int") => ParamType::Int,
            Some("float") => ParamType::Float,
            Some("bool") => ParamType::Bool,
            _ => ParamType::String,
        };
        let secret = map
            .get_scalar("secret")
            .and_then(|s| s.as_bool())
            .unwrap_or(false);
        if let Some(env) = self.string_value(map, "env") {
            if env.is_empty() || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.error(
                    &Self::key_span(map, "env"),
                    format!("`env` of {what} must be an environment variable name"),
                );
            }
        }
        let pattern = match (self.string_value(map, "pattern"), map.get_node("pattern")) {
            (Some(p), Some(node)) => {
                match Regex::new(&p) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        let first_line =
                            e.to_string().lines().last().unwrap_or_default().to_string();
                        self.error(node.span(), format!("`pattern` of {what} is not a valid regular expression: {first_line}"));
                        None
                    }
                }
            }
            _ => None,
        };
        let mut choices = Vec::new();
        if let Some(node) = map.get_node("enum") {
            match node.as_sequence() {
                Some(seq) if !seq.is_empty() => {
                    for item in seq.iter() {
                        if let Some(s) = self.scalar(item, "enum", "a list of values") {
                            if let Err(m) = check_typed(s, kind) {
                                self.error(s.span(), format!("`enum` value of {what}: {m}"));
                            }
                            choices.push(s.as_str().to_string());
                        }
                    }
                }
                _ => self.error(
                    node.span(),
                    format!("`enum` of {what} must be a non-empty list of allowed values"),
                ),
            }
        }
        if let Some(node) = map.get_node("default") {
            if secret {
                self.error(node.span(), format!("{what} is secret and cannot have a default; it comes from its `env` variable or a prompt"));
            } else if let Some(s) = self.scalar(node, "default", "a single value") {
                if let Err(m) = check_typed(s, kind) {
                    self.error(s.span(), format!("`default` of {what}: {m}"));
                } else if let Some(re) = &pattern {
                    if !re.is_match(s.as_str()) {
                        self.error(s.span(), format!("`default` of {what} is `{}`, which does not match its pattern `{}`", s.as_str(), re.as_str()));
                    }
                }
                if !choices.is_empty() && !choices.iter().any(|c| c == s.as_str()) {
                    self.error(s.span(), format!("`default` of {what} is `{}`, which is not one of its `enum` values ({})", s.as_str(), choices.join(", ")));
                }
            }
            if map.get_scalar("required").and_then(|r| r.as_bool()) == Some(true) {
                self.warning_at(
                    Self::at(node.span()),
                    format!("{what} is required and also has a default; the default is never used"),
                );
            }
        }
    }
}
