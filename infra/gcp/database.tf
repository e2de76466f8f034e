# Bridge's own Postgres, when var.database_managed (off by default: the database is external,
# reached through var.cloud_sql_instance or any DATABASE_URL). A Cloud SQL for PostgreSQL
# instance on a private IP of var.vpc_network (which needs Private Services Access, a
# servicenetworking peering, set up once per network), with:
#   - automated daily backups (var.database_backup_retention_count kept) and point-in-time
#     recovery from the write-ahead log kept var.database_log_retention_days (docs/deploys.md,
#     "Restoring");
#   - REGIONAL availability (a standby in a second zone), no public IP, and TLS with client
#     certificates only, which the Cloud SQL connector supplies;
#   - the disk and backups encrypted with the bridge key (var.database_cmek);
#   - deletion protection twice: Terraform's (deletion_protection) and the API's
#     (deletion_protection_enabled, which also stops a delete from the console or gcloud).
#
# Every service (and the migrate job) mounts it through the Cloud SQL connector at /cloudsql,
# and their service accounts get roles/cloudsql.client. The functions do not use a built-in
# superuser: create an application user once and put its URL in the database-url secret:
#
#   gcloud sql users create bridge --instance <name_prefix>-db --password '…'
#   printf '%s' 'postgres://bridge:…@/bridge?host=/cloudsql/<database_connection_name>' |
#     gcloud secrets versions add <name_prefix>-database-url --data-file=-

locals {
  database           = var.database_managed ? { bridge = true } : {}
  cloud_sql_instance = var.database_managed ? google_sql_database_instance.bridge["bridge"].connection_name : var.cloud_sql_instance
}

data "google_project" "current" {
  count = var.database_managed && var.database_cmek ? 1 : 0

  project_id = var.project_id
}

# Cloud SQL's service agent encrypts the instance with the key (CMEK). The agent must exist
# first: `gcloud beta services identity create --service=sqladmin.googleapis.com --project …`.
resource "google_kms_crypto_key_iam_member" "cloudsql" {
  count = var.database_managed && var.database_cmek ? 1 : 0

  crypto_key_id = google_kms_crypto_key.bridge.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-${data.google_project.current[0].number}@gcp-sa-cloud-sql.iam.gserviceaccount.com"
}

resource "google_sql_database_instance" "bridge" {
  # checkov:skip=CKV2_GCP_13: log_duration writes a line for every statement (each API request runs several); Query Insights records statement latencies instead, without the log volume
  for_each = local.database

  name                = "${var.name_prefix}-db"
  region              = var.region
  database_version    = var.database_version
  encryption_key_name = var.database_cmek ? google_kms_crypto_key.bridge.id : null
  deletion_protection = true

  settings {
    tier                        = var.database_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.database_high_availability ? "REGIONAL" : "ZONAL"
    disk_type                   = "PD_SSD"
    disk_size                   = var.database_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = true
    user_labels                 = local.labels

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.database_log_retention_days
      start_time                     = "02:00"

      backup_retention_settings {
        retained_backups = var.database_backup_retention_count
        retention_unit   = "COUNT"
      }
    }

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.vpc_network
      # Only clients holding a certificate Cloud SQL issued: the Cloud SQL connector (the
      # /cloudsql mount of the services and the job) does, so every connection goes through it.
      ssl_mode = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    # Connections, disconnections, checkpoints, lock waits and temporary files are logged;
    # statements are not (their literals may be customer data), except DDL.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.cloudsql]

  lifecycle {
    precondition {
      condition     = var.vpc_network != null && var.vpc_subnetwork != null
      error_message = "database_managed puts the instance on a private IP: set vpc_network (with Private Services Access) and vpc_subnetwork, so that the services reach it through Direct VPC egress."
    }
    precondition {
      condition     = !var.database_cmek || coalesce(var.kms_location, var.region) == var.region
      error_message = "database_cmek needs the bridge key in the instance's region: leave kms_location null (or equal to region), or set database_cmek = false."
    }
  }
}

resource "google_sql_database" "bridge" {
  for_each = local.database

  name     = "bridge"
  instance = google_sql_database_instance.bridge[each.key].name
}
