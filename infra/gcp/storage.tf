# One bucket per purpose (credentials, dashboards, sessions, cache), handed to the functions as
# CREDENTIALS_BUCKET=gs://<name> and so on. Uniform bucket-level access, public access
# prevention enforced, optional CMEK with the bridge key. Credentials and dashboards keep old
# versions for a while; sessions and cache expire. Bridge never lists a bucket: Postgres is the
# directory.

locals {
  buckets = module.catalogue.buckets
}

resource "google_storage_bucket" "bridge" {
  # checkov:skip=CKV_GCP_78: sessions and cache hold expiring, regenerable data (lifecycle delete); versioning would only keep deleted data alive. credentials and dashboards are versioned
  for_each = local.buckets

  name                        = "${local.bucket_name_prefix}-${each.key}"
  location                    = local.bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = each.value.versioned
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.versioned ? [1] : []

    content {
      condition {
        days_since_noncurrent_time = var.noncurrent_version_expire_days
      }
      action {
        type = "Delete"
      }
    }
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.expire_days != null ? [each.value.expire_days] : []

    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  dynamic "encryption" {
    for_each = var.bucket_cmek ? [1] : []

    content {
      default_kms_key_name = google_kms_crypto_key.bridge.id
    }
  }

  dynamic "logging" {
    for_each = var.access_logs_bucket == null ? [] : [1]

    content {
      log_bucket        = var.access_logs_bucket
      log_object_prefix = "${local.bucket_name_prefix}-${each.key}"
    }
  }

  depends_on = [
    google_project_service.apis,
    google_kms_crypto_key_iam_member.gcs,
  ]
}

# Each function's access to the buckets its catalogue entry names: objectViewer to read,
# objectAdmin to read, write and delete. Granted on the bucket, never on the project.
locals {
  bucket_grants = merge([
    for name, f in local.functions : {
      for purpose, mode in f.buckets : "${name}/${purpose}" => {
        function = name
        bucket   = purpose
        role     = mode == "readwrite" ? "roles/storage.objectAdmin" : "roles/storage.objectViewer"
      }
    }
  ]...)
}

resource "google_storage_bucket_iam_member" "fn" {
  for_each = local.bucket_grants

  bucket = google_storage_bucket.bridge[each.value.bucket].name
  role   = each.value.role
  member = google_service_account.fn[each.value.function].member
}
