//! Links from the page to the transcripts: a path relative to the page's folder when both are
//! absolute (the page and the transcripts can move together, `.bmad-host/` as a whole), else a
//! `file://` URL. Always percent-encoded.

use std::path::{Component, Path, PathBuf};

use super::escape::url_path;

/// The `href` of `target` for a page in the folder `base`.
pub(super) fn href(base: &Path, target: &Path) -> String {
    match relative(base, target) {
        Some(rel) => url_path(&rel.to_string_lossy()),
        None => format!("file://{}", url_path(&target.to_string_lossy())),
    }
}

/// `target` relative to `base`, both absolute and without `..`; `None` otherwise.
fn relative(base: &Path, target: &Path) -> Option<PathBuf> {
    let plain = |p: &Path| {
        p.is_absolute()
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    };
    if !plain(base) || !plain(target) {
        return None;
    }
    let base: Vec<_> = base.components().collect();
    let target: Vec<_> = target.components().collect();
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for c in &target[common..] {
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_to_the_page() {
        assert_eq!(
            href(
                Path::new("/p/.bmad-host/reports"),
                Path::new("/p/.bmad-host/runs/r/1.1-c1-dev.jsonl")
            ),
            "../runs/r/1.1-c1-dev.jsonl"
        );
        assert_eq!(
            href(Path::new("/p"), Path::new("/p/.bmad-host/runs/r/x.jsonl")),
            ".bmad-host/runs/r/x.jsonl"
        );
        assert_eq!(
            href(Path::new("rel"), Path::new("/p/x y.jsonl")),
            "file:///p/x%20y.jsonl"
        );
    }
}
