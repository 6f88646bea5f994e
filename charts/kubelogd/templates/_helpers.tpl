{{/*
The name of every object: fullnameOverride, else the release name if it contains
"kubelogd", else <release>-kubelogd. With the release name kubelogd the objects have
deploy/'s names (kubelogd, kubelogd-logs, kubelogd-metrics, kubelogd-leases).
*/}}
{{- define "kubelogd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Selector labels. app.kubernetes.io/name is always kubelogd, never overridden: the
ServiceMonitor's jobLabel turns it into job="kubelogd", which the alerts and the
dashboard select.
*/}}
{{- define "kubelogd.selectorLabels" -}}
app.kubernetes.io/name: kubelogd
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object: deploy/'s app.kubernetes.io/part-of, and Helm's. */}}
{{- define "kubelogd.labels" -}}
{{ include "kubelogd.selectorLabels" . }}
app.kubernetes.io/part-of: kubelogd
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ include "kubelogd.imageTag" . | trunc 63 | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kubelogd.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{/* The four rules of deploy/cluster/clusterrole.yaml and deploy/namespaced/role.yaml. */}}
{{- define "kubelogd.podRules" -}}
# list + watch: the pod informer discovers pods and their containers. get: one pod by
# name; it reveals nothing that list does not, so it costs no privilege.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# get: reading (following) a container's log through the API server.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- end -}}

{{/*
One argument of a flag value: integers as integers (values files give numbers as
float64, which would print 1e+06), lists as one argument per item.
*/}}
{{- define "kubelogd.flagArg" -}}
{{- $name := index . 0 -}}{{- $v := index . 1 -}}
{{- if kindIs "slice" $v -}}
{{- range $v }}
- {{ printf "--%s=%v" $name . | toJson }}
{{- end -}}
{{- else if and (kindIs "float64" $v) (eq (float64 (int64 $v)) $v) }}
- {{ printf "--%s=%d" $name (int64 $v) | toJson }}
{{- else }}
- {{ printf "--%s=%v" $name $v | toJson }}
{{- end -}}
{{- end -}}

{{/*
kubelogd's arguments: deploy/'s three first (--output-dir, --metrics-addr, --log-format),
then every other key of .Values.flags in alphabetical order, its camelCase name turned
into the flag's (maxSizeMb: --max-size-mb), then what the mode adds.
*/}}
{{- define "kubelogd.args" -}}
{{- $flags := .Values.flags -}}
{{- $first := list "outputDir" "metricsAddr" "logFormat" -}}
{{- range $first }}
{{- if hasKey $flags . }}
{{- include "kubelogd.flagArg" (list (regexReplaceAll "([A-Z])" . "-${1}" | lower) (get $flags .)) }}
{{- end }}
{{- end }}
{{- if .Values.config }}
- --config=/etc/kubelogd/config.yaml
{{- end }}
{{- range $k := keys $flags | sortAlpha }}
{{- if not (has $k $first) }}
{{- include "kubelogd.flagArg" (list (regexReplaceAll "([A-Z])" $k "-${1}" | lower) (get $flags $k)) }}
{{- end }}
{{- end }}
{{- if .Values.ha.enabled }}
- {{ printf "--shards=%d" (int64 .Values.ha.shards) | toJson }}
{{- end }}
{{- if eq .Values.mode "namespaced" }}
- --namespace=$(POD_NAMESPACE)
{{- end }}
{{- end -}}

{{/* The container port: the port of flags.metricsAddr (the schema requires one). */}}
{{- define "kubelogd.metricsPort" -}}
{{- regexFind "[0-9]+$" .Values.flags.metricsAddr | int -}}
{{- end -}}

{{/* Checks the schema cannot express. */}}
{{- define "kubelogd.validate" -}}
{{- if and (eq .Values.mode "namespaced") (hasKey .Values.flags "namespace") -}}
{{- fail "flags.namespace cannot be set with mode: namespaced: kubelogd collects the release namespace only (its Role grants nothing elsewhere)" -}}
{{- end -}}
{{- $port := include "kubelogd.metricsPort" . | int -}}
{{- if or (lt $port 1) (gt $port 65535) -}}
{{- fail (printf "flags.metricsAddr %q: the port must be 1 to 65535" .Values.flags.metricsAddr) -}}
{{- end -}}
{{- end -}}
