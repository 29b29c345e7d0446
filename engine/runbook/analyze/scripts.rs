//! The texts inside steps: Rhai blocks, `when` and `expect` compiled and their errors mapped
//! into the YAML, `script:` files, and placeholders that must name an earlier step or a param.

use super::*;

impl Linter<'_> {
    /// Scripts, conditions and placeholders: compiled or resolved now, errors mapped into the YAML.
    pub(super) fn lint_step_texts(&mut self, map: &MarkedMappingNode, id: &str, section: Section) {
        if let Some(node) = map.get_scalar("rhai") {
            let location = self.locate(node);
            match script::compile_script(self.engine, node.as_str()) {
                Ok(ast) => {
                    self.compiled.insert((id.to_string(), "rhai"), ast);
                }
                Err((message, pos)) => {
                    let pos = locate_import(node.as_str(), &message).unwrap_or(pos);
                    let at = self.map_position(location, node.as_str(), pos);
                    self.error_at(at, format!("Rhai error in step `{id}`: {message}"));
                }
            }
        }
        if let Some(node) = map.get_scalar("script") {
            self.lint_script_file(node, id);
        }
        for key in ["when", "expect"] {
            let Some(node) = map.get_scalar(key) else {
                continue;
            };
            if key == "expect" && map.get_node("manual").is_some() {
                continue; // a manual step's expectation is text for the operator
            }
            let location = self.locate(node);
            match script::compile_expression(self.engine, node.as_str()) {
                Ok(ast) => {
                    self.compiled.insert(
                        (
                            id.to_string(),
                            if key == "when" { "when" } else { "expect" },
                        ),
                        ast,
                    );
                }
                Err((message, pos)) => {
                    let at = self.map_position(location, node.as_str(), pos);
                    self.error_at(
                        at,
                        format!("Rhai error in `{key}` of step `{id}`: {message}"),
                    );
                }
            }
        }
        let gate_prompt = map.get_mapping("gate").and_then(|g| g.get_scalar("prompt"));
        let texts = [
            map.get_scalar("shell"),
            map.get_scalar("manual"),
            gate_prompt,
        ];
        for node in texts.into_iter().flatten() {
            self.lint_placeholders(node, id, section);
        }
        if let Some(command) = map.get_scalar("shell") {
            self.lint_command_placeholders(command, id);
        }
    }

    /// A placeholder in a command becomes an environment reference; where no reference can
    /// be expanded safely (single quotes, backquotes, `$((…))`, a comment, a quoted here-
    /// document) it is an error at its position.
    pub(super) fn lint_command_placeholders(&mut self, node: &MarkedScalarNode, id: &str) {
        let text = node.as_str();
        let location = self.locate(node);
        for found in template::find(text) {
            if found.placeholder.is_err() {
                continue; // reported by lint_placeholders
            }
            if let template::ShellContext::Unsafe(place) = template::context_at(text, found.start) {
                let at = self.map_offset(location, text, found.start);
                self.error_at(
                    at,
                    format!(
                        "`{{{{ {} }}}}` in the command of step `{id}` is {place}, where a value cannot be passed safely; move it outside, or into double quotes",
                        found.inner
                    ),
                );
            }
        }
    }

    pub(super) fn lint_script_file(&mut self, node: &MarkedScalarNode, id: &str) {
        let name = node.as_str();
        let relative = Path::new(name);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            self.error(node.span(), format!("`script: {name}` must name a file inside the scripts folder, without `..` or a leading `/`"));
            return;
        }
        let path = self.scripts_dir.join(relative);
        if path.exists() {
            if let Err(why) = script::resolver::check_inside(self.scripts_dir, name) {
                self.error(node.span(), format!("step `{id}`: script `{name}`: {why}"));
                return;
            }
        }
        let file = match SourceFile::read(&path) {
            Ok(file) => file,
            Err(e) => {
                let mut message = format!("step `{id}`: script `{name}`: {}", file_error_text(&e));
                if !path.exists() {
                    message = format!(
                        "step `{id}`: script file `{}` not found; scripts live in {}",
                        name,
                        self.scripts_dir.display()
                    );
                }
                self.error(node.span(), message);
                return;
            }
        };
        script::resolver::note_load(name, &file.content_hash);
        match script::compile_script(self.engine, &file.text) {
            Ok(ast) => {
                self.compiled.insert((id.to_string(), "script"), ast);
            }
            Err((message, pos)) => {
                let pos = locate_import(&file.text, &message).unwrap_or(pos);
                let line = pos.line().unwrap_or(0);
                self.diagnostics.push(
                    Diagnostic::error(
                        &path,
                        line,
                        pos.position().unwrap_or(1).max(1),
                        format!("Rhai error (script of step `{id}`): {message}"),
                    )
                    .with_source(&file.text),
                );
            }
        }
    }

    pub(super) fn lint_placeholders(
        &mut self,
        node: &MarkedScalarNode,
        id: &str,
        section: Section,
    ) {
        let location = self.locate(node);
        for found in template::find(node.as_str()) {
            let at = self.map_offset(location, node.as_str(), found.start);
            match found.placeholder {
                Err(message) => self.error_at(at, message),
                Ok(Placeholder::Param(name)) if !self.params.contains(&name) => {
                    let hint = did_you_mean(&name, self.params.iter().map(String::as_str));
                    self.error_at(
                        at,
                        format!(
                            "`{{{{ params.{name} }}}}` names no parameter of this runbook{hint}"
                        ),
                    );
                }
                Ok(Placeholder::Var { step, .. }) => {
                    let earlier = match section {
                        Section::Rollback => self.main_order.contains(&step),
                        _ => self
                            .main_order
                            .iter()
                            .take_while(|s| *s != id)
                            .any(|s| *s == step),
                    };
                    if !earlier {
                        let hint = did_you_mean(&step, self.main_order.iter().map(String::as_str));
                        self.error_at(at, format!("`{{{{ vars.{step}.… }}}}` in step `{id}` names no earlier step{hint}"));
                    }
                }
                Ok(_) => {}
            }
        }
    }
}
