//! Keyset pagination: `?limit=` (default 50, at most 200) and an opaque `?cursor=`.
//!
//! A cursor is the sort key of the last item served, base64url-encoded JSON. Lists answer
//! `{"<things>": [...], "next_cursor": "…" | null}`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa::IntoParams;

use crate::{error::ApiError, error::ApiResult};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many items to answer, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated page request whose cursor decodes to `C`.
#[derive(Debug)]
pub struct Page<C> {
    pub limit: u32,
    pub after: Option<C>,
}

impl<C> Page<C> {
    /// What to put in SQL's `LIMIT`: one more than asked, to know whether more follow.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Trims the extra row and returns the cursor of the next page, if any.
    pub fn finish<T, K: Serialize>(
        &self,
        items: &mut Vec<T>,
        key: impl Fn(&T) -> K,
    ) -> Option<String> {
        if items.len() > self.limit as usize {
            items.truncate(self.limit as usize);
            items.last().map(|last| encode_cursor(&key(last)))
        } else {
            None
        }
    }
}

impl PageQuery {
    pub fn parse<C: DeserializeOwned>(self) -> ApiResult<Page<C>> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_field(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ApiError::invalid_field("cursor", "is not a cursor this API issued")
            })?),
        };
        Ok(Page { limit, after })
    }
}

pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

fn decode_cursor<C: DeserializeOwned>(s: &str) -> Option<C> {
    if s.len() > 512 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        for bad in [0, 201] {
            let e = PageQuery {
                limit: Some(bad),
                cursor: None,
            }
            .parse::<String>()
            .expect_err("bound");
            assert_eq!(e.errors[0].field, "limit");
        }
        assert_eq!(
            PageQuery::default().parse::<String>().expect("ok").limit,
            50
        );
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let c = encode_cursor(&("b", 2));
        let p = PageQuery {
            limit: None,
            cursor: Some(c),
        }
        .parse::<(String, i32)>()
        .expect("ok");
        assert_eq!(p.after, Some(("b".to_owned(), 2)));
        for junk in ["%%%", "bm9wZQ", &"a".repeat(600)] {
            let e = PageQuery {
                limit: None,
                cursor: Some(junk.to_owned()),
            }
            .parse::<(String, i32)>()
            .expect_err("junk");
            assert_eq!(e.errors[0].field, "cursor");
        }
    }

    #[test]
    fn finish_trims_and_points_past_the_last_item() {
        let page = Page::<i32> {
            limit: 2,
            after: None,
        };
        let mut items = vec![1, 2, 3];
        let next = page.finish(&mut items, |i| *i);
        assert_eq!(items, vec![1, 2]);
        assert_eq!(next, Some(encode_cursor(&2)));
        let mut items = vec![1, 2];
        assert_eq!(page.finish(&mut items, |i| *i), None);
    }
}
