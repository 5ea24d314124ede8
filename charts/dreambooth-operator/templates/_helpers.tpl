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
The namespaces the operator watches, comma-separated (DREAMBOOTH_WATCH_NAMESPACES): those listed
in watchNamespaces; with none listed, the release's own namespace when RBAC is namespaced (the
default: a working install that reaches nothing else), or "" (every namespace) when the platform
opted into rbac.clusterWide.
*/}}
{{- define "dreambooth-operator.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- join "," .Values.watchNamespaces }}
{{- else if not .Values.rbac.clusterWide }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
Refuse combinations the schema cannot express. System namespaces are never tenants: watching one
would grant the operator Jobs, Services and Secret reads next to the control plane's own.
*/}}
{{- define "dreambooth-operator.validate" -}}
{{- $watched := include "dreambooth-operator.watchNamespaces" . | splitList "," | compact }}
{{- range $namespace := list "kube-system" "kube-public" "kube-node-lease" }}
{{- if has $namespace $watched }}
{{- fail (printf "the operator would watch %s (watchNamespaces, or the release namespace when watchNamespaces is empty): system namespaces are not tenants; install the release in a namespace of its own and list the tenant namespaces in watchNamespaces" $namespace) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
What the operator does inside a namespace it watches, and nothing more; each verb is used by the
operator (operator/dreambooth_operator/kube.py and cache.py), and tests/e2e/test_least_privilege.py
fails when one goes unused in the e2e. Its caches list and watch DreamBoothJobs, their child Jobs
and Services and pods (GPU accounting), ModelArtifacts, the Job controller's FailedCreate Events
(pods refused by admission or quota) and, with Kueue, its Workloads (why a Job is queued) —
keyless, also the workload ServiceAccounts; a pass reads only those caches.
It creates the Jobs, the rendezvous Service and the ModelArtifact, deletes Jobs (suspend,
restart, failure), the Service (after training) and the job itself (after
ttlSecondsAfterFinished), patches both statuses, watches the storage Secret by its name only
(resourceNames: it sees nothing else a tenant keeps) and reads one a job names itself (get),
lists a failed Job's pods for the trainer's termination message (no pods/log) and records
Events. No pods/exec, no secret writes, no updates.
*/}}
{{- define "dreambooth-operator.namespacedRules" -}}
- apiGroups: ["dreambooth.dev"]
  resources: ["dreamboothjobs"]
  verbs: ["list", "watch", "delete"]
- apiGroups: ["dreambooth.dev"]
  resources: ["dreamboothjobs/status"]
  verbs: ["patch"]
- apiGroups: ["dreambooth.dev"]
  resources: ["modelartifacts"]
  verbs: ["list", "watch", "create"]
- apiGroups: ["dreambooth.dev"]
  resources: ["modelartifacts/status"]
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- if .Values.operator.kueue }}
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list", "watch"]
{{- end }}
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "delete"]
{{- if eq .Values.storage.mode "keyless" }}
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["list", "watch"]
{{- else }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ .Values.storage.existingSecret | quote }}]
  verbs: ["list", "watch"]
{{- end }}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list", "watch"]
{{- end }}

{{/*
What the operator reads cluster-wide in either mode: kopf follows the CRDs it serves (list and
watch, to notice them appear or change); a pass checks that a job's priorityClassName exists.
When kopf watches a list of namespaces it also follows the Namespaces (list and watch), to start
and stop its watches as they come and go; watching every namespace it does not.
*/}}
{{- define "dreambooth-operator.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: ["scheduling.k8s.io"]
  resources: ["priorityclasses"]
  verbs: ["get"]
{{- if include "dreambooth-operator.watchNamespaces" . }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/*
Where the projected storage token is mounted (keyless storage); the trainer's pods use the same
path (dreambooth_api.keyless.TOKEN_DIR).
*/}}
{{- define "dreambooth-operator.storageTokenDir" -}}
/var/run/secrets/dreambooth.dev/storage
{{- end }}

{{/*
The ServiceAccount trainer pods run as: keyless storage scopes a namespace's credentials by it.
*/}}
{{- define "dreambooth-operator.workloadServiceAccount" -}}
{{- .Values.trainer.serviceAccountName | default (ternary "dreambooth-workload" "" (eq .Values.storage.mode "keyless")) }}
{{- end }}
