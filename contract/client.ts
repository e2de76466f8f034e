// The README's first session as a TypeScript client would write it, against the types
// openapi-typescript generates from Bridge's OpenAPI document (`bridge openapi`). It is
// only type-checked (`tsc --noEmit`, by scripts/check-contract): if the document stops
// describing a body the README sends or reads, this stops compiling.

import createClient from "openapi-fetch";
import type { components, paths } from "../target/contract/api";

type Schemas = components["schemas"];

const bridge = createClient<paths>({
  baseUrl: "http://localhost:8080",
  headers: { Authorization: `Bearer ${process.env.TOKEN ?? ""}` },
});

declare const process: { env: Record<string, string | undefined> };

function must<T>(value: T | undefined, what: string): T {
  if (value === undefined) {
    throw new Error(`no ${what}`);
  }
  return value;
}

export async function firstSession(yaml: string, demoUrl: string): Promise<void> {
  // A team, with typed settings.
  const team = must(
    (
      await bridge.POST("/v1/teams", {
        body: { name: "Data Platform", settings: { max_bytes_billed: 1_000_000_000 } },
      })
    ).data,
    "team",
  );
  const teams = must((await bridge.GET("/v1/teams", { params: { query: { limit: 50 } } })).data, "teams");
  teams.teams.forEach((t) => t.name.toUpperCase());
  await bridge.PATCH("/v1/teams/{team_id}", {
    params: { path: { team_id: team.id } },
    body: { settings: { max_result_bytes: 1_048_576, max_bytes_billed: null } },
  });

  // The demo warehouse: Postgres credentials are `{url, ca_cert?}`.
  const connection = must(
    (
      await bridge.POST("/v1/teams/{team_id}/connections", {
        params: { path: { team_id: team.id } },
        body: { name: "Demo warehouse", warehouse_type: "postgres", credentials: { url: demoUrl } },
      })
    ).data,
    "connection",
  );
  const validation = must(
    (await bridge.POST("/v1/connections/{id}/validate", { params: { path: { id: connection.id } } })).data,
    "validation",
  );
  const outcome: "validated" | "failed" | "unreachable" = validation.outcome;
  validation.checks.forEach((c) => c.name.length);
  console.log(outcome, connection.details);

  const scan = must(
    (await bridge.POST("/v1/connections/{id}/scan", { params: { path: { id: connection.id } } })).data,
    "scan",
  );
  const progress = must(
    (
      await bridge.GET("/v1/connections/{id}/scans/{scan_id}", {
        params: { path: { id: connection.id, scan_id: scan.scan_id } },
      })
    ).data,
    "scan status",
  );
  const running: boolean = progress.status === "running";
  console.log(running, progress.tables_scanned);

  const datasets = must(
    (await bridge.GET("/v1/connections/{id}/datasets", { params: { path: { id: connection.id } } })).data,
    "datasets",
  );
  const dataset = must(datasets.datasets[0], "dataset");
  const tables = must(
    (await bridge.GET("/v1/datasets/{id}/tables", { params: { path: { id: dataset.id } } })).data,
    "tables",
  );
  const table = must(tables.tables[0], "table");
  console.log(table.partitioning?.field, table.partitioning?.key);
  const schema = must(
    (await bridge.GET("/v1/tables/{id}/columns", { params: { path: { id: table.id } } })).data,
    "columns",
  );
  schema.columns.forEach((c) => c.data_type);

  // A dashboard from YAML: validated, stored, its data read with a parameter.
  const report = must((await bridge.POST("/v1/dashboards/validate", { body: { yaml } })).data, "report");
  report.errors.forEach((e) => `${e.path}:${e.line ?? "?"}: ${e.message}`);
  const created = await bridge.POST("/v1/teams/{team_id}/dashboards", {
    params: { path: { team_id: team.id } },
    body: { yaml },
  });
  const dashboard: Schemas["Dashboard"] = must(created.data, "dashboard");
  const etag = created.response.headers.get("ETag");

  const data = must(
    (
      await bridge.GET("/v1/dashboards/{slug}/data", {
        params: { path: { slug: dashboard.slug }, query: { parameters: { region: "APAC" } } },
      })
    ).data,
    "data",
  );
  for (const [id, answer] of Object.entries(data.queries)) {
    if ("error" in answer) {
      console.log(id, answer.error.code, answer.error.message);
    } else {
      const cached: boolean = answer.metadata.cache_hit;
      console.log(id, answer.columns.map((c) => c.type), answer.rows.length, cached);
    }
  }
  const one = must(
    (
      await bridge.GET("/v1/dashboards/{slug}/query/{query_id}/data", {
        params: { path: { slug: dashboard.slug, query_id: "revenue_by_day" } },
      })
    ).data,
    "query data",
  );
  console.log(one.metadata.row_count, one.metadata.bytes_scanned ?? 0);

  // Lineage, precompute (forced), a guarded update, an old version and the version list.
  const lineage = must(
    (await bridge.GET("/v1/dashboards/{slug}/lineage", { params: { path: { slug: dashboard.slug } } })).data,
    "lineage",
  );
  lineage.edges.forEach((e) => `${e.from} -> ${e.to}`);
  const warmed = must(
    (
      await bridge.POST("/v1/dashboards/{slug}/precompute", {
        params: { path: { slug: dashboard.slug }, query: { force: true } },
      })
    ).data,
    "precompute",
  );
  console.log(warmed.queries_executed, warmed.cache_hits);
  const updated = must(
    (
      await bridge.PUT("/v1/dashboards/{slug}/yaml", {
        params: { path: { slug: dashboard.slug }, header: { "If-Match": etag ?? '"1"' } },
        body: { yaml: yaml.replace("Revenue", "Revenue (v2)") },
      })
    ).data,
    "update",
  );
  console.log(updated.version);
  const old = await bridge.GET("/v1/dashboards/{slug}/yaml", {
    params: { path: { slug: dashboard.slug }, query: { version: 1 } },
    parseAs: "text",
  });
  const oldYaml: string = must(old.data, "old yaml");
  console.log(oldYaml.length);
  const versions = must(
    (await bridge.GET("/v1/dashboards/{slug}/versions", { params: { path: { slug: dashboard.slug } } })).data,
    "versions",
  );
  versions.versions.forEach((v) => `${v.version} ${v.sha256} ${v.size_bytes} ${v.created_at}`);

  // A refusal is a problem+json body with a stable code.
  const refused = await bridge.GET("/v1/dashboards/{slug}", { params: { path: { slug: "no-such-dashboard" } } });
  if (refused.error) {
    const code: string = refused.error.code;
    console.log(code, refused.error.trace_id);
  }
}
