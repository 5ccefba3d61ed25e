//! Where a key path (`policy.allowedRepos[1]`) is written in YAML text, for errors found
//! after parsing, when the parser's position is gone. Block style is followed key by key
//! and item by item; inside a flow collection (`{a: 1}`) the key is looked for on its line.

/// One step of a key path.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some(close) = rest.find(']') {
            // `rest` is what follows a `]` after the first step: any text at all.
            if let Some(Ok(index)) = rest.get(1..close).map(str::parse) {
                steps.push(Step::Index(index));
            }
            rest = &rest[close + 1..];
        }
    }
    steps
}

/// A line's indentation and its text after it, if it holds anything but a comment.
fn content(line: &str) -> Option<(usize, &str)> {
    let text = line.trim_start_matches(' ');
    (!text.is_empty() && !text.starts_with('#')).then(|| (line.len() - text.len(), text))
}

/// Whether `text` starts with the mapping key `key` (plain or quoted), followed by `:`.
fn starts_with_key(text: &str, key: &str) -> bool {
    [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|k| {
            text.strip_prefix(k.as_str())
                .is_some_and(|r| r.starts_with(':'))
        })
}

/// The 1-based line and column of the `nth` (0-based) occurrence of the last key of
/// `path` among its siblings, and whether the whole path was found (else the position
/// is that of the deepest part found). `None` if not even the first key is in `text`.
pub(crate) fn locate(text: &str, path: &str, nth: usize) -> Option<((usize, usize), bool)> {
    let lines: Vec<&str> = text.lines().collect();
    let steps = steps(path);
    // The lines the current node's children may be on, and the indent they exceed.
    let (mut from, mut to, mut parent) = (0, lines.len(), None::<usize>);
    let mut found: Option<((usize, usize), bool)> = None;
    // After an index: the item's line, whose `- ` may be followed by its first key.
    let mut item_line = None;
    for (depth, step) in steps.iter().enumerate() {
        let skip = if depth + 1 == steps.len() { nth } else { 0 };
        let deeper = |indent: usize| parent.is_none_or(|p| indent > p);
        let hit = match step {
            Step::Key(key) => {
                // A mapping's keys share the indent of its first one.
                let entries: Vec<(usize, usize, &str)> = (from..to)
                    .filter_map(|i| {
                        let (indent, text) = content(lines[i])?;
                        let (indent, text) = match text.strip_prefix("- ") {
                            Some(item) if item_line == Some(i) => (indent + 2, item.trim_start()),
                            _ => (indent, text),
                        };
                        deeper(indent).then_some((i, indent, text))
                    })
                    .collect();
                let level = entries.first().map(|(_, indent, _)| *indent);
                entries
                    .into_iter()
                    .filter(|(_, indent, text)| {
                        Some(*indent) == level && starts_with_key(text, key)
                    })
                    .map(|(i, indent, _)| (i, indent))
                    .nth(skip)
            }
            Step::Index(index) => {
                let items: Vec<(usize, usize)> = (from..to)
                    .filter_map(|i| {
                        let (indent, text) = content(lines[i])?;
                        (deeper(indent) && (text == "-" || text.starts_with("- ")))
                            .then_some((i, indent))
                    })
                    .collect();
                let indent = items.iter().map(|(_, indent)| *indent).min();
                items
                    .into_iter()
                    .filter(|(_, i)| Some(*i) == indent)
                    .nth(*index)
            }
        };
        let Some((line, indent)) = hit else {
            // Maybe inside a flow collection on the line found last.
            let (at, _) = found?;
            if let Step::Key(key) = step {
                let row: &str = lines[at.0 - 1];
                if let Some(column) = flow_key(row, key) {
                    return Some(((at.0, column + 1), depth + 1 == steps.len()));
                }
            }
            return found.map(|(at, _)| (at, false));
        };
        found = Some(((line + 1, indent + 1), depth + 1 == steps.len()));
        item_line = matches!(step, Step::Index(_)).then_some(line);
        from = item_line.unwrap_or(line + 1);
        to = (line + 1..lines.len())
            .find(|&i| content(lines[i]).is_some_and(|(i, _)| i <= indent))
            .unwrap_or(lines.len());
        parent = Some(indent);
    }
    found
}

/// The column (0-based) of `key:` inside a flow mapping on `row`.
fn flow_key(row: &str, key: &str) -> Option<usize> {
    row.match_indices(key).map(|(at, _)| at).find(|&at| {
        let before = row[..at].trim_end();
        (before.ends_with('{') || before.ends_with(',')) && row[at + key.len()..].starts_with(':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
listen: 127.0.0.1:3128
github:
  app:
    id: \"1\"
policy:
  allowedRepos:
    - acme/app
    - \"acme/[lib\"
  maxPushSize: 2TB
profiles:
  agent-a:
    policy: {allowHosts: [a.test], allowedRepos: [x/y]}
  agent-b:
    - name: first
    - name: second
policy:
  again: true
";

    #[test]
    fn block_keys_items_and_flow_keys_are_found() {
        for (path, nth, want) in [
            ("listen", 0, ((2, 1), true)),
            ("github.app.id", 0, ((5, 5), true)),
            ("policy.allowedRepos[1]", 0, ((9, 5), true)),
            ("policy.maxPushSize", 0, ((10, 3), true)),
            ("profiles.agent-a.policy.allowedRepos", 0, ((13, 36), true)),
            ("profiles.agent-b[1].name", 0, ((16, 7), true)),
            ("policy", 1, ((17, 1), true)),
            ("policy.missing", 0, ((6, 1), false)),
        ] {
            assert_eq!(locate(TEXT, path, nth), Some(want), "{path}");
        }
        assert_eq!(locate(TEXT, "nowhere", 0), None);
    }

    #[test]
    fn paths_split_into_keys_and_indices() {
        assert_eq!(
            steps("profiles.a-b.policy.allowedRepos[2]"),
            [
                Step::Key("profiles"),
                Step::Key("a-b"),
                Step::Key("policy"),
                Step::Key("allowedRepos"),
                Step::Index(2)
            ]
        );
        // Map keys are any text: brackets in them never make a step panic.
        for key in ["x[]]", "x]]", "x[1]é]", "[", "]", "x[é]"] {
            let _ = steps(key);
        }
        assert_eq!(
            steps("upstream.resolve.x[]]"),
            [Step::Key("upstream"), Step::Key("resolve"), Step::Key("x")]
        );
    }
}
