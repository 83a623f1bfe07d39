terraform {
  # 1.9: variable validations that refer to other variables (replicas against nodes).
  required_version = ">= 1.9"
}
