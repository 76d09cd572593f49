{{/* Names and labels shared by the templates. */}}
{{- define "rlkube-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rlkube-operator.serviceAccountName" -}}
{{- default (include "rlkube-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "rlkube-operator.selectorLabels" -}}
app.kubernetes.io/name: rlkube-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rlkube-operator.labels" -}}
{{ include "rlkube-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The rules the operator needs wherever it reconciles jobs. */}}
{{- define "rlkube-operator.rules" -}}
- apiGroups: [rlkube.dev]
  resources: [rljobs, rolloutpools, learners]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [rlkube.dev]
  resources: [rljobs/status, rolloutpools/status, learners/status]
  verbs: [get, update, patch]
# blockOwnerDeletion on children needs update on the owner's finalizers subresource
- apiGroups: [rlkube.dev]
  resources: [rljobs/finalizers, rolloutpools/finalizers, learners/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.nats.jobCredentials.secret }}
# each job's NATS credentials, issued by the operator
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
{{- end -}}
