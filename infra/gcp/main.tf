# The functions come from the shared catalogue; everything below is derived from it.
module "catalogue" {
  source = "../catalogue"

  overrides            = var.function_overrides
  default_function     = var.default_function
  cache_expire_days    = var.cache_expire_days
  sessions_expire_days = var.sessions_expire_days
}

locals {
  labels = merge({ app = "bridge", managed-by = "terraform" }, var.labels)

  functions           = module.catalogue.enabled
  scheduled_functions = { for name, f in local.functions : name => f if f.scheduled }
  llm_functions       = { for name, f in local.functions : name => f if f.llm }
  default_function    = module.catalogue.default_function

  images = {
    for name, f in local.functions :
    name => lookup(var.image_overrides, name, "${var.image_repository}/${name}:${var.image_tag}")
  }

  bucket_name_prefix = coalesce(var.bucket_name_prefix, "${var.project_id}-${var.name_prefix}")
  bucket_location    = upper(coalesce(var.bucket_location, var.region))
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? setunion([
    "cloudkms.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    # The Cloud SQL connector (the /cloudsql mount) and a managed instance need the Admin API.
  ], var.database_managed || var.cloud_sql_instance != null ? ["sqladmin.googleapis.com"] : []) : toset([])

  service            = each.value
  disable_on_destroy = false
}
