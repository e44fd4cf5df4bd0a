{{/* Names: DNS labels, so at most 63 characters and no trailing dash. */}}
{{- define "splitwise.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "splitwise.fullname" -}}
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

{{- define "splitwise.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object. app.kubernetes.io/managed-by is Helm here; the operator's own
children say splitwise-operator, and its informers select on that, so the two never mix.
*/}}
{{- define "splitwise.labels" -}}
helm.sh/chart: {{ include "splitwise.chart" . }}
app.kubernetes.io/name: {{ include "splitwise.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: splitwise
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The operator's pods: the Deployment's selector, the Service's and the ServiceMonitor's. */}}
{{- define "splitwise.selectorLabels" -}}
app.kubernetes.io/name: {{ include "splitwise.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "splitwise.operatorLabels" -}}
{{ include "splitwise.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "splitwise.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "splitwise.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "splitwise.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Worker and router image for clusters without spec.image (the operator's --image). */}}
{{- define "splitwise.workloadImage" -}}
{{- default (printf "ghcr.io/splitwise/splitwise:%s" .Chart.AppVersion) .Values.operator.workloadImage }}
{{- end }}

{{/* The monitoring.coreos.com/v1 API: live discovery on install, --api-versions on template. */}}
{{- define "splitwise.hasMonitoringApi" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{/*
Checks the controller would make at start-up (it exits 2 otherwise), made at render time
so a bad combination fails the install instead of crash-looping the pod.
*/}}
{{- define "splitwise.validate" -}}
{{- $le := .Values.operator.leaderElection }}
{{- if $le.enabled }}
{{- if not (and (lt (float64 $le.retryPeriodSeconds) (float64 $le.renewDeadlineSeconds)) (lt (float64 $le.renewDeadlineSeconds) (float64 $le.leaseDurationSeconds))) }}
{{- fail (printf "operator.leaderElection: need retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds (got %v < %v < %v)" $le.retryPeriodSeconds $le.renewDeadlineSeconds $le.leaseDurationSeconds) }}
{{- end }}
{{- end }}
{{- $ic := .Values.inferenceCluster }}
{{- if and $ic.create .Values.operator.watchNamespace }}
{{- $icNs := default .Release.Namespace $ic.namespace }}
{{- if ne $icNs .Values.operator.watchNamespace }}
{{- fail (printf "inferenceCluster.namespace %q is not operator.watchNamespace %q: the operator would never see the cluster" $icNs .Values.operator.watchNamespace) }}
{{- end }}
{{- end }}
{{- end }}
