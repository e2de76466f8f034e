//! Helpers for the in-process caches (moka).

use std::hash::Hash;

/// Drops every entry for which `doomed` holds, now. A scan of the cache, for rare events
/// (a deletion): moka's own `invalidate_entries_if` needs `support_invalidation_closures`,
/// which makes every read of the cache check the registered predicates, and so costs the hot
/// path what only deletions need.
pub async fn invalidate_where<K, V>(
    cache: &moka::future::Cache<K, V>,
    doomed: impl Fn(&K, &V) -> bool,
) where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let keys: Vec<_> = cache
        .iter()
        .filter(|(k, v)| doomed(k, v))
        .map(|(k, _)| k)
        .collect();
    for key in keys {
        cache.invalidate(&*key).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_doomed_entries_go() {
        let cache: moka::future::Cache<u32, &'static str> = moka::future::Cache::new(100);
        for (k, v) in [(1, "a"), (2, "b"), (3, "a")] {
            cache.insert(k, v).await;
        }
        invalidate_where(&cache, |_, v| *v == "a").await;
        assert_eq!(cache.get(&1).await, None);
        assert_eq!(cache.get(&2).await, Some("b"));
        assert_eq!(cache.get(&3).await, None);
    }
}
