{{/* Names and labels. */}}
{{- define "fsc.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fsc.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fsc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fsc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fsc.labels" -}}
{{ include "fsc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "fsc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fsc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fsc.secretName" -}}
{{- default (include "fsc.fullname" .) .Values.fullstory.existingSecret -}}
{{- end -}}

{{- define "fsc.proxySecretName" -}}
{{- default (include "fsc.fullname" .) .Values.egress.existingProxySecret -}}
{{- end -}}

{{/* Where the FullStory CA bundle is mounted: its own directory, beside the config mount. */}}
{{- define "fsc.fullstoryCaDir" -}}
/etc/fullstory-consumer-ca
{{- end -}}

{{/* NO_PROXY from egress.noProxy, a string or a list. */}}
{{- define "fsc.noProxy" -}}
{{- if kindIs "slice" .Values.egress.noProxy -}}
{{- join "," .Values.egress.noProxy -}}
{{- else -}}
{{- .Values.egress.noProxy | default "" | toString -}}
{{- end -}}
{{- end -}}

{{/* Seconds between SIGTERM and SIGKILL: longer than the drain. */}}
{{- define "fsc.terminationGrace" -}}
{{- $drain := .Values.config.drainTimeout | float64 -}}
{{- if .Values.terminationGracePeriodSeconds -}}
{{- $grace := .Values.terminationGracePeriodSeconds | int -}}
{{- if le ($grace | float64) $drain -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed config.drainTimeout (%v): the pod would be killed mid-drain" $grace $drain) -}}
{{- end -}}
{{- $grace -}}
{{- else -}}
{{- add (ceil $drain | int) 25 -}}
{{- end -}}
{{- end -}}

{{/* The checks that make a release refuse to render instead of misbehaving. */}}
{{- define "fsc.validate" -}}
{{- $partitions := .Values.partitions | int -}}
{{- if lt $partitions 1 -}}
{{- fail "partitions must be the partition count of the consumed topic (at least 1)" -}}
{{- end -}}
{{- if and (not .Values.keda.enabled) (gt (.Values.replicaCount | int) $partitions) -}}
{{- fail (printf "replicaCount (%d) exceeds partitions (%d): Kafka gives each partition to one member, the extra members would sit idle" (.Values.replicaCount | int) $partitions) -}}
{{- end -}}
{{- if and .Values.keda.enabled .Values.keda.maxReplicaCount (gt (.Values.keda.maxReplicaCount | int) $partitions) -}}
{{- fail (printf "keda.maxReplicaCount (%d) exceeds partitions (%d)" (.Values.keda.maxReplicaCount | int) $partitions) -}}
{{- end -}}
{{- if and (not .Values.fullstory.apiKey) (not .Values.fullstory.existingSecret) -}}
{{- fail "set fullstory.apiKey or fullstory.existingSecret (a Secret holding the FullStory API key)" -}}
{{- end -}}
{{- if and .Values.fullstory.apiKey (not .Values.fullstory.existingSecret) .Values.egress.proxy (not .Values.egress.existingProxySecret) (eq .Values.fullstory.existingSecretKey .Values.egress.existingProxySecretKey) -}}
{{- fail (printf "fullstory.existingSecretKey and egress.existingProxySecretKey are both %q: the API key and the proxy URL would share one key of the chart's Secret" .Values.egress.existingProxySecretKey) -}}
{{- end -}}
{{- if and (or .Values.egress.proxy .Values.egress.existingProxySecret) (not .Values.egress.existingProxySecretKey) -}}
{{- fail "egress.existingProxySecretKey must name the proxy URL's key in the Secret" -}}
{{- end -}}
{{- if and .Values.egress.fullstoryCa (not .Values.egress.fullstoryCaKey) -}}
{{- fail "egress.fullstoryCaKey must name the PEM bundle's key in the egress.fullstoryCa ConfigMap" -}}
{{- end -}}
{{- if not .Values.kafka.topics -}}
{{- fail "kafka.topics must list at least one topic" -}}
{{- end -}}
{{- end -}}
