//! The builtin model's plan for writing a dashboard, offline and deterministic, through the
//! same tools a model calls: list the datasets, their tables, the schemas of the tables the
//! prompt's words point at; pick a table, a measure, a dimension and a time column (names
//! matched against the prompt, types deciding the roles); write the SQL and dry-run it; write
//! the YAML (KPIs, a time series, a breakdown, a table) and validate it; drop what validation
//! refuses and validate again; save.
//!
//! It keeps no state: every reply is worked out again from the request — the prompt (every
//! user message of the session, so a follow-up adds its words to the first request's), the
//! generation context block the run sends last among the system blocks, and the tool calls
//! and results of this run.

use std::collections::{BTreeSet, HashMap};

use llm::{Content, Request, Role, builtin::Planner, builtin::Reply};
use serde_json::{Value, json};

/// The heading of the system block that tells the planner (and a model) about the run.
pub const CONTEXT_HEADING: &str = "# Generation context";

/// How many times the planner validates before it gives up.
const MAX_VALIDATIONS: usize = 4;
/// How many datasets and tables it looks into.
const MAX_DATASETS: usize = 8;
const MAX_SCHEMAS: usize = 6;

#[derive(Debug, Clone, Copy, Default)]
pub struct DashboardPlanner;

/// What the run's context block says.
#[derive(Debug, Default, Clone)]
struct RunContext {
    connection: String,
    warehouse: String,
    slug: Option<String>,
    dashboard: Option<String>,
}

fn run_context(request: &Request) -> RunContext {
    let mut c = RunContext::default();
    let Some(block) = request
        .system
        .iter()
        .rev()
        .find(|b| b.text.starts_with(CONTEXT_HEADING))
    else {
        return c;
    };
    for line in block.text.lines() {
        let Some((k, v)) = line.trim().trim_start_matches("- ").split_once(':') else {
            continue;
        };
        let v = v.trim().to_owned();
        match k.trim() {
            "connection_id" => c.connection = v,
            "warehouse" => c.warehouse = v,
            "slug" if !v.is_empty() => c.slug = Some(v),
            "dashboard" if !v.is_empty() => {
                c.dashboard = v.split_whitespace().next().map(str::to_owned)
            }
            _ => {}
        }
    }
    c
}

/// One tool call of this run and what it answered.
struct Call {
    name: String,
    input: Value,
    result: Option<(Value, bool)>,
}

/// The user's words (every message of theirs the request holds) and this run's calls (those
/// after the last message the user typed).
fn conversation(request: &Request) -> (String, Vec<Call>) {
    let typed = |m: &llm::Message| {
        m.role == Role::User
            && m.content
                .iter()
                .any(|c| matches!(c, Content::Text { text } if !text.trim().is_empty()))
    };
    let prompt: Vec<String> = request
        .messages
        .iter()
        .filter(|m| typed(m))
        .map(|m| m.text())
        .collect();
    let start = request
        .messages
        .iter()
        .rposition(typed)
        .map_or(0, |i| i + 1);
    let mut calls: Vec<Call> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for m in &request.messages[start..] {
        for c in &m.content {
            match c {
                Content::ToolUse { id, name, input } => {
                    by_id.insert(id.clone(), calls.len());
                    calls.push(Call {
                        name: name.clone(),
                        input: input.clone(),
                        result: None,
                    });
                }
                Content::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => {
                    if let Some(&i) = by_id.get(tool_use_id) {
                        let v = serde_json::from_str(content)
                            .unwrap_or_else(|_| Value::String(content.clone()));
                        calls[i].result = Some((v, *is_error));
                    }
                }
                Content::Text { .. } => {}
            }
        }
    }
    (prompt.join("\n"), calls)
}

/// The prompt's words, lowercased, with their singulars.
fn prompt_words(prompt: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for w in prompt
        .to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.len() > 1)
    {
        for part in w.split('_') {
            out.insert(stem(part));
        }
        out.insert(stem(w));
    }
    out
}

