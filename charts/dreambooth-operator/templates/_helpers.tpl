{{/*
Chart name, truncated to 63 characters (the DNS label limit of names and label values).
*/}}
{{- define "dreambooth-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name alone when it already contains the chart name.
*/}}
{{- define "dreambooth-operator.fullname" -}}
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

{{- define "dreambooth-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dreambooth-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dreambooth-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dreambooth-operator.labels" -}}
helm.sh/chart: {{ include "dreambooth-operator.chart" . }}
{{ include "dreambooth-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: dreambooth-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dreambooth-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dreambooth-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference: repository@digest when a digest is given, else repository:tag, the tag
defaulting to the chart's appVersion. Call with (dict "image" .Values.image "context" $).
*/}}
{{- define "dreambooth-operator.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (.image.tag | default .context.Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
Refuse combinations the schema cannot express.
*/}}
{{- define "dreambooth-operator.validate" -}}
{{- if and .Values.rbac.create (not .Values.rbac.clusterWide) (not .Values.watchNamespaces) }}
{{- fail "rbac.clusterWide=false grants access only inside watchNamespaces: list the namespaces to watch, or keep rbac.clusterWide=true" }}
{{- end }}
{{- end }}

{{/*
What the operator does inside a namespace it watches, and nothing more: it reconciles
DreamBoothJobs (deleting them once ttlSecondsAfterFinished has passed), creates and owns Jobs,
Services and ModelArtifacts, observes Pods (and their logs, for failure messages), checks that
storage Secrets exist (get, never list: it does not need to see what else a tenant keeps), and
records Events. No pods/exec, no secret writes.
*/}}
{{- define "dreambooth-operator.namespacedRules" -}}
- apiGroups: ["dreambooth.dev"]
  resources: ["dreamboothjobs"]
  verbs: ["get", "list", "watch", "patch", "update", "delete"]
- apiGroups: ["dreambooth.dev"]
  resources: ["dreamboothjobs/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["dreambooth.dev"]
  resources: ["modelartifacts"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["dreambooth.dev"]
  resources: ["modelartifacts/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
What the operator reads cluster-wide even when it watches a few namespaces: kopf follows the
CRDs it serves (to notice them appear or change) and the Namespaces (to follow the watched
ones); the operator checks that a job's priorityClassName exists before creating its pods.
*/}}
{{- define "dreambooth-operator.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["scheduling.k8s.io"]
  resources: ["priorityclasses"]
  verbs: ["get"]
{{- end }}
