//! Finishing the OpenAPI document the routes declare, so that what every route shares is
//! declared once, the same way: the server, the refusals every authenticated route can
//! answer (401, 429 for rate limits and budgets, 503), those of every route with parameters (400) or a body (413, 415, 422),
//! a description on every response, and descriptions free of rustdoc's link syntax.
//! `GET /openapi.json` serves the finished document, and `bridge openapi` prints it.

use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi;

/// What a response of `status` means when its route says nothing more.
fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted: the work goes on after the response",
        "204" => "Done; no body",
        "304" => "Not modified: the copy named by `If-None-Match` is current",
        "400" => "A parameter is malformed; `errors` names it",
        "401" => "No bearer token, or one that is expired, forged or not for Bridge",
        "403" => "The caller's role in the team is too low",
        "404" => "Not found, or not visible to the caller (not a member of its team)",
        "409" => "Conflicts with the current state",
        "412" => "`If-Match` names a version that is no longer current",
        "413" => "The body is over the limit (1 MiB)",
        "415" => "The body's `Content-Type` is not one this route reads",
        "422" => "The body is well-formed but invalid; `errors` names each field",
        "429" => "Too many requests, or a budget is spent; see `Retry-After`",
        "502" => "The warehouse failed",
        "503" => {
            "A dependency (the database, the warehouse, the key ring) is unavailable; see `Retry-After`"
        }
        _ => "See the problem's `code` and `detail`",
    }
}

fn problem(status: &str) -> Value {
    json!({
        "description": default_description(status),
        "content": {
            "application/problem+json": {
                "schema": { "$ref": "#/components/schemas/Problem" }
            }
        }
    })
}

/// `[`x`]`, `[`x`](path)` and `[text](path)` as rustdoc writes them become `` `x` `` and
/// `text`; web links (`[text](https://…)`) stay.
pub fn strip_doc_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let label = &after[..close];
        let tail = &after[close + 1..];
        if let Some(target) = tail.strip_prefix('(')
            && let Some(end) = target.find(')')
        {
            let link = &target[..end];
            if link.starts_with("http://") || link.starts_with("https://") {
                out.push_str(&rest[open..open + 1 + close + 1 + 1 + end + 1]);
            } else {
                out.push_str(label);
            }
            rest = &target[end + 1..];
        } else if label.starts_with('`') && label.ends_with('`') && label.len() > 1 {
            out.push_str(label);
            rest = tail;
        } else {
            out.push('[');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn clean_descriptions(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if (k == "description" || k == "summary")
                    && let Value::String(s) = child
                {
                    *s = strip_doc_links(s);
                } else {
                    clean_descriptions(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(clean_descriptions),
        _ => {}
    }
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The rules of a dashboard slug, wherever one is a path parameter (as the dashboard YAML's
/// schema states them).
fn constrain_slugs(op: &mut Map<String, Value>) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for p in params {
        if p["name"] == "slug" && p["in"] == "path" {
            p["schema"] = json!({
                "type": "string",
                "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$",
                "maxLength": 64
            });
        }
    }
}

fn finish_operation(op: &mut Map<String, Value>) {
    constrain_slugs(op);
    let public = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(Map::is_empty)));
    let has_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let has_body = op.contains_key("requestBody");
    let json_body = op
        .get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(Value::as_object)
        .is_some_and(|c| c.contains_key("application/json"));
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else { return };
    let mut add = |status: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| problem(status));
    };
    if !public {
        add("401");
        add("429");
        add("503");
    }
    if has_params || has_body {
        add("400");
    }
    if has_body {
        add("413");
        add("415");
    }
    if json_body {
        add("422");
    }
    for (status, response) in responses.iter_mut() {
        if let Some(r) = response.as_object_mut() {
            let empty = r
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if empty {
                r.insert(
                    "description".into(),
                    Value::String(default_description(status).into()),
                );
            }
        }
    }
}

/// The finished document of `api` (see the module's documentation), as JSON.
pub fn finish(api: &OpenApi) -> Value {
    let mut doc = serde_json::to_value(api).unwrap_or_default();
    doc["servers"] = json!([{ "url": "/", "description": "The server that serves this document" }]);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            for method in METHODS {
                if let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) {
                    finish_operation(op);
                }
            }
        }
    }
    clean_descriptions(&mut doc);
    doc
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn rustdoc_links_become_plain_text() {
        assert_eq!(
            strip_doc_links("see [`Foo`] and [`bar`](crate::bar)"),
            "see `Foo` and `bar`"
        );
        assert_eq!(
            strip_doc_links("[the docs](crate::x) here"),
            "the docs here"
        );
        assert_eq!(
            strip_doc_links("[RFC 9110](https://www.rfc-editor.org/rfc/rfc9110)"),
            "[RFC 9110](https://www.rfc-editor.org/rfc/rfc9110)"
        );
        assert_eq!(
            strip_doc_links("a list [1, 2] and [x"),
            "a list [1, 2] and [x"
        );
    }
}
