locals {
  functions = {
    for name, f in local.catalogue : name => merge(f, {
      name                 = name
      enabled              = coalesce(try(var.overrides[name].enabled, null), f.enabled)
      memory_mb            = coalesce(try(var.overrides[name].memory_mb, null), f.memory_mb)
      timeout_s            = coalesce(try(var.overrides[name].timeout_s, null), f.timeout_s)
      reserved_concurrency = try(var.overrides[name].reserved_concurrency, null)
      max_instances        = try(var.overrides[name].max_instances, null)
      buckets              = tomap(f.buckets)
      routes = [for r in f.routes : {
        key    = r
        method = split(" ", r)[0]
        path   = split(" ", r)[1]
      }]
    })
  }

  enabled = { for name, f in local.functions : name => f if f.enabled }

  non_streaming = [for name in sort(keys(local.enabled)) : name if !local.enabled[name].streaming]
  default_function = (
    contains(local.non_streaming, var.default_function) ? var.default_function :
    length(local.non_streaming) > 0 ? local.non_streaming[0] : null
  )
}

output "functions" {
  description = "Every catalogue entry, overrides applied, by function name."
  value       = local.functions

  precondition {
    condition     = length(setsubtract(keys(var.overrides), keys(local.catalogue))) == 0
    error_message = "var.function_overrides names a function that is not in the catalogue (infra/catalogue/functions.tf)."
  }
}

output "enabled" {
  description = "The catalogue entries to deploy, by function name."
  value       = local.enabled
}

output "default_function" {
  description = "The enabled, non-streaming function that answers unrouted requests (null when none is enabled)."
  value       = local.default_function
}

output "deploy_steps" {
  description = "The deploy steps (binaries run to completion before traffic moves, e.g. migrate), by name."
  value       = local.deploy_steps
}

output "buckets" {
  description = "Bucket purposes and their retention rules."
  value       = local.buckets
}
