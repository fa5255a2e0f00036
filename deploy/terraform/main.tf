# Flow Platform on Kubernetes: the secrets with the kubernetes provider, the chart with helm.
# Configure both providers (kubeconfig, cluster credentials) in the calling configuration.

locals {
  fullname = "${var.release_name}-flowplatform"
  secret_data = merge(
    {
      FLOWPLATFORM_SECRET_KEY      = var.secret_key
      FLOWPLATFORM_ENCRYPTION_KEYS = var.encryption_keys
      DATABASE_URL                 = var.database_url
      CELERY_BROKER_URL            = var.broker_url
    },
    var.s3_access_key_id == "" ? {} : {
      AWS_ACCESS_KEY_ID     = var.s3_access_key_id
      AWS_SECRET_ACCESS_KEY = var.s3_secret_access_key
    },
    var.metrics_token == "" ? {} : { FLOWPLATFORM_METRICS_TOKEN = var.metrics_token },
  )
  secret_env = { for name in keys(local.secret_data) : name => { name = "", key = "" } }
  values = {
    image        = { repository = var.image_repository, tag = var.image_tag }
    allowedHosts = var.allowed_hosts
    config = {
      FLOW_DATA_STORAGE     = var.storage_url
      AWS_S3_ENDPOINT_URL   = var.s3_endpoint_url
      FLOWPLATFORM_BASE_URL = var.base_url
    }
    secretEnv = local.secret_env
    secret    = { create = false, values = {} }
    ingress = {
      enabled   = var.ingress_enabled
      className = var.ingress_class_name
      hosts     = [{ host = var.allowed_hosts[0], paths = [{ path = "/", pathType = "Prefix" }] }]
      tls       = var.ingress_tls_secret == "" ? [] : [{ secretName = var.ingress_tls_secret, hosts = [var.allowed_hosts[0]] }]
    }
    autoscaling = {
      enabled = var.autoscaling_enabled
      keda    = { enabled = var.keda_enabled, redisAddress = var.keda_redis_address }
    }
    metrics = {
      serviceMonitor = {
        enabled           = var.service_monitor_enabled
        bearerTokenSecret = var.metrics_token == "" ? {} : { name = local.fullname, key = "FLOWPLATFORM_METRICS_TOKEN" }
      }
    }
  }
}

resource "kubernetes_namespace_v1" "flowplatform" {
  count = var.create_namespace ? 1 : 0
  metadata {
    name = var.namespace
  }
}

# The Secret the chart's pods read (secretEnv, the chart's default name), kept out of Helm's
# release history.
resource "kubernetes_secret_v1" "flowplatform" {
  metadata {
    name      = local.fullname
    namespace = var.namespace
    labels = {
      "app.kubernetes.io/name"       = "flowplatform"
      "app.kubernetes.io/instance"   = var.release_name
      "app.kubernetes.io/managed-by" = "terraform"
    }
  }
  data       = local.secret_data
  depends_on = [kubernetes_namespace_v1.flowplatform]
}

resource "helm_release" "flowplatform" {
  name      = var.release_name
  namespace = var.namespace
  chart     = var.chart_path
  # The migrate hook runs first; wait for the pods to be ready (/readyz).
  wait    = true
  timeout = 900
  values  = concat([yamlencode(local.values)], var.extra_values)

  depends_on = [kubernetes_secret_v1.flowplatform]
}
