# One Cloud Run service per enabled function, each with its own service account. The image is
# the function's binary serving HTTP on $PORT (8080), built from infra/docker/Dockerfile.
# Ingress admits only the load balancer and same-project callers (Cloud Scheduler).

locals {
  bucket_env = {
    for purpose, b in google_storage_bucket.bridge : "${upper(purpose)}_BUCKET" => "gs://${b.name}"
  }

  # Settings every function reads (common/settings/src/lib.rs, plus buckets and key). PORT is set
  # by Cloud Run itself.
  common_env = merge(
    {
      BRIDGE_ENV         = "production"
      AUTH_MODE          = "oidc"
      AUTH_ISSUER        = var.auth_issuer
      AUTH_AUDIENCE      = var.auth_audience
      DATABASE_POOL_SIZE = tostring(var.database_pool_size)
      LOG_FORMAT         = "json"
      RUST_LOG           = var.rust_log
      KMS_KEY_URI        = "gcpkms://${google_kms_crypto_key.bridge.id}"
    },
    local.bucket_env,
    var.auth_jwks_url == null ? {} : { AUTH_JWKS_URL = var.auth_jwks_url },
    var.database_ca_file == null ? {} : { DATABASE_CA_FILE = var.database_ca_file },
    length(var.cors_allowed_origins) == 0 ? {} : { CORS_ALLOWED_ORIGINS = join(",", var.cors_allowed_origins) },
  )

  # Request timeout per function. Cloud Run streams SSE responses natively, and a stream is one
  # request for as long as the run lasts (a replay stays open until the run ends): streaming
  # functions get var.streaming_timeout_s (default 3600, Cloud Run's maximum) if it is longer
  # than their catalogue timeout. The load balancer adds no timeout of its own: a backend
  # service with a serverless NEG takes no timeout_sec, Cloud Run's request timeout applies.
  timeouts = {
    for name, f in local.functions :
    name => min(f.streaming ? max(f.timeout_s, var.streaming_timeout_s) : f.timeout_s, 3600)
  }

  # What the llm functions (chat, generate) read besides their key: the provider, named
  # explicitly, and the run's wall-clock limit, which must end before the request timeout.
  llm_env = merge(var.llm_settings, {
    LLM_PROVIDER      = var.llm_provider
    CHAT_MAX_RUN_SECS = tostring(var.chat_max_run_secs)
  })
  llm_secrets = merge(
    { for s in google_secret_manager_secret.anthropic_api_key : "ANTHROPIC_API_KEY" => s.secret_id },
    { for s in google_secret_manager_secret.openai_api_key : "OPENAI_API_KEY" => s.secret_id },
  )

  # Scheduled functions accept Cloud Scheduler's OIDC tokens: this audience, signed for the
  # scheduler's service account (common/settings/src/lib.rs: SCHEDULER_*).
  scheduler_audience = "${var.name_prefix}-scheduled-precompute"
  scheduler_env = length(google_service_account.scheduler) == 0 ? {} : {
    SCHEDULER_OIDC_AUDIENCE   = local.scheduler_audience
    SCHEDULER_SERVICE_ACCOUNT = google_service_account.scheduler[0].email
  }
}

resource "google_service_account" "fn" {
  for_each = local.functions

  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "Bridge ${each.key} function"
}

resource "google_project_iam_member" "cloudsql_client" {
  for_each = local.cloud_sql_instance == null ? {} : local.functions

  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = google_service_account.fn[each.key].member
}

resource "google_cloud_run_v2_service" "fn" {
  for_each = local.functions

  name                = "${var.name_prefix}-${each.key}"
  location            = var.region
  description         = "Bridge ${each.key} function"
  ingress             = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.fn[each.key].email
    timeout                          = "${local.timeouts[each.key]}s"
    max_instance_request_concurrency = var.container_concurrency

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = coalesce(each.value.max_instances, var.max_instances)
    }

    dynamic "vpc_access" {
      for_each = var.vpc_network == null ? [] : [1]

      content {
        egress = "PRIVATE_RANGES_ONLY"

        network_interfaces {
          network    = var.vpc_network
          subnetwork = var.vpc_subnetwork
        }
      }
    }

    dynamic "volumes" {
      for_each = local.cloud_sql_instance == null ? [] : [local.cloud_sql_instance]

      content {
        name = "cloudsql"

        cloud_sql_instance {
          instances = [volumes.value]
        }
      }
    }

    containers {
      image = local.images[each.key]

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu = "1"
          # Cloud Run wants at least 512 MiB with a whole CPU in the second-generation environment.
          memory = "${max(each.value.memory_mb, 512)}Mi"
        }
        # The job function (catalog) runs scans as tasks of its own after answering 202: it
        # keeps its CPU between requests, or the scan would stall until the next request.
        cpu_idle          = each.value.jobs != "run"
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge(
          local.common_env,
          each.value.scheduled ? local.scheduler_env : {},
          each.value.llm ? local.llm_env : {},
        )

        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name = "DATABASE_URL"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.database_url.secret_id
            version = "latest"
          }
        }
      }

      # The LLM provider's key (ANTHROPIC_API_KEY or OPENAI_API_KEY, per var.llm_provider).
      dynamic "env" {
        for_each = each.value.llm ? local.llm_secrets : {}

        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      dynamic "volume_mounts" {
        for_each = local.cloud_sql_instance == null ? [] : [1]

        content {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
      }

      startup_probe {
        http_get {
          path = "/health"
        }
        period_seconds    = 2
        timeout_seconds   = 1
        failure_threshold = 15
      }

      liveness_probe {
        http_get {
          path = "/health"
        }
        period_seconds    = 30
        timeout_seconds   = 3
        failure_threshold = 3
      }
    }
  }

  # The migrate deploy step runs first (migrate.tf): no revision with new code is deployed
  # before the schema it needs exists.
  depends_on = [
    terraform_data.migrate,
    google_project_service.apis,
    google_secret_manager_secret_iam_member.database_url,
    google_secret_manager_secret_iam_member.anthropic_api_key,
    google_secret_manager_secret_iam_member.openai_api_key,
    google_project_iam_member.cloudsql_client,
  ]

  lifecycle {
    precondition {
      condition     = !each.value.llm || var.chat_max_run_secs + 60 <= local.timeouts[each.key]
      error_message = "chat_max_run_secs must end a run at least 60 s before the service's request timeout (a stream cut by Cloud Run gets no terminal event): lower it, or raise streaming_timeout_s."
    }
  }
}

# End users present the issuer's JWT, not a Google identity token, so Cloud Run's own IAM check
# must admit everyone; the functions verify the JWT, and ingress keeps the services off the
# internet except through the load balancer.
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = var.allow_unauthenticated ? local.functions : {}

  name     = google_cloud_run_v2_service.fn[each.key].name
  location = google_cloud_run_v2_service.fn[each.key].location
  role     = "roles/run.invoker"
  member   = "allUsers"
}
