//! Namespace tools (`{"type": "namespace", "name": "multi_agent_v1", "tools": […]}`)
//! exist only in the Responses API. Other providers get each inner function as a
//! plain tool named `{namespace}__{name}` (Anthropic tool names match
//! `^[a-zA-Z0-9_-]{1,64}$`); a call to one comes back split again, as a
//! `function_call` with `namespace` and `name`, the way the Responses API reports it.

/// Between a namespace and a tool name in a flattened tool name.
pub const SEPARATOR: &str = "__";

/// One flattened tool.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FlatTool {
    flat: String,
    namespace: String,
    name: String,
}

/// The flattened namespace tools of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolNames {
    tools: Vec<FlatTool>,
}

impl ToolNames {
    /// Records `namespace`'s tool `name`; returns the flat name the provider gets.
    pub fn flatten(&mut self, namespace: &str, name: &str) -> String {
        let flat = flat_name(namespace, name);
        if !self.tools.iter().any(|t| t.flat == flat) {
            self.tools.push(FlatTool {
                flat: flat.clone(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
        flat
    }

    /// The namespace and name the client knows a provider's tool name by: a
    /// flattened name splits back, any other is its own name without a namespace.
    pub fn split<'a>(&'a self, provider_name: &'a str) -> (Option<&'a str>, &'a str) {
        match self.tools.iter().find(|t| t.flat == provider_name) {
            Some(t) => (Some(t.namespace.as_str()), t.name.as_str()),
            None => (None, provider_name),
        }
    }

    /// Whether there are no flattened tools.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// The provider's name for `namespace`'s tool `name`.
pub fn flat_name(namespace: &str, name: &str) -> String {
    format!("{namespace}{SEPARATOR}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_names_split_back_and_others_stay_as_they_are() {
        let mut names = ToolNames::default();
        assert!(names.is_empty());
        assert_eq!(
            names.flatten("multi_agent_v1", "spawn_agent"),
            "multi_agent_v1__spawn_agent"
        );
        assert_eq!(
            names.split("multi_agent_v1__spawn_agent"),
            (Some("multi_agent_v1"), "spawn_agent")
        );
        assert_eq!(names.split("exec_command"), (None, "exec_command"));
        // A plain tool whose name merely looks flattened is left alone.
        assert_eq!(names.split("other__tool"), (None, "other__tool"));
    }
}
