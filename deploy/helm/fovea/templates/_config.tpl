{{/*
The fovea configuration (docs/configuration.md) the values describe, before extraConfig is
merged over it. Built as a dict so that extraConfig merges key by key.
*/}}
{{- define "fovea.config" -}}
{{- $v := .Values -}}
{{- $interval := $v.collectionInterval -}}
{{- $receivers := dict -}}
{{- $r := $v.receivers -}}
{{- /* flows: on when asked, and by default in local and remote modes (pod-level metrics). */ -}}
{{- $flowsOn := $r.flows.enabled -}}
{{- if kindIs "invalid" $flowsOn }}{{ $flowsOn = include "fovea.usesApi" . }}{{ end -}}
{{- if $r.packetforward.enabled -}}
{{- $pf := dict "collection_interval" $interval "interfaces" $r.packetforward.interfaces "exclude" $r.packetforward.exclude "attach_mode" $r.packetforward.attachMode -}}
{{- /* with flows on, the pods' veths are counted by the flows programs (one program per hook) */ -}}
{{- if $flowsOn }}{{ $_ := set $pf "exclude_pod_interfaces" $r.flows.interfaces }}{{ end -}}
{{- $_ := set $receivers "packetforward" $pf -}}
{{- end -}}
{{- if $r.dropreason.enabled -}}
{{- $_ := set $receivers "dropreason" (dict "collection_interval" $interval "flows" (dict "max_records_per_second" $r.dropreason.maxRecordsPerSecond)) -}}
{{- end -}}
{{- if $r.tcpretrans.enabled -}}
{{- $_ := set $receivers "tcpretrans" (dict "collection_interval" $interval "flows" (dict "max_records_per_second" $r.tcpretrans.maxRecordsPerSecond)) -}}
{{- end -}}
{{- if $r.linuxutil.enabled -}}
{{- $_ := set $receivers "linuxutil" (dict "collection_interval" $interval) -}}
{{- end -}}
{{- if $flowsOn -}}
{{- $flows := dict "collection_interval" $interval "interfaces" $r.flows.interfaces -}}
{{- if $r.packetforward.enabled }}{{ $_ := set $flows "forward_metrics" "pods" }}{{ end -}}
{{- $_ := set $receivers "flows" $flows -}}
{{- end -}}
{{- if $r.dns.enabled -}}
{{- $_ := set $receivers "dns" (dict "collection_interval" $interval "interfaces" $r.dns.interfaces "question_name" $r.dns.questionName "answers" $r.dns.answers "max_messages_per_second" (int $r.dns.maxMessagesPerSecond)) -}}
{{- end -}}
{{- if not $receivers -}}
{{- fail "receivers: every receiver is disabled; enable at least one" -}}
{{- end -}}

{{- /* Exporters: which take metrics, which take flow records (as OTLP logs). */ -}}
{{- $exporters := dict -}}
{{- $metricExporters := list -}}
{{- $flowExporters := list -}}
{{- $e := $v.exporters -}}
{{- if $e.prometheus.enabled -}}
{{- $_ := set $exporters "prometheus" (dict "endpoint" (printf "0.0.0.0:%v" $e.prometheus.port) "naming" $e.prometheus.naming) -}}
{{- $metricExporters = append $metricExporters "prometheus" -}}
{{- end -}}
{{- if $e.otlp.enabled -}}
{{- $endpoint := required "exporters.otlp.endpoint is required when exporters.otlp.enabled is true (host:4317 for grpc, http://host:4318 for http)" $e.otlp.endpoint -}}
{{- $type := "" -}}
{{- if eq $e.otlp.protocol "grpc" }}{{ $type = "otlp" }}{{ else if eq $e.otlp.protocol "http" }}{{ $type = "otlphttp" }}{{ else -}}
{{- fail (printf "exporters.otlp.protocol: %q is not a protocol; use grpc or http" $e.otlp.protocol) -}}
{{- end -}}
{{- $otlp := dict "endpoint" $endpoint "compression" $e.otlp.compression -}}
{{- if $e.otlp.headers }}{{ $_ := set $otlp "headers" $e.otlp.headers }}{{ end -}}
{{- $tls := include "fovea.exporterTls" (dict "name" "otlp" "tls" $e.otlp.tls) | fromYaml -}}
{{- if $tls }}{{ $_ := set $otlp "tls" $tls }}{{ end -}}
{{- $_ := set $exporters $type $otlp -}}
{{- $metricExporters = append $metricExporters $type -}}
{{- $flowExporters = append $flowExporters $type -}}
{{- end -}}
{{- if $e.remoteWrite.enabled -}}
{{- $url := required "exporters.remoteWrite.url is required when exporters.remoteWrite.enabled is true (http://prometheus:9090/api/v1/write)" $e.remoteWrite.url -}}
{{- $prw := dict "endpoint" $url "naming" $e.remoteWrite.naming -}}
{{- if $e.remoteWrite.headers }}{{ $_ := set $prw "headers" $e.remoteWrite.headers }}{{ end -}}
{{- $tls := include "fovea.exporterTls" (dict "name" "remoteWrite" "tls" $e.remoteWrite.tls) | fromYaml -}}
{{- if $tls }}{{ $_ := set $prw "tls" $tls }}{{ end -}}
{{- $_ := set $exporters "prometheusremotewrite" $prw -}}
{{- $metricExporters = append $metricExporters "prometheusremotewrite" -}}
{{- end -}}
{{- if not $metricExporters -}}
{{- fail "exporters: every exporter is disabled; enable prometheus, otlp or remoteWrite" -}}
{{- end -}}

{{- $processors := dict "batch" dict -}}
{{- $connectors := dict -}}
{{- $pipelines := dict "metrics" (dict "receivers" (keys $receivers | sortAlpha) "processors" (list "batch") "exporters" $metricExporters) -}}

