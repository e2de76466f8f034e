output "load_balancer_ip" {
  description = "Address to point the domain's DNS A record at (the certificate is issued once it resolves)."
  value       = google_compute_global_address.bridge.address
}

output "api_url" {
  description = "Base URL of the API: every function's routes, streaming ones included."
  value       = "https://${var.domain}"
}

output "chat_url" {
  description = "Base URL of the chat routes (/v1/chat/..., /v1/observability/...): the load balancer's, which routes them to the chat service and streams its SSE responses. null when chat is not enabled."
  value       = contains(keys(local.functions), "chat") ? "https://${var.domain}" : null
}

output "service_uris" {
  description = "run.app URL of each service (reachable only from the load balancer and same-project callers)."
  value       = { for name, s in google_cloud_run_v2_service.fn : name => s.uri }
}

output "routes" {
  description = "The load balancer's route rules: priority, path template and function."
  value       = local.route_rules
}

output "service_accounts" {
  description = "Service account of each function."
  value       = { for name, sa in google_service_account.fn : name => sa.email }
}

output "bucket_names" {
  description = "Bucket name of each purpose."
  value       = { for purpose, b in google_storage_bucket.bridge : purpose => b.name }
}

output "kms_key_id" {
  description = "Resource id of the bridge key."
  value       = google_kms_crypto_key.bridge.id
}

output "kms_key_uri" {
  description = "KMS_KEY_URI as the functions receive it."
  value       = "gcpkms://${google_kms_crypto_key.bridge.id}"
}

output "secret_ids" {
  description = "Secrets whose versions must be added out of band (see secrets.tf)."
  value = merge(
    { database_url = google_secret_manager_secret.database_url.secret_id },
    { for s in google_secret_manager_secret.anthropic_api_key : "anthropic_api_key" => s.secret_id },
    { for s in google_secret_manager_secret.openai_api_key : "openai_api_key" => s.secret_id },
  )
}

output "database_connection_name" {
  description = "Cloud SQL connection name (project:region:instance) of the managed Postgres, mounted at /cloudsql/<it> in every service; null when the database is external."
  value       = try(google_sql_database_instance.bridge["bridge"].connection_name, null)
}

output "migrate_job" {
  description = "Name of the Cloud Run job that runs the migrate deploy step (`gcloud run jobs execute <it> --wait` by hand); null when run_migrations is off."
  value       = try(google_cloud_run_v2_job.migrate["migrate"].name, null)
}
