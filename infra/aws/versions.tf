terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.29 is the first release whose aws_lambda_permission has `invoked_via_function_url`:
      # public Function URLs created since October 2025 need that second statement
      # (lambda:InvokeFunction, conditioned on lambda:InvokedViaFunctionUrl), and 5.x cannot
      # express it without granting InvokeFunction to everyone. See functions.tf.
      version = ">= 6.29, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}
