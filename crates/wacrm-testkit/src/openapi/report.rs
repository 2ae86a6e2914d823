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
        if let Some((index, branch)) = closest_branch(branches, depth(error)) {
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

/// The alternative most likely meant, for a combinator at instance depth `at`:
///
/// 1. not one that rejects a member of the object by `enum`/`const` (that is how a
///    discriminating property such as `type` says "not this alternative");
/// 2. then the one whose shallowest error is deepest (it matched most of the structure);
/// 3. then the one with the fewest errors, then the first.
fn closest_branch<'a, 'e>(
    branches: &'a [Vec<ValidationError<'e>>],
    at: usize,
) -> Option<(usize, &'a [ValidationError<'e>])> {
    let score = |errors: &[ValidationError<'_>]| {
        let rejects_discriminator = errors
            .iter()
            .any(|e| depth(e) == at + 1 && matches!(e.kind().keyword(), "enum" | "const"));
        let shallowest = errors.iter().map(depth).min().unwrap_or(0);
        (
            !rejects_discriminator,
            shallowest,
            std::cmp::Reverse(errors.len()),
        )
    };
    branches
        .iter()
        .enumerate()
        .filter(|(_, errors)| !errors.is_empty())
        .max_by(|(ia, a), (ib, b)| score(a).cmp(&score(b)).then(ib.cmp(ia)))
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
