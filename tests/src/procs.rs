//! Process scans for tests: which live processes carry a marker in their environment (every
//! process of a fake-claude call inherits the test's `FAKE_CLAUDE_TAG=<tag>`).

use std::fs;

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, ...), if the process exists.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Live (not zombie, not dead) processes whose environment holds `FAKE_CLAUDE_TAG=<tag>`.
pub fn live_processes_with_marker(tag: &str) -> Vec<u32> {
    processes_with_env("FAKE_CLAUDE_TAG", tag)
}

/// Live (not zombie, not dead) processes whose environment holds `key=value`.
pub fn processes_with_env(key: &str, value: &str) -> Vec<u32> {
    let entry = format!("{key}={value}").into_bytes();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry.as_slice()))
        })
        .filter(|&pid| process_state(pid).is_some_and(|s| !matches!(s, 'Z' | 'X' | 'x')))
        .collect();
    out.sort_unstable();
    out
}

/// Live processes whose `FAKE_CLAUDE_TAG` starts with `prefix` (for a whole test's calls).
pub fn live_processes_with_tag_prefix(prefix: &str) -> Vec<u32> {
    let needle = format!("FAKE_CLAUDE_TAG={prefix}").into_bytes();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e.starts_with(&needle)))
        })
        .filter(|&pid| process_state(pid).is_some_and(|s| !matches!(s, 'Z' | 'X' | 'x')))
        .collect();
    out.sort_unstable();
    out
}

/// This process's children that are zombies (exited, never reaped).
pub fn zombie_children() -> Vec<u32> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_ascii_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|&pid| process_state(pid) == Some('Z'))
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_marked_child_and_forgets_it_once_reaped() {
        // The prefix is this process's own: another run of this test (or one that failed and
        // left its child) must not be seen.
        let prefix = format!("procs-self-test-{}-", std::process::id());
        let tag = format!("{prefix}child");
        // spawn() returns once the child has begun exec, before the kernel has laid out its new
        // environment: wait for the child's own word that it runs (a line on its stdout), and
        // keep it that same process (no second exec) by having it wait on its stdin.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "echo ready; read -r _"])
            .stdin(std::process::Stdio::piped())
            .env("FAKE_CLAUDE_TAG", &tag)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read ready");
        assert_eq!(line, "ready\n");
        let pid = child.id();
        assert_eq!(live_processes_with_marker(&tag), vec![pid]);
        assert_eq!(live_processes_with_tag_prefix(&prefix), vec![pid]);
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(live_processes_with_marker(&tag).is_empty());
    }
}
