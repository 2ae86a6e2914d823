//! Fanning a batch out over CRM calls and gathering the answers back in the batch's order: for
//! adapters whose CRM takes one record (a note, a task) per request, each answering for several
//! of the batch's items.

use std::future::Future;

use futures::StreamExt;

use crate::adapter::{CrmError, ItemResult};

/// The positions of `items`, grouped by `key` (groups in the order their key first appears) —
/// e.g. status updates grouped by the note they rewrite.
pub fn positions_by<'a, T, K: PartialEq>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<(K, Vec<usize>)> {
    let mut groups: Vec<(K, Vec<usize>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let k = key(item);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, positions)) => positions.push(i),
            None => groups.push((k, vec![i])),
        }
    }
    groups
}

/// Runs `calls` at most `concurrency` at a time; each answers for the positions it names, one
/// result per position, and every result is put at its position. A position no call answered
/// is [`CrmError::Transient`] (sent again with the next attempt).
pub async fn per_position<T, Fut>(
    len: usize,
    calls: Vec<Fut>,
    concurrency: usize,
) -> Vec<ItemResult<T>>
where
    Fut: Future<Output = (Vec<usize>, Vec<ItemResult<T>>)>,
{
    let outcomes: Vec<_> = futures::stream::iter(calls)
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut out: Vec<ItemResult<T>> = (0..len)
        .map(|_| Err(CrmError::Transient("not sent".into())))
        .collect();
    for (positions, results) in outcomes {
        for (i, result) in positions.into_iter().zip(results) {
            if let Some(slot) = out.get_mut(i) {
                *slot = result;
            }
        }
    }
    out
}

/// Runs `calls` at most `concurrency` at a time; each answers for a group of positions with one
/// outcome. A refused group ([`ErrorClass::DeadLetter`](wacrm_core::ErrorClass)) fails its
/// positions alone; any other error fails the whole batch, which the engine retries, parks or
/// stops on.
pub async fn per_group<Fut>(
    len: usize,
    calls: Vec<Fut>,
    concurrency: usize,
) -> Result<Vec<ItemResult<()>>, CrmError>
where
    Fut: Future<Output = (Vec<usize>, Result<(), CrmError>)>,
{
    let outcomes: Vec<_> = futures::stream::iter(calls)
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut out: Vec<ItemResult<()>> = (0..len).map(|_| Ok(())).collect();
    for (positions, outcome) in outcomes {
        if let Err(e) = outcome {
            if e.class() != wacrm_core::ErrorClass::DeadLetter {
                return Err(e);
            }
            for i in positions {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Err(e.clone());
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_grouped_in_first_seen_order() {
        let groups = positions_by(&["b", "a", "b", "c", "a"], |s| *s);
        assert_eq!(
            groups,
            vec![("b", vec![0, 2]), ("a", vec![1, 4]), ("c", vec![3])]
        );
    }

    #[tokio::test]
    async fn results_land_at_their_positions_and_unanswered_ones_are_transient() {
        use futures::future::ready;
        let calls = vec![
            ready((
                vec![2usize, 0],
                vec![Ok("x".to_owned()), Ok("y".to_owned())],
            )),
            ready((vec![3usize], vec![Err(CrmError::Invalid("refused".into()))])),
        ];
        let out = per_position(5, calls, 2).await;
        assert_eq!(out[0].as_deref().ok(), Some("y"));
        assert_eq!(out[2].as_deref().ok(), Some("x"));
        assert!(matches!(out[1], Err(CrmError::Transient(_))));
        assert!(matches!(out[3], Err(CrmError::Invalid(_))));
    }

    #[tokio::test]
    async fn a_refused_group_fails_alone_and_an_outage_fails_the_batch() {
        use futures::future::ready;
        let refused = vec![
            ready((vec![0usize, 2], Err(CrmError::Invalid("bad".into())))),
            ready((vec![1usize], Ok(()))),
        ];
        let out = per_group(3, refused, 2).await.unwrap();
        assert!(out[0].is_err() && out[1].is_ok() && out[2].is_err());
        let outage = vec![ready((
            vec![0usize],
            Err(CrmError::Transient("down".into())),
        ))];
        assert!(per_group(1, outage, 1).await.is_err());
    }
}
