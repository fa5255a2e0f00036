{{/* Chart name, overridable with nameOverride. */}}
{{- define "flowplatform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name: the ConfigMap and Secret; components add a suffix. */}}
{{- define "flowplatform.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's objects. Call with (dict "root" $ "component" "web"). */}}
{{- define "flowplatform.componentName" -}}
{{- printf "%s-%s" (include "flowplatform.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flowplatform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flowplatform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowplatform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flowplatform.labels" -}}
helm.sh/chart: {{ include "flowplatform.chart" . }}
{{ include "flowplatform.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flowplatform.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Queues the general workers consume: the default queue, plus the schedule queue unless a
dedicated schedule worker takes it. */}}
{{- define "flowplatform.workerQueues" -}}
{{- $queues := list (.Values.config.CELERY_TASK_DEFAULT_QUEUE | default "flowplatform") }}
{{- if and .Values.config.FLOWPLATFORM_SCHEDULE_QUEUE (not .Values.scheduleWorker.enabled) }}
{{- $queues = append $queues .Values.config.FLOWPLATFORM_SCHEDULE_QUEUE }}
{{- end }}
{{- join "," $queues }}
{{- end }}

{{/* Pod annotations: a change of configuration rolls the pods. */}}
{{- define "flowplatform.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if .Values.secret.create }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level fields shared by every process. */}}
{{- define "flowplatform.podSpec" -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  # The root filesystem is read-only: temporary files (flow-data spools) go here.
  - name: tmp
    emptyDir: {}
  # prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR): empty at each start.
  - name: metrics
    emptyDir: {}
  {{- with .Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Container fields shared by every process: image, settings, security, mounts. */}}
{{- define "flowplatform.container" -}}
image: {{ include "flowplatform.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ include "flowplatform.fullname" . }}
env:
  {{- range $name, $ref := .Values.secretEnv }}
  - name: {{ $name }}
    valueFrom:
      secretKeyRef:
        name: {{ $ref.name | default (include "flowplatform.fullname" $) }}
        key: {{ $ref.key | default $name }}
  {{- end }}
  # The pod's own address is an allowed host too: Prometheus scrapes /metrics with it as Host.
  - name: POD_IP
    valueFrom:
      fieldRef:
        fieldPath: status.podIP
  - name: FLOWPLATFORM_ALLOWED_HOSTS
    value: {{ printf "%s,$(POD_IP)" (concat (.Values.allowedHosts | default (list)) (list "localhost") | uniq | join ",") | quote }}
  - name: PROMETHEUS_MULTIPROC_DIR
    value: /var/run/flowplatform/metrics
  {{- if .Values.metrics.enabled }}
  # Workers and beat serve /metrics on this port (the web server on its own http port).
  - name: FLOWPLATFORM_WORKER_METRICS_PORT
    value: {{ .Values.metrics.port | quote }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: metrics
    mountPath: /var/run/flowplatform/metrics
  {{- with .Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Refuse to render without a usable secret key: the platform would refuse to start (outside
its embedded demo it needs FLOWPLATFORM_SECRET_KEY), and an empty value is no better than a
missing one. The chart's own Secret is checked from its values; a Secret made outside the chart
is checked when Helm can read it (install/upgrade against a cluster, not `helm template`). */}}
{{- define "flowplatform.checkSecretKey" -}}
{{- if not (hasKey .Values.secretEnv "FLOWPLATFORM_SECRET_KEY") }}
{{- fail "secretEnv.FLOWPLATFORM_SECRET_KEY is required: the platform does not start without a secret key" }}
{{- end }}
{{- $ref := .Values.secretEnv.FLOWPLATFORM_SECRET_KEY | default dict }}
{{- $key := $ref.key | default "FLOWPLATFORM_SECRET_KEY" }}
{{- if and .Values.secret.create (not $ref.name) }}
{{- if not (index .Values.secret.values $key | default "" | toString | trim) }}
{{- fail (printf "secret.values.%s is empty: set a secret key (python -c \"import secrets; print(secrets.token_urlsafe(50))\")" $key) }}
{{- end }}
{{- else }}
{{- $name := $ref.name | default (include "flowplatform.fullname" .) }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name }}
{{- if $existing }}
{{- if not (index ($existing.data | default dict) $key | default "" | b64dec | trim) }}
{{- fail (printf "the Secret %s has no value under %s: set a secret key" $name $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}


{{/* The metrics port of a worker or beat container (FLOWPLATFORM_WORKER_METRICS_PORT). */}}
{{- define "flowplatform.metricsPort" -}}
{{- if .Values.metrics.enabled }}
ports:
  - name: metrics
    containerPort: {{ .Values.metrics.port }}
    protocol: TCP
{{- end }}
{{- end }}