{{- /* local and remote: flow records (drops, retransmits) named on both ends by the
       Kubernetes metadata cache; local watches this node's pods only. */ -}}
{{- if include "fovea.usesApi" . -}}
{{- $k8s := dict "auth_type" "serviceAccount" -}}
{{- if eq $v.mode "local" }}{{ $_ := set $k8s "filter" (dict "node_from_env_var" "K8S_NODE_NAME") }}{{ end -}}
{{- $_ := set $processors "k8sattributes" $k8s -}}
{{- $flowReceivers := list -}}
{{- range $name := list "dns" "dropreason" "flows" "tcpretrans" -}}
{{- if hasKey $receivers $name }}{{ $flowReceivers = append $flowReceivers $name }}{{ end -}}
{{- end -}}
{{- if not $flowReceivers -}}
{{- fail (printf "mode: %s names the pods of flow records; enable receivers.dropreason or receivers.tcpretrans, or use mode: basic" $v.mode) -}}
{{- end -}}
{{- /* Pod-level metrics (Retina's adv_* metrics): the flowmetrics connector turns the
       labelled records into metrics for the same exporters as the node-level ones. */ -}}
{{- $p := $v.podLevel -}}
{{- if not (has $p.selection (list "config" "annotations" "metrics_configuration")) -}}
{{- fail (printf "podLevel.selection: %q is not a selection; use config, annotations or metrics_configuration" $p.selection) -}}
{{- end -}}
{{- $fm := dict "mode" $v.mode "selection" $p.selection "metric_expiration" $p.metricExpiration "max_series" (int $p.maxSeries) -}}
{{- if $p.namespaces.include }}{{ $_ := set $fm "namespaces" (dict "include" $p.namespaces.include) }}{{ end -}}
{{- if $p.namespaces.exclude }}{{ $_ := set $fm "namespaces" (dict "exclude" $p.namespaces.exclude) }}{{ end -}}
{{- if and $p.namespaces.include $p.namespaces.exclude -}}
{{- fail "podLevel.namespaces: set include or exclude, not both (as Retina's MetricsConfiguration requires)" -}}
{{- end -}}
{{- $_ := set $connectors "flowmetrics" $fm -}}
{{- $_ := set $pipelines "flows" (dict "receivers" $flowReceivers "processors" (list "k8sattributes" "batch") "exporters" (prepend $flowExporters "flowmetrics")) -}}
{{- $_ := set $pipelines "metrics/pods" (dict "receivers" (list "flowmetrics") "processors" (list "batch") "exporters" $metricExporters) -}}
{{- end -}}

{{- $ownMetrics := dict "address" (printf "0.0.0.0:%v" $v.telemetry.port) "level" $v.telemetry.level -}}
{{- if $v.telemetry.pushToOtlp -}}
{{- if not $e.otlp.enabled -}}
{{- fail "telemetry.pushToOtlp pushes the own metrics to exporters.otlp's backend; enable exporters.otlp" -}}
{{- end -}}
{{- /* otelcol's readers: the pull reader replaces address (the probes' port), the periodic
       reader pushes with the OTLP exporter's settings. */ -}}
{{- $push := dict "protocol" (ternary "grpc" "http/protobuf" (eq $e.otlp.protocol "grpc")) "compression" $e.otlp.compression -}}
{{- $_ := set $push "endpoint" (ternary $e.otlp.endpoint (printf "%s/v1/metrics" (trimSuffix "/" $e.otlp.endpoint)) (eq $e.otlp.protocol "grpc")) -}}
{{- $headers := list -}}
{{- range $name, $value := $e.otlp.headers }}{{ $headers = append $headers (dict "name" $name "value" $value) }}{{ end -}}
{{- if $headers }}{{ $_ := set $push "headers" $headers }}{{ end -}}
{{- if $e.otlp.tls.insecure }}{{ $_ := set $push "insecure" true }}{{ end -}}
{{- $dir := include "fovea.tlsDir" "otlp" -}}
{{- if $e.otlp.tls.caFile }}{{ $_ := set $push "certificate" (printf "%s/%s" $dir $e.otlp.tls.caFile) }}{{ end -}}
{{- if $e.otlp.tls.certFile }}{{ $_ := set $push "client_certificate" (printf "%s/%s" $dir $e.otlp.tls.certFile) }}{{ end -}}
{{- if $e.otlp.tls.keyFile }}{{ $_ := set $push "client_key" (printf "%s/%s" $dir $e.otlp.tls.keyFile) }}{{ end -}}
{{- $pull := dict "pull" (dict "exporter" (dict "prometheus" (dict "host" "0.0.0.0" "port" (int $v.telemetry.port)))) -}}
{{- $periodic := dict "periodic" (dict "interval" (mul (int $v.telemetry.pushIntervalSeconds) 1000) "exporter" (dict "otlp" $push)) -}}
{{- $ownMetrics = dict "level" $v.telemetry.level "readers" (list $pull $periodic) -}}
{{- end -}}
{{- $telemetry := dict "logs" (dict "level" $v.telemetry.logLevel "encoding" $v.telemetry.logEncoding) "metrics" $ownMetrics -}}
{{- $service := dict "pipelines" $pipelines "telemetry" $telemetry "shutdown_timeout" (printf "%vs" $v.shutdownTimeoutSeconds) -}}
{{- if $v.clusterName }}{{ $_ := set $service "resource" (dict "k8s.cluster.name" $v.clusterName) }}{{ end -}}
{{- $config := dict "receivers" $receivers "processors" $processors "exporters" $exporters "service" $service -}}
{{- if $connectors }}{{ $_ := set $config "connectors" $connectors }}{{ end -}}
{{- toYaml $config -}}
{{- end -}}
