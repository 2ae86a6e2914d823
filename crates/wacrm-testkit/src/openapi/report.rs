//! Rendering `jsonschema` errors as one line per failing keyword.
//!
//! A failed `oneOf`/`anyOf` on its own says only "matched none of the alternatives", which hides
//! the real mismatch when, as in Meta's `Change.value`, a payload is one alternative with one
//! wrong field. So for those the alternative that got furthest is descended into and its errors
//! are reported instead, each marked with the alternative it came from.

use jsonschema::error::ValidationErrorKind;
use jsonschema::ValidationError;

/// The longest instance excerpt kept in a message.
const MAX_MESSAGE: usize = 240;

/// Appends one line per leaf error: `<instance path>: <keyword>: <message>[ (via …)]`.
pub(crate) fn render(error: &ValidationError<'_>, via: &str, out: &mut Vec<String>) {
    let branches = match error.kind() {
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            Some(context)
        }
        _ => None,
    };
    let keyword = error.kind().keyword();
    let path = location(error);

    if let Some(branches) = branches {
        if let Some((index, branch)) = closest_branch(branches) {
            let via = format!("{via} (via {keyword}[{index}] at {path})");
            for inner in branch {
                render(inner, &via, out);
            }
            return;
        }
    }
    out.push(format!("{path}: {keyword}: {}{via}", message(error)));
}

/// The instance path of an error, `(root)` for the whole instance.
fn location(error: &ValidationError<'_>) -> String {
    let path = error.instance_path().as_str();
    if path.is_empty() {
        "(root)".to_owned()
    } else {
        path.to_owned()
    }
}

/// Nesting depth of a JSON pointer.
fn depth(error: &ValidationError<'_>) -> usize {
    error.instance_path().as_str().matches('/').count()
}

/// The alternative whose shallowest error is deepest in the instance (it matched the most of the
/// structure before failing); among equals, the one with the fewest errors, then the first.
fn closest_branch<'a, 'e>(
    branches: &'a [Vec<ValidationError<'e>>],
) -> Option<(usize, &'a [ValidationError<'e>])> {
    branches
        .iter()
        .enumerate()
        .filter(|(_, errors)| !errors.is_empty())
        .max_by(|(ia, a), (ib, b)| {
            let min_a = a.iter().map(depth).min().unwrap_or(0);
            let min_b = b.iter().map(depth).min().unwrap_or(0);
            min_a
                .cmp(&min_b)
                .then(b.len().cmp(&a.len()))
                .then(ib.cmp(ia))
        })
        .map(|(i, errors)| (i, errors.as_slice()))
}

/// `jsonschema`'s message, cut short: it quotes the failing instance, which can be a whole payload.
fn message(error: &ValidationError<'_>) -> String {
    let full = error.to_string();
    if full.chars().count() <= MAX_MESSAGE {
        return full;
    }
    let mut cut: String = full.chars().take(MAX_MESSAGE).collect();
    cut.push('…');
    cut
}
