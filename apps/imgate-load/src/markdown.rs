//! Writing one section of a Markdown document that other tools write other sections of.

/// `doc` with its level-2 section `heading` (the line `## …` exactly) replaced by `section`,
/// which must start with that heading line. The section runs to the next level-1 or level-2
/// heading or the end. When `doc` has no such section, `section` is appended; when there is
/// no document yet, it starts with `title` (a `# …` line).
pub fn replace_section(doc: Option<&str>, title: &str, heading: &str, section: &str) -> String {
    let section = section.trim_end();
    let Some(doc) = doc.filter(|d| !d.trim().is_empty()) else {
        return format!("{title}\n\n{section}\n");
    };
    let lines: Vec<&str> = doc.lines().collect();
    let mut in_fence = false;
    let mut start = None;
    let mut end = lines.len();
    for (index, line) in lines.iter().enumerate() {
        if line.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let is_heading = line.starts_with("# ") || line.starts_with("## ");
        match start {
            None if line.trim_end() == heading => start = Some(index),
            Some(_) if is_heading => {
                end = index;
                break;
            }
            _ => {}
        }
    }
    let Some(start) = start else {
        return format!("{}\n\n{section}\n", doc.trim_end());
    };
    let before = lines[..start].join("\n");
    let after = lines[end..].join("\n");
    let mut out = String::new();
    if !before.trim().is_empty() {
        out.push_str(before.trim_end());
        out.push_str("\n\n");
    }
    out.push_str(section);
    out.push('\n');
    if !after.trim().is_empty() {
        out.push('\n');
        out.push_str(after.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TITLE: &str = "# Reliability";
    const NEW: &str = "## Soak\n\nnew numbers\n";

    fn check(doc: Option<&str>, expected: &str) {
        assert_eq!(replace_section(doc, TITLE, "## Soak", NEW), expected);
    }

    #[test]
    fn a_missing_document_gets_the_title_and_the_section() {
        check(None, "# Reliability\n\n## Soak\n\nnew numbers\n");
        check(Some("\n"), "# Reliability\n\n## Soak\n\nnew numbers\n");
    }

    #[test]
    fn a_document_without_the_section_gets_it_appended() {
        check(
            Some("# Reliability\n\n## Fault matrix\n\n| a | b |\n"),
            "# Reliability\n\n## Fault matrix\n\n| a | b |\n\n## Soak\n\nnew numbers\n",
        );
    }

    #[test]
    fn only_the_section_is_replaced_and_its_neighbours_kept() {
        check(
            Some("# Reliability\n\n## Soak\n\nold\n### detail\nold too\n\n## Fuzzing\n\nkept\n"),
            "# Reliability\n\n## Soak\n\nnew numbers\n\n## Fuzzing\n\nkept\n",
        );
        check(
            Some("# Reliability\n\n## Fault matrix\n\nkept\n\n## Soak\n\nold\n"),
            "# Reliability\n\n## Fault matrix\n\nkept\n\n## Soak\n\nnew numbers\n",
        );
    }

    #[test]
    fn headings_inside_code_fences_do_not_count() {
        check(
            Some("# R\n\n```\n## Soak\n```\n"),
            "# R\n\n```\n## Soak\n```\n\n## Soak\n\nnew numbers\n",
        );
        check(
            Some("# R\n\n## Soak\n\n```sh\n## not a heading\n```\nold\n\n## Next\n"),
            "# R\n\n## Soak\n\nnew numbers\n\n## Next\n",
        );
    }

    #[test]
    fn a_similar_heading_is_not_the_section() {
        check(
            Some("# R\n\n## Soak test notes\n\nkept\n"),
            "# R\n\n## Soak test notes\n\nkept\n\n## Soak\n\nnew numbers\n",
        );
    }
}
