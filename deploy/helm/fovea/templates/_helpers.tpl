{{/* The chart's name, or nameOverride. */}}
{{- define "fovea.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The objects' name: fullnameOverride, else the release name (with the chart's name unless it contains it). */}}
{{- define "fovea.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the agent's pods (never change across upgrades). */}}
{{- define "fovea.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fovea.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{/* Labels on every object. */}}
{{- define "fovea.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fovea.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: fovea
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The ServiceAccount's name. */}}
{{- define "fovea.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fovea.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when the mode needs the Kubernetes API (pod names): local and remote. */}}
{{- define "fovea.usesApi" -}}
{{- if not (has .Values.mode (list "basic" "local" "remote")) -}}
{{- fail (printf "mode: %q is not a mode; use basic, local or remote" .Values.mode) -}}
{{- end -}}
{{- if ne .Values.mode "basic" -}}true{{- end -}}
{{- end -}}

{{/* The image reference. */}}
{{- define "fovea.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where a TLS Secret of an exporter is mounted. */}}
{{- define "fovea.tlsDir" -}}
/etc/fovea/tls/{{ . }}
{{- end -}}

{{/* An exporter's tls: block from its values (exporter name in .name, values in .tls). */}}
{{- define "fovea.exporterTls" -}}
{{- $tls := .tls -}}
{{- $dir := include "fovea.tlsDir" .name -}}
{{- $out := dict -}}
{{- if $tls.insecure }}{{ $_ := set $out "insecure" true }}{{ end -}}
{{- if $tls.insecureSkipVerify }}{{ $_ := set $out "insecure_skip_verify" true }}{{ end -}}
{{- if and (or $tls.caFile $tls.certFile $tls.keyFile) (not $tls.secretName) -}}
{{- fail (printf "exporters.%s.tls: caFile, certFile and keyFile are keys of tls.secretName; set tls.secretName" .name) -}}
{{- end -}}
{{- if $tls.caFile }}{{ $_ := set $out "ca_file" (printf "%s/%s" $dir $tls.caFile) }}{{ end -}}
{{- if $tls.certFile }}{{ $_ := set $out "cert_file" (printf "%s/%s" $dir $tls.certFile) }}{{ end -}}
{{- if $tls.keyFile }}{{ $_ := set $out "key_file" (printf "%s/%s" $dir $tls.keyFile) }}{{ end -}}
{{- toYaml $out -}}
{{- end -}}
