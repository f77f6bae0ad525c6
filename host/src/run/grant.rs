//! What a policy may put on the agent's command line: its `invoke-agent` request checked against
//! what the operator granted, before anything runs.
//!
//! - every `allowed_tools` entry must be granted by `[claude] allowed_tools` or the plugin's
//!   `[plugins.NAME] allowed_tools`: the same entry, or the bare tool name (`Bash` grants
//!   `Bash(git *)`, never the other way round);
//! - `model` must be `[claude] model` or listed in `[claude] allowed_models`;
//! - the prompt and the appended system prompt must fit `[claude] max_prompt_bytes` and
//!   `max_system_prompt_bytes`, and hold no NUL byte.
//!
//! The defaults grant no tool and no model, which is what the default plugins ask for. A request
//! outside the grant fails the role's step with a message naming the plugin, what it asked for
//! and the key that would grant it. The permission mode is the operator's alone: the WIT has no
//! way to ask for one.

use crate::config::Config;
use crate::policy::AgentRequest;

/// `Ok` when `plugin` (serving `role`) may make `request`; else why not, and the key to change.
pub(super) fn check(
    config: &Config,
    plugin: &str,
    role: &str,
    request: &AgentRequest,
) -> Result<(), String> {
    let c = &config.claude;
    let who = format!("the {role} policy `{plugin}`");
    let own: &[String] = config
        .plugin_grant(plugin)
        .map_or(&[], |g| g.allowed_tools.as_slice());
    for tool in &request.allowed_tools {
        let granted = c
            .allowed_tools
            .value
            .iter()
            .chain(own)
            .any(|g| grants(g, tool));
        if !granted {
            return Err(format!(
                "{who} asked for the tool {tool:?}, which the operator has not granted: add it to \
                 `[plugins.{plugin}] allowed_tools` (this plugin) or `[claude] allowed_tools` \
                 (every plugin) in bmad-host.toml or the user's config.toml"
            ));
        }
    }
    if let Some(model) = &request.model {
        let granted = c.model.value.as_deref() == Some(model.as_str())
            || c.allowed_models.value.iter().any(|m| m == model);
        if !granted {
            return Err(format!(
                "{who} asked for the model {model:?}, which the operator has not granted: add it \
                 to `[claude] allowed_models` in bmad-host.toml or the user's config.toml"
            ));
        }
    }
    let texts = [
        (
            "prompt",
            Some(&request.prompt),
            c.max_prompt_bytes.value,
            "max_prompt_bytes",
        ),
        (
            "appended system prompt",
            request.append_system_prompt.as_ref(),
            c.max_system_prompt_bytes.value,
            "max_system_prompt_bytes",
        ),
    ];
    for (what, text, cap, key) in texts {
        let Some(text) = text else { continue };
        if text.len() > cap as usize {
            return Err(format!(
                "{who} gave a {what} of {} bytes, more than `[claude] {key}` ({cap} bytes) allows",
                text.len()
            ));
        }
        if text.contains('\0') {
            return Err(format!(
                "{who} gave a {what} with a NUL byte, which no command line can carry"
            ));
        }
    }
    Ok(())
}

/// Whether the granted entry `grant` covers the requested `tool`: the same entry, or the bare
/// tool name of a well-formed `Name(specifier)` request.
fn grants(grant: &str, tool: &str) -> bool {
    let (grant, tool) = (grant.trim(), tool.trim());
    if grant == tool {
        return true;
    }
    let bare = !grant.is_empty() && grant.bytes().all(name_byte);
    let Some(spec) = tool
        .strip_prefix(grant)
        .and_then(|rest| rest.strip_prefix('('))
        .and_then(|rest| rest.strip_suffix(')'))
    else {
        return false;
    };
    // The CLI splits its list on commas: a specifier must not smuggle a second entry in.
    bare && !spec.contains(['(', ')', ','])
}

/// A byte of a tool's name (`Bash`, `mcp__github__create_issue`).
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tools: &[&str], model: Option<&str>) -> AgentRequest {
        AgentRequest {
            prompt: "do it".into(),
            max_turns: None,
            allowed_tools: tools.iter().map(|t| t.to_string()).collect(),
            model: model.map(str::to_string),
            append_system_prompt: None,
        }
    }

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(crate::config::FILE_NAME), text).expect("write");
        Config::load(dir.path(), &|_| None, &crate::config::Overrides::default()).expect("config")
    }

    #[test]
    fn the_defaults_grant_what_the_default_plugins_ask() {
        let c = Config::default();
        assert_eq!(check(&c, "dev", "dev", &request(&[], None)), Ok(()));
        let err = check(&c, "dev", "dev", &request(&["Bash"], None)).expect_err("no grant");
        assert!(err.contains("`dev`") && err.contains("\"Bash\""), "{err}");
        assert!(err.contains("[plugins.dev] allowed_tools"), "{err}");
        let err = check(&c, "dev", "dev", &request(&[], Some("opus"))).expect_err("no grant");
        assert!(
            err.contains("\"opus\"") && err.contains("allowed_models"),
            "{err}"
        );
    }

    #[test]
    fn grants_by_entry_by_tool_and_by_plugin() {
        let c = config(
            "[claude]\nallowed_tools = [\"Read\", \"Bash\"]\nallowed_models = [\"sonnet\"]\nmodel = \"opus\"\n\
             [plugins.qa]\nallowed_tools = [\"WebFetch\"]\n",
        );
        let ok = |plugin: &str, tools: &[&str], model: Option<&str>| {
            check(&c, plugin, "dev", &request(tools, model))
        };
        assert_eq!(ok("dev", &["Read", "Bash(git *)"], Some("sonnet")), Ok(()));
        assert_eq!(ok("dev", &[], Some("opus")), Ok(()));
        assert_eq!(ok("qa", &["WebFetch"], None), Ok(()));
        assert!(ok("dev", &["WebFetch"], None).is_err());
        assert!(ok("dev", &["Bash(x),Write"], None).is_err());
        assert!(ok("dev", &["Bash(a(b))"], None).is_err());
        assert!(ok("dev", &["Read,Write"], None).is_err());
        assert!(ok("dev", &[], Some("haiku")).is_err());
        // A specifier grants only itself.
        assert!(!grants("Bash(git *)", "Bash"));
        assert!(grants("Bash(git *)", "Bash(git *)"));
    }

    #[test]
    fn prompts_are_capped() {
        let c = config("[claude]\nmax_prompt_bytes = 10\nmax_system_prompt_bytes = 4\n");
        let mut r = request(&[], None);
        assert_eq!(check(&c, "dev", "dev", &r), Ok(()));
        r.prompt = "x".repeat(11);
        let err = check(&c, "dev", "dev", &r).expect_err("too long");
        assert!(
            err.contains("max_prompt_bytes") && err.contains("11 bytes"),
            "{err}"
        );
        r.prompt = "ok".into();
        r.append_system_prompt = Some("12345".into());
        let err = check(&c, "dev", "dev", &r).expect_err("too long");
        assert!(err.contains("max_system_prompt_bytes"), "{err}");
        r.append_system_prompt = None;
        r.prompt = "a\0b".into();
        assert!(check(&c, "dev", "dev", &r).is_err());
    }
}
