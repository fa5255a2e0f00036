variable "namespace" {
  description = "Kubernetes namespace of the release (created when create_namespace is true)."
  type        = string
  default     = "flowplatform"
}

variable "create_namespace" {
  description = "Create the namespace."
  type        = bool
  default     = true
}

variable "release_name" {
  description = "Helm release name; objects are named <release_name>-flowplatform-<component>."
  type        = string
  default     = "flowplatform"
}

variable "chart_path" {
  description = "Path to the chart (charts/flowplatform of this repository)."
  type        = string
  default     = "../../charts/flowplatform"
}

variable "image_repository" {
  description = "Image of the platform (docker/Dockerfile)."
  type        = string
  default     = "flowplatform"
}

variable "image_tag" {
  description = "Image tag; empty = the chart's appVersion."
  type        = string
  default     = ""
}

variable "database_url" {
  description = "DATABASE_URL: postgres://USER:PASSWORD@HOST:5432/DB."
  type        = string
  sensitive   = true
}

variable "broker_url" {
  description = "CELERY_BROKER_URL: redis://:PASSWORD@HOST:6379/0."
  type        = string
  sensitive   = true
}

variable "storage_url" {
  description = "FLOW_DATA_STORAGE: s3://bucket/prefix (or a directory on a shared volume)."
  type        = string
}

variable "s3_endpoint_url" {
  description = "AWS_S3_ENDPOINT_URL for MinIO or another S3-compatible server; empty = AWS."
  type        = string
  default     = ""
}

variable "s3_access_key_id" {
  description = "AWS_ACCESS_KEY_ID of the flow-data bucket; empty = the pods' own identity."
  type        = string
  default     = ""
  sensitive   = true
}

variable "s3_secret_access_key" {
  description = "AWS_SECRET_ACCESS_KEY of the flow-data bucket."
  type        = string
  default     = ""
  sensitive   = true
}

variable "secret_key" {
  description = "FLOWPLATFORM_SECRET_KEY (required; generate one, keep it)."
  type        = string
  sensitive   = true
  validation {
    condition     = length(trimspace(var.secret_key)) >= 32
    error_message = "secret_key must be at least 32 characters."
  }
}

variable "encryption_keys" {
  description = "FLOWPLATFORM_ENCRYPTION_KEYS: Fernet keys, comma-separated; empty = derived from secret_key."
  type        = string
  default     = ""
  sensitive   = true
}

variable "metrics_token" {
  description = "FLOWPLATFORM_METRICS_TOKEN: bearer token /metrics asks for; empty = none."
  type        = string
  default     = ""
  sensitive   = true
}

variable "allowed_hosts" {
  description = "Host names the web server answers to."
  type        = list(string)
  default     = ["flowplatform.example.com"]
}

variable "base_url" {
  description = "FLOWPLATFORM_BASE_URL: where people open the platform (links in alerts)."
  type        = string
  default     = ""
}

variable "ingress_enabled" {
  description = "Create an Ingress for the first allowed host."
  type        = bool
  default     = false
}

variable "ingress_class_name" {
  description = "IngressClass of the Ingress."
  type        = string
  default     = ""
}

variable "ingress_tls_secret" {
  description = "Secret with the Ingress' TLS certificate; empty = no TLS."
  type        = string
  default     = ""
}

variable "autoscaling_enabled" {
  description = "Scale workers automatically (KEDA on the queue when keda_enabled, else CPU)."
  type        = bool
  default     = false
}

variable "keda_enabled" {
  description = "Scale workers on the Redis queue's length with KEDA (the operator must be installed)."
  type        = bool
  default     = false
}

variable "keda_redis_address" {
  description = "The broker's Redis as host:port, for KEDA."
  type        = string
  default     = "redis:6379"
}

variable "service_monitor_enabled" {
  description = "Create a ServiceMonitor (the Prometheus Operator must be installed)."
  type        = bool
  default     = false
}

variable "extra_values" {
  description = "More chart values, as YAML documents merged after the module's own."
  type        = list(string)
  default     = []
}
