# The migrate deploy step (functions/migrate, docs/deploys.md): a Cloud Run job whose container
# applies the migrations, seeds the prompt blocks and exits, executed before any service's new
# revision is deployed (every google_cloud_run_v2_service depends on terraform_data.migrate),
# so that no new code takes traffic before the schema it needs exists. The services never
# migrate.
#
# Terraform's Google provider (GA) can define a job but not run one (run_execution_token is in
# google-beta only, and re-runs on every plan), so the execution is `gcloud run jobs execute
# --wait` from the machine running Terraform, which therefore needs gcloud and run.jobs.run on
# the job (roles/run.developer). It runs on the first apply and again whenever the migrate
# image, the job or the database changes; a failed execution fails the apply there, and the
# services keep their current revisions. Two applies racing are serialised by the migration's
# Postgres advisory lock (common/storage).

locals {
  migrate        = module.catalogue.deploy_steps.migrate
  migrate_needed = var.run_migrations ? { migrate = local.migrate } : {}
  migrate_image  = lookup(var.image_overrides, "migrate", "${var.image_repository}/migrate:${var.image_tag}")
}

resource "google_service_account" "migrate" {
  for_each = local.migrate_needed

  account_id   = "${var.name_prefix}-migrate"
  display_name = "Bridge migrate deploy step"
}

resource "google_secret_manager_secret_iam_member" "migrate_database_url" {
  for_each = local.migrate_needed

  secret_id = google_secret_manager_secret.database_url.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.migrate[each.key].member
}

resource "google_project_iam_member" "migrate_cloudsql_client" {
  for_each = local.cloud_sql_instance == null ? {} : local.migrate_needed

  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = google_service_account.migrate[each.key].member
}

resource "google_cloud_run_v2_job" "migrate" {
  for_each = local.migrate_needed

  name                = "${var.name_prefix}-migrate"
  location            = var.region
  deletion_protection = var.deletion_protection

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.migrate[each.key].email
      timeout         = "${each.value.timeout_s}s"
      # Idempotent, so one retry is safe (a lost connection, a preempted task).
      max_retries = 1

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
        image = local.migrate_image

        resources {
          limits = {
            cpu    = "1"
            memory = "${max(each.value.memory_mb, 512)}Mi"
          }
        }

        # The settings every binary validates at start (production refuses to start without
        # them), and the database.
        dynamic "env" {
          for_each = local.common_env

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

        dynamic "volume_mounts" {
          for_each = local.cloud_sql_instance == null ? [] : [1]

          content {
            name       = "cloudsql"
            mount_path = "/cloudsql"
          }
        }
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.migrate_database_url,
    google_project_iam_member.migrate_cloudsql_client,
    google_sql_database.bridge,
  ]
}

# The execution. Replaced, so run again, when the image, the job's definition or the database
# changes; `--wait` returns non-zero if the execution fails, which fails the apply.
resource "terraform_data" "migrate" {
  for_each = local.migrate_needed

  triggers_replace = {
    image    = local.migrate_image
    job      = google_cloud_run_v2_job.migrate[each.key].id
    database = coalesce(local.cloud_sql_instance, google_secret_manager_secret.database_url.id)
  }

  provisioner "local-exec" {
    command = "gcloud run jobs execute \"$JOB\" --region \"$REGION\" --project \"$PROJECT\" --wait"
    environment = {
      JOB     = google_cloud_run_v2_job.migrate[each.key].name
      REGION  = var.region
      PROJECT = var.project_id
    }
  }
}
