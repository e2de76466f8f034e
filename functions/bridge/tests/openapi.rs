//! The OpenAPI document `bridge openapi` prints (what every `GET /openapi.json` serves) keeps
//! the promises scripts/check-contract relies on: a server, a description on every response,
//! 401 on every authenticated operation, YAML bodies as application/yaml, typed bodies, no
//! rustdoc link syntax left in descriptions.

#![allow(clippy::unwrap_used)]

use serde_json::Value;

fn document() -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is the document alone")
}

fn walk<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "description"
                    && let Value::String(s) = child
                {
                    out.push((path.clone(), s));
                } else {
                    walk(child, format!("{path}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_keeps_its_promises() {
    let doc = document();
    assert_eq!(doc["info"]["title"], "Bridge API");
    assert!(doc["servers"][0]["url"].is_string());
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let public = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().all(|r| r.as_object().unwrap().is_empty()));
            let responses = op["responses"].as_object().unwrap();
            if !public {
                assert!(responses.contains_key("401"), "{method} {path}: 401");
            }
            for (status, r) in responses {
                let d = r["description"].as_str().unwrap_or("");
                assert!(!d.is_empty(), "{method} {path} {status}: description");
            }
            if let Some(content) = op["requestBody"]["content"].as_object() {
                assert!(
                    !content.contains_key("text/plain"),
                    "{method} {path}: text/plain body"
                );
                for (ct, media) in content {
                    assert!(media["schema"].is_object(), "{method} {path} {ct}: schema");
                }
            }
        }
    }
    assert!(operations > 30, "{operations} operations");
    let yaml_put = &doc["paths"]["/v1/dashboards/{slug}/yaml"]["put"]["requestBody"]["content"];
    assert!(yaml_put["application/yaml"].is_object() && yaml_put["application/json"].is_object());
    let data = &doc["paths"]["/v1/dashboards/{slug}/data"]["get"];
    assert!(
        data["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap()
            .ends_with("/DashboardData")
    );
    let limit = doc["paths"]["/v1/teams"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 200);
    let mut descriptions = Vec::new();
    walk(&doc, String::new(), &mut descriptions);
    for (at, d) in descriptions {
        assert!(!d.contains("[`"), "{at}: rustdoc link left in {d:?}");
        assert!(
            !d.contains("](crate::") && !d.contains("](Self::"),
            "{at}: {d:?}"
        );
    }
}
