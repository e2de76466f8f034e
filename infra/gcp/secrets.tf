# DATABASE_URL and the LLM provider's key (ANTHROPIC_API_KEY, or OPENAI_API_KEY with
# llm_provider = "openai"; none with "builtin") live in Secret Manager and reach Cloud Run as
# secret environment variables (resolved by Cloud Run when an instance starts, version
# "latest"; never in Terraform state). Terraform creates the secrets empty; versions are added
# out of band:
#
#   printf '%s' 'postgres://…' | gcloud secrets versions add <name_prefix>-database-url --data-file=-
#
# A Cloud Run revision referencing a secret with no version fails to deploy, so on the first
# deployment create the secrets, add their versions, then apply the rest:
#   terraform apply -target=google_secret_manager_secret.database_url -target=google_secret_manager_secret.anthropic_api_key
#   gcloud secrets versions add …   (both secrets)
#   terraform apply
# With llm_provider = "openai", target and fill google_secret_manager_secret.openai_api_key
# instead of the Anthropic one.
# A new version is picked up by instances started after it is added; to switch every instance at
# once, deploy a new revision.

resource "google_secret_manager_secret" "database_url" {
  secret_id = "${var.name_prefix}-database-url"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# The LLM provider's key, for the llm functions (chat, generate), per var.llm_provider: only
# the secret of the configured provider exists (none for builtin).
resource "google_secret_manager_secret" "anthropic_api_key" {
  count = length(local.llm_functions) > 0 && var.llm_provider == "anthropic" ? 1 : 0

  secret_id = "${var.name_prefix}-anthropic-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret" "openai_api_key" {
  count = length(local.llm_functions) > 0 && var.llm_provider == "openai" ? 1 : 0

  secret_id = "${var.name_prefix}-openai-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "database_url" {
  for_each = local.functions

  secret_id = google_secret_manager_secret.database_url.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fn[each.key].member
}

resource "google_secret_manager_secret_iam_member" "anthropic_api_key" {
  for_each = length(google_secret_manager_secret.anthropic_api_key) > 0 ? local.llm_functions : {}

  secret_id = google_secret_manager_secret.anthropic_api_key[0].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fn[each.key].member
}

resource "google_secret_manager_secret_iam_member" "openai_api_key" {
  for_each = length(google_secret_manager_secret.openai_api_key) > 0 ? local.llm_functions : {}

  secret_id = google_secret_manager_secret.openai_api_key[0].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fn[each.key].member
}
