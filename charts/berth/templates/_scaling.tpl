{{/*
Queue-depth autoscaling (`workloads.<name>.queueScaling`): which engine
renders it, and the rules that fail the render naming the value.
*/}}

{{/* "keda" or "hpa". auto: KEDA's ScaledObject when its API is served. */}}
{{- define "berth.queueScaling.engine" -}}
{{- $e := .w.queueScaling.engine | default "auto" -}}
{{- if eq $e "auto" -}}
{{- ternary "keda" "hpa" (.root.Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject") -}}
{{- else -}}
{{- $e -}}
{{- end -}}
{{- end -}}

{{- define "berth.queueScaling.validate" -}}
{{- $w := .w -}}
{{- $q := $w.queueScaling -}}
{{- $p := printf "workloads.%s" .name -}}
{{- $engine := include "berth.queueScaling.engine" . -}}
{{- if $w.hpa.enabled -}}
{{- fail (printf "%s.queueScaling.enabled=true and %s.hpa.enabled=true: one autoscaler per workload (KEDA's ScaledObject makes its own HPA); set %s.hpa.enabled=false" $p $p $p) -}}
{{- end -}}
{{- if not (has $w.kind (list "Deployment" "StatefulSet")) -}}
{{- fail (printf "%s.queueScaling.enabled=true: queue scaling is for a Deployment or StatefulSet, not a %s (%s.kind)" $p $w.kind $p) -}}
{{- end -}}
{{- if not (kindIs "invalid" $w.replicas) -}}
{{- fail (printf "%s.replicas=%v must not be set when %s.queueScaling.enabled=true: the autoscaler owns the replica count (set %s.queueScaling.minReplicas instead)" $p $w.replicas $p $p) -}}
{{- end -}}
{{- if gt (int $q.minReplicas) (int $q.maxReplicas) -}}
{{- fail (printf "%s.queueScaling.minReplicas=%d is greater than %s.queueScaling.maxReplicas=%d" $p (int $q.minReplicas) $p (int $q.maxReplicas)) -}}
{{- end -}}
{{- if eq $engine "keda" -}}
{{- if not $q.serverAddress -}}
{{- fail (printf "%s.queueScaling.serverAddress is required with KEDA (the Prometheus URL its prometheus scaler queries, e.g. http://prometheus-operated.monitoring:9090)" $p) -}}
{{- end -}}
{{- if not $q.query -}}
{{- fail (printf "%s.queueScaling.query is empty: KEDA's prometheus scaler needs the PromQL of the queue depth" $p) -}}
{{- end -}}
{{- else -}}
{{- if eq (int $q.minReplicas) 0 -}}
{{- fail (printf "%s.queueScaling.minReplicas=0 needs KEDA: an HPA cannot scale to zero, and %s" $p (ternary (printf "%s.queueScaling.engine=hpa" $p) "the keda.sh/v1alpha1/ScaledObject API is not served by this cluster" (eq ($q.engine | default "auto") "hpa"))) -}}
{{- end -}}
{{- if not $q.externalMetric.name -}}
{{- fail (printf "%s.queueScaling.externalMetric.name is empty: without KEDA the HPA scales on an External metric (e.g. job_queue_depth from prometheus-adapter)" $p) -}}
{{- end -}}
{{- end -}}
{{- end -}}
