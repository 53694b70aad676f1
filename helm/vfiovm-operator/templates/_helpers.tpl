{{/* Chart name, truncated to a DNS label. */}}
{{- define "vfiovm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the operator's objects (Deployment, ServiceAccount, roles). */}}
{{- define "vfiovm.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else if hasPrefix .Release.Name $name }}
{{- /* release "vfiovm": vfiovm-operator, not vfiovm-vfiovm-operator */}}
{{- $name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Namespace of the operator and of the node pods (one namespace, labelled Pod Security privileged). */}}
{{- define "vfiovm.namespace" -}}
{{- default .Release.Namespace .Values.namespace.name }}
{{- end }}

{{- define "vfiovm.serviceAccountName" -}}
{{- default (include "vfiovm.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "vfiovm.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "vfiovm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vfiovm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vfiovm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vfiovm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vfiovm
{{- end }}

{{/* Checks the schema cannot express; fails rendering with a message saying what to change. */}}
{{- define "vfiovm.validate" -}}
{{- $start := .Values.operator.uidRange.start | int64 }}
{{- $size := .Values.operator.uidRange.size | int64 }}
{{- if gt (add $start $size) 4294967295 }}
{{- fail (printf "operator.uidRange: start (%d) + size (%d) exceeds 4294967295, the largest host UID; lower start or size" $start $size) }}
{{- end }}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.leaderElection) }}
{{- fail (printf "operator.replicas is %d but operator.leaderElection is false: more than one replica needs leader election" (int .Values.operator.replicas)) }}
{{- end }}
{{- end }}
