# Global external Application Load Balancer in front of every service:
#   HTTPS :443 (Google-managed certificate for var.domain) -> URL map -> one backend service per
#   function (serverless NEG -> Cloud Run); HTTP :80 redirects to HTTPS.
#
# Routing. Plain path rules (`paths`) cannot express the catalogue's `{param}` segments: a `*`
# is allowed only at the end, after a `/`. `/v1/connections/*` would send
# /v1/connections/{id}/scan (catalog) to the connections function, and no path rule can say
# `/v1/connections/*/scan`. So the URL map uses route rules with `path_template_match` (global
# external ALB, EXTERNAL_MANAGED), where `{id=*}` matches exactly one path segment:
#
#   catalogue route                          route rule template
#   GET /v1/connections/{id}             ->  /v1/connections/{id=*}           -> connections
#   POST /v1/connections/{id}/scan       ->  /v1/connections/{id=*}/scan      -> catalog
#   GET /v1/dashboards/{slug}/data       ->  /v1/dashboards/{slug=*}/data     -> data
#   GET /v1/dashboards/{slug}            ->  /v1/dashboards/{slug=*}          -> generate
#
# Each distinct path of an enabled function becomes one rule. Rules are ordered literal-first
# (fewer `{}` segments first), so /v1/dashboards/validate is tried before
# /v1/dashboards/{slug=*} and /v1/chat/sessions/current before /v1/chat/sessions/{id=*}. The
# URL map routes on the path only; the method is the function's business (405 for a wrong one).
# No two functions share a path in the catalogue, which the precondition below checks.
# Anything else, including /health and /ready, goes to the default function.

locals {
  path_owners = distinct(flatten([
    for name, f in local.functions : [
      for r in f.routes : {
        function = name
        template = replace(r.path, "/\\{([A-Za-z_][A-Za-z0-9_]*)\\}/", "{$1=*}")
        params   = length(regexall("\\{", r.path))
      }
    ]
  ]))

  # "<params> <template>" sorts literal-first.
  route_order = distinct(sort([for p in local.path_owners : format("%02d %s", p.params, p.template)]))
  route_rules = [
    for i, key in local.route_order : {
      priority = (i + 1) * 10
      template = substr(key, 3, -1)
      # With a path claimed twice the first owner is taken here and the precondition fails.
      function = [for p in local.path_owners : p.function if format("%02d %s", p.params, p.template) == key][0]
    }
  ]

  armor_policy = var.enable_cloud_armor ? google_compute_security_policy.bridge[0].id : null
}

resource "google_compute_region_network_endpoint_group" "fn" {
  for_each = local.functions

  name                  = "${var.name_prefix}-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = google_cloud_run_v2_service.fn[each.key].name
  }
}

resource "google_compute_backend_service" "fn" {
  for_each = local.functions

  name                  = "${var.name_prefix}-${each.key}"
  description           = "Bridge ${each.key} function"
  protocol              = "HTTPS"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  security_policy       = local.armor_policy

  backend {
    group = google_compute_region_network_endpoint_group.fn[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_url_map" "https" {
  name            = "${var.name_prefix}-https"
  description     = "Bridge API routes"
  default_service = google_compute_backend_service.fn[local.default_function].id

  host_rule {
    hosts        = [var.domain]
    path_matcher = "bridge"
  }

  path_matcher {
    name            = "bridge"
    default_service = google_compute_backend_service.fn[local.default_function].id

    dynamic "route_rules" {
      for_each = local.route_rules

      content {
        priority = route_rules.value.priority
        service  = google_compute_backend_service.fn[route_rules.value.function].id

        match_rules {
          path_template_match = route_rules.value.template
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = length(distinct([for p in local.path_owners : p.template])) == length(local.path_owners)
      error_message = "Two enabled functions serve the same path in infra/catalogue/functions.tf; the load balancer cannot route it."
    }
    precondition {
      condition     = local.default_function != null
      error_message = "No non-streaming function is enabled to be the load balancer's default service."
    }
  }
}

resource "google_compute_managed_ssl_certificate" "bridge" {
  name = "${var.name_prefix}-cert"

  managed {
    domains = [var.domain]
  }
}

resource "google_compute_ssl_policy" "bridge" {
  name            = "${var.name_prefix}-tls"
  profile         = "RESTRICTED"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "bridge" {
  name             = "${var.name_prefix}-https"
  url_map          = google_compute_url_map.https.id
  ssl_certificates = [google_compute_managed_ssl_certificate.bridge.id]
  ssl_policy       = google_compute_ssl_policy.bridge.id
}

resource "google_compute_global_address" "bridge" {
  name = "${var.name_prefix}-lb"

  depends_on = [google_project_service.apis]
}

resource "google_compute_global_forwarding_rule" "https" {
  name                  = "${var.name_prefix}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "443"
  ip_address            = google_compute_global_address.bridge.address
  target                = google_compute_target_https_proxy.bridge.id
}

# Plain HTTP only redirects.
resource "google_compute_url_map" "http_redirect" {
  name        = "${var.name_prefix}-http-redirect"
  description = "Redirects HTTP to HTTPS"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  name    = "${var.name_prefix}-http-redirect"
  url_map = google_compute_url_map.http_redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  name                  = "${var.name_prefix}-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "80"
  ip_address            = google_compute_global_address.bridge.address
  target                = google_compute_target_http_proxy.redirect.id
}

# ---- Cloud Armor (optional) -----------------------------------------------------------------

resource "google_compute_security_policy" "bridge" {
  count = var.enable_cloud_armor ? 1 : 0

  name        = "${var.name_prefix}-armor"
  description = "Bridge: per-IP throttling and known-exploit rules"
  type        = "CLOUD_ARMOR"

  rule {
    action      = "deny(403)"
    priority    = 900
    description = "Log4Shell (CVE-2021-44228, CVE-2021-45046) probes"

    match {
      expr {
        expression = "evaluatePreconfiguredWaf('cve-canary')"
      }
    }
  }

  rule {
    action      = "throttle"
    priority    = 1000
    description = "Per-IP request rate"

    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }

    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"

      rate_limit_threshold {
        count        = var.armor_rate_limit_per_minute
        interval_sec = 60
      }
    }
  }

  rule {
    action      = "allow"
    priority    = 2147483647
    description = "Default: allow"

    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
}
