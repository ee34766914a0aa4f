//! Namespace tools (`{"type": "namespace", "name": "multi_agent_v1", "tools": […]}`)
//! exist only in the Responses API. Other providers get each inner function as a
//! plain tool named `{namespace}__{name}` (Anthropic tool names match
//! `^[a-zA-Z0-9_-]{1,64}$`); a call to one comes back split again, as a
//! `function_call` with `namespace` and `name`, the way the Responses API reports it.

/// Between a namespace and a tool name in a flattened tool name.
pub const SEPARATOR: &str = "__";

/// The flattened namespace tools of one request: flat name → namespace and name
/// (looked up by name, so a request with many tools is not read once per tool).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolNames {
    tools: crate::lookup::LookupMap<String, (String, String)>,
}

impl ToolNames {
    /// Records `namespace`'s tool `name`; returns the flat name the provider gets.
    pub fn flatten(&mut self, namespace: &str, name: &str) -> String {
        let flat = flat_name(namespace, name);
        if !self.tools.contains_key(&flat) {
            let named = (namespace.to_string(), name.to_string());
            self.tools.insert(flat.clone(), named);
        }
        flat
    }

    /// The namespace and name the client knows a provider's tool name by: a
    /// flattened name splits back, any other is its own name without a namespace.
    pub fn split<'a>(&'a self, provider_name: &'a str) -> (Option<&'a str>, &'a str) {
        match self.tools.get(provider_name) {
            Some((namespace, name)) => (Some(namespace.as_str()), name.as_str()),
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

    #[test]
    fn many_tools_are_each_kept_once() {
        let mut names = ToolNames::default();
        for i in 0..50_000 {
            names.flatten("ns", &format!("tool_{i}"));
            names.flatten("ns", &format!("tool_{i}"));
        }
        assert_eq!(names.tools.len(), 50_000);
        assert_eq!(names.split("ns__tool_49999"), (Some("ns"), "tool_49999"));
    }
}
