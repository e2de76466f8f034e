//! The price table, kept as data (`prices.json` beside this crate, or `LLM_PRICES_FILE`):
//! per model, USD per million input, output, cache-write and cache-read tokens. Costs are
//! exact: prices are held in micro-dollars per million tokens, so a token costs a whole
//! number of picodollars. A model the table does not know is costed as unknown (`None`),
//! never as zero.

use std::collections::HashMap;

use serde::Deserialize;

use crate::Usage;

const BUILTIN_TABLE: &str = include_str!("../prices.json");

/// Micro-dollars per million tokens (= picodollars per token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cache_write: u64,
    pub cache_read: u64,
}

/// An exact cost, in picodollars (10⁻¹² USD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost(pub u64);

impl Cost {
    /// As a decimal number of dollars with 12 places, for a `NUMERIC` column.
    pub fn usd(&self) -> String {
        format!(
            "{}.{:012}",
            self.0 / 1_000_000_000_000,
            self.0 % 1_000_000_000_000
        )
    }

    pub fn usd_f64(&self) -> f64 {
        self.0 as f64 / 1e12
    }
}

#[derive(Debug, Clone)]
pub struct PriceTable {
    models: HashMap<String, Price>,
    pub as_of: String,
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    as_of: String,
    models: HashMap<String, PriceIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceIn {
    input: f64,
    output: f64,
    cache_write: f64,
    cache_read: f64,
}

fn micro(usd_per_million: f64, model: &str, field: &str) -> Result<u64, String> {
    if !usd_per_million.is_finite() || !(0.0..=1e6).contains(&usd_per_million) {
        return Err(format!(
            "{model}.{field}: `{usd_per_million}` is not a price"
        ));
    }
    Ok((usd_per_million * 1e6).round() as u64)
}

impl PriceTable {
    /// The table shipped with Bridge.
    pub fn builtin() -> Self {
        // The shipped table is checked by a test; failing here would be a build defect.
        Self::parse(BUILTIN_TABLE).unwrap_or_else(|_| Self {
            models: HashMap::new(),
            as_of: String::new(),
        })
    }

    /// `LLM_PRICES_FILE` if set, else the shipped table.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, String> {
        match path {
            None => Ok(Self::builtin()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("LLM_PRICES_FILE {}: {e}", p.display()))?;
                Self::parse(&text).map_err(|e| format!("LLM_PRICES_FILE {}: {e}", p.display()))
            }
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut models = HashMap::new();
        for (name, p) in file.models {
            let price = Price {
                input: micro(p.input, &name, "input")?,
                output: micro(p.output, &name, "output")?,
                cache_write: micro(p.cache_write, &name, "cache_write")?,
                cache_read: micro(p.cache_read, &name, "cache_read")?,
            };
            models.insert(name, price);
        }
        Ok(Self {
            models,
            as_of: file.as_of,
        })
    }

    /// The price of `model`: by its exact name, else as a dated snapshot (`name-YYYYMMDD`
    /// or `name-YYYY-MM-DD`) of a listed name, else by the longest listed name it extends
    /// with `-`.
    pub fn price(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.models.get(model) {
            return Some(*p);
        }
        self.models
            .iter()
            .filter(|(name, _)| {
                model
                    .strip_prefix(name.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|rest| {
                        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '-')
                    })
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    /// What `usage` of `model` cost; `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<Cost> {
        let p = self.price(model)?;
        let total = u128::from(usage.input_tokens) * u128::from(p.input)
            + u128::from(usage.output_tokens) * u128::from(p.output)
            + u128::from(usage.cache_write_tokens) * u128::from(p.cache_write)
            + u128::from(usage.cache_read_tokens) * u128::from(p.cache_read);
        Some(Cost(u64::try_from(total).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses() {
        let t = PriceTable::parse(BUILTIN_TABLE).expect("prices.json");
        assert!(t.price("claude-sonnet-4-5").is_some());
        assert!(t.price("gpt-4o-mini").is_some());
    }

    #[test]
    fn costs_are_exact_and_count_each_kind_once() {
        let t = PriceTable::builtin();
        let usage = Usage {
            input_tokens: 50,
            output_tokens: 87,
            cache_read_tokens: 3400,
            cache_write_tokens: 1200,
        };
        // 50×3 + 87×15 + 1200×3.75 + 3400×0.30 = 150 + 1305 + 4500 + 1020 = 6975 µ$ / M tokens
        let cost = t.cost("claude-sonnet-4-5", &usage).expect("priced");
        assert_eq!(cost.usd(), "0.006975000000");
        assert_eq!(
            t.cost("claude-sonnet-4-5-20250929", &usage),
            Some(cost),
            "a dated snapshot has its model's price"
        );
        let tiny = Usage {
            input_tokens: 1,
            ..Default::default()
        };
        assert_eq!(
            t.cost("gpt-4o-mini", &tiny).expect("priced").usd(),
            "0.000000150000"
        );
    }

    #[test]
    fn unknown_models_are_unknown_not_free() {
        let t = PriceTable::builtin();
        assert_eq!(t.cost("qwen2.5-coder-0.5b", &Usage::default()), None);
        assert_eq!(t.cost("gpt-4o-mini-custom", &Usage::default()), None);
        assert_eq!(t.cost("builtin", &Usage::default()), Some(Cost(0)));
    }

    #[test]
    fn bad_tables_are_refused() {
        assert!(
            PriceTable::parse(
                r#"{"models":{"m":{"input":-1,"output":0,"cache_write":0,"cache_read":0}}}"#
            )
            .is_err()
        );
        assert!(PriceTable::parse(r#"{"models":{"m":{"input":1}}}"#).is_err());
    }
}