/// A crude stem: plurals, `-ed`, `daily` / `monthly`.
fn stem(w: &str) -> String {
    let w = w.to_lowercase();
    match w.as_str() {
        "daily" | "days" => return "day".into(),
        "monthly" | "months" => return "month".into(),
        "signup" | "signups" => return "sign".into(),
        _ => {}
    }
    if let Some(s) = w.strip_suffix("ies")
        && s.len() > 2
    {
        return format!("{s}y");
    }
    if let Some(s) = w.strip_suffix("ed")
        && s.len() > 3
        && !w.ends_with("eed")
    {
        return s.to_owned();
    }
    if let Some(s) = w.strip_suffix('s')
        && s.len() > 2
        && !w.ends_with("ss")
    {
        return s.to_owned();
    }
    w
}

/// The stems of a column's or table's name.
fn name_stems(name: &str) -> Vec<String> {
    name.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(stem)
        .collect()
}

fn count_intent(words: &BTreeSet<String>, prompt: &str) -> bool {
    let p = prompt.to_lowercase();
    p.contains("how many") || p.contains("number of") || words.contains("count")
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Number,
    Text,
    Time,
    Other,
}

fn kind(data_type: &str) -> Kind {
    let t = data_type.to_lowercase();
    if t.contains("date") || t.contains("timestamp") {
        Kind::Time
    } else if [
        "int",
        "numeric",
        "decimal",
        "float",
        "double",
        "real",
        "bignumeric",
    ]
    .iter()
    .any(|n| t.contains(n))
    {
        Kind::Number
    } else if t.contains("char") || t.contains("text") || t.contains("string") {
        Kind::Text
    } else {
        Kind::Other
    }
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
struct Table {
    dataset: String,
    name: String,
    columns: Vec<Column>,
    rows: i64,
}

/// How an identifier is written: bare when it is plain, else quoted.
fn ident(name: &str, bigquery: bool) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else if bigquery {
        format!("`{}`", name.replace('`', ""))
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn is_key(name: &str) -> bool {
    let n = name.to_lowercase();
    n == "id" || n.ends_with("_id") || n == "line" || n.ends_with("_key")
}

const TIME_WORDS: [&str; 6] = ["day", "week", "month", "year", "date", "time"];

fn table_score(t: &Table, words: &BTreeSet<String>, counting: bool) -> i64 {
    let mut score = 0;
    for s in name_stems(&t.name) {
        // `revenue_daily` is not what "orders per day" asks for.
        if TIME_WORDS.contains(&s.as_str()) {
            continue;
        }
        if words.contains(&s) {
            score += if counting { 5 } else { 3 };
        } else {
            // `order_items` is less what "orders" asks for than `orders` is.
            score -= 1;
        }
    }
    for c in &t.columns {
        let stems = name_stems(&c.name);
        if stems.iter().all(|s| words.contains(s)) {
            score += if c.kind == Kind::Number && !is_key(&c.name) && !counting {
                3
            } else {
                1
            };
        }
    }
    score
}

/// The dashboard the planner proposes.
#[derive(Debug, Clone)]
struct Plan {
    table: Table,
    /// The measure's column (`SUM`), or none for `COUNT(*)`.
    measure: Option<String>,
    /// What the measure is called in the results.
    label: String,
    dimension: Option<String>,
    time: Option<String>,
    monthly: bool,
}

fn plan(prompt: &str, tables: &[Table]) -> Option<Plan> {
    let words = prompt_words(prompt);
    let counting = count_intent(&words, prompt);
    let table = tables
        .iter()
        .max_by_key(|t| (table_score(t, &words, counting), t.rows))?
        .clone();
    let matches = |c: &Column| name_stems(&c.name).iter().all(|s| words.contains(s));
    let measure = if counting {
        None
    } else {
        table
            .columns
            .iter()
            .find(|c| c.kind == Kind::Number && !is_key(&c.name) && matches(c))
            .map(|c| c.name.clone())
    };
    let label = match &measure {
        Some(m) => m.to_lowercase(),
        None => table.name.to_lowercase(),
    };
    let texts: Vec<&Column> = table
        .columns
        .iter()
        .filter(|c| c.kind == Kind::Text && !is_key(&c.name))
        .collect();
    let dimension = texts
        .iter()
        .find(|c| matches(c))
        .or_else(|| {
            texts.iter().find(|c| {
                !["name", "email", "title", "description", "url"]
                    .iter()
                    .any(|n| c.name.to_lowercase().contains(n))
            })
        })
        .map(|c| c.name.clone());
    let times: Vec<&Column> = table
        .columns
        .iter()
        .filter(|c| c.kind == Kind::Time)
        .collect();
    let time = times
        .iter()
        .find(|c| matches(c) || name_stems(&c.name).iter().any(|s| words.contains(s)))
        .or(times.first())
        .map(|c| c.name.clone());
    let monthly = words.contains("month");
    Some(Plan {
        table,
        measure,
        label,
        dimension,
        time,
        monthly,
    })
}

/// One query of the plan and the tile that shows it.
struct Part {
    id: String,
    sql: String,
    tile: Value,
}

fn title_case(s: &str) -> String {
    let s = s.replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn parts(plan: &Plan, bigquery: bool) -> Vec<Part> {
    let t = &plan.table;
    let from = format!(
        "{}.{}",
        ident(&t.dataset, bigquery),
        ident(&t.name, bigquery)
    );
    let label = ident(&plan.label, bigquery);
    let agg = match &plan.measure {
        Some(m) => format!("SUM({})", ident(m, bigquery)),
        None => "COUNT(*)".into(),
    };
    let what = title_case(&plan.label);
    let mut out = vec![Part {
        id: "total".into(),
        sql: format!("SELECT {agg} AS {label} FROM {from}"),
        tile: json!({"id": "total", "type": "kpi", "title": format!("Total {}", plan.label.replace('_', " ")), "query": "total", "value": plan.label}),
    }];
    if let Some(time) = &plan.time {
        let c = ident(time, bigquery);
        out.push(Part {
            id: "per_day".into(),
            sql: format!("SELECT {c}, {agg} AS {label} FROM {from} GROUP BY {c} ORDER BY {c}"),
            tile: json!({"id": "per_day", "type": "line", "title": format!("{what} per day"), "query": "per_day", "x": time, "y": plan.label}),
        });
        if plan.monthly {
            let month = if bigquery {
                format!("DATE_TRUNC(DATE({c}), MONTH)")
            } else {
                format!("date_trunc('month', {c})::date")
            };
            out.push(Part {
                id: "per_month".into(),
                sql: format!("SELECT {month} AS month, {agg} AS {label} FROM {from} GROUP BY 1 ORDER BY 1"),
                tile: json!({"id": "per_month", "type": "bar", "title": format!("{what} per month"), "query": "per_month", "x": "month", "y": [plan.label]}),
            });
        }
    }
    if let Some(dim) = &plan.dimension {
        let c = ident(dim, bigquery);
        out.push(Part {
            id: "breakdown".into(),
            sql: format!(
                "SELECT {c}, {agg} AS {label} FROM {from} GROUP BY {c} ORDER BY {label} DESC LIMIT 50"
            ),
            tile: json!({"id": "breakdown", "type": "bar", "title": format!("{what} by {}", dim.replace('_', " ")), "query": "breakdown", "x": dim, "y": [plan.label]}),
        });
    }
    let shown: Vec<&Column> = t
        .columns
        .iter()
        .filter(|c| c.kind != Kind::Other)
        .take(8)
        .collect();
    if !shown.is_empty() {
        let cols: Vec<String> = shown.iter().map(|c| ident(&c.name, bigquery)).collect();
        let order = match &plan.time {
            Some(time) => format!(" ORDER BY {} DESC", ident(time, bigquery)),
            None => String::new(),
        };
        out.push(Part {
            id: "latest".into(),
            sql: format!("SELECT {} FROM {from}{order} LIMIT 100", cols.join(", ")),
            tile: json!({"id": "latest", "type": "table", "title": format!("Latest {}", t.name.replace('_', " ")), "query": "latest", "columns": shown.iter().map(|c| c.name.clone()).collect::<Vec<_>>()}),
        });
    }
    out
}

/// A slug from the plan: `orders-by-region`, `revenue-daily-overview`.
/// The free slug a refused save names: "… (`revenue-3` is free) …".
fn free_slug_in(message: &str) -> Option<String> {
    let end = message.find("` is free")?;
    let start = message[..end].rfind('`')? + 1;
    Some(message[start..end].to_owned())
}

fn slug_of(plan: &Plan) -> String {
    let mut s = plan.label.replace('_', "-");
    if let Some(d) = &plan.dimension {
        s.push_str("-by-");
        s.push_str(&d.replace('_', "-"));
    } else {
        s.push_str("-overview");
    }
    let s: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut s = s.trim_matches('-').to_owned();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.truncate(50);
    let s = s.trim_end_matches('-').to_owned();
    if s.len() < 3 { "dashboard".into() } else { s }
}

/// The YAML of `parts` (those not dropped), laid out on the 12-column grid: the KPI on top,
/// charts two to a row, the table across the bottom.
fn yaml_of(plan: &Plan, ctx: &RunContext, slug: &str, parts: &[&Part]) -> String {
    let title = match &plan.dimension {
        Some(d) => format!("{} by {}", title_case(&plan.label), d.replace('_', " ")),
        None => format!("{} overview", title_case(&plan.label)),
    };
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut y = format!(
        "version: 1\nkind: dashboard\nslug: {slug}\ntitle: {}\ndescription: {}\nview_type: analytical\nconnection: {}\ntheme: {{ color: neutral }}\n\nqueries:\n",
        q(&title),
        q(&format!(
            "Written by Bridge's builtin planner from {}.{}.",
            plan.table.dataset, plan.table.name
        )),
        ctx.connection,
    );
    for p in parts {
        y.push_str(&format!("  - id: {}\n    sql: {}\n", p.id, q(&p.sql)));
    }
    y.push_str("\nlayout:\n");
    let (mut x, mut row, mut row_h) = (0u32, 0u32, 0u32);
    for p in parts {
        let kind = p.tile["type"].as_str().unwrap_or_default();
        let (w, h) = match kind {
            "kpi" => (3, 2),
            "table" => (12, 6),
            _ => (6, 4),
        };
        if x + w > 12 || (kind == "table" && x > 0) || (kind != "kpi" && row_h == 2) {
            row += row_h;
            x = 0;
            row_h = 0;
        }
        let mut tile = p.tile.clone();
        tile["position"] = json!({"x": x, "y": row, "w": w, "h": h});
        y.push_str(&format!("  - {}\n", tile));
        x += w;
        row_h = row_h.max(h);
    }
    y
}

/// The query ids and tile ids a validation's errors name, by the YAML it validated.
fn refused(yaml: &str, report: &Value) -> (BTreeSet<String>, bool) {
    let parsed = dashboard::validate::parse(yaml);
    let mut ids = BTreeSet::new();
    let mut all_placed = true;
    let Some(spec) = parsed.spec else {
        return (ids, false);
    };
    for e in report["errors"].as_array().into_iter().flatten() {
        let path = e["path"].as_str().unwrap_or_default();
        let index = |prefix: &str| {
            path.strip_prefix(prefix)
                .and_then(|r| r.split(']').next())
                .and_then(|i| i.parse::<usize>().ok())
        };
        if let Some(q) = index("queries[").and_then(|i| spec.queries.get(i)) {
            ids.insert(q.id.clone());
        } else if let Some(t) = index("layout[").and_then(|i| spec.layout.get(i)) {
            ids.insert(t.query.clone().unwrap_or_else(|| t.id.clone()));
        } else {
            all_placed = false;
        }
    }
    (ids, all_placed)
}

fn tables_from(calls: &[Call]) -> Vec<Table> {
    let mut rows: HashMap<(String, String), i64> = HashMap::new();
    for c in calls.iter().filter(|c| c.name == "list_tables") {
        if let Some((v, false)) = &c.result {
            let d = v["dataset"].as_str().unwrap_or_default();
            for t in v["tables"].as_array().into_iter().flatten() {
                rows.insert(
                    (
                        d.to_owned(),
                        t["name"].as_str().unwrap_or_default().to_owned(),
                    ),
                    t["rows"].as_i64().unwrap_or(0),
                );
            }
        }
    }
    calls
        .iter()
        .filter(|c| c.name == "get_table_schema")
        .filter_map(|c| match &c.result {
            Some((v, false)) => {
                let dataset = v["dataset"].as_str()?.to_owned();
                let name = v["table"].as_str()?.to_owned();
                Some(Table {
                    rows: rows
                        .get(&(dataset.clone(), name.clone()))
                        .copied()
                        .unwrap_or(0),
                    dataset,
                    name,
                    columns: v["columns"]
                        .as_array()?
                        .iter()
                        .map(|c| Column {
                            name: c["name"].as_str().unwrap_or_default().to_owned(),
                            kind: kind(c["type"].as_str().unwrap_or_default()),
                        })
                        .collect(),
                })
            }
            _ => None,
        })
        .collect()
}

fn say(text: impl Into<String>) -> Reply {
    Reply {
        text: text.into(),
        tool_calls: Vec::new(),
    }
}

fn calls(list: Vec<(&str, Value)>) -> Reply {
    Reply {
        text: String::new(),
        tool_calls: list.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
    }
}

impl Planner for DashboardPlanner {
    fn reply(&self, request: &Request) -> Reply {
        let ctx = run_context(request);
        let (prompt, calls_made) = conversation(request);
        let done = |name: &str| calls_made.iter().filter(|c| c.name == name).count();
        if ctx.connection.is_empty() {
            return say(
                "I need a connection to write a dashboard on: start the generation with a connection_id.",
            );
        }
        // 1. What datasets there are.
        let Some(listed) = calls_made.iter().find(|c| c.name == "list_datasets") else {
            return calls(vec![("list_datasets", json!({}))]);
        };
        let datasets: Vec<String> = match &listed.result {
            Some((v, false)) => v["datasets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["name"].as_str().map(str::to_owned))
                .collect(),
            Some((v, true)) => return say(format!("I could not list the datasets: {v}")),
            None => return say("The dataset listing did not answer."),
        };
        if datasets.is_empty() {
            return say(
                "The connection's catalog is empty: scan the connection (POST /v1/connections/{id}/scan) and ask again.",
            );
        }
        // 2. The tables of each.
        if done("list_tables") == 0 {
            return calls(
                datasets
                    .iter()
                    .take(MAX_DATASETS)
                    .map(|d| ("list_tables", json!({"dataset": d})))
                    .collect(),
            );
        }
        // 3. The schemas of the tables the prompt points at.
        if done("get_table_schema") == 0 {
            let words = prompt_words(&prompt);
            let mut candidates: Vec<(i64, i64, String, String)> = Vec::new();
            for c in calls_made.iter().filter(|c| c.name == "list_tables") {
                if let Some((v, false)) = &c.result {
                    let d = v["dataset"].as_str().unwrap_or_default();
                    for t in v["tables"].as_array().into_iter().flatten() {
                        let name = t["name"].as_str().unwrap_or_default();
                        let score = name_stems(name)
                            .iter()
                            .filter(|s| words.contains(*s))
                            .count() as i64;
                        candidates.push((
                            score,
                            t["rows"].as_i64().unwrap_or(0),
                            d.to_owned(),
                            name.to_owned(),
                        ));
                    }
                }
            }
            candidates.sort_by_key(|c| std::cmp::Reverse((c.0, c.1)));
            // The tables the prompt names first, then the largest (a prompt may name a
            // column rather than its table: `orders` in a view of daily totals).
            let chosen: Vec<(&str, Value)> = candidates
                .iter()
                .take(MAX_SCHEMAS)
                .map(|(_, _, d, t)| ("get_table_schema", json!({"dataset": d, "table": t})))
                .collect();
            if chosen.is_empty() {
                return say("The connection's datasets hold no tables I could read.");
            }
            return calls(chosen);
        }
        let tables = tables_from(&calls_made);
        let Some(plan) = plan(&prompt, &tables) else {
            return say("I could not read any table's columns, so I cannot write a dashboard.");
        };
        let bigquery = ctx.warehouse.eq_ignore_ascii_case("bigquery");
        let all = parts(&plan, bigquery);
        // 4. Prove every query.
        if done("run_dry_run_query") == 0 {
            return calls(
                all.iter()
                    .map(|p| ("run_dry_run_query", json!({"sql": p.sql})))
                    .collect(),
            );
        }
        // What the dry runs and the validations refused is left out.
        let mut dropped: BTreeSet<String> = BTreeSet::new();
        for c in calls_made.iter().filter(|c| c.name == "run_dry_run_query") {
            if let Some((_, true)) = &c.result
                && let Some(p) = all
                    .iter()
                    .find(|p| Some(p.sql.as_str()) == c.input["sql"].as_str())
            {
                dropped.insert(p.id.clone());
            }
        }
        let validations: Vec<&Call> = calls_made
            .iter()
            .filter(|c| c.name == "validate_dashboard_yaml")
            .collect();
        for v in &validations {
            if let (Some((report, false)), Some(yaml)) = (&v.result, v.input["yaml"].as_str()) {
                dropped.extend(refused(yaml, report).0);
            }
        }
        let taken = calls_made
            .iter()
            .filter(|c| c.name == "save_dashboard_yaml")
            .filter(
                |c| matches!(&c.result, Some((Value::String(s), true)) if s.contains("is taken")),
            )
            .count();
        let base = ctx
            .dashboard
            .clone()
            .or_else(|| ctx.slug.clone())
            .unwrap_or_else(|| slug_of(&plan));
        // A taken slug: the save names a free one.
        let suggested = calls_made
            .iter()
            .rev()
            .filter(|c| c.name == "save_dashboard_yaml")
            .find_map(|c| match &c.result {
                Some((Value::String(s), true)) if s.contains("is taken") => free_slug_in(s),
                _ => None,
            });
        let slug = suggested.unwrap_or(base);
        let kept: Vec<&Part> = all.iter().filter(|p| !dropped.contains(&p.id)).collect();
        if kept.is_empty() {
            return say(format!(
                "I could not write a dashboard: every query I wrote on {}.{} was refused ({}).",
                plan.table.dataset,
                plan.table.name,
                last_problems(&calls_made)
            ));
        }
        let yaml = yaml_of(&plan, &ctx, &slug, &kept);
        // 6. After a save: done, or why not.
        if let Some(last) = calls_made.last()
            && last.name == "save_dashboard_yaml"
        {
            match &last.result {
                Some((v, false)) => {
                    return say(format!(
                        "Saved `{}` (version {}): {} tiles on {}.{}, every query dry-run and the YAML validated. Its live data is at {}.",
                        v["slug"].as_str().unwrap_or(&slug),
                        v["version"],
                        kept.len(),
                        plan.table.dataset,
                        plan.table.name,
                        v["preview_url"].as_str().unwrap_or_default()
                    ));
                }
                Some((Value::String(s), true)) if s.contains("is taken") && taken < 3 => {}
                Some((v, _)) => {
                    return say(format!(
                        "I could not save the dashboard: {}",
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    ));
                }
                None => return say("The save did not answer."),
            }
        }
        // 5. Validate what is kept; save what validated.
        if let Some(v) = validations.last()
            && v.input["yaml"].as_str() == Some(yaml.as_str())
            && let Some((report, false)) = &v.result
            && report["valid"] == json!(true)
        {
            return calls(vec![("save_dashboard_yaml", json!({"yaml": yaml}))]);
        }
        if validations.len() >= MAX_VALIDATIONS {
            return say(format!(
                "I could not write a dashboard that validates after {} tries: {}",
                validations.len(),
                last_problems(&calls_made)
            ));
        }
        if let Some(v) = validations.last()
            && v.input["yaml"].as_str() == Some(yaml.as_str())
        {
            // The same YAML again would fail the same way.
            return say(format!(
                "I could not repair the dashboard: {}",
                last_problems(&calls_made)
            ));
        }
        calls(vec![("validate_dashboard_yaml", json!({"yaml": yaml}))])
    }
}

/// What the last refusal said.
fn last_problems(calls: &[Call]) -> String {
    for c in calls.iter().rev() {
        match &c.result {
            Some((Value::String(s), true)) => return llm::truncate(s, 400),
            Some((v, false)) if v["valid"] == json!(false) => {
                let msgs: Vec<String> = v["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(5)
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["path"].as_str().unwrap_or(""),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                return msgs.join("; ");
            }
            _ => {}
        }
    }
    "no reason was given".into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(dataset: &str, name: &str, cols: &[(&str, &str)], rows: i64) -> Table {
        Table {
            dataset: dataset.into(),
            name: name.into(),
            rows,
            columns: cols
                .iter()
                .map(|(n, t)| Column {
                    name: (*n).into(),
                    kind: kind(t),
                })
                .collect(),
        }
    }

    fn demo() -> Vec<Table> {
        vec![
            table(
                "analytics",
                "orders",
                &[
                    ("order_id", "integer"),
                    ("customer_id", "integer"),
                    ("order_date", "date"),
                    ("status", "text"),
                    ("region", "text"),
                ],
                8000,
            ),
            table(
                "analytics",
                "revenue_daily",
                &[
                    ("date", "date"),
                    ("region", "text"),
                    ("revenue", "numeric"),
                    ("orders", "bigint"),
                ],
                1000,
            ),
            table(
                "analytics",
                "order_items",
                &[
                    ("order_id", "integer"),
                    ("line", "integer"),
                    ("product_id", "integer"),
                    ("quantity", "integer"),
                    ("amount", "numeric"),
                ],
                16000,
            ),
        ]
    }

    #[test]
    fn prompts_pick_tables_measures_and_dimensions() {
        let cases = [
            (
                "What is our total completed revenue?",
                "revenue_daily",
                Some("revenue"),
                "region",
            ),
            (
                "How many orders do we get per region?",
                "orders",
                None,
                "region",
            ),
            (
                "Break down the number of orders by status",
                "orders",
                None,
                "status",
            ),
            (
                "Show the number of orders per day",
                "orders",
                None,
                "status",
            ),
            (
                "Build a dashboard of orders per month",
                "orders",
                None,
                "status",
            ),
            (
                "What is the total quantity of items ordered?",
                "order_items",
                Some("quantity"),
                "",
            ),
            (
                "How many order items are there in total?",
                "order_items",
                None,
                "",
            ),
        ];
        for (prompt, t, m, d) in cases {
            let p = plan(prompt, &demo()).unwrap();
            assert_eq!(p.table.name, t, "{prompt}");
            assert_eq!(p.measure.as_deref(), m, "{prompt}");
            assert_eq!(p.dimension.as_deref().unwrap_or(""), d, "{prompt}");
        }
    }

    #[test]
    fn the_yaml_lays_tiles_on_the_grid_and_validates_as_a_spec() {
        let p = plan("orders per month by region", &demo()).unwrap();
        let all = parts(&p, false);
        let kept: Vec<&Part> = all.iter().collect();
        let ctx = RunContext {
            connection: uuid::Uuid::nil().to_string(),
            ..Default::default()
        };
        let yaml = yaml_of(&p, &ctx, "orders-by-region", &kept);
        let parsed = dashboard::validate::parse(&yaml);
        assert!(parsed.is_valid(), "{yaml}\n{:?}", parsed.errors);
        let spec = parsed.spec.unwrap();
        assert_eq!(spec.queries.len(), 5);
        assert!(yaml.contains("date_trunc('month', order_date)::date"));
    }
}
