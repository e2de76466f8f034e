variable "overrides" {
  description = "Per-deployment changes to catalogue entries, by function name: enable or disable a function, resize it, cap its concurrency. Unset fields keep the catalogue's values."
  type = map(object({
    enabled              = optional(bool)
    memory_mb            = optional(number)
    timeout_s            = optional(number)
    reserved_concurrency = optional(number)
    max_instances        = optional(number)
  }))
  default = {}
}

variable "default_function" {
  description = "The function that answers requests no route claims (and GET /health, GET /ready at the API root). Falls back to the first enabled non-streaming function when it is not enabled."
  type        = string
  default     = "teams"
}

variable "cache_expire_days" {
  description = "Days after which objects in the cache bucket are deleted."
  type        = number
  default     = 7
}

variable "sessions_expire_days" {
  description = "Days after which chat session logs in the sessions bucket are deleted."
  type        = number
  default     = 90
}
