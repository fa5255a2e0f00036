output "namespace" {
  description = "Namespace of the release."
  value       = var.namespace
}

output "release_name" {
  description = "Name of the Helm release."
  value       = helm_release.flowplatform.name
}

output "secret_name" {
  description = "Secret holding the platform's secret settings."
  value       = kubernetes_secret_v1.flowplatform.metadata[0].name
}

output "web_service" {
  description = "Service of the web server (admin, API, /metrics)."
  value       = "${local.fullname}-web"
}
