{{/* The namespace the stages run in. */}}
{{- define "kbatch.namespace" -}}
{{- .Values.namespace.name | default .Release.Namespace -}}
{{- end -}}

{{/* Labels of every object of the release (`helm uninstall` leaves none behind: tested). */}}
{{- define "kbatch.labels" -}}
app.kubernetes.io/name: kbatch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The workspace StorageClass's name ("": the cluster's default class). */}}
{{- define "kbatch.storageClassName" -}}
{{- with .Values.workspace.storageClass -}}
{{- if .create }}{{ .name | default "kbatch-workspace" }}{{ else }}{{ .name }}{{ end -}}
{{- end -}}
{{- end -}}
