# The functions come from the shared catalogue; everything below is derived from it.
module "catalogue" {
  source = "../catalogue"

  overrides            = var.function_overrides
  default_function     = var.default_function
  cache_expire_days    = var.cache_expire_days
  sessions_expire_days = var.sessions_expire_days
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  tags = merge({ Project = "bridge", ManagedBy = "terraform" }, var.tags)

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Enabled functions, and the ways they are reached.
  functions           = module.catalogue.enabled
  api_functions       = { for name, f in local.functions : name => f if !f.streaming }
  streaming_functions = { for name, f in local.functions : name => f if f.streaming }
  scheduled_functions = { for name, f in local.functions : name => f if f.scheduled }
  llm_functions       = { for name, f in local.functions : name => f if f.llm }
  # The function that runs jobs (one, the catalog), and its ARN, built rather than read so
  # that the roles that may invoke it do not depend on the function itself.
  job_function     = one([for name, f in local.functions : name if f.jobs == "run"])
  job_function_arn = local.job_function == null ? null : "arn:${local.partition}:lambda:${var.region}:${local.account_id}:function:${var.name_prefix}-${local.job_function}"
  default_function = module.catalogue.default_function

  artifacts_dir      = coalesce(var.artifacts_dir, "${path.root}/../../target/lambda")
  bucket_name_prefix = coalesce(var.bucket_name_prefix, "${var.name_prefix}-${local.account_id}-${var.region}")
  in_vpc             = length(var.vpc_subnet_ids) > 0
}
