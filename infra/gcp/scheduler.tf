# Scheduled functions (precompute) are called by Cloud Scheduler: an HTTP POST to the service's
# own run.app URL (allowed by its ingress, since the scheduler is in the same project) at
# var.precompute_scheduler_path, with an OIDC token of a dedicated service account whose only
# permission is run.invoker on that service. Not retried: the next tick is the retry.

resource "google_service_account" "scheduler" {
  count = length(local.scheduled_functions) > 0 ? 1 : 0

  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Bridge scheduler (invokes scheduled functions)"
}

resource "google_cloud_run_v2_service_iam_member" "scheduler" {
  for_each = local.scheduled_functions

  name     = google_cloud_run_v2_service.fn[each.key].name
  location = google_cloud_run_v2_service.fn[each.key].location
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler[0].member
}

resource "google_cloud_scheduler_job" "schedule" {
  for_each = local.scheduled_functions

  name             = "${var.name_prefix}-${each.key}"
  description      = "Bridge: runs ${each.key} on a schedule"
  region           = coalesce(var.scheduler_region, var.region)
  schedule         = var.precompute_schedule
  time_zone        = var.schedule_time_zone
  paused           = !var.precompute_schedule_enabled
  attempt_deadline = "${max(15, min(each.value.timeout_s, 1800))}s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "${google_cloud_run_v2_service.fn[each.key].uri}${var.precompute_scheduler_path}"

    oidc_token {
      service_account_email = google_service_account.scheduler[0].email
      audience              = local.scheduler_audience
    }
  }

  depends_on = [
    google_project_service.apis,
    google_cloud_run_v2_service_iam_member.scheduler,
  ]
}
